"""The one registry of colormaps: what tiles paint with, what the legend draws (PNG and JSON),
what the web map lists and which names its URL may carry, so a colormap cannot exist in one and
not in another. A continuous colormap is one of rio-tiler's, stretched over a rescale; a classed
one (`drought`, the US Drought Monitor's classes) paints fixed classes of one kind of product.

A legend carries its ticks where their values fall on the bar (a fraction of its width) and the
unit of the product it colours, so the map can place labels under the colours they name."""

import importlib.util
import io
import math
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from model.errors import InputError
from model.product import cube as cubes
from model.product import kinds

NO_DATA = 256
DEFAULT = "ylgnbu"
BAR_WIDTH, BAR_HEIGHT, MARGIN = 256, 16, 12


@dataclass(frozen=True)
class Classes:
    """A classed colormap: class rows (name, label, range, colour), the upper bound of every
    class but the last (in the product's decoded values). Which products it colours, the
    product registry says (`kinds.colormap_of`)."""

    rows: tuple[tuple[str, str, str, str], ...]
    upper: np.ndarray
    units: str


# US Drought Monitor classes on percentiles (D4 <= 2 ... D0 <= 30), a normal band, and their
# mirror on the wet side (W0 > 70 ... W4 > 98). Colours: the USDM map's, blues for wet.
DROUGHT = Classes(
    rows=(
        ("D4", "exceptional drought", "percentile <= 2", "#730000"),
        ("D3", "extreme drought", "2 < percentile <= 5", "#e60000"),
        ("D2", "severe drought", "5 < percentile <= 10", "#ffaa00"),
        ("D1", "moderate drought", "10 < percentile <= 20", "#fcd37f"),
        ("D0", "abnormally dry", "20 < percentile <= 30", "#ffff00"),
        ("normal", "near normal", "30 < percentile <= 70", "#e9e9e9"),
        ("W0", "abnormally wet", "70 < percentile <= 80", "#c6dbef"),
        ("W1", "moderately wet", "80 < percentile <= 90", "#9ecae1"),
        ("W2", "severely wet", "90 < percentile <= 95", "#4292c6"),
        ("W3", "extremely wet", "95 < percentile <= 98", "#2171b5"),
        ("W4", "exceptionally wet", "percentile > 98", "#08306b"),
    ),
    # upper bounds as tiles decode stored percentiles (code * 0.01 in float32), so a class is exact
    upper=np.array([200, 500, 1000, 2000, 3000, 7000, 8000, 9000, 9500, 9800], np.float32)
    * np.float32(cubes.PERCENTILE_SCALE),
    units="percent",
)
# flash-drought onset (model.product.flash): a flag
ONSET = Classes(
    rows=(
        ("none", "no onset", "0", "#e9e9e9"),
        ("onset", "flash-drought onset", "1", "#b2182b"),
    ),
    upper=np.array([0.5], np.float32),
    units="1 = flash-drought onset",
)
CLASSED = {"drought": DROUGHT, "onset": ONSET}


@lru_cache(maxsize=1)
def continuous() -> dict[str, Path]:
    """rio-tiler's colormaps by name: the files its `cmap` loads (256 RGBA rows of uint8 each),
    found without importing rio_tiler, whose package (rasterio, rioxarray, dask, scipy) cost
    every API process ~0.8 s of its start for these tables (tests.test_service checks that they
    equal rio_tiler.colormap.cmap's)."""
    package = importlib.util.find_spec("rio_tiler").submodule_search_locations[0]
    return {path.stem: path for path in (Path(package) / "cmap_data").glob("*.npy")}


def names() -> list[str]:
    """Every colormap name the service knows, classed ones included."""
    return sorted([*continuous(), *CLASSED])


def catalogue() -> dict:
    """What /v1/colormaps answers: every name, the default, and which products each classed
    colormap colours (the web map offers it for those alone)."""
    return {
        "colormaps": names(),
        "default": DEFAULT,
        "classed": {name: {"products": kinds.coloured_by(name)} for name in CLASSED},
    }


def classes_of(name: str) -> Classes | None:
    return CLASSED.get(name.lower())


@lru_cache(maxsize=64)
def table(name: str) -> np.ndarray:
    """(257, 4) uint8 RGBA of a colormap, plus a transparent entry 256 for no data. Cached and
    read-only."""
    rgba = np.zeros((NO_DATA + 1, 4), np.uint8)
    classed = classes_of(name)
    if classed is not None:
        for k, (*_, colour) in enumerate(classed.rows):
            rgba[k] = [*bytes.fromhex(colour[1:]), 255]
    else:
        path = continuous().get(name.lower())
        if path is None:
            raise InputError(
                f"colormap: unknown {name!r}; e.g. viridis, ylgnbu, drought, see /v1/colormaps"
            )
        rgba[:NO_DATA] = np.load(path)
    rgba.flags.writeable = False
    return rgba


def check(name: str, product: str | None) -> None:
    """A known colormap that can colour the product (a classed one colours one kind only)."""
    table(name)
    classed = name.lower() if classes_of(name) is not None else None
    if classed is not None and product is not None and kinds.colormap_of(product) != classed:
        pattern = kinds.coloured_by(classed)
        raise InputError(
            f"colormap: {name} colours {pattern} products, not {product!r}; choose "
            f"{pattern.replace('*', product)} or a continuous colormap such as {DEFAULT}"
        )


def paint(name: str, values: np.ndarray, low: float, high: float) -> np.ndarray:
    """Table indices of float32 values (NO_DATA where NaN): the class of each value for a
    classed colormap, else the value rescaled from low..high to 0..255 (rounded, clipped)."""
    classed = classes_of(name)
    if classed is not None:
        index = np.searchsorted(classed.upper, values, side="left")
    else:
        index = np.clip(np.rint((values - low) * np.float32(255.0 / (high - low))), 0, 255)
    return np.where(np.isnan(values), NO_DATA, index).astype(np.int16)


def nice_ticks(low: float, high: float, most: int = 6) -> list[float]:
    """Round values from low to high, at most `most` of them, on a 1-2-5 step."""
    raw = (high - low) / (most - 1)
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 2.5, 5, 10) if m * power >= raw)
    first = math.ceil(low / step - 1e-9)
    values = [k * step for k in range(first, math.floor(high / step + 1e-9) + 1)]
    digits = max(0, -math.floor(math.log10(step)) + (1 if step / power == 2.5 else 0))
    return [round(v, digits) for v in values]


def tick_label(value: float) -> str:
    return f"{value:g}"


def legend(name: str, low: float, high: float, units: str) -> dict:
    """The legend as data: classes with labels and colours, or stops for a gradient and ticks
    at their true positions (0..1 along the bar); the units of the values."""
    classed = classes_of(name)
    if classed is not None:
        return {
            "colormap": name,
            "kind": "classes",
            "units": classed.units,
            "classes": [
                {"class": c, "label": label, "range": bounds, "color": colour}
                for c, label, bounds, colour in classed.rows
            ],
        }
    rgba = table(name)
    stops = [
        [round(low + (high - low) * i / 255, 5), "#" + bytes(rgba[i, :3]).hex()]
        for i in range(0, 256, 51)
    ]
    ticks = [
        {"value": v, "position": round((v - low) / (high - low), 4), "label": tick_label(v)}
        for v in nice_ticks(low, high)
    ]
    return {
        "colormap": name,
        "kind": "continuous",
        "rescale": [low, high],
        "units": units,
        "stops": stops,
        "ticks": ticks,
    }


def legend_png(name: str, low: float, high: float, units: str) -> bytes:
    """The legend drawn: a labelled swatch per class, or the colour bar (at MARGIN from the left,
    BAR_WIDTH x BAR_HEIGHT) with ticks under their values and the units."""
    classed = classes_of(name)
    if classed is not None:
        return _classes_png(classed)
    image = Image.new("RGBA", (BAR_WIDTH + 2 * MARGIN, BAR_HEIGHT + 30), (255, 255, 255, 255))
    image.paste(
        Image.fromarray(np.repeat(table(name)[None, :NO_DATA], BAR_HEIGHT, axis=0), "RGBA"),
        (MARGIN, 0),
    )
    draw = ImageDraw.Draw(image)
    for tick in legend(name, low, high, units)["ticks"]:
        x = MARGIN + round(tick["position"] * (BAR_WIDTH - 1))
        draw.line([x, BAR_HEIGHT, x, BAR_HEIGHT + 4], fill="#000000")
        width = draw.textlength(tick["label"])
        draw.text((x - width / 2, BAR_HEIGHT + 5), tick["label"], fill="#000000")
    draw.text((MARGIN, BAR_HEIGHT + 17), units, fill="#444444")
    return _png(image)


def _classes_png(classed: Classes) -> bytes:
    row, width = 18, 300
    image = Image.new("RGBA", (width, row * len(classed.rows) + 4), (255, 255, 255, 255))
    draw = ImageDraw.Draw(image)
    for k, (name, label, bounds, colour) in enumerate(classed.rows):
        top = 2 + k * row
        draw.rectangle([2, top, 30, top + row - 4], fill=colour, outline="#444444")
        draw.text((36, top + 2), f"{name}  {label}  ({bounds})", fill="#000000")
    return _png(image)


def _png(image: Image.Image) -> bytes:
    out = io.BytesIO()
    image.save(out, "PNG")
    return out.getvalue()

"""Derived products on request: `<product>_percentile` and `<product>_anomaly` from the cube's
climatology (model.product.climatology), and the `drought` colormap of the US Drought Monitor's
classes on percentiles.

A served cube's climatology is loaded into memory once, beside its products: percentiles as
stored (int16, 0.01 points, (y, x, time)) and window means as codes (1e-4 m3/m3, (y, x, day of
year)), so a percentile series is a slice and an anomaly series a slice minus a gathered mean,
as fast as the plain product's."""

import io
import weakref
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

from model.errors import InputError
from model.product import climatology
from model.product import cube as cubes
from service import encode

PERCENT = encode.Text.of(cubes.PERCENTILE_SCALE)
DEFAULT_RESCALE = {"_percentile": "0,100", "_anomaly": "-0.1,0.1", "_spread": "0,0.05"}

# US Drought Monitor classes on percentiles (D4 <= 2 ... D0 <= 30), a normal band, and their
# mirror on the wet side (W0 > 70 ... W4 > 98). Colours: the USDM map's, blues for wet.
DROUGHT_CLASSES = (
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
)
# upper bounds as tiles decode stored percentiles (code * 0.01 in float32), so a class is exact
DROUGHT_UPPER = np.array([200, 500, 1000, 2000, 3000, 7000, 8000, 9000, 9500, 9800], np.float32) * (
    np.float32(cubes.PERCENTILE_SCALE)
)
NO_DATA = 256


def _drought_table() -> np.ndarray:
    table = np.zeros((NO_DATA + 1, 4), np.uint8)
    for k, (*_, colour) in enumerate(DROUGHT_CLASSES):
        table[k] = [*bytes.fromhex(colour[1:]), 255]
    table.flags.writeable = False
    return table


DROUGHT_TABLE = _drought_table()


@dataclass
class Climatology:
    """A served cube's climatology in memory, its days aligned with the cube's."""

    info: dict
    percentiles: dict[str, np.ndarray]  # (y, x, time) int16, FILL where not ranked
    mean_codes: dict[str, np.ndarray]  # (y, x, day of year) int32, FILL where no base value
    day_of_year: np.ndarray  # (time,) of the cube's days


_LOADED: "weakref.WeakKeyDictionary[object, Climatology | None]" = weakref.WeakKeyDictionary()


def load(cube) -> Climatology | None:
    """The climatology of a served cube (read once per ServedCube), None without one."""
    if cube in _LOADED:
        return _LOADED[cube]
    stored = cubes.read_climatology(cube.path)
    loaded = None
    if stored is not None:
        n_days = len(cube.dates)
        percentiles = {}
        for p, codes in stored["percentiles"].items():
            padded = np.full((*codes.shape[:2], n_days), cubes.FILL, np.int16)
            padded[:, :, : min(n_days, codes.shape[2])] = codes[:, :, :n_days]
            percentiles[p] = padded
        means = {
            p: np.where(np.isnan(m), cubes.FILL, np.rint(m / np.float32(cubes.SCALE))).astype(
                np.int32
            )
            for p, m in stored["means"].items()
        }
        doy = climatology.day_of_year(cube.memory.times)
        loaded = Climatology(stored["info"], percentiles, means, doy)
    _LOADED[cube] = loaded
    return loaded


def is_derived(product: str) -> bool:
    return climatology.is_derived(product)


def text(product: str) -> encode.Text:
    """How a product's codes read: percentiles in 0.01 points, the rest in 1e-4 m3/m3."""
    return PERCENT if product.endswith("_percentile") else encode.SOIL_MOISTURE


def units(product: str) -> str:
    return "percent" if product.endswith("_percentile") else cubes.UNITS


def describe(product: str) -> str:
    source = climatology.source_of(product)
    if source == climatology.FUSED:
        source = "fused (w = 0.5, whatever `weight` says)"
    if product.endswith("_percentile"):
        return (
            f"percentile of {source} among the base period's values of the cell within "
            f"{climatology.WINDOW_DAYS} days of the day of year"
        )
    return f"{source} minus the mean of the same climatological window, m3/m3"


def default_rescale(product: str, fallback: str) -> str:
    for suffix, rescale in DEFAULT_RESCALE.items():
        if product.endswith(suffix):
            return rescale
    return fallback


def _source_codes(cube, source: str, iy, ix, times) -> np.ndarray:
    if source == climatology.FUSED:
        return climatology.fused_codes(
            cube.memory.series("lstm", iy, ix, times), cube.memory.series("noah", iy, ix, times)
        )
    return cube.memory.series(source, iy, ix, times)


def _anomaly(values: np.ndarray, means: np.ndarray) -> np.ndarray:
    missing = (values == cubes.FILL) | (means == cubes.FILL)
    return np.where(missing, cubes.FILL, values.astype(np.int32) - means)


def series_codes(cube, product: str, iy: int, ix: int, times: slice) -> np.ndarray:
    """Codes of a derived product at one cell over a slice of days (FILL where missing)."""
    clim = load(cube)
    source = climatology.source_of(product)
    if product.endswith("_percentile"):
        return clim.percentiles[source][iy, ix, times]
    values = _source_codes(cube, source, iy, ix, times)
    return _anomaly(values, clim.mean_codes[source][iy, ix, clim.day_of_year[times]])


def day_values(cube, product: str, t: int, flat: np.ndarray) -> np.ndarray:
    """Float32 values of a derived product at flat cell indices on day t (NaN where missing):
    percent for percentiles, m3/m3 for anomalies."""
    clim = load(cube)
    source = climatology.source_of(product)
    if product.endswith("_percentile"):
        codes = clim.percentiles[source][:, :, t].ravel()[flat]
        values = codes.astype(np.float32) * np.float32(cubes.PERCENTILE_SCALE)
        values[codes == cubes.FILL] = np.nan
        return values
    if source == climatology.FUSED:
        day = climatology.fused_codes(cube.memory.day("lstm", t), cube.memory.day("noah", t))
    else:
        day = cube.memory.day(source, t)
    means = clim.mean_codes[source][:, :, clim.day_of_year[t]].ravel()[flat]
    return cubes.decode(_anomaly(day.ravel()[flat], means))


def drought_classes(values: np.ndarray) -> np.ndarray:
    """Class index (DROUGHT_CLASSES order) of each percentile; NO_DATA where NaN."""
    classes = np.searchsorted(DROUGHT_UPPER, values, side="left").astype(np.int16)
    return np.where(np.isnan(values), NO_DATA, classes).astype(np.int16)


def check_drought(product: str) -> None:
    if not product.endswith("_percentile"):
        raise InputError(
            f"colormap: drought classes percentiles; use it with a *_percentile product, "
            f"not {product!r}"
        )


def drought_legend_json() -> dict:
    return {
        "colormap": "drought",
        "units": "percent",
        "classes": [
            {"class": name, "label": label, "range": bounds, "color": colour}
            for name, label, bounds, colour in DROUGHT_CLASSES
        ],
    }


def drought_legend_png() -> bytes:
    """A labelled key: one swatch per class with its name, meaning and percentile range."""
    row, width = 18, 300
    image = Image.new("RGBA", (width, row * len(DROUGHT_CLASSES) + 4), (255, 255, 255, 255))
    draw = ImageDraw.Draw(image)
    for k, (name, label, bounds, colour) in enumerate(DROUGHT_CLASSES):
        top = 2 + k * row
        draw.rectangle([2, top, 30, top + row - 4], fill=colour, outline="#444444")
        draw.text((36, top + 2), f"{name}  {label}  ({bounds})", fill="#000000")
    out = io.BytesIO()
    image.save(out, "PNG")
    return out.getvalue()

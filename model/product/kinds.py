"""Product kinds, registered once (as formats.FORMATS registers formats): what each kind of
product is (its units, the value of one stored code, its default colour range, its
description), which products of it a cube offers, and how it is read for a point's series, a
day's map and an export block. Series, tiles, exports, the climatology, STAC and the web map
ask here, so a kind to come (a change over weeks, an onset date) is one more entry.

Codes: every kind answers series and day maps as integer codes, FILL where missing (stored
int16 m3/m3 x 1e-4, percentiles x 0.01); `Kind.decode` turns them into float32 values.
Fusion weights: `fused` and the products derived from it are computed at the weight the caller
resolved (a request's `weight`, else the per-cell estimates, else 0.5); percentiles and
anomalies of fused at another weight than the climatology's are ranked on the fly against the
base period's values at that weight.
"""

import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import pandas as pd
import xarray as xr

from model.errors import InputError
from model.product import cube as cubes
from model.product import flash, fusion, ranking

FUSED = "fused"
PERCENT = "percent"
Read = Callable[[str], np.ndarray]


class Reader(Protocol):
    """What the kinds read a served cube through (model.product.cube.LazyCube or MemoryCube):
    stored codes and the climatology's, FILL where missing."""

    times: pd.DatetimeIndex
    climatology_info: dict | None

    def series(self, product: str, iy: int, ix: int, times: slice) -> np.ndarray: ...

    def day(self, product: str, t: int) -> np.ndarray: ...

    def percentiles(self, product: str, iy: int, ix: int, times: slice) -> np.ndarray: ...

    def percentile_day(self, product: str, t: int, factor: int = 1) -> np.ndarray: ...

    def overview_factor(self, product: str, cells_per_pixel: float) -> int: ...

    def overview_day(self, product: str, t: int, factor: int) -> np.ndarray: ...

    def percentile_overview_factor(self, product: str, cells_per_pixel: float) -> int: ...

    def mean_codes(self, product: str, iy: int, ix: int, doy: np.ndarray) -> np.ndarray: ...

    def mean_codes_day(self, product: str, doy: int) -> np.ndarray: ...


@dataclass(frozen=True)
class Calendar:
    """A served cube's days as its climatology counts them: day of year, base period, and the
    lstm weight its fused climatology was ranked at."""

    day_of_year: np.ndarray
    base: slice
    fused_weight: float


_CALENDARS: "weakref.WeakKeyDictionary[Reader, Calendar]" = weakref.WeakKeyDictionary()


def calendar(reader: Reader) -> Calendar:
    """The calendar of a reader with a climatology, computed once per reader."""
    found = _CALENDARS.get(reader)
    if found is None:
        info = reader.climatology_info
        days = reader.times.values.astype("datetime64[D]")
        base = slice(
            int(days.searchsorted(np.datetime64(info["base_start"]))),
            int(days.searchsorted(np.datetime64(info["base_end"]), side="right")),
        )
        found = Calendar(ranking.day_of_year(reader.times), base, float(info["fused_weight"]))
        _CALENDARS[reader] = found
    return found


@dataclass(frozen=True)
class Kind:
    """A kind of product; subclasses say how its products are named, offered and read."""

    name: str
    units: str = cubes.UNITS
    scale: float = cubes.SCALE
    rescale: tuple[float, float] = (0.0, 0.5)
    ranked: bool = False  # gets a climatology (percentiles, anomalies)
    weighted: bool = False  # its values depend on the fusion weight
    colormap: str | None = None  # the classed colormap that colours its products alone

    def names(self, product: str) -> bool:
        """True when `product` is one of this kind's."""
        raise NotImplementedError

    def offered(self, stored: list[str], ranked: list[str]) -> list[str]:
        """Its products a cube holding `stored` (and a climatology of `ranked`) offers."""
        raise NotImplementedError

    def describe(self, product: str) -> str:
        raise NotImplementedError

    def lacking(self, product: str, stored: list[str], ranked: list[str]) -> str:
        """Why a cube holding `stored` cannot offer `product`, in a phrase."""
        return f"needs {product!r}, which this cube lacks"

    def codes(self, read: Read, product: str, weight) -> np.ndarray:
        """Codes of a product computed from stored products (`read` gives a stored product's
        codes over the cells and days wanted), for the kinds the climatology ranks."""
        raise NotImplementedError

    def series(self, reader: Reader, product: str, iy: int, ix: int, times, weight):
        """Codes of one cell over a slice of days; `weight` the cell's lstm weight."""
        return self.codes(lambda p: reader.series(p, iy, ix, times), product, weight)

    def day(self, reader: Reader, product: str, t: int, weight) -> np.ndarray:
        """(y, x) codes of day t; `weight` a scalar or the (y, x) weights."""
        return self.codes(lambda p: reader.day(p, t), product, weight)

    def overview_factor(self, reader: Reader, product: str, cells_per_pixel: float, weight):
        """The coarsest level of the map layout with the product's day maps at `weight` that
        still has a cell per pixel of a tile whose pixels are `cells_per_pixel` cells apart;
        1 (the full level, `day`) where it has none."""
        return 1

    def overview_day(self, reader: Reader, product: str, t: int, factor: int, weight):
        """(y, x) codes of day t at a level `overview_factor` gave."""
        return self.day(reader, product, t, weight)

    def block(self, window: xr.Dataset, product: str, weights: xr.DataArray, times: slice):
        """Float32 values over the days `times` of a window of cells (a cube opened with its
        climatology, every day, some cells), lazily where it can."""
        raise NotImplementedError

    def decode(self, codes: np.ndarray) -> np.ndarray:
        """Float32 values of codes, NaN where missing."""
        values = codes.astype(np.float32) * np.float32(self.scale)
        values[codes == cubes.FILL] = np.nan
        return values

    @property
    def rescale_text(self) -> str:
        return f"{self.rescale[0]:g},{self.rescale[1]:g}"


@dataclass(frozen=True)
class Stored(Kind):
    """Products the cube stores, read as they are."""

    products: tuple[str, ...] = ()

    def names(self, product):
        return product in self.products

    def offered(self, stored, ranked):
        return [p for p in stored if p in self.products]

    def describe(self, product):
        return cubes.DESCRIPTIONS[product]

    def codes(self, read, product, weight):
        return read(product)

    def overview_factor(self, reader, product, cells_per_pixel, weight):
        return reader.overview_factor(product, cells_per_pixel)

    def overview_day(self, reader, product, t, factor, weight):
        return reader.overview_day(product, t, factor)

    def block(self, window, product, weights, times):
        return window[product].isel(time=times)


@dataclass(frozen=True)
class Fused(Kind):
    """The LSTM-Noah fusion, computed on request (model.product.fusion)."""

    needs: tuple[str, str] = ("lstm", "noah")

    def names(self, product):
        return product == FUSED

    def offered(self, stored, ranked):
        return [FUSED] if set(self.needs) <= set(stored) else []

    def lacking(self, product, stored, ranked):
        return f"needs {[p for p in self.needs if p not in stored]}, which this cube lacks"

    def describe(self, product):
        return "w * lstm + (1 - w) * noah, w = 0.5 or the per-cell estimate; `weight` overrides"

    def codes(self, read, product, weight):
        return fusion.fuse_codes(read("lstm"), read("noah"), weight)

    def block(self, window, product, weights, times):
        part = window.isel(time=times)
        fused = fusion.fuse(part["lstm"], part["noah"], weights)
        return (
            fused.transpose(*part["lstm"].dims)
            .astype(np.float32)
            .assign_attrs(
                units=self.units, long_name="fused LSTM and Noah: w * lstm + (1 - w) * noah"
            )
        )


@dataclass(frozen=True)
class Derived(Kind):
    """`<source>_<suffix>` of a ranked product, from the cube's climatology."""

    suffix: str = ""

    def names(self, product):
        source = self.source(product)
        return product.endswith(self.suffix) and source in RANKABLE

    def source(self, product: str) -> str:
        return product.removesuffix(self.suffix)

    def offered(self, stored, ranked):
        return [f"{p}{self.suffix}" for p in ranked]

    def lacking(self, product, stored, ranked):
        held = ", ".join(p for k in DERIVED for p in k.offered(stored, ranked)) or "none"
        return (
            f"needs a climatology of {self.source(product)!r}, which this cube lacks (smapx "
            f"climatology --cube CUBE makes one); derived products here: {held}"
        )

    def _stale(self, source: str, fused_weight: float, weight) -> bool:
        """True where the source's values at `weight` are not those the climatology ranked."""
        return kind_of(source).weighted and not np.all(np.asarray(weight) == fused_weight)

    def _ranked_series(self, reader, source, iy, ix, times, weight):
        """(percentile codes, window mean codes) of the days, ranked now at `weight`."""
        clim = calendar(reader)
        kind = kind_of(source)
        base = kind.series(reader, source, iy, ix, clim.base, weight)
        query = kind.series(reader, source, iy, ix, times, weight)
        doy = clim.day_of_year
        pct, means = ranking.rank(base[:, None], doy[clim.base], query[:, None], doy[times])
        return pct[:, 0], ranking.mean_codes(means[doy[times], 0])

    def _ranked_day(self, reader, source, t, weight):
        clim = calendar(reader)
        kind = kind_of(source)
        doy = clim.day_of_year
        days = np.arange(clim.base.start, clim.base.stop)
        days = days[ranking.window_days(doy[days], doy[t])]
        window = np.stack([kind.day(reader, source, int(d), weight) for d in days])
        values = kind.day(reader, source, t, weight)
        pct, means = ranking.rank_day(window.reshape(len(days), -1), values.ravel())
        return pct.reshape(values.shape), ranking.mean_codes(means).reshape(values.shape)

    def _block_codes(self, window, source, weights, times) -> tuple[xr.DataArray, np.ndarray]:
        """(a template of the block's shape, the source's codes over the days `times`)."""

        def read(p):
            values = window[p].isel(time=times).values
            return np.where(np.isnan(values), cubes.FILL, np.rint(values / cubes.SCALE))

        template = window[cubes.products(window)[0]].isel(time=times)
        codes = kind_of(source).codes(read, source, np.asarray(weights))
        return template, codes.astype(np.int16)

    def _ranked_block(self, window, source, weights, times):
        """(percentile codes, window mean codes) over the days `times` of an export window,
        ranked now at `weights` against the base period's values."""
        _, codes = self._block_codes(window, source, weights, slice(None))
        flat = codes.reshape(len(codes), -1)
        doy, base = ranking.day_of_year(window.time.values), _base_days(window)
        pct, means = ranking.rank(flat[base], doy[base], flat[times], doy[times])
        shape = (len(pct), *codes.shape[1:])
        return pct.reshape(shape), ranking.mean_codes(means[doy[times]]).reshape(shape)


@dataclass(frozen=True)
class Percentile(Derived):
    def describe(self, product):
        return (
            f"percentile of {self.source(product)} among the base period's values of the cell "
            f"within {ranking.WINDOW_DAYS} days of the day of year"
        )

    def series(self, reader, product, iy, ix, times, weight):
        source = self.source(product)
        if self._stale(source, calendar(reader).fused_weight, weight):
            return self._ranked_series(reader, source, iy, ix, times, weight)[0]
        return reader.percentiles(source, iy, ix, times)

    def day(self, reader, product, t, weight):
        source = self.source(product)
        if self._stale(source, calendar(reader).fused_weight, weight):
            return self._ranked_day(reader, source, t, weight)[0]
        return reader.percentile_day(source, t)

    def overview_factor(self, reader, product, cells_per_pixel, weight):
        source = self.source(product)
        if self._stale(source, calendar(reader).fused_weight, weight):
            return 1
        return reader.percentile_overview_factor(source, cells_per_pixel)

    def overview_day(self, reader, product, t, factor, weight):
        if factor == 1:
            return self.day(reader, product, t, weight)
        return reader.percentile_day(self.source(product), t, factor)

    def block(self, window, product, weights, times):
        source = self.source(product)
        if not self._stale(source, _fused_weight(window), weights):
            return window[product].isel(time=times)
        template, _ = self._block_codes(window, source, weights, times)
        pct, _ = self._ranked_block(window, source, weights, times)
        return template.copy(data=self.decode(pct)).assign_attrs(
            units=self.units, long_name=f"percentile of {source} in its climatology"
        )


@dataclass(frozen=True)
class Anomaly(Derived):
    def describe(self, product):
        return f"{self.source(product)} minus the mean of the same climatological window, m3/m3"

    def series(self, reader, product, iy, ix, times, weight):
        source, clim = self.source(product), calendar(reader)
        values = kind_of(source).series(reader, source, iy, ix, times, weight)
        if self._stale(source, clim.fused_weight, weight):
            means = self._ranked_series(reader, source, iy, ix, times, weight)[1]
        else:
            means = reader.mean_codes(source, iy, ix, clim.day_of_year[times])
        return ranking.anomaly_codes(values, means)

    def day(self, reader, product, t, weight):
        source, clim = self.source(product), calendar(reader)
        values = kind_of(source).day(reader, source, t, weight)
        if self._stale(source, clim.fused_weight, weight):
            means = self._ranked_day(reader, source, t, weight)[1]
        else:
            means = reader.mean_codes_day(source, int(clim.day_of_year[t]))
        return ranking.anomaly_codes(values, means)

    def block(self, window, product, weights, times):
        """Value minus window mean in codes, as series and maps answer it."""
        source = self.source(product)
        template, codes = self._block_codes(window, source, weights, times)
        if self._stale(source, _fused_weight(window), weights):
            _, means = self._ranked_block(window, source, weights, times)
        else:
            doy = ranking.day_of_year(template.time.values)
            stored = window[f"{source}_window_mean"].values[doy]
            means = ranking.mean_codes(stored / np.float32(cubes.SCALE))
        anomaly = self.decode(ranking.anomaly_codes(codes, means))
        return template.copy(data=anomaly).assign_attrs(
            units=self.units, long_name=f"{source} minus its climatological mean"
        )


@dataclass(frozen=True)
class Flash(Derived):
    """Flash drought from a ranked product's percentiles (model.product.flash):
    `<source>_change_<k>d`, their change over k days, and `<source>_onset`."""

    look_back: int = 0  # days before a day that its value reads

    def describe(self, product):
        source = self.source(product)
        if self.suffix == "_onset":
            return (
                f"1 where {source}'s percentile fell from above 40 to below 20 within "
                f"{flash.ONSET_DAYS} days (Ford & Labosier 2017 flash-drought onset), else 0"
            )
        return f"{source}'s percentile minus its percentile {self.look_back} days before, points"

    def _derive(self, percentiles: np.ndarray) -> np.ndarray:
        """This kind's codes of (..., look_back + days) percentile codes: (..., days)."""
        if self.suffix == "_onset":
            return flash.onset(percentiles)
        return flash.change(percentiles, self.look_back)

    def series(self, reader, product, iy, ix, times, weight):
        source = self.source(product) + PERCENTILE.suffix
        first = times.start - self.look_back
        pct = PERCENTILE.series(reader, source, iy, ix, slice(max(first, 0), times.stop), weight)
        missing = np.full(max(-first, 0), cubes.FILL, pct.dtype)
        return self._derive(np.concatenate([missing, pct]))

    def day(self, reader, product, t, weight):
        source = self.source(product) + PERCENTILE.suffix
        days = range(t - self.look_back, t + 1)
        if self.suffix != "_onset":  # a change reads its two days only
            days = (t - self.look_back, t)
        fields = [PERCENTILE.day(reader, source, d, weight) if d >= 0 else None for d in days]
        shape = next(f for f in fields if f is not None).shape
        stack = np.stack([np.full(shape, cubes.FILL) if f is None else f for f in fields], -1)
        codes = flash.onset(stack) if self.suffix == "_onset" else flash.change(stack, 1)
        return codes[..., 0]

    def block(self, window, product, weights, times):
        source = self.source(product) + PERCENTILE.suffix
        pct = PERCENTILE.block(window, source, weights, slice(None))
        values = pct.values  # (time, y, x) percent, NaN where missing
        codes = np.where(np.isnan(values), cubes.FILL, np.rint(values / cubes.PERCENTILE_SCALE))
        codes = np.moveaxis(codes.astype(np.int32), 0, -1)  # (..., time)
        before = np.full((*codes.shape[:-1], self.look_back), cubes.FILL, np.int32)
        derived = self._derive(np.concatenate([before, codes], axis=-1))  # as series read it
        template = pct.isel(time=times)
        return template.copy(data=self.decode(np.moveaxis(derived, -1, 0)[times])).assign_attrs(
            units=self.units, long_name=self.describe(product)
        )


def _fused_weight(window: xr.Dataset) -> float:
    """The lstm weight of the fused climatology, as a cube opened with it records it."""
    return float(window.attrs[cubes.CLIMATOLOGY_FUSED_WEIGHT])


def _base_days(window: xr.Dataset) -> slice:
    start, end = window.attrs[cubes.CLIMATOLOGY_BASE].split("/")
    days = window.time.values.astype("datetime64[D]")
    return slice(
        int(days.searchsorted(np.datetime64(start))),
        int(days.searchsorted(np.datetime64(end), side="right")),
    )


STORED = Stored("stored", ranked=True, products=("lstm", "noah", "lsm2"))
OBSERVED = Stored("observed", products=("smap",))  # a few years only: not ranked
NOWCAST = Stored("nowcast", ranked=True, products=("nowcast",))
SPREAD = Stored("spread", rescale=(0.0, 0.05), products=("lstm_spread", "nowcast_spread"))
FUSION = Fused("fused", ranked=True, weighted=True)
PERCENTILE = Percentile(
    "percentile",
    units=PERCENT,
    scale=cubes.PERCENTILE_SCALE,
    rescale=(0.0, 100.0),
    suffix=cubes.PERCENTILE,
    colormap="drought",
)
ANOMALY = Anomaly("anomaly", rescale=(-0.1, 0.1), suffix="_anomaly")
CHANGES = tuple(
    Flash(
        f"change_{k}d",
        units="percentile points",
        scale=cubes.PERCENTILE_SCALE,
        rescale=(-50.0, 50.0),
        suffix=f"_change_{k}d",
        look_back=k,
    )
    for k in flash.LAGS
)
ONSET = Flash(
    "onset",
    units="1 = flash-drought onset",
    scale=1.0,
    rescale=(0.0, 1.0),
    suffix="_onset",
    look_back=flash.ONSET_DAYS,
    colormap="onset",
)

KINDS = {
    k.name: k
    for k in (OBSERVED, STORED, NOWCAST, SPREAD, FUSION, PERCENTILE, ANOMALY, *CHANGES, ONSET)
}
SOURCES = (OBSERVED, STORED, NOWCAST, SPREAD, FUSION)  # computed from the stored products alone
# from a climatology, in the order a cube offers them
DERIVED = (PERCENTILE, ANOMALY, *CHANGES, ONSET)
RANKABLE = [p for k in SOURCES if k.ranked for p in k.offered(list(cubes.PRODUCTS), [])]


def kind_of(product: str) -> Kind:
    """The kind of a product name; InputError naming the known ones otherwise."""
    for kind in KINDS.values():
        if kind.names(product):
            return kind
    raise InputError(f"unknown product {product!r}; known: {', '.join(known())}")


def is_known(product: str) -> bool:
    return any(kind.names(product) for kind in KINDS.values())


def is_percentile(product: str) -> bool:
    """True for a percentile product (`<source>_percentile`): what drought classes and a week's
    ranking read."""
    return PERCENTILE.names(product)


def colormap_of(product: str) -> str | None:
    """The classed colormap that colours a product (drought: a percentile), None if none."""
    return kind_of(product).colormap if is_known(product) else None


def coloured_by(colormap: str) -> str:
    """The products a classed colormap colours, as a name pattern (`*_percentile`)."""
    (kind,) = [k for k in KINDS.values() if k.colormap == colormap]
    return f"*{kind.suffix}"


def percentile_source(product: str) -> str:
    """The product a percentile product ranks (lstm of lstm_percentile)."""
    return PERCENTILE.source(product)


def cell_codes(reader: Reader, weights: np.ndarray, weight: float | None):
    """A function of (product, iy, ix, days): one cell's codes over the days, read through the
    product's kind; fused and what derives from it at `weight`, else the cell's of the (y, x)
    `weights`."""

    def codes(product: str, iy: int, ix: int, days: slice) -> np.ndarray:
        w = weights[iy, ix] if weight is None else weight
        return kind_of(product).series(reader, product, iy, ix, days, w)

    return codes


def estimates(cube: xr.Dataset) -> list[str]:
    """The stored products that estimate soil moisture (not an ensemble's spread), in canonical
    order."""
    return [p for p in cubes.products(cube) if kind_of(p) is not SPREAD]


def known() -> list[str]:
    """Every product name there can be, stored ones in the cube's order."""
    names = [*cubes.PRODUCTS, FUSED]
    return names + [f"{p}{k.suffix}" for p in RANKABLE for k in DERIVED]


def ranked(stored: list[str]) -> list[str]:
    """The products a cube holding `stored` gets a climatology of: stored ones in the cube's
    order, then computed ones."""
    return [p for p in available(stored, []) if kind_of(p).ranked]


def ranked_in(cube: xr.Dataset) -> list[str]:
    """The products whose climatology a cube opened with it (cube.open_cube) carries."""
    return [p for p in RANKABLE if f"{p}{PERCENTILE.suffix}" in cube]


def offered_by(cube: xr.Dataset) -> list[str]:
    """The products an opened cube offers."""
    return available(cubes.products(cube), ranked_in(cube))


def available(stored: list[str], ranked_: list[str]) -> list[str]:
    """The products a cube offers: stored (canonical order), computed, then per ranked product
    its derived ones."""
    computed = [p for k in SOURCES if not isinstance(k, Stored) for p in k.offered(stored, [])]
    derived = [p for source in ranked_ for k in DERIVED for p in k.offered(stored, [source])]
    return [*stored, *computed, *derived]


def lacking(product: str, stored: list[str], ranked_: list[str]) -> str | None:
    """Why a cube cannot offer `product` (a phrase), None when it can."""
    kind = kind_of(product)
    return (
        None if product in kind.offered(stored, ranked_) else kind.lacking(product, stored, ranked_)
    )


def describe(product: str) -> dict:
    """What the service and STAC say of a product: kind, units, default rescale, description."""
    kind = kind_of(product)
    return {
        "kind": kind.name,
        "units": kind.units,
        "rescale": list(kind.rescale),
        "description": kind.describe(product),
    }

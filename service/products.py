"""Derived products on request: `<product>_percentile` and `<product>_anomaly` from the cube's
climatology (model.product.climatology).

A served cube's climatology is loaded into memory once, beside its products: percentiles as
stored (int16, 0.01 points, (y, x, time)) and window means as codes (1e-4 m3/m3, (y, x, day of
year)), so a percentile series is a slice and an anomaly series a slice minus a gathered mean,
as fast as the plain product's."""

import weakref
from dataclasses import dataclass

import numpy as np

from model.product import climatology
from model.product import cube as cubes
from service import encode

PERCENT = encode.Text.of(cubes.PERCENTILE_SCALE)
DEFAULT_RESCALE = {"_percentile": "0,100", "_anomaly": "-0.1,0.1", "_spread": "0,0.05"}


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

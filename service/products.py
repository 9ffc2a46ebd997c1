"""Derived products on request: `<product>_percentile` and `<product>_anomaly` from the cube's
climatology (model.product.climatology).

A served cube's reader (model.product.cube.LazyCube) reads the climatology as it reads the
products: percentiles as stored (int16, 0.01 points) and window means as codes (1e-4 m3/m3), so
a percentile series is a slice and an anomaly series a slice minus a gathered mean, as fast as
the plain product's."""

import numpy as np

from model.product import climatology
from model.product import cube as cubes
from service import encode

PERCENT = encode.Text.of(cubes.PERCENTILE_SCALE)
DEFAULT_RESCALE = {"_percentile": "0,100", "_anomaly": "-0.1,0.1", "_spread": "0,0.05"}


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
            cube.reader.series("lstm", iy, ix, times), cube.reader.series("noah", iy, ix, times)
        )
    return cube.reader.series(source, iy, ix, times)


def _anomaly(values: np.ndarray, means: np.ndarray) -> np.ndarray:
    missing = (values == cubes.FILL) | (means == cubes.FILL)
    return np.where(missing, cubes.FILL, values.astype(np.int32) - means)


def series_codes(cube, product: str, iy: int, ix: int, times: slice) -> np.ndarray:
    """Codes of a derived product at one cell over a slice of days (FILL where missing)."""
    source = climatology.source_of(product)
    if product.endswith("_percentile"):
        return cube.reader.percentiles(source, iy, ix, times)
    values = _source_codes(cube, source, iy, ix, times)
    return _anomaly(values, cube.reader.mean_codes(source, iy, ix, cube.day_of_year[times]))


def day_values(cube, product: str, t: int, flat: np.ndarray) -> np.ndarray:
    """Float32 values of a derived product at flat cell indices on day t (NaN where missing):
    percent for percentiles, m3/m3 for anomalies."""
    source = climatology.source_of(product)
    if product.endswith("_percentile"):
        codes = cube.reader.percentile_day(source, t).ravel()[flat]
        values = codes.astype(np.float32) * np.float32(cubes.PERCENTILE_SCALE)
        values[codes == cubes.FILL] = np.nan
        return values
    if source == climatology.FUSED:
        day = climatology.fused_codes(cube.reader.day("lstm", t), cube.reader.day("noah", t))
    else:
        day = cube.reader.day(source, t)
    means = cube.reader.mean_codes_day(source, cube.day_of_year[t]).ravel()[flat]
    return cubes.decode(_anomaly(day.ravel()[flat], means))

"""Where a day's soil moisture ranks among the base period's values of the same cell near the
same day of year, and their mean: the science of percentiles and anomalies, on stored codes.

Definitions (exact, on the cube's stored values):
    day of year   that of the month and day in a 365-day year; 29 February takes 28 February's
    window        the base-period days whose day of year is within WINDOW_DAYS of the day's
                  (circularly), values present
    percentile    100 * (n_below + 0.5 * n_equal) / n over the window's n values, as an int16
                  number of 0.01 points rounded up (so a stored percentile <= k, or > k, for a
                  whole k, exactly when the exact one is)
    window mean   mean of the window's values; anomaly = value - window mean
"""

import numpy as np
import pandas as pd

from model.product import cube as cubes

WINDOW_DAYS = 15
TOP_CODE = np.iinfo(np.int16).max  # above every stored value: what missing base values become


def day_of_year(times) -> np.ndarray:
    """0-based day of year of each day's month and day in a 365-day year (29 Feb -> 28 Feb)."""
    times = pd.DatetimeIndex(times)
    doy = times.day_of_year.values - 1
    return np.where(times.is_leap_year & (doy >= 59), doy - 1, doy)


def window_days(doy: np.ndarray, center: int) -> np.ndarray:
    """True for the days whose day of year lies within WINDOW_DAYS of `center`, circularly."""
    distance = np.abs(doy - center)
    return np.minimum(distance, cubes.DAYS_OF_YEAR - distance) <= WINDOW_DAYS


def _percentile_codes(values, twice, n) -> np.ndarray:
    """Percentile codes from 2 * n_below + n_equal among n; FILL where unknown."""
    code = (10000 * twice + 2 * n - 1) // np.maximum(2 * n, 1)
    return np.where((values == cubes.FILL) | (n == 0), cubes.FILL, code).astype(np.int16)


def _window_means(window: np.ndarray, valid: np.ndarray, n: np.ndarray) -> np.ndarray:
    total = np.where(valid, window, 0).sum(axis=0, dtype=np.int64)
    return np.where(n > 0, total / np.maximum(n, 1), np.nan).astype(np.float32)


def rank(
    base: np.ndarray, base_doy: np.ndarray, query: np.ndarray, query_doy: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Percentile codes (0.01 points, rounded up; FILL where unknown) of the query codes
    (day, cell), and window means (dayofyear, cell) in codes, against base codes (day, cell).
    Per day of year, each cell's window is sorted once and the cell's days of that day of year
    are looked up in it (below: searchsorted left; below + equal: right)."""
    n_cells = base.shape[1]
    percentiles = np.full(query.shape, cubes.FILL, np.int16)
    means = np.full((cubes.DAYS_OF_YEAR, n_cells), np.nan, np.float32)
    offsets = np.arange(n_cells, dtype=np.int64) * (1 << 16)
    for center in range(cubes.DAYS_OF_YEAR):
        window = base[window_days(base_doy, center)]
        valid = window != cubes.FILL
        n = valid.sum(axis=0)
        means[center] = _window_means(window, valid, n)
        days = np.flatnonzero(query_doy == center)
        if days.size == 0:
            continue
        ordered = np.sort(np.where(valid, window, TOP_CODE).T, axis=1).astype(np.int64)
        keys = (ordered + offsets[:, None]).ravel()
        values = query[days]
        wanted = values.astype(np.int64) + offsets
        starts = np.arange(n_cells) * window.shape[0]
        below = np.searchsorted(keys, wanted, "left") - starts
        not_above = np.searchsorted(keys, wanted, "right") - starts
        percentiles[days] = _percentile_codes(values, below + not_above, n)
    return percentiles, means


def rank_day(window: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Percentile codes and window means (codes) of one day's values (cell,) against its window
    of base codes (day, cell), by counting: one day needs no sorted windows."""
    valid = window != cubes.FILL
    n = valid.sum(axis=0)
    below = (valid & (window < values)).sum(axis=0)
    equal = (valid & (window == values)).sum(axis=0)
    return _percentile_codes(values, 2 * below + equal, n), _window_means(window, valid, n)


def mean_codes(means: np.ndarray) -> np.ndarray:
    """Window means in codes (float, NaN where no base value) as int32 codes, FILL where none."""
    return np.where(np.isnan(means), cubes.FILL, np.rint(means)).astype(np.int32)


def anomaly_codes(values: np.ndarray, means: np.ndarray) -> np.ndarray:
    """Codes of value minus window mean (int32 codes), FILL where either is missing."""
    missing = (values == cubes.FILL) | (means == cubes.FILL)
    return np.where(missing, cubes.FILL, values.astype(np.int32) - means)

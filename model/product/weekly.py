"""The US Drought Monitor's week: seven days ending on a Tuesday (Wednesday..Tuesday).

Definitions (on a product's stored codes):
    week            the days t-6..t of a Tuesday t, all inside the record; named by its Tuesday
    weekly value    the mean of the week's days with a value (missing if none has one)
    week of year    the day of year (365-day, 29 Feb -> 28 Feb) of its Tuesday
    same week       of another year: the week whose Tuesday's day of year lies within 3 days of
                    this one's, circularly (one per year)
    weekly percentile  100 * (n_below + 0.5 * n_equal) / n of the weekly value among the n
                    weekly values of the same weeks in the base period, as codes in 0.01 points
                    rounded up (as the daily percentiles, model.product.ranking)
"""

import numpy as np
import pandas as pd

from model.product import cube as cubes
from model.product import ranking

TUESDAY = 1  # pandas: Monday = 0
DAYS = 7
SAME_WEEK_DAYS = 3


def week_ends(times: pd.DatetimeIndex) -> np.ndarray:
    """Indices of the Tuesdays of `times` (consecutive days) whose whole week is inside it."""
    ends = np.flatnonzero(pd.DatetimeIndex(times).dayofweek == TUESDAY)
    return ends[ends >= DAYS - 1]


def weekly_means(codes: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """(..., weeks) float64 mean codes of the weeks ending at `ends` of (..., days) codes; NaN
    where no day of a week has a value."""
    days = ends[:, None] + np.arange(-(DAYS - 1), 1)  # (weeks, 7)
    window = codes[..., days]  # (..., weeks, 7)
    present = window != cubes.FILL
    count = present.sum(axis=-1)
    total = np.where(present, window, 0).sum(axis=-1, dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, total / count, np.nan)


def mean_codes(means: np.ndarray) -> np.ndarray:
    """Weekly means as codes (rounded), FILL where NaN."""
    return np.where(np.isnan(means), cubes.FILL, np.rint(np.nan_to_num(means))).astype(np.int32)


def same_weeks(doy: np.ndarray, base_doy: np.ndarray) -> np.ndarray:
    """(weeks, base weeks) True where a base week is the same week of the year."""
    distance = np.abs(doy[:, None] - base_doy[None, :])
    return np.minimum(distance, cubes.DAYS_OF_YEAR - distance) <= SAME_WEEK_DAYS


def weekly_percentiles(
    means: np.ndarray, doy: np.ndarray, base_means: np.ndarray, base_doy: np.ndarray
) -> np.ndarray:
    """Percentile codes (..., weeks) of weekly means among the base weeks' (..., base weeks)
    of the same week of the year; FILL where the week or every base week lacks a value."""
    same = same_weeks(doy, base_doy)  # (weeks, base weeks)
    k = max(int(same.sum(axis=1).max(initial=0)), 1)
    order = np.argsort(~same, axis=1, kind="stable")[:, :k]  # each week's base weeks first
    base = base_means[..., order]  # (..., weeks, k)
    valid = np.take_along_axis(same, order, axis=1) & ~np.isnan(base)
    value = means[..., None]
    n = valid.sum(axis=-1)
    twice = 2 * (valid & (base < value)).sum(axis=-1) + (valid & (base == value)).sum(axis=-1)
    code = (10000 * twice + 2 * n - 1) // np.maximum(2 * n, 1)
    return np.where(np.isnan(means) | (n == 0), cubes.FILL, code).astype(np.int32)


def week_doy(times: pd.DatetimeIndex, ends: np.ndarray) -> np.ndarray:
    return ranking.day_of_year(pd.DatetimeIndex(times)[ends])

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

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from model.errors import InputError, OutOfRangeError
from model.product import cube as cubes
from model.product import kinds, ranking

TUESDAY = 1  # pandas: Monday = 0
DAYS = 7
SAME_WEEK_DAYS = 3
CELLS_AT_ONCE = 256  # cells whose whole record a percentile reads at once: ~10 MB for 40 years
# a product's codes at one cell (iy, ix) over a slice of days, FILL where missing
CellCodes = Callable[[str, int, int, slice], np.ndarray]


@dataclass(frozen=True)
class Weeks:
    """The weeks a request asked for: their Tuesdays as cube day indices, and their dates."""

    ends: np.ndarray
    dates: list[str]

    @property
    def days(self) -> slice:
        """The cube days the weeks span."""
        return slice(int(self.ends[0]) - DAYS + 1, int(self.ends[-1]) + 1)


def day_text(times: pd.DatetimeIndex, t: int) -> str:
    return str(times[t].date())


def weeks_within(times: pd.DatetimeIndex, days: slice) -> Weeks:
    """The whole weeks of a cube's days `times` ending (Tuesday) within the days `days`;
    OutOfRangeError where there is none."""
    ends = week_ends(times)
    ends = ends[(ends >= days.start) & (ends < days.stop)]
    if ends.size == 0:
        raise OutOfRangeError(
            f"period: no whole week (Wednesday..Tuesday) of the cube ends within "
            f"{day_text(times, days.start)}..{day_text(times, days.stop - 1)}"
        )
    return Weeks(ends, [day_text(times, t) for t in ends])


def week_ending(times: pd.DatetimeIndex, t: int) -> Weeks:
    """The week ending on day t: InputError unless a Tuesday, OutOfRangeError unless the whole
    week is in the cube."""
    day = times[t]
    if day.day_of_week != TUESDAY:
        tuesday = day + pd.Timedelta(days=(TUESDAY - day.day_of_week) % 7)
        raise InputError(
            f"date: {day_text(times, t)} is a {day.day_name()}; weeks end on Tuesdays (the week "
            f"holding it ends {tuesday.date()})"
        )
    if t < DAYS - 1:
        raise OutOfRangeError(
            f"date: the week ending {day_text(times, t)} does not lie wholly in the cube "
            f"({day_text(times, 0)}..{day_text(times, len(times) - 1)})"
        )
    return Weeks(np.array([t]), [day_text(times, t)])


def base_ends(times: pd.DatetimeIndex, climatology_info: dict) -> np.ndarray:
    """The Tuesdays of the weeks wholly inside the climatology's base period."""
    days = times.values.astype("datetime64[D]")
    first = int(days.searchsorted(np.datetime64(climatology_info["base_start"], "D")))
    last = int(days.searchsorted(np.datetime64(climatology_info["base_end"], "D")))
    ends = week_ends(times)
    return ends[(ends - DAYS + 1 >= first) & (ends <= last)]


def read(codes_of: CellCodes, product: str, iy, ix, days: slice) -> np.ndarray:
    """(cells, days) codes of a product at cells (iy, ix)."""
    if len(iy) == 0:
        return np.empty((0, days.stop - days.start), np.int32)
    return np.stack(
        [
            codes_of(product, y, x, days)
            for y, x in zip(np.asarray(iy).tolist(), np.asarray(ix).tolist(), strict=True)
        ]
    ).astype(np.int32)


def weekly_codes(
    codes_of: CellCodes, reader: kinds.Reader, product: str, iy, ix, weeks: Weeks
) -> np.ndarray:
    """(cells, weeks) codes of a product's weekly values at cells (iy, ix), FILL where missing:
    a product's weekly mean, a percentile's rank of its source's weekly mean."""
    if not kinds.is_percentile(product):
        codes = read(codes_of, product, iy, ix, weeks.days)
        return mean_codes(weekly_means(codes, weeks.ends - weeks.days.start))
    source = kinds.percentile_source(product)
    times = reader.times
    base = base_ends(times, reader.climatology_info)
    doy, base_doy = week_doy(times, weeks.ends), week_doy(times, base)
    parts = []
    for first in range(0, len(iy), CELLS_AT_ONCE):
        cells = slice(first, first + CELLS_AT_ONCE)
        record = read(codes_of, source, iy[cells], ix[cells], slice(0, len(times)))
        parts.append(
            weekly_percentiles(
                weekly_means(record, weeks.ends), doy, weekly_means(record, base), base_doy
            )
        )
    return np.concatenate(parts)


def days_read(product: str, days: int, record: int, week: bool) -> int:
    """Days of a cell a product's values over `days` days read: a weekly percentile ranks
    against its source's whole `record`."""
    return record if week and kinds.is_percentile(product) else days


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

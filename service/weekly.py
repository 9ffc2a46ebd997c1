"""`period=week`: the US Drought Monitor's weeks (Wednesday..Tuesday) of any product, as codes
the series, areas and shapes encode like daily ones. A product's weekly value is the mean of its
daily codes; a percentile's is the percentile of its source's weekly mean among the same weeks of
the climatology's base period (model.product.weekly has the definitions)."""

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from model.errors import InputError, OutOfRangeError
from model.product import cube as cubes
from model.product import kinds, weekly
from service.catalog import ServedCube

# a product's codes at one cell over a slice of days (service.series.product_codes)
CodesOf = Callable[[ServedCube, str, int, int, slice, float | None], np.ndarray]
CELLS_AT_ONCE = 256  # cells whose whole record a percentile reads at once: ~10 MB for 40 years


@dataclass(frozen=True)
class Weeks:
    """The weeks a request asked for: their Tuesdays as cube day indices, and their dates."""

    ends: np.ndarray
    dates: list[str]

    @property
    def days(self) -> slice:
        """The cube days the weeks span."""
        return slice(int(self.ends[0]) - weekly.DAYS + 1, int(self.ends[-1]) + 1)


def weeks_of(served: ServedCube, times: slice) -> Weeks:
    """The whole weeks of the cube ending (Tuesday) within the days `times`; OutOfRangeError
    where there is none."""
    ends = weekly.week_ends(served.reader.times)
    ends = ends[(ends >= times.start) & (ends < times.stop)]
    if ends.size == 0:
        raise OutOfRangeError(
            f"period: no whole week (Wednesday..Tuesday) of the cube ends within "
            f"{served.dates[times.start]}..{served.dates[times.stop - 1]}",
            served.extent,
        )
    return Weeks(ends, [served.dates[t] for t in ends])


def week_ending(served: ServedCube, t: int) -> Weeks:
    """The week ending on day t: InputError unless a Tuesday, OutOfRangeError unless the whole
    week is in the cube."""
    day = served.reader.times[t]
    if day.day_of_week != weekly.TUESDAY:
        tuesday = day + pd.Timedelta(days=(weekly.TUESDAY - day.day_of_week) % 7)
        raise InputError(
            f"date: {served.dates[t]} is a {day.day_name()}; weeks end on Tuesdays (the week "
            f"holding it ends {tuesday.date()})"
        )
    if t < weekly.DAYS - 1:
        raise OutOfRangeError(
            f"date: the week ending {served.dates[t]} does not lie wholly in the cube "
            f"({served.dates[0]}..{served.dates[-1]})",
            served.extent,
        )
    return Weeks(np.array([t]), [served.dates[t]])


def base_ends(served: ServedCube) -> np.ndarray:
    """The Tuesdays of the weeks wholly inside the climatology's base period."""
    info = served.reader.climatology_info
    first, last = served.day_numbers[info["base_start"]], served.day_numbers[info["base_end"]]
    ends = weekly.week_ends(served.reader.times)
    return ends[(ends - weekly.DAYS + 1 >= first) & (ends <= last)]


def weekly_codes(
    codes_of: CodesOf,
    served: ServedCube,
    product: str,
    iy: np.ndarray,
    ix: np.ndarray,
    weeks: Weeks,
    weight,
) -> np.ndarray:
    """(cells, weeks) codes of a product's weekly values at cells (iy, ix), FILL where missing."""
    if not kinds.is_percentile(product):
        codes = read(codes_of, served, product, iy, ix, weeks.days, weight)
        return weekly.mean_codes(weekly.weekly_means(codes, weeks.ends - weeks.days.start))
    source = kinds.percentile_source(product)
    base = base_ends(served)
    times = served.reader.times
    doy, base_doy = weekly.week_doy(times, weeks.ends), weekly.week_doy(times, base)
    parts = []
    for first in range(0, len(iy), CELLS_AT_ONCE):
        cells = slice(first, first + CELLS_AT_ONCE)
        record = read(codes_of, served, source, iy[cells], ix[cells], slice(0, len(times)), weight)
        parts.append(
            weekly.weekly_percentiles(
                weekly.weekly_means(record, weeks.ends),
                doy,
                weekly.weekly_means(record, base),
                base_doy,
            )
        )
    return np.concatenate(parts)


def read(
    codes_of: CodesOf, served: ServedCube, product: str, iy, ix, times: slice, weight
) -> np.ndarray:
    """(cells, days) codes of a product at cells (iy, ix)."""
    if len(iy) == 0:
        return np.empty((0, times.stop - times.start), np.int32)
    return np.stack(
        [
            codes_of(served, product, y, x, times, weight)
            for y, x in zip(np.asarray(iy).tolist(), np.asarray(ix).tolist(), strict=True)
        ]
    ).astype(np.int32)


def day_codes(
    codes_of: CodesOf, served: ServedCube, product: str, t: int, weight
) -> tuple[np.ndarray, ...]:
    """(region cells' iy, ix, their weekly codes) of the week ending on day t."""
    iy, ix = np.nonzero(served.reader.mask)
    week = week_ending(served, t)
    return iy, ix, weekly_codes(codes_of, served, product, iy, ix, week, weight)[:, 0]


def week_field(codes_of: CodesOf, served: ServedCube, product: str, t: int, weight) -> np.ndarray:
    """(y, x) codes of the week ending on day t, FILL outside the region: a weekly map."""
    iy, ix, codes = day_codes(codes_of, served, product, t, weight)
    field = np.full(served.reader.mask.shape, cubes.FILL, np.int32)
    field[iy, ix] = codes
    return field

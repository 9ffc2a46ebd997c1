"""`period=week`: the US Drought Monitor's weeks (Wednesday..Tuesday) of any product, as codes
the series, areas and shapes encode like daily ones; the definitions and the computation are
model.product.weekly's, this module binds them to a served cube."""

import numpy as np

from model.errors import OutOfRangeError
from model.product import cube as cubes
from model.product import kinds, weekly
from model.product.weekly import Weeks
from service.catalog import ServedCube


def weeks_of(served: ServedCube, times: slice) -> Weeks:
    """The whole weeks of the cube ending (Tuesday) within the days `times`; OutOfRangeError
    (with the cube's extent) where there is none."""
    try:
        return weekly.weeks_within(served.reader.times, times)
    except OutOfRangeError as exc:
        raise OutOfRangeError(str(exc), served.extent) from None


def week_ending(served: ServedCube, t: int) -> Weeks:
    try:
        return weekly.week_ending(served.reader.times, t)
    except OutOfRangeError as exc:
        raise OutOfRangeError(str(exc), served.extent) from None


def weekly_codes(served: ServedCube, product: str, iy, ix, weeks: Weeks, weight) -> np.ndarray:
    """(cells, weeks) codes of a product's weekly values at cells (iy, ix), FILL where missing;
    fused and what derives from it at `weight`, else each cell's."""
    codes_of = kinds.cell_codes(served.reader, served.weights, weight)
    return weekly.weekly_codes(codes_of, served.reader, product, iy, ix, weeks)


def day_codes(served: ServedCube, product: str, t: int, weight) -> tuple[np.ndarray, ...]:
    """(region cells' iy, ix, their weekly codes) of the week ending on day t."""
    iy, ix = np.nonzero(served.reader.mask)
    week = week_ending(served, t)
    return iy, ix, weekly_codes(served, product, iy, ix, week, weight)[:, 0]


def week_field(served: ServedCube, product: str, t: int, weight) -> np.ndarray:
    """(y, x) codes of the week ending on day t, FILL outside the region: a weekly map."""
    iy, ix, codes = day_codes(served, product, t, weight)
    field = np.full(served.reader.mask.shape, cubes.FILL, np.int32)
    field[iy, ix] = codes
    return field

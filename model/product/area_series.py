"""An area's statistics read from a cube, per day or per week: the one computation the area
routes and the bulk area jobs share, so that a job's rows are the routes' answers.

Values are read a chunk of days at a time (CHUNK_VALUES cell-days), so an area's memory stays
in tens of MB whatever its period; a weekly percentile reads its cells' whole record (a few
hundred cells at a time, model.product.weekly). The statistics are model.product.areas'."""

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from model.errors import OutOfRangeError
from model.product import areas, kinds, weekly
from model.product import cube as cubes

CHUNK_VALUES = 4_000_000  # cell-days decoded at once: bounds an area's memory to tens of MB


@dataclass(frozen=True)
class Area:
    """An area as the answers describe it, its lon/lat geometry, and the cube cells it covers."""

    id: str
    name: str | None
    geometry: object  # a shapely (Multi)Polygon, lon/lat
    cells: areas.CellWeights

    def describe(self) -> dict:
        out = {"id": self.id} if self.name is None else {"id": self.id, "name": self.name}
        return {
            **out,
            "area_km2": round(areas.to_ease(self.geometry).area / 1e6, 1),
            "covered_km2": round(self.cells.area_km2, 1),  # of the cube's region cells
            "cells": int(self.cells.weight.size),
        }


def covering(reader: kinds.Reader, area_id: str, name: str | None, geometry) -> Area:
    """An area over a cube's region cells; OutOfRangeError where it covers none."""
    cells = areas.cell_weights(geometry, reader.row0, reader.col0, reader.mask, reader.grid)
    if cells.weight.size == 0:
        raise OutOfRangeError(f"area: {area_id} covers no cell of the cube")
    return Area(area_id, name, geometry, cells)


def cell_days(area: Area, products: list[str], days: slice, record: int, week: bool) -> int:
    """The cell-days an area's statistics of `products` read (a weekly percentile: the whole
    record of its cells)."""
    n_days = sum(weekly.days_read(p, days.stop - days.start, record, week) for p in products)
    return int(area.cells.weight.size) * n_days


def statistics_blocks(
    reader: kinds.Reader,
    codes_of: weekly.CellCodes,
    product: str,
    cells: areas.CellWeights,
    days: slice,
    weeks: weekly.Weeks | None,
) -> Iterator[tuple[slice, dict[str, np.ndarray]]]:
    """(which answers: a slice of the days, or of the weeks; {statistic: float64 values}) of a
    product over an area, a chunk at a time."""
    if weeks is not None:
        codes = weekly.weekly_codes(codes_of, reader, product, cells.iy, cells.ix, weeks)
        yield slice(0, len(weeks.ends)), statistics(codes, product, cells)
        return
    step = max(1, CHUNK_VALUES // max(cells.weight.size, 1))
    for first in range(days.start, days.stop, step):
        chunk = slice(first, min(first + step, days.stop))
        codes = weekly.read(codes_of, product, cells.iy, cells.ix, chunk)
        yield (
            slice(chunk.start - days.start, chunk.stop - days.start),
            statistics(codes, product, cells),
        )


def product_statistics(
    reader: kinds.Reader,
    codes_of: weekly.CellCodes,
    product: str,
    cells: areas.CellWeights,
    days: slice,
    weeks: weekly.Weeks | None,
) -> dict[str, np.ndarray]:
    """Every day's (or week's) statistics of a product over an area, in one array each."""
    parts = [s for _, s in statistics_blocks(reader, codes_of, product, cells, days, weeks)]
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


def statistics(codes: np.ndarray, product: str, cells: areas.CellWeights) -> dict:
    """The area mean of (cells, days) codes, and a percentile's cumulative class shares."""
    values = decode(codes, kinds.kind_of(product).scale)
    stats = {"mean": areas.weighted_mean(values, cells.weight)}
    if kinds.is_percentile(product):
        stats.update(areas.class_shares(values, cells.weight))
    return stats


def decode(codes: np.ndarray, scale: float) -> np.ndarray:
    """Float64 values of codes of a kind's scale, NaN where missing; as code / (1 / scale) so
    that percentiles' class bounds (30.0, 20.0 ...) compare exactly."""
    return np.where(codes == cubes.FILL, np.nan, codes / round(1 / scale))


def rounded(values: np.ndarray, statistic: str) -> list:
    """JSON numbers of a statistic (null where NaN): means to 6 decimals, shares to 4."""
    numbers = np.round(values, 6 if statistic == "mean" else 4).astype(object)
    numbers[np.isnan(values)] = None  # in one step: a test per value costs more than the rest
    return numbers.tolist()

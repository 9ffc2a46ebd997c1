"""Drought classes as shapes: the cells of each US Drought Monitor class on a day dissolved into
lon/lat polygons, as the Drought Monitor publishes its maps.

Shapes use the exclusive class of a cell (D0 = 20 < percentile <= 30, D1 = 10 < p <= 20, ...
D4 = p <= 2) so that no two classes overlap and together they tile the dry cells without gaps;
area statistics (model.product.areas) report the cumulative shares instead (D0 and worse, ...).
An EASE-Grid 2.0 cell is a rectangle in lon/lat (the projection is cylindrical: x depends on
longitude only, y on latitude only), so the shapes hold the cells exactly; its edges are rounded
to 6 decimals once, shared by neighbours, so dissolving leaves no slivers."""

from dataclasses import dataclass

import numpy as np
import shapely
from shapely.geometry.base import BaseGeometry

from model import grid
from model.product.areas import CLASSES

DECIMALS = 6
# exclusive bounds: (name, lower, upper] in percent, worst first
EXCLUSIVE = tuple(
    (name, lower, upper)
    for (name, upper), lower in zip(
        sorted(CLASSES.items(), key=lambda c: c[1]),
        [-np.inf, *sorted(CLASSES.values())[:-1]],
        strict=True,
    )
)
LABELS = {
    "D0": "abnormally dry",
    "D1": "moderate drought",
    "D2": "severe drought",
    "D3": "extreme drought",
    "D4": "exceptional drought",
}


@dataclass(frozen=True)
class ClassShape:
    name: str
    lower: float
    upper: float
    cells: int
    geometry: BaseGeometry | None  # lon/lat, None where no cell is in the class


def exclusive_class(percentiles: np.ndarray) -> np.ndarray:
    """Index into EXCLUSIVE of each percentile's class (0 = D4 ... 4 = D0); -1 where wetter than
    D0 or missing."""
    index = np.searchsorted([upper for _, _, upper in EXCLUSIVE], percentiles, side="left")
    return np.where(np.isnan(percentiles) | (index >= len(EXCLUSIVE)), -1, index)


def class_shapes(
    percentiles: np.ndarray,
    rows: np.ndarray,
    cols: np.ndarray,
    bbox: tuple[float, float, float, float] | None = None,
    on: grid.Grid = grid.DEFAULT,
) -> list[ClassShape]:
    """The D0..D4 shapes of the cells at grid (rows, cols) holding `percentiles`; clipped to a
    lon/lat bbox if given. Outer rings counter-clockwise, holes clockwise (RFC 7946)."""
    squares = cell_rectangles(rows, cols, on)
    index = exclusive_class(percentiles)
    if bbox is not None:
        clip = shapely.box(*bbox)
        index = np.where(shapely.intersects(squares, clip), index, -1)
    shapes = []
    for k, (name, lower, upper) in sorted(enumerate(EXCLUSIVE), key=lambda e: e[1][0]):
        members = squares[index == k]
        geometry = None
        if members.size:
            geometry = shapely.coverage_union_all(members)
            if bbox is not None:
                geometry = shapely.intersection(geometry, clip)
            geometry = shapely.orient_polygons(geometry, exterior_cw=False)
        shapes.append(ClassShape(name, lower, upper, int(members.size), geometry))
    return shapes


def cell_rectangles(rows: np.ndarray, cols: np.ndarray, on: grid.Grid = grid.DEFAULT) -> np.ndarray:
    """The lon/lat rectangles of cells of grid `on`, edges rounded to DECIMALS (equal where
    shared)."""
    x = grid.X_MIN + np.arange(on.n_cols + 1) * on.cell_size
    y = grid.Y_MAX - np.arange(on.n_rows + 1) * on.cell_size
    lon = np.round(grid.xy_to_lonlat(x, np.zeros_like(x))[0], DECIMALS)
    lat = np.round(grid.xy_to_lonlat(np.zeros_like(y), y)[1], DECIMALS)
    return shapely.box(lon[cols], lat[rows + 1], lon[cols + 1], lat[rows])

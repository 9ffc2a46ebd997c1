"""Statistics over areas, as drought analysts read them: per day, the area-weighted mean of a
product and, for a percentile product, the cumulative share of the area in each US Drought
Monitor class (D0 = percentile <= 30 and worse ... D4 <= 2), in percent.

A cell weighs the share of its EASE2 cell square inside the area, as exactextract computes it:
the polygon's vertices are projected to EASE-Grid 2.0 (EPSG:6933, equal-area) and intersected
exactly with each square (shapely). Cells without data on a day are left out of both the
numerator and the denominator, so a statistic is over the part of the area that has data; where
no cell has data it is NaN.

Areas come as GeoJSON (RFC 7946: Polygon, MultiPolygon or a Feature of one, lon/lat degrees),
or as US states and counties by FIPS code from the US Census atlas (TopoJSON, us-atlas)."""

import json
import math
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import shapely
from shapely.geometry import MultiPolygon, Polygon, shape
from shapely.geometry.base import BaseGeometry

from model import grid
from model.errors import InputError, OutOfRangeError

# cumulative classes: a cell is in D0 when its percentile is <= 30, in D1 when <= 20, ...
CLASSES = {"D0": 30.0, "D1": 20.0, "D2": 10.0, "D3": 5.0, "D4": 2.0}
GEOMETRY_TYPES = ("Polygon", "MultiPolygon")
# which TopoJSON file and object holds each kind of area, and its FIPS code's length
ATLAS = {"state": ("states-10m.json", "states", 2), "county": ("counties-10m.json", "counties", 5)}


class TooManyVertices(InputError):
    """An area with more vertices than a request may send."""


@dataclass(frozen=True)
class CellWeights:
    """The cube cells an area touches, (iy, ix) within the cube, each with the share of its
    square inside the area (0 < weight <= 1)."""

    iy: np.ndarray
    ix: np.ndarray
    weight: np.ndarray
    cell_area: float  # m2, of the cube's grid

    @property
    def area_km2(self) -> float:
        return float(self.weight.sum() * self.cell_area / 1e6)


def parse_geojson(body, max_vertices: int) -> BaseGeometry:
    """A validated lon/lat (Multi)Polygon from a GeoJSON Polygon, MultiPolygon or Feature of one;
    InputError saying what is wrong (type, coordinates, an unclosed ring, too many vertices, a
    self-intersection and where)."""
    if isinstance(body, dict) and body.get("type") == "Feature":
        body = body.get("geometry")
    if not isinstance(body, dict) or body.get("type") not in GEOMETRY_TYPES:
        kind = body.get("type") if isinstance(body, dict) else type(body).__name__
        raise InputError(f"body: expected a GeoJSON Polygon, MultiPolygon or Feature, got {kind}")
    polygons = body.get("coordinates")
    if body["type"] == "Polygon":
        polygons = [polygons]
    if not isinstance(polygons, list) or not polygons:
        raise InputError("body: coordinates must be a non-empty array")
    vertices = 0
    for polygon in polygons:
        if not isinstance(polygon, list) or not polygon:
            raise InputError("body: each polygon must be a non-empty array of rings")
        for ring in polygon:
            vertices += _check_ring(ring)
            if vertices > max_vertices:
                raise TooManyVertices(f"body: more than {max_vertices} vertices; simplify the area")
    geometry = shape({"type": "MultiPolygon", "coordinates": polygons})
    if not geometry.is_valid:
        raise InputError(f"body: invalid polygon: {shapely.is_valid_reason(geometry)}")
    if geometry.area == 0:
        raise InputError("body: the polygon has no area")
    return geometry


def _check_ring(ring) -> int:
    """The vertex count of a linear ring, checked: >= 4 positions, numbers in range, closed."""
    if not isinstance(ring, list) or len(ring) < 4:
        raise InputError("body: a linear ring needs at least 4 positions, first = last")
    for position in ring:
        if (
            not isinstance(position, list)
            or len(position) < 2
            or not all(isinstance(v, int | float) and math.isfinite(v) for v in position[:2])
        ):
            raise InputError(f"body: a position must be [lon, lat] numbers, got {position!r:.60}")
        lon, lat = position[0], position[1]
        if not (-180 <= lon <= 180 and -90 <= lat <= 90):
            raise InputError(f"body: position [{lon}, {lat}] is not lon/lat degrees (EPSG:4326)")
    if ring[0][:2] != ring[-1][:2]:
        raise InputError("body: a linear ring must be closed (its first and last position equal)")
    return len(ring) - 1


def to_ease(geometry: BaseGeometry) -> BaseGeometry:
    """The geometry with its vertices projected to EASE-Grid 2.0 metres."""
    return shapely.transform(geometry, lambda xy: np.column_stack(grid.lonlat_to_xy(*xy.T)))


def cell_weights(
    geometry: BaseGeometry,
    row0: int,
    col0: int,
    mask: np.ndarray,
    on: grid.Grid = grid.DEFAULT,
) -> CellWeights:
    """The region cells (mask True) of a cube at (row0, col0) of grid `on` that a lon/lat area
    covers, each weighted by the share of its cell square inside the area."""
    area = to_ease(geometry)
    size, cell_area = on.cell_size, on.cell_size**2
    west, south, east, north = area.bounds
    rows = _span(grid.Y_MAX - north, grid.Y_MAX - south, row0, mask.shape[0], size)
    cols = _span(west - grid.X_MIN, east - grid.X_MIN, col0, mask.shape[1], size)
    iy, ix = np.meshgrid(rows, cols, indexing="ij")
    iy, ix = iy.ravel(), ix.ravel()
    keep = mask[iy, ix]
    iy, ix = iy[keep], ix[keep]
    left = grid.X_MIN + (ix + col0) * size
    top = grid.Y_MAX - (iy + row0) * size
    squares = shapely.box(left, top - size, left + size, top)
    shapely.prepare(area)
    weight = np.zeros(len(squares))
    inside = shapely.contains_properly(area, squares)
    weight[inside] = 1.0
    edge = ~inside & shapely.intersects(area, squares)
    weight[edge] = shapely.area(shapely.intersection(squares[edge], area)) / cell_area
    keep = weight > 0
    return CellWeights(iy[keep], ix[keep], np.minimum(weight[keep], 1.0), cell_area)


def _span(low: float, high: float, first: int, size: int, cell_size: float) -> np.ndarray:
    """Cube indices of the cells whose [k, k+1) * cell_size overlaps [low, high] metres."""
    start = max(math.floor(low / cell_size) - first, 0)
    stop = min(math.floor(high / cell_size) - first + 1, size)
    return np.arange(start, max(stop, start))


def weighted_mean(values: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Per day, the mean of (cells, days) values over the cells with data, each cell weighted;
    NaN on days no cell has data."""
    present = ~np.isnan(values)
    w = weights[:, None] * present
    total = w.sum(axis=0)
    sums = np.where(present, values, 0.0) * weights[:, None]
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, sums.sum(axis=0) / total, np.nan)


def class_shares(percentiles: np.ndarray, weights: np.ndarray) -> dict[str, np.ndarray]:
    """Per day, the percent of the area with data in each cumulative drought class (D0 <= 30 ...
    D4 <= 2) of (cells, days) percentiles; NaN on days no cell has data."""
    present = ~np.isnan(percentiles)
    w = weights[:, None] * present
    total = w.sum(axis=0)
    shares = {}
    with np.errstate(invalid="ignore", divide="ignore"):
        for name, upper in CLASSES.items():
            inside = (w * (np.where(present, percentiles, np.inf) <= upper)).sum(axis=0)
            shares[name] = np.where(total > 0, 100.0 * inside / total, np.nan)
    return shares


def parse_area_id(text: str) -> tuple[str, str]:
    """(kind, FIPS code) of `state:20` or `county:20161`; InputError otherwise."""
    kind, _, code = text.partition(":")
    if kind not in ATLAS or not code.isdigit() or len(code) != ATLAS[kind][2]:
        raise InputError(
            f"area: expected state:FIPS (2 digits) or county:FIPS (5 digits), got {text!r}"
        )
    return kind, code


def atlas_area(atlas_dir: str | Path, kind: str, code: str) -> tuple[str, BaseGeometry]:
    """(name, lon/lat geometry) of a state or county by FIPS code; OutOfRangeError if unknown."""
    areas = _atlas(str(atlas_dir), kind)
    if code not in areas:
        raise OutOfRangeError(f"area: no {kind} has FIPS code {code} in the US Census atlas")
    return areas[code]


@lru_cache(maxsize=4)
def _atlas(atlas_dir: str, kind: str) -> dict[str, tuple[str, BaseGeometry]]:
    file, name, _ = ATLAS[kind]
    path = Path(atlas_dir) / file
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing: build the web map's assets (make install)")
    topology = json.loads(path.read_text())
    return {
        g["id"]: (g.get("properties", {}).get("name", g["id"]), geometry)
        for g in topology["objects"][name]["geometries"]
        if (geometry := topojson_geometry(topology, g)) is not None
    }


def topojson_geometry(topology: dict, item: dict) -> BaseGeometry | None:
    """The shapely (Multi)Polygon of one TopoJSON geometry, made valid (quantised arcs may touch
    themselves); None for any other type."""
    arcs = _decoded_arcs(topology)
    if item["type"] == "Polygon":
        polygons = [item["arcs"]]
    elif item["type"] == "MultiPolygon":
        polygons = item["arcs"]
    else:
        return None
    parts = []
    for rings in polygons:
        shell, *holes = (_ring(arcs, r) for r in rings)
        if len(shell) >= 4:  # quantisation collapses the smallest islands
            parts.append(Polygon(shell, [h for h in holes if len(h) >= 4]))
    if not parts:
        return None
    return shapely.make_valid(MultiPolygon(parts), method="structure", keep_collapsed=False)


def _ring(arcs: list[np.ndarray], indices: list[int]) -> np.ndarray:
    """A ring's positions from its arcs (~i is arc i reversed); shared end points kept once."""
    pieces = [arcs[i] if i >= 0 else arcs[~i][::-1] for i in indices]
    return np.concatenate([pieces[0], *(p[1:] for p in pieces[1:])])


def _decoded_arcs(topology: dict) -> list[np.ndarray]:
    """Every arc as lon/lat positions: delta-decoded, then scaled and translated (memoised in the
    topology, which is decoded once per file)."""
    if "_decoded" not in topology:
        scale = np.asarray(topology["transform"]["scale"])
        translate = np.asarray(topology["transform"]["translate"])
        topology["_decoded"] = [
            np.cumsum(np.asarray(arc, float), axis=0) * scale + translate
            for arc in topology["arcs"]
        ]
    return topology["_decoded"]

"""EASE-Grid 2.0 global 36 km (EPSG:6933), the SMAP L3 grid: lat/lon <-> (row, col) <-> x/y."""

from functools import lru_cache

import numpy as np
from pyproj import CRS, Transformer

from model.errors import InputError

EPSG = 6933
CRS_EASE2 = CRS.from_epsg(EPSG)
N_ROWS = 406
N_COLS = 964
CELL_SIZE = 36032.220840584  # m; the published 36032.22 rounded
X_MIN = -17367530.45
Y_MAX = 7314540.83
X_MAX = X_MIN + N_COLS * CELL_SIZE
Y_MIN = Y_MAX - N_ROWS * CELL_SIZE
REGIONS = {"conus": (-125.0, 24.5, -66.5, 49.5)}  # named lon/lat boxes, west, south, east, north


@lru_cache
def _to_ease() -> Transformer:
    return Transformer.from_crs("EPSG:4326", CRS_EASE2, always_xy=True)


@lru_cache
def _to_lonlat() -> Transformer:
    return Transformer.from_crs(CRS_EASE2, "EPSG:4326", always_xy=True)


def lonlat_to_xy(lon, lat):
    """Project lon/lat degrees to EASE2 metres."""
    return _to_ease().transform(np.asarray(lon, float), np.asarray(lat, float))


def xy_to_lonlat(x, y):
    """Unproject EASE2 metres to lon/lat degrees."""
    return _to_lonlat().transform(np.asarray(x, float), np.asarray(y, float))


def xy_to_rowcol(x, y):
    """Floor EASE2 metres to (row, col); cells outside the grid get -1."""
    col = np.floor((np.asarray(x, float) - X_MIN) / CELL_SIZE)
    row = np.floor((Y_MAX - np.asarray(y, float)) / CELL_SIZE)
    inside = (row >= 0) & (row < N_ROWS) & (col >= 0) & (col < N_COLS) & np.isfinite(row + col)
    return np.where(inside, row, -1).astype(np.int64), np.where(inside, col, -1).astype(np.int64)


def latlon_to_rowcol(lat, lon):
    """The (row, col) of the cell holding each lat/lon point; -1 outside the grid."""
    x, y = lonlat_to_xy(lon, lat)
    return xy_to_rowcol(x, y)


def col_to_x(col):
    """EASE2 x of cell centres."""
    return X_MIN + (np.asarray(col, float) + 0.5) * CELL_SIZE


def row_to_y(row):
    """EASE2 y of cell centres."""
    return Y_MAX - (np.asarray(row, float) + 0.5) * CELL_SIZE


def rowcol_to_latlon(row, col):
    """Lat/lon of cell centres."""
    lon, lat = xy_to_lonlat(col_to_x(col), row_to_y(row))
    return lat, lon


def bbox_cells(west: float, south: float, east: float, north: float):
    """(rows, cols) of every grid cell whose centre lies in a lon/lat bounding box."""
    rows, cols = np.meshgrid(np.arange(N_ROWS), np.arange(N_COLS), indexing="ij")
    lat, lon = rowcol_to_latlon(rows.ravel(), cols.ravel())
    keep = (lon >= west) & (lon <= east) & (lat >= south) & (lat <= north)
    return rows.ravel()[keep], cols.ravel()[keep]


def parse_bbox(text: str) -> tuple[float, float, float, float]:
    """A lon/lat box from 'west,south,east,north' in degrees or a region name (REGIONS), checked
    to be a box: the one parser of every --bbox and bbox= a user writes."""
    if text.strip().lower() in REGIONS:
        return REGIONS[text.strip().lower()]
    try:
        west, south, east, north = (float(v) for v in text.split(","))
    except ValueError:
        raise InputError(
            f"bbox must be four numbers west,south,east,north or one of {', '.join(REGIONS)}, "
            f"got {text!r}"
        ) from None
    if not (-180 <= west < east <= 180 and -90 <= south < north <= 90):
        raise InputError(f"bbox {text} is not a lon/lat box with west < east and south < north")
    return west, south, east, north

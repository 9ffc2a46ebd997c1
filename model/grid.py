"""EASE-Grid 2.0 global (EPSG:6933) at 36, 9, 3 and 1 km: lat/lon <-> (row, col) <-> x/y.

A grid is a value (`Grid`); every input dataset and cube records its own in a `grid` attribute
("EASE2 9 km EPSG:6933") and `of(attrs)` reads it back. The four grids are NSIDC's: one extent,
the 36 km cell split 4, 12 and 36 ways. The 36 km grid, the SMAP L3 one, is the default: the
module-level functions and constants below are its.
"""

import re
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from pyproj import CRS, Transformer

from model.errors import InputError

EPSG = 6933
CRS_EASE2 = CRS.from_epsg(EPSG)
X_MIN = -17367530.45
Y_MAX = 7314540.83
REGIONS = {"conus": (-125.0, 24.5, -66.5, 49.5)}  # named lon/lat boxes, west, south, east, north
# a number as people write one: Python's float() also takes "1_0", "nan" and "inf"
DECIMAL = re.compile(r"\s*[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?\s*")


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


@dataclass(frozen=True)
class Grid:
    """One EASE-Grid 2.0 global grid: its size in cells and its cell edge in metres."""

    name: str  # "36km", "9km", ...
    n_rows: int
    n_cols: int
    cell_size: float  # m

    @property
    def km(self) -> int:
        return int(self.name.removesuffix("km"))

    @property
    def attr(self) -> str:
        """What a dataset or cube records as its `grid` attribute."""
        return f"EASE2 {self.km} km EPSG:{EPSG}"

    @property
    def title(self) -> str:
        return f"EASE-Grid 2.0 global {self.km} km"

    @property
    def x_max(self) -> float:
        return X_MIN + self.n_cols * self.cell_size

    @property
    def y_min(self) -> float:
        return Y_MAX - self.n_rows * self.cell_size

    def xy_to_rowcol(self, x, y):
        """Floor EASE2 metres to (row, col); cells outside the grid get -1."""
        col = np.floor((np.asarray(x, float) - X_MIN) / self.cell_size)
        row = np.floor((Y_MAX - np.asarray(y, float)) / self.cell_size)
        inside = (
            (row >= 0) & (row < self.n_rows) & (col >= 0) & (col < self.n_cols)
            & np.isfinite(row + col)
        )  # fmt: skip
        return (
            np.where(inside, row, -1).astype(np.int64),
            np.where(inside, col, -1).astype(np.int64),
        )

    def latlon_to_rowcol(self, lat, lon):
        """The (row, col) of the cell holding each lat/lon point; -1 outside the grid."""
        x, y = lonlat_to_xy(lon, lat)
        return self.xy_to_rowcol(x, y)

    def col_to_x(self, col):
        """EASE2 x of cell centres."""
        return X_MIN + (np.asarray(col, float) + 0.5) * self.cell_size

    def row_to_y(self, row):
        """EASE2 y of cell centres."""
        return Y_MAX - (np.asarray(row, float) + 0.5) * self.cell_size

    def rowcol_to_latlon(self, row, col):
        """Lat/lon of cell centres."""
        lon, lat = xy_to_lonlat(self.col_to_x(col), self.row_to_y(row))
        return lat, lon

    def bbox_cells(self, west: float, south: float, east: float, north: float):
        """(rows, cols) of every grid cell whose centre lies in a lon/lat bounding box. EASE2 is
        cylindrical (x follows longitude, y latitude), so the box is a window of rows and
        columns, found without projecting the whole grid."""
        x, _ = lonlat_to_xy([west, east], [0.0, 0.0])
        _, y = lonlat_to_xy([0.0, 0.0], [south, north])
        col0 = max(int(np.floor((x[0] - X_MIN) / self.cell_size)) - 1, 0)
        col1 = min(int(np.ceil((x[1] - X_MIN) / self.cell_size)) + 1, self.n_cols)
        row0 = max(int(np.floor((Y_MAX - y[1]) / self.cell_size)) - 1, 0)
        row1 = min(int(np.ceil((Y_MAX - y[0]) / self.cell_size)) + 1, self.n_rows)
        rows, cols = np.meshgrid(np.arange(row0, row1), np.arange(col0, col1), indexing="ij")
        lat, lon = self.rowcol_to_latlon(rows.ravel(), cols.ravel())
        keep = (lon >= west) & (lon <= east) & (lat >= south) & (lat <= north)
        return rows.ravel()[keep], cols.ravel()[keep]


M36 = Grid("36km", 406, 964, 36032.220840584)  # m; the published 36032.22 rounded
M09 = Grid("9km", 1624, 3856, 9008.055210146)
M03 = Grid("3km", 4872, 11568, 3002.6850700487)
M01 = Grid("1km", 14616, 34704, 1000.89502334956)
GRIDS = {g.name: g for g in (M36, M09, M03, M01)}
DEFAULT = M36


def named(name: str) -> Grid:
    """A grid by name: '36km', '9km', '3km' or '1km' ('9 km', 'M09' and '9' too)."""
    text = str(name).strip().lower().replace(" ", "")
    match = re.fullmatch(r"(?:m0?)?(\d+)(?:km)?", text)
    found = GRIDS.get(f"{int(match.group(1))}km") if match else None
    if found is None:
        raise InputError(f"grid: one of {', '.join(GRIDS)}, got {name!r}")
    return found


def of(attrs: dict) -> Grid:
    """The grid a dataset or cube records (its attrs), the 36 km one where it records none."""
    text = attrs.get("grid")
    if not text:
        return DEFAULT
    match = re.search(r"(\d+)\s*km", str(text))
    if not match:
        raise InputError(f"unknown grid {text!r}; known: {', '.join(GRIDS)}")
    return named(match.group(1))


def check_same(first: Grid, first_name: str, second: Grid, second_name: str) -> None:
    """Refuse to combine data on two grids, naming both."""
    if first != second:
        raise InputError(
            f"{first_name} is on the {first.km} km grid but {second_name} is on the "
            f"{second.km} km grid; use one grid throughout"
        )


N_ROWS = DEFAULT.n_rows
N_COLS = DEFAULT.n_cols
CELL_SIZE = DEFAULT.cell_size
X_MAX = DEFAULT.x_max
Y_MIN = DEFAULT.y_min
xy_to_rowcol = DEFAULT.xy_to_rowcol
latlon_to_rowcol = DEFAULT.latlon_to_rowcol
col_to_x = DEFAULT.col_to_x
row_to_y = DEFAULT.row_to_y
rowcol_to_latlon = DEFAULT.rowcol_to_latlon
bbox_cells = DEFAULT.bbox_cells


def parse_bbox(text: str) -> tuple[float, float, float, float]:
    """A lon/lat box from 'west,south,east,north' in degrees or a region name (REGIONS), checked
    to be a box: the one parser of every --bbox and bbox= a user writes."""
    if text.strip().lower() in REGIONS:
        return REGIONS[text.strip().lower()]
    values = text.split(",")
    if len(values) != 4 or not all(DECIMAL.fullmatch(v) for v in values):
        raise InputError(
            f"bbox must be four numbers west,south,east,north (plain decimals, no '_' digit "
            f"separators) or one of {', '.join(REGIONS)}, got {text!r}"
        )
    west, south, east, north = (float(v) for v in values)
    if not (-180 <= west < east <= 180 and -90 <= south < north <= 90):
        raise InputError(f"bbox {text} is not a lon/lat box with west < east and south < north")
    return west, south, east, north

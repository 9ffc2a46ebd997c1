"""Where the twin world lives: the EASE2 cells (36 km, or a finer grid) whose centres fall on CONUS
land.

No land mask can be downloaded, so a coarse hand-written outline of the conterminous US (lon/lat
vertices, clockwise from Cape Flattery) stands in for one, with the three largest Great Lakes cut
out. At 36 km the outline's error is about one cell along the coast, which a twin experiment
does not notice.
"""

import numpy as np
from matplotlib.path import Path as Polygon

from model import grid
from model.errors import InputError

CONUS_OUTLINE = (
    (-124.7, 48.4),
    (-123.0, 49.0),
    (-95.2, 49.0),
    (-94.8, 49.4),
    (-89.6, 48.0),
    (-84.5, 46.5),
    (-82.4, 43.0),
    (-79.0, 43.3),
    (-76.5, 44.2),
    (-74.7, 45.0),
    (-71.5, 45.0),
    (-70.0, 46.7),
    (-69.2, 47.4),
    (-67.8, 47.1),
    (-67.0, 44.8),
    (-70.2, 43.6),
    (-70.6, 42.6),
    (-70.0, 41.7),
    (-71.9, 41.3),
    (-74.0, 40.6),
    (-74.1, 39.6),
    (-75.1, 38.8),
    (-75.9, 37.2),
    (-75.5, 35.2),
    (-77.9, 33.9),
    (-79.2, 33.2),
    (-80.9, 32.0),
    (-81.4, 30.4),
    (-80.0, 26.8),
    (-80.4, 25.2),
    (-81.2, 25.3),
    (-81.9, 26.5),
    (-82.7, 28.0),
    (-83.7, 29.9),
    (-85.3, 29.7),
    (-87.2, 30.4),
    (-89.4, 30.2),
    (-89.2, 29.1),
    (-91.3, 29.3),
    (-94.0, 29.7),
    (-95.1, 29.1),
    (-97.2, 27.6),
    (-97.4, 25.9),
    (-99.1, 26.4),
    (-100.3, 28.2),
    (-101.4, 29.8),
    (-103.1, 29.0),
    (-104.5, 29.6),
    (-106.5, 31.8),
    (-108.2, 31.8),
    (-108.2, 31.3),
    (-111.1, 31.3),
    (-114.8, 32.5),
    (-117.1, 32.5),
    (-118.5, 34.0),
    (-120.6, 34.6),
    (-121.9, 36.6),
    (-122.5, 37.8),
    (-123.8, 39.8),
    (-124.4, 40.4),
    (-124.2, 42.0),
    (-124.1, 46.2),
)
GREAT_LAKES = (
    ((-92.0, 46.7), (-89.5, 47.9), (-85.0, 46.8), (-84.6, 46.5), (-87.5, 46.4), (-90.5, 46.6)),
    ((-87.8, 41.7), (-87.0, 41.7), (-86.2, 43.0), (-86.0, 45.8), (-87.5, 45.5), (-87.9, 43.5)),
    ((-84.6, 45.8), (-82.5, 45.3), (-82.0, 43.2), (-82.6, 43.2), (-83.6, 44.1), (-84.0, 45.5)),
)


def conus_cells(
    stride: int = 1,
    bbox: tuple[float, float, float, float] | None = None,
    on: grid.Grid = grid.DEFAULT,
):
    """(rows, cols) of CONUS land cells of grid `on`, every `stride`-th grid row and column,
    within bbox. Only the cells of the box are looked at, so a small box of a fine grid is quick."""
    if stride < 1:
        raise InputError(f"stride must be a positive integer, got {stride}")
    west, south, east, north = grid.REGIONS["conus"]
    if bbox is not None and bbox[0] < bbox[2] and bbox[1] < bbox[3]:
        west, south = max(west, bbox[0]), max(south, bbox[1])
        east, north = min(east, bbox[2]), min(north, bbox[3])
    rows, cols = on.bbox_cells(west, south, max(east, west), max(north, south))
    keep = (rows % stride == 0) & (cols % stride == 0)
    rows, cols = rows[keep], cols[keep]
    lat, lon = on.rowcol_to_latlon(rows, cols)
    points = np.column_stack([lon, lat])
    land = Polygon(CONUS_OUTLINE).contains_points(points)
    for lake in GREAT_LAKES:
        land &= ~Polygon(lake).contains_points(points)
    if bbox is not None:
        west, south, east, north = bbox
        if west >= east or south >= north:
            raise InputError(
                f"bbox must be west,south,east,north with west<east, south<north: {bbox}"
            )
        land &= (lon >= west) & (lon <= east) & (lat >= south) & (lat <= north)
    if not land.any():
        raise InputError(f"no CONUS land cell at stride {stride} inside bbox {bbox}")
    return rows[land], cols[land]

"""The EASE-Grid 2.0 36 km grid: known cells, round trips, the real sample's cell centres."""

import numpy as np
import pytest

from model import grid
from model.errors import InputError


def test_grid_geometry_matches_the_smap_l3_grid():
    assert pytest.approx(17367530.45, abs=0.5) == grid.X_MAX
    assert pytest.approx(-7314540.83, abs=0.5) == grid.Y_MIN
    # the equator and the prime meridian are cell edges: 203 rows lie north of the equator
    rows, cols = grid.latlon_to_rowcol([0.1, -0.1, 0.1], [0.1, 0.1, -0.1])
    assert rows.tolist() == [202, 203, 202] and cols.tolist() == [482, 482, 481]


def test_corner_and_outside_points():
    row, col = grid.latlon_to_rowcol([87.0, -87.0, -0.1], [0.0, 0.0, 179.99])
    assert row[0] == -1 and row[1] == -1
    assert (row[2], col[2]) == (203, 963)


def test_round_trip_centres():
    rows = np.array([0, 50, 203, 405])
    cols = np.array([0, 151, 482, 963])
    lat, lon = grid.rowcol_to_latlon(rows, cols)
    back_r, back_c = grid.latlon_to_rowcol(lat, lon)
    np.testing.assert_array_equal(back_r, rows)
    np.testing.assert_array_equal(back_c, cols)


def test_conus412_points_are_cell_centres_within_1m(conus412):
    lat, lon = np.loadtxt(conus412 / "crd.csv", delimiter=",").T
    rows, cols = grid.latlon_to_rowcol(lat, lon)
    x, y = grid.lonlat_to_xy(lon, lat)
    assert (rows >= 0).all()
    assert np.abs(x - grid.col_to_x(cols)).max() < 1.0
    assert np.abs(y - grid.row_to_y(rows)).max() < 1.0
    # the sample is every 4th row and column of the grid
    assert len(np.unique(rows % 4)) == 1 and len(np.unique(cols % 4)) == 1


def test_bbox_cells_cover_a_box():
    rows, cols = grid.bbox_cells(-100, 35, -95, 40)
    lat, lon = grid.rowcol_to_latlon(rows, cols)
    assert len(rows) > 100
    assert lon.min() >= -100 and lon.max() <= -95 and lat.min() >= 35 and lat.max() <= 40


def test_parse_bbox_reads_numbers_and_region_names():
    assert grid.parse_bbox("-100,35,-95.5,40") == (-100.0, 35.0, -95.5, 40.0)
    assert grid.parse_bbox(" CONUS ") == grid.REGIONS["conus"]
    for bad, message in [
        ("-100,35,-95", "four numbers"),
        ("a,b,c,d", "four numbers"),
        ("-95,35,-100,40", "west < east"),
        ("-100,35,-95,95", "not a lon/lat box"),
    ]:
        with pytest.raises(InputError, match=message):
            grid.parse_bbox(bad)

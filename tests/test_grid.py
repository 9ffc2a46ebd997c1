"""The EASE-Grid 2.0 grids (36 km and its 9, 3 and 1 km nests): known cells, round trips, the real
sample's cell centres."""

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
    assert grid.parse_bbox("-1e2, 35., -95.5 ,+40") == (-100.0, 35.0, -95.5, 40.0)
    for bad, message in [
        ("-100,35,-95", "four numbers"),
        ("a,b,c,d", "four numbers"),
        ("-95,35,-100,40", "west < east"),
        ("-100,35,-95,95", "not a lon/lat box"),
        ("-100,35,-9_5,40", "no '_' digit separators"),
        ("-1_00,35,-95,40", "no '_' digit separators"),
        ("-100,nan,-95,40", "four numbers"),
        ("-inf,35,-95,40", "four numbers"),
    ]:
        with pytest.raises(InputError, match=message):
            grid.parse_bbox(bad)


def test_the_four_nsidc_grids_share_one_extent():
    for g, (rows, cols, size) in {
        grid.M36: (406, 964, 36032.220840584),
        grid.M09: (1624, 3856, 9008.055210146),
        grid.M03: (4872, 11568, 3002.6850700487),
        grid.M01: (14616, 34704, 1000.89502334956),
    }.items():
        assert (g.n_rows, g.n_cols, g.cell_size) == (rows, cols, size)
        assert g.x_max == pytest.approx(grid.M36.x_max, abs=1e-3)
        assert g.y_min == pytest.approx(grid.M36.y_min, abs=1e-3)
        assert grid.named(g.name) is g and grid.of({"grid": g.attr}) is g
    assert grid.named("9 km") is grid.M09 and grid.named("M09") is grid.M09
    assert grid.of({}) is grid.DEFAULT is grid.M36 and grid.M09.attr == "EASE2 9 km EPSG:6933"
    with pytest.raises(InputError, match="grid: one of 36km, 9km, 3km, 1km, got '12km'"):
        grid.named("12km")


def test_a_point_falls_in_nested_cells():
    """A 9 km (3 km, 1 km) cell lies in the 36 km cell holding its centre: rows and columns
    nest 4 (12, 36) to one, and every grid floors the same EASE2 metres."""
    lat = np.array([38.4, 24.6, 49.3, -33.9, 0.01])
    lon = np.array([-99.55, -81.2, -122.7, 151.2, 0.01])
    coarse = grid.M36.latlon_to_rowcol(lat, lon)
    for g, k in ((grid.M09, 4), (grid.M03, 12), (grid.M01, 36)):
        rows, cols = g.latlon_to_rowcol(lat, lon)
        np.testing.assert_array_equal(rows // k, coarse[0])
        np.testing.assert_array_equal(cols // k, coarse[1])
        x, y = grid.lonlat_to_xy(lon, lat)
        assert (np.abs(g.col_to_x(cols) - x) <= g.cell_size / 2).all()
        assert (np.abs(g.row_to_y(rows) - y) <= g.cell_size / 2).all()


def test_bbox_cells_at_9km_are_the_nested_cells_of_the_box():
    box = (-100.0, 38.0, -99.0, 39.0)
    rows, cols = grid.M09.bbox_cells(*box)
    lat, lon = grid.M09.rowcol_to_latlon(rows, cols)
    assert (lon >= -100).all() and (lon <= -99).all() and (lat >= 38).all() and (lat <= 39).all()
    # a 1 x 1 degree box: 96.5 km / 9.008 km = 10.7 columns, 100.5 km / 9.008 km = 11.2 rows
    assert len(np.unique(cols)) in (10, 11) and len(np.unique(rows)) in (11, 12)
    assert len(rows) == len(np.unique(cols)) * len(np.unique(rows))
    every = grid.M09.latlon_to_rowcol(
        *np.meshgrid(np.arange(38.001, 39.0, 0.01), np.arange(-99.999, -99.0, 0.01))
    )
    held = set(zip(rows.tolist(), cols.tolist()))
    inner = set(zip(every[0].ravel().tolist(), every[1].ravel().tolist()))
    assert held <= inner


def test_mixing_grids_is_refused_naming_both():
    grid.check_same(grid.M09, "a", grid.M09, "b")
    with pytest.raises(InputError) as caught:
        grid.check_same(grid.M09, "the checkpoint", grid.M36, "the input dataset")
    assert str(caught.value) == (
        "the checkpoint is on the 9 km grid but the input dataset is on the 36 km grid; "
        "use one grid throughout"
    )

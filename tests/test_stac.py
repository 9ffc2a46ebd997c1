"""The STAC catalog of a real server: pystac reads the collection of a served cube (extent,
datacube dimensions and variables), and its Zarr asset opens over HTTP with xarray, where the
`smapx` accessor picks the cell of a point and its known values."""

import json
import urllib.error
import urllib.request

import numpy as np
import pystac
import pytest
import xarray as xr
from pystac.extensions.datacube import DatacubeExtension

from model import grid
from model.errors import OutOfRangeError
from model.product.access import open_cube
from tests.served import DAYS, POINT, build_cube, known_values, serving

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    store = tmp_path_factory.mktemp("stac") / "extended.zarr"
    build_cube(store)
    with serving([store], {"SMAPX_CUBES": "[]"}) as url:
        yield url


def get(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=10) as r:
        return json.load(r)


def test_catalog_links_a_collection_per_cube(site):
    catalog = pystac.Catalog.from_dict(get(f"{site}/v1/stac"))
    children = [link.href for link in catalog.links if link.rel == "child"]
    assert children == [f"{site}/v1/stac/collections/extended"]
    listed = get(f"{site}/v1/stac/collections")["collections"]
    assert [c["id"] for c in listed] == ["extended"]


def test_collection_describes_the_cube(site):
    collection = pystac.Collection.from_dict(get(f"{site}/v1/stac/collections/extended"))
    west, south, east, north = collection.extent.spatial.bboxes[0]
    # The test cube's window is grid rows 100-107, cols 200-208: its outer cell edges.
    (x0, x1), (y0, y1) = (
        (grid.col_to_x(200) - grid.CELL_SIZE / 2, grid.col_to_x(208) + grid.CELL_SIZE / 2),
        (grid.row_to_y(107) - grid.CELL_SIZE / 2, grid.row_to_y(100) + grid.CELL_SIZE / 2),
    )
    (lon0, lon1), (lat0, lat1) = grid.xy_to_lonlat([x0, x1], [y0, y1])
    assert np.allclose([west, south, east, north], [lon0, lat0, lon1, lat1], atol=1e-6)
    start, end = collection.extent.temporal.intervals[0]
    assert (start.date(), end.date()) == (DAYS[0].date(), DAYS[-1].date())
    cube = DatacubeExtension.ext(collection)
    assert cube.dimensions["x"].reference_system == 6933
    assert cube.dimensions["x"].step == pytest.approx(grid.CELL_SIZE)
    assert cube.dimensions["time"].step == "P1D"
    assert {k for k, v in cube.variables.items() if v.var_type == "data"} == {
        "smap",
        "lstm",
        "noah",
        "lsm2",
    }
    assert cube.variables["lstm"].unit == "m3 m-3"
    asset = collection.assets["zarr"]
    assert asset.href == f"{site}/v1/zarr/extended" and asset.media_type == "application/vnd+zarr"


def test_unknown_collection_is_404(site):
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(f"{site}/v1/stac/collections/nope", timeout=10)
    assert err.value.code == 404


def test_zarr_asset_opens_and_a_point_is_picked(site):
    href = get(f"{site}/v1/stac/collections/extended")["assets"]["zarr"]["href"]
    cube = open_cube(href)
    cell = cube.smapx.point(*POINT)
    row, col = grid.latlon_to_rowcol(*POINT)
    iy, ix = int(row) - 100, int(col) - 200
    assert cell.lstm.dtype == np.float32
    expected = known_values("lstm", np.arange(len(DAYS)), iy, ix)
    np.testing.assert_allclose(cell.lstm.values, expected, atol=6e-5)
    with pytest.raises(OutOfRangeError, match="not in the cube's region"):
        cube.smapx.point(45.0, -90.0)


@pytest.fixture(scope="module")
def demo_site(demo_cube):
    with serving([demo_cube], {"SMAPX_CUBES": "[]"}) as url:
        yield url


def test_every_variable_listed_opens_in_the_asset_that_lists_it(demo_site):
    """The cube's variables open from its `zarr` asset; the climatology's (percentiles, window
    means) are listed on an asset of their own, which opens them."""
    doc = get(f"{demo_site}/v1/stac/collections/extended")
    root = xr.open_zarr(doc["assets"]["zarr"]["href"])
    assert set(doc["cube:variables"]) <= set(root.variables)
    assert {"lstm", "noah", "lstm_spread"} <= set(doc["cube:variables"])
    climatology = doc["assets"]["climatology"]
    group = xr.open_zarr(climatology["href"])
    assert set(climatology["cube:variables"]) == set(group.data_vars)
    assert climatology["cube:variables"]["lstm_percentile"]["unit"] == "percent"
    assert climatology["cube:variables"]["lstm_window_mean"]["unit"] == "m3 m-3"

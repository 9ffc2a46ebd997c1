"""A 9 km cube served over HTTP: a point's series comes from the 9 km cell holding it, as plain
pyproj arithmetic on NSIDC's grid numbers finds it, and the catalogue and STAC describe 9 km."""

import math

import httpx
import numpy as np
import pandas as pd
import pytest
from pyproj import Transformer

from model import grid
from model.product import cube as cubes
from tests.served import NO_REDIS, serving

BOX = (-99.6, 38.1, -99.0, 38.6)  # a few 36 km cells in Kansas: 7 x 6 cells at 9 km
DAYS = pd.date_range("2016-01-01", periods=40)
M09_CELL = 9008.055210146  # m, NSIDC's EASE-Grid 2.0 M09
X_MIN, Y_MAX = -17367530.45, 7314540.83


def value(t, iy, ix):
    """A different value (to the stored 1e-4) for every cell of the cube and day parity."""
    return 0.1 + 0.01 * iy + 0.0002 * ix + 0.0001 * (t % 2)


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    rows, cols = grid.M09.bbox_cells(*BOX)
    template = cubes.template(DAYS, rows, cols, ("lstm",), on=grid.M09)
    path = tmp_path_factory.mktemp("grid9") / "kansas9.zarr"
    cubes.create(path, template)
    for block in cubes.blocks(template):
        t = np.arange(block.time.start, block.time.stop)[:, None, None]
        iy = np.arange(block.y.start, block.y.stop)[None, :, None]
        ix = np.arange(block.x.start, block.x.stop)[None, None, :]
        cubes.write_block(store=path, block=block, values={"lstm": value(t, iy, ix)})
    return path


@pytest.fixture(scope="module")
def server(store):
    env = {"SMAPX_CUBES": "[]", "SMAPX_REDIS_URL": NO_REDIS}
    with serving([store], env) as url, httpx.Client(base_url=url, timeout=30) as client:
        yield client


def test_a_point_series_comes_from_the_9km_cell_holding_the_point(server, store):
    rows, cols = grid.M09.bbox_cells(*BOX)
    row0, col0 = int(rows.min()), int(cols.min())
    to_ease = Transformer.from_crs("EPSG:4326", "EPSG:6933", always_xy=True)
    rng = np.random.default_rng(29)
    lats, lons = rng.uniform(38.15, 38.55, 40), rng.uniform(-99.55, -99.05, 40)
    seen = set()
    for lat, lon in zip(lats, lons):
        x, y = to_ease.transform(lon, lat)
        row, col = math.floor((Y_MAX - y) / M09_CELL), math.floor((x - X_MIN) / M09_CELL)
        if not (rows.min() <= row <= rows.max() and cols.min() <= col <= cols.max()):
            continue
        body = server.get("/v1/series", params={"lat": lat, "lon": lon, "products": "lstm"}).json()
        assert (body["cell"]["row"], body["cell"]["col"]) == (row, col)
        t = np.arange(len(DAYS))
        np.testing.assert_allclose(body["lstm"], value(t, row - row0, col - col0), atol=1e-9)
        seen.add((row, col))
    thirty_six = {(r // 4, c // 4) for r, c in seen}
    assert len(seen) > 15 and len(seen) > 2 * len(thirty_six)  # finer than any 36 km lookup
    outside = server.get("/v1/series", params={"lat": 38.0, "lon": -99.3, "products": "lstm"})
    assert outside.status_code == 404


def test_the_catalogue_and_stac_describe_the_9km_grid(server, store):
    described = server.get("/v1/products").json()["grid"]
    assert described["name"] == "EASE-Grid 2.0 global 9 km"
    assert described["cell_size_m"] == M09_CELL
    assert described["cells"] == len(grid.M09.bbox_cells(*BOX)[0])
    collection = server.get(f"/v1/stac/collections/{store.stem}").json()
    dims = collection["cube:dimensions"]
    assert dims["x"]["step"] == pytest.approx(M09_CELL)
    assert dims["y"]["step"] == pytest.approx(-M09_CELL)
    (x0, x1), (y0, y1) = dims["x"]["extent"], dims["y"]["extent"]
    assert (x1 - x0) / M09_CELL == pytest.approx(described["cols"])
    assert (y1 - y0) / M09_CELL == pytest.approx(described["rows"])

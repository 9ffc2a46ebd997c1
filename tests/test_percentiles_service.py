"""Derived products over HTTP, against a real uvicorn server on a twin-world cube with its
climatology: series of percentiles, anomalies and the ensemble spread equal to a direct numpy
computation, drought-class tiles right per pixel, the labelled legend, subsets, and errors."""

import io
import os
import re

import httpx
import morecantile
import numpy as np
import pandas as pd
import pytest
import xarray as xr
from pyproj import Transformer

from model import grid
from model.product import climatology
from model.product import cube as cubes
from model.world import WorldConfig, build_world
from tests.climatologies import (
    calendar_day,
    direct,
    stored_codes,
    write_cube,
)
from tests.served import (
    NO_REDIS,
    get_png,
    serving,
    start_server,
    start_worker,
    wait_done,
)

pytestmark = pytest.mark.integration

BBOX = (-101.0, 34.0, -95.0, 38.5)
DAY = "2012-08-15"
MISSING = slice(100, 110)  # days the first cell's lstm is missing
# the classes' upper bounds in percent and colours, as the US Drought Monitor draws them
CLASSES = [
    (2, "#730000"),
    (5, "#e60000"),
    (10, "#ffaa00"),
    (20, "#fcd37f"),
    (30, "#ffff00"),
    (70, "#e9e9e9"),
    (80, "#c6dbef"),
    (90, "#9ecae1"),
    (95, "#4292c6"),
    (98, "#2171b5"),
    (np.inf, "#08306b"),
]


@pytest.fixture(scope="module")
def cube_path(tmp_path_factory):
    """Twin-world cells of a bbox every other grid row and column, 2009-2013, with a spread."""
    world = build_world(
        WorldConfig(seed=7, stride=2, bbox=BBOX, start="2009-01-01", end="2013-12-31")
    )
    truth = world.truth["truth"].sel(depth=0.025, method="nearest").values
    rng = np.random.default_rng(5)
    lstm = np.clip(truth + rng.normal(0, 0.01, truth.shape), 0.02, 0.5)
    lstm[MISSING, 0] = np.nan
    values = {
        "lstm": lstm,
        "lstm_spread": np.abs(rng.normal(0, 0.01, truth.shape)),
        "noah": world.inputs["noah"].values,
        "smap": world.inputs["target"].values,
    }
    store = tmp_path_factory.mktemp("pct") / "twin.zarr"
    write_cube(store, world, values)
    climatology.compute(store, progress=False)
    return store


@pytest.fixture(scope="module")
def server(cube_path):
    with (
        serving([cube_path], {"SMAPX_CUBES": "[]", "SMAPX_REDIS_URL": NO_REDIS}) as url,
        httpx.Client(base_url=url, timeout=30) as client,
    ):
        yield client


@pytest.fixture(scope="module")
def local(cube_path):
    cube = cubes.open_cube(cube_path)
    times = pd.DatetimeIndex(cube.time.values)
    return {
        "cube": cube.load(),
        "times": times,
        "doys": np.array([calendar_day(d) for d in times]),
        "codes": {p: stored_codes(cube_path, p) for p in ("lstm", "noah", "fused")},
    }


def region_cell(local, k: int) -> tuple[int, int, float, float]:
    iy, ix = np.nonzero(local["cube"]["mask"].values)
    cell = local["cube"].isel(y=iy[k], x=ix[k])
    return int(iy[k]), int(ix[k]), float(cell["lat"]), float(cell["lon"])


def test_percentiles_read_at_their_precision_with_their_unit(server, local):
    _, _, lat, lon = region_cell(local, 0)
    params = {"lat": lat, "lon": lon, "products": "lstm_percentile"}
    body = server.get("/v1/series", params=params)
    assert body.json()["units"] == "percent"  # a percentile-only answer
    values = re.search(r'"lstm_percentile":\[([^\]]*)\]', body.text).group(1).split(",")
    assert all(len(v.partition(".")[2]) <= 2 for v in values), max(values, key=len)
    csv = server.get("/v1/series", params={**params, "format": "csv"}).text
    assert all(len(v.partition(".")[2]) <= 2 for v in re.findall(r",([0-9.]+)\n", csv))
    both = server.get("/v1/series", params={**params, "products": "lstm,lstm_percentile"})
    assert both.json()["units"] is None
    assert both.json()["product_units"] == {"lstm": "m3 m-3", "lstm_percentile": "percent"}


def test_series_of_percentile_anomaly_and_spread_equal_the_definition(server, local):
    iy, ix, lat, lon = region_cell(local, 0)
    assert np.isnan(local["cube"]["lstm"].values[MISSING, iy, ix]).all()
    r = server.get(
        "/v1/series",
        params={
            "lat": lat,
            "lon": lon,
            "start": "2009-01-01",
            "end": "2013-12-31",
            "products": "lstm,lstm_percentile,lstm_anomaly,lstm_spread,fused_percentile",
        },
    )
    assert r.status_code == 200, r.text
    body = r.json()
    products = ["lstm", "lstm_percentile", "lstm_anomaly", "lstm_spread", "fused_percentile"]
    assert set(products) <= set(body) and len(body["time"]) == len(local["times"])
    assert body["product_units"]["lstm_percentile"] == "percent"
    assert all(body[p][t] is None for p in products[:3] for t in range(MISSING.start, MISSING.stop))
    base = slice(0, len(local["times"]))
    rng = np.random.default_rng(1)
    for t in [*rng.integers(len(local["times"]), size=60), 1154]:  # 1154: 29 Feb 2012
        if body["lstm"][t] is None:
            continue
        exact, mean = direct(local["codes"]["lstm"], local["doys"], base, t, iy, ix)
        assert exact - 1e-6 <= body["lstm_percentile"][t] < exact + 0.01
        assert body["lstm_anomaly"][t] == pytest.approx(body["lstm"][t] - mean, abs=6e-5)
        assert body["lstm_spread"][t] == pytest.approx(
            float(local["cube"]["lstm_spread"].values[t, iy, ix]), abs=1e-7
        )
        fused, _ = direct(local["codes"]["fused"], local["doys"], base, t, iy, ix)
        assert fused - 1e-6 <= body["fused_percentile"][t] < fused + 0.01
    csv = server.get(
        "/v1/series",
        params={
            "lat": lat,
            "lon": lon,
            "products": "lstm_percentile,lstm_anomaly",
            "format": "csv",
        },
    )
    table = pd.read_csv(io.StringIO(csv.text))
    for p in ("lstm_percentile", "lstm_anomaly"):
        np.testing.assert_allclose(table[p], np.array(body[p], dtype=float), atol=1e-9)


def test_fused_percentile_and_anomaly_follow_the_weight(server, local, cube_path):
    """`weight=0.7` ranks fused at 0.7 in series and in subsets, not the stored 0.5 silently."""
    iy, ix, lat, lon = region_cell(local, 2)
    params = {"lat": lat, "lon": lon, "products": "fused,fused_percentile,fused_anomaly"}
    body = server.get("/v1/series", params={**params, "weight": 0.7}).json()
    default = server.get("/v1/series", params=params).json()
    lstm, noah = local["codes"]["lstm"], local["codes"]["noah"]
    missing = (lstm == cubes.FILL) | (noah == cubes.FILL)
    codes = np.where(missing, cubes.FILL, np.rint(0.7 * lstm + (1 - 0.7) * noah))
    base = slice(0, len(local["times"]))
    moved = 0
    for t in np.random.default_rng(2).integers(len(local["times"]), size=60):
        if body["fused"][t] is None:
            continue
        exact, mean = direct(codes, local["doys"], base, t, iy, ix)
        assert exact - 1e-6 <= body["fused_percentile"][t] < exact + 0.01, t
        assert body["fused_anomaly"][t] == pytest.approx(body["fused"][t] - mean, abs=6e-5)
        moved += abs(body["fused_percentile"][t] - default["fused_percentile"][t]) > 0.5
    assert moved > 10, "the percentiles at 0.5 would pass for those at 0.7"
    bbox = f"{lon - 0.1},{lat - 0.1},{lon + 0.1},{lat + 0.1}"
    period = {"start": local["times"][0].date(), "end": local["times"][-1].date()}
    sub = server.get(
        "/v1/subset",
        params={**params, **period, "bbox": bbox, "format": "netcdf", "weight": 0.7},
    )
    assert sub.status_code == 200, sub.text
    ds = xr.open_dataset(io.BytesIO(sub.content), engine="h5netcdf")
    for p in ("fused_percentile", "fused_anomaly"):
        np.testing.assert_allclose(ds[p].values[:, 0, 0], np.array(body[p], float), atol=1e-4)


def pixel_cells(local, z: int, x: int, y: int):
    """(iy, ix) of each pixel of a Web Mercator tile and whether it lies on a region cell,
    independently: pixel centre -> EASE2 -> cell."""
    tms = morecantile.tms.get("WebMercatorQuad")
    b = tms.xy_bounds(x, y, z)
    px = b.left + (np.arange(256) + 0.5) * (b.right - b.left) / 256
    py = b.top - (np.arange(256) + 0.5) * (b.top - b.bottom) / 256
    gx, gy = np.meshgrid(px, py)
    to_ease = Transformer.from_crs(tms.crs._pyproj_crs, grid.CRS_EASE2, always_xy=True)
    rows, cols = grid.xy_to_rowcol(*to_ease.transform(gx, gy))
    cube = local["cube"]
    iy, ix = rows - cube.attrs["row0"], cols - cube.attrs["col0"]
    inside = (iy >= 0) & (iy < cube.sizes["y"]) & (ix >= 0) & (ix < cube.sizes["x"])
    iy, ix = np.where(inside, iy, 0), np.where(inside, ix, 0)
    return iy, ix, inside & cube["mask"].values[iy, ix]


def test_drought_tile_has_the_right_class_per_pixel(server, local):
    centre = ((BBOX[0] + BBOX[2]) / 2, (BBOX[1] + BBOX[3]) / 2)
    tile = morecantile.tms.get("WebMercatorQuad").tile(*centre, 6)
    got = get_png(
        server,
        f"/v1/tiles/lstm_percentile/{tile.z}/{tile.x}/{tile.y}.png",
        date=DAY,
        colormap="drought",
    )
    iy, ix, on_region = pixel_cells(local, tile.z, tile.x, tile.y)
    t = int(local["times"].get_loc(pd.Timestamp(DAY)))
    base = slice(0, len(local["times"]))
    exact = {}
    for a, b in set(zip(iy[on_region], ix[on_region], strict=True)):
        exact[(a, b)] = direct(local["codes"]["lstm"], local["doys"], base, t, a, b)[0]
    colours = np.array([list(bytes.fromhex(c[1:])) for _, c in CLASSES], np.uint8)
    bounds = np.array([b for b, _ in CLASSES])
    classes = {cell: int(np.searchsorted(bounds, p, side="left")) for cell, p in exact.items()}
    assert len(set(classes.values())) >= 3, "the day should show several classes"
    want = np.zeros((256, 256, 4), np.uint8)
    for (a, b), k in classes.items():
        here = on_region & (iy == a) & (ix == b)
        want[here] = [*colours[k], 255]
    assert on_region.sum() > 1000
    np.testing.assert_array_equal(got, want)


def test_drought_legend_is_labelled(server):
    legend = server.get("/v1/legend", params={"colormap": "drought", "f": "json"}).json()
    names = [c["class"] for c in legend["classes"]]
    assert names[:5] == ["D4", "D3", "D2", "D1", "D0"] and names[-1] == "W4"
    assert legend["classes"][2]["label"] == "severe drought"
    assert legend["classes"][2]["range"] == "5 < percentile <= 10"
    png = server.get("/v1/legend", params={"colormap": "drought"})
    assert png.status_code == 200 and png.headers["content-type"] == "image/png"
    listed = server.get("/v1/colormaps").json()
    assert "drought" in listed["colormaps"] and "viridis" in listed["colormaps"]
    assert listed["classed"] == {
        "drought": {"products": "*_percentile"},
        "onset": {"products": "*_onset"},
    }


def test_a_percentile_legend_has_its_ticks_and_unit(server):
    legend = server.get(
        "/v1/legend", params={"colormap": "viridis", "product": "lstm_percentile", "f": "json"}
    ).json()
    assert legend["units"] == "percent" and legend["rescale"] == [0, 100]
    assert [(t["value"], t["position"]) for t in legend["ticks"]] == [
        (v, v / 100) for v in (0, 20, 40, 60, 80, 100)
    ]
    wrong = server.get("/v1/legend", params={"colormap": "drought", "product": "lstm"})
    assert wrong.status_code == 422 and "lstm_percentile" in wrong.json()["detail"]


def test_catalogue_lists_derived_products(server):
    products = server.get("/v1/products").json()["cubes"]["twin"]["products"]
    assert products["lstm_percentile"]["units"] == "percent"
    assert products["lstm_anomaly"]["units"] == "m3 m-3"
    assert {"lstm_spread", "noah_percentile", "fused_anomaly"} <= set(products)
    assert "smap_percentile" not in products


def test_subset_of_derived_products_equals_the_series(server, local):
    iy, ix, lat, lon = region_cell(local, 3)
    params = {
        "start": "2012-06-01",
        "end": "2012-06-30",
        "products": "lstm_percentile,lstm_anomaly",
    }
    bbox = f"{lon - 0.1},{lat - 0.1},{lon + 0.1},{lat + 0.1}"
    r = server.get("/v1/subset", params={**params, "bbox": bbox, "format": "netcdf"})
    assert r.status_code == 200, r.text
    sub = xr.open_dataset(io.BytesIO(r.content), engine="h5netcdf")
    assert sub["lstm_percentile"].shape[1:] == (1, 1)
    series = server.get("/v1/series", params={**params, "lat": lat, "lon": lon}).json()
    for p in ("lstm_percentile", "lstm_anomaly"):
        np.testing.assert_allclose(
            sub[p].values[:, 0, 0], series[p], atol=1e-4 if "per" in p else 1e-6
        )


def test_job_of_derived_products_equals_the_series(cube_path, local, redis_url, tmp_path, server):
    """A bulk job run by a real Celery worker writes the percentiles and anomalies the series
    serves."""
    env = {
        "SMAPX_REDIS_URL": redis_url,
        "SMAPX_JOBS_DIR": str(tmp_path / "results"),
        "SMAPX_CUBES": f'["{cube_path}"]',
        "SMAPX_TORCH_THREADS": "1",
    }
    worker = start_worker(env, f"percentiles-test-{os.getpid()}@%h")
    jobs, url = start_server([cube_path], env)
    _, _, lat, lon = region_cell(local, 5)
    products = ["lstm_percentile", "lstm_anomaly", "fused_percentile"]
    request = {
        "products": products,
        "start": "2011-07-01",
        "end": "2011-09-30",
        "points": [[lat, lon]],
        "format": "csv",
    }
    try:
        with httpx.Client(base_url=url, timeout=30) as client:
            submitted = client.post("/v1/jobs", json=request)
            assert submitted.status_code == 202, submitted.text
            job = wait_done(client, submitted.json()["id"])
            assert job["state"] == "done", job
            (entry,) = client.get(f"/v1/jobs/{job['id']}/files").json()["files"]
            table = pd.read_csv(io.StringIO(client.get(entry["href"]).text))
    finally:
        for proc in (jobs, worker):
            proc.terminate()
        for proc in (jobs, worker):
            proc.wait(30)
    series = server.get(
        "/v1/series",
        params={
            "lat": lat,
            "lon": lon,
            "start": request["start"],
            "end": request["end"],
            "products": ",".join(products),
        },
    ).json()
    for p in products:
        np.testing.assert_allclose(table[p], series[p], atol=1e-4 if "per" in p else 6e-5)


@pytest.mark.parametrize(
    ("url", "params", "needle"),
    [
        ("/v1/series", {"products": "smap_percentile"}, "smap_percentile"),
        ("/v1/series", {"products": "lsm2_anomaly"}, "lsm2_anomaly"),
        ("/v1/tiles/lstm/6/14/24.png", {"colormap": "drought"}, "percentile"),
    ],
)
def test_derived_product_errors_are_422(server, local, url, params, needle):
    _, _, lat, lon = region_cell(local, 0)
    r = server.get(url, params={"lat": lat, "lon": lon, **params})
    assert r.status_code == 422 and needle in r.text, r.text

"""The HTTP service against a real uvicorn server: every endpoint and format, values equal to the
cube's, fused equal to the weighted mean, tiles equal to the cube through the colormap, Zarr over
HTTP equal to the local store, and user errors answered with 4xx, never 500."""

import io
import json
import re
import time
import zipfile
from pathlib import Path

import httpx
import morecantile
import numpy as np
import pandas as pd
import pytest
import xarray as xr
import zarr
from PIL import Image
from pyproj import Transformer
from rio_tiler.colormap import cmap

from model import grid
from model.product import cube as cubes
from model.product import fusion
from tests.served import (
    DAYS,
    NO_REDIS,
    POINT,
    REGION,
    build_cube,
    get_png,
    serving,
    start_server,
    stored,
)

ROOT = Path(__file__).resolve().parents[1]
WEIGHTED_CELL = (102, 203)
CELL_WEIGHT = 0.8


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    folder = tmp_path_factory.mktemp("service")
    store = folder / "extended.zarr"
    build_cube(store)
    weights = folder / "weights.csv"
    fusion.write_weights(weights, [WEIGHTED_CELL[0]], [WEIGHTED_CELL[1]], [CELL_WEIGHT])
    return {"store": store, "weights": weights, "folder": folder}


@pytest.fixture(scope="module")
def server(world):
    twin = world["folder"] / "twin.zarr"
    if not twin.exists():
        twin.symlink_to(world["store"])
    env = {
        "SMAPX_WEIGHTS_PATH": str(world["weights"]),
        "SMAPX_CUBES": "[]",
        "SMAPX_REDIS_URL": NO_REDIS,
    }
    with (
        serving([world["store"], twin], env) as url,
        httpx.Client(base_url=url, timeout=30) as client,
    ):
        yield client


@pytest.fixture(scope="module")
def local(world):
    return cubes.open_cube(world["store"]).load()


def cell_of(local, lat, lon):
    iy, ix = cubes.locate(local, lat, lon)
    return iy, ix


def test_catalogue(server, local):
    health = server.get("/healthz").json()
    assert health["status"] == "ok" and health["cubes"] == ["extended", "twin"]
    assert health["workers"] is None and "queue is unavailable" in health["warnings"][0]
    body = server.get("/v1/products").json()
    assert list(body["products"]) == ["smap", "lstm", "noah", "lsm2", "fused"]
    assert body["products"]["lstm"]["units"] == "m3 m-3"
    assert body["extent"] == pytest.approx(cubes.extent(local))
    assert body["grid"]["epsg"] == grid.EPSG and body["grid"]["cells"] == int(REGION.sum())
    last_smap = DAYS[np.arange(len(DAYS))[np.arange(len(DAYS)) % 3 == 0][-1]]
    assert body["cubes"]["extended"]["smap_period"] == {
        "start": "2014-01-01",
        "end": str(last_smap.date()),
    }
    schema = server.get("/openapi.json").json()
    for path in (
        "/v1/series",
        "/v1/tiles/{product}/{z}/{x}/{y}.png",
        "/v1/tilejson/{product}.json",
        "/v1/jobs",
        "/v1/jobs/{job_id}",
        "/v1/jobs/{job_id}/files",
        "/v1/subset",
        "/v1/edr/{cube}/position",
        "/v1/zarr/{cube}/{key}",
        "/v1/products",
    ):
        assert path in schema["paths"], path


def test_series_json_equals_cube(server, local):
    r = server.get(
        "/v1/series",
        params={
            "lat": POINT[0],
            "lon": POINT[1],
            "start": "2015-02-01",
            "end": "2015-03-31",
            "products": "smap,lstm,noah,lsm2",
        },
    )
    assert r.status_code == 200
    body = r.json()
    iy, ix = cell_of(local, *POINT)
    assert (body["cell"]["row"], body["cell"]["col"]) == (iy + 100, ix + 200)
    lat, lon = grid.rowcol_to_latlon(body["cell"]["row"], body["cell"]["col"])
    assert body["cell"]["lat"] == pytest.approx(float(lat), abs=1e-4)
    assert body["cell"]["lon"] == pytest.approx(float(lon), abs=1e-4)
    days = local.time.sel(time=slice("2015-02-01", "2015-03-31"))
    assert body["time"] == [str(d)[:10] for d in days.values]
    for p in ("smap", "lstm", "noah", "lsm2"):
        got = np.array([np.nan if v is None else v for v in body[p]], np.float64)
        want = stored(local[p].sel(time=days.time).values[:, iy, ix])
        np.testing.assert_array_equal(got, want)
    assert any(v is None for v in body["smap"])


def test_series_csv_equals_cube(server, local):
    r = server.get(
        "/v1/series",
        params={"lat": POINT[0], "lon": POINT[1], "products": "lstm,smap", "format": "csv"},
    )
    assert r.headers["content-type"].startswith("text/csv")
    table = pd.read_csv(io.StringIO(r.text), parse_dates=["time"])
    iy, ix = cell_of(local, *POINT)
    assert len(table) == len(DAYS)
    cell = server.get("/v1/series", params={"lat": POINT[0], "lon": POINT[1]}).json()["cell"]
    where = ["lat", "lon", "row", "col", "cell_lat", "cell_lon"]
    assert list(table.columns[:7]) == [*where, "time"]
    assert table[where].drop_duplicates().values.tolist() == [
        [*POINT, cell["row"], cell["col"], cell["lat"], cell["lon"]]
    ]
    np.testing.assert_array_equal(table["lstm"], stored(local["lstm"].values[:, iy, ix]))
    np.testing.assert_array_equal(table["smap"], stored(local["smap"].values[:, iy, ix]))


def fused_expected(local, iy, ix, weight):
    return weight * local["lstm"].values[:, iy, ix] + (1 - weight) * local["noah"].values[:, iy, ix]


def test_fused_is_the_weighted_mean(server, local):
    iy, ix = cell_of(local, *POINT)
    default = server.get(
        "/v1/series", params={"lat": POINT[0], "lon": POINT[1], "products": "fused"}
    ).json()
    np.testing.assert_allclose(default["fused"], fused_expected(local, iy, ix, 0.5), atol=6e-5)
    given = server.get(
        "/v1/series", params={"lat": POINT[0], "lon": POINT[1], "products": "fused", "weight": 0.3}
    ).json()
    np.testing.assert_allclose(given["fused"], fused_expected(local, iy, ix, 0.3), atol=6e-5)
    assert np.abs(np.array(given["fused"]) - np.array(default["fused"])).max() > 0.005


def test_fused_uses_per_cell_weights(server, local):
    lat, lon = grid.rowcol_to_latlon(*WEIGHTED_CELL)
    body = server.get(
        "/v1/series", params={"lat": float(lat), "lon": float(lon), "products": "fused"}
    ).json()
    assert body["cell"]["weight"] == CELL_WEIGHT
    iy, ix = WEIGHTED_CELL[0] - 100, WEIGHTED_CELL[1] - 200
    np.testing.assert_allclose(body["fused"], fused_expected(local, iy, ix, CELL_WEIGHT), atol=6e-5)


def test_second_cube_is_served_by_name(server):
    params = {"lat": POINT[0], "lon": POINT[1], "start": "2015-01-01", "end": "2015-01-05"}
    first = server.get("/v1/series", params=params).json()
    twin = server.get("/v1/series", params={**params, "cube": "twin"}).json()
    assert twin["cube"] == "twin" and twin["lstm"] == first["lstm"]
    assert set(server.get("/v1/products").json()["cubes"]) == {"extended", "twin"}


def test_edr_position(server, local):
    iy, ix = cell_of(local, *POINT)
    params = {
        "coords": f"POINT({POINT[1]} {POINT[0]})",
        "datetime": "2015-01-01/2015-01-31",
        "parameter-name": "lstm,noah",
    }
    cov = server.get("/v1/edr/extended/position", params=params).json()
    assert cov["type"] == "Coverage" and cov["domain"]["domainType"] == "PointSeries"
    assert len(cov["domain"]["axes"]["t"]["values"]) == 31
    np.testing.assert_array_equal(
        cov["ranges"]["noah"]["values"], stored(local["noah"].values[365:396, iy, ix])
    )
    table = pd.read_csv(
        io.StringIO(server.get("/v1/edr/extended/position", params={**params, "f": "csv"}).text)
    )
    np.testing.assert_array_equal(table["lstm"], stored(local["lstm"].values[365:396, iy, ix]))


def test_batch_points_geojson_and_csv(server, local):
    points = [POINT, (29.9, -104.0)]
    geojson = {
        "type": "FeatureCollection",
        "features": [
            {
                "type": "Feature",
                "properties": {"id": f"p{i}"},
                "geometry": {"type": "Point", "coordinates": [lon, lat]},
            }
            for i, (lat, lon) in enumerate(points)
        ],
    }
    params = {"start": "2016-01-01", "end": "2016-01-10", "products": "lstm,fused"}
    body = server.post(
        "/v1/series", params=params, json=geojson, headers={"content-type": "application/geo+json"}
    ).json()
    assert [s["cell"]["id"] for s in body["series"]] == ["p0", "p1"]
    for (lat, lon), item in zip(points, body["series"], strict=True):
        iy, ix = cell_of(local, lat, lon)
        np.testing.assert_array_equal(item["lstm"], stored(local["lstm"].values[730:740, iy, ix]))
    text = "id,lat,lon\n" + "\n".join(f"q{i},{lat},{lon}" for i, (lat, lon) in enumerate(points))
    csv = server.post(
        "/v1/series",
        params={**params, "format": "csv"},
        content=text,
        headers={"content-type": "text/csv"},
    )
    table = pd.read_csv(io.StringIO(csv.text))
    assert list(table.columns) == ["id", "lat", "lon", "row", "col", "time", "lstm", "fused"]
    assert len(table) == 20 and set(table["id"]) == {"q0", "q1"}


def expected_tile(local, product_values, tms_id, z, x, y, colormap, low, high):
    """RGBA computed independently: pixel centre -> EASE2 cell -> value -> colormap."""
    tms = morecantile.tms.get(tms_id)
    b = tms.xy_bounds(x, y, z)
    px = b.left + (np.arange(256) + 0.5) * (b.right - b.left) / 256
    py = b.top - (np.arange(256) + 0.5) * (b.top - b.bottom) / 256
    gx, gy = np.meshgrid(px, py)
    ex, ey = Transformer.from_crs(tms.crs._pyproj_crs, grid.CRS_EASE2, always_xy=True).transform(
        gx, gy
    )
    rows, cols = grid.xy_to_rowcol(ex, ey)
    iy, ix = rows - local.attrs["row0"], cols - local.attrs["col0"]
    inside = (rows >= 0) & (iy >= 0) & (iy < local.sizes["y"]) & (ix >= 0) & (ix < local.sizes["x"])
    iy, ix = np.where(inside, iy, 0), np.where(inside, ix, 0)
    values = np.where(inside & local["mask"].values[iy, ix], product_values[iy, ix], np.nan)
    table = np.array([cmap.get(colormap)[i] for i in range(256)], np.uint8)
    index = np.clip(np.nan_to_num(np.rint((values - low) * 255 / (high - low))), 0, 255).astype(int)
    rgba = table[index]
    rgba[np.isnan(values)] = 0
    return rgba


def test_tile_pixels_match_cube_through_colormap(server, local):
    tile = morecantile.tms.get("WebMercatorQuad").tile(POINT[1], POINT[0], 7)
    day = 400
    date = str(DAYS[day].date())
    got = get_png(
        server,
        f"/v1/tiles/lstm/{tile.z}/{tile.x}/{tile.y}.png",
        date=date,
        colormap="viridis",
        rescale="0.1,0.3",
    )
    want = expected_tile(
        local,
        local["lstm"].values[day],
        "WebMercatorQuad",
        tile.z,
        tile.x,
        tile.y,
        "viridis",
        0.1,
        0.3,
    )
    assert (want[..., 3] == 0).any() and (want[..., 3] == 255).sum() > 1000
    np.testing.assert_array_equal(got, want)
    fused = get_png(
        server,
        f"/v1/tiles/fused/WebMercatorQuad/{tile.z}/{tile.x}/{tile.y}.png",
        date=date,
        colormap="viridis",
        rescale="0.1,0.3",
        weight=0.25,
    )
    mean = 0.25 * local["lstm"].values[day] + 0.75 * local["noah"].values[day]
    diff = np.abs(
        fused.astype(int)
        - expected_tile(
            local, mean, "WebMercatorQuad", tile.z, tile.x, tile.y, "viridis", 0.1, 0.3
        ).astype(int)
    )
    assert diff.max() <= 3


def test_tile_other_matrix_set_and_empty_tile(server, local):
    tile = morecantile.tms.get("WGS1984Quad").tile(POINT[1], POINT[0], 6)
    got = get_png(
        server, f"/v1/tiles/noah/WGS1984Quad/{tile.z}/{tile.x}/{tile.y}.png", date="2015-06-01"
    )
    want = expected_tile(
        local, local["noah"].values[516], "WGS1984Quad", tile.z, tile.x, tile.y, "ylgnbu", 0.0, 0.5
    )
    np.testing.assert_array_equal(got, want)
    empty = get_png(server, "/v1/tiles/lstm/3/0/0.png")
    assert empty.shape == (256, 256, 4) and (empty[..., 3] == 0).all()
    ids = [t["id"] for t in server.get("/v1/tileMatrixSets").json()["tileMatrixSets"]]
    assert "WebMercatorQuad" in ids
    assert server.get("/v1/tileMatrixSets/WebMercatorQuad").json()["id"] == "WebMercatorQuad"


def test_tilejson_and_legend(server, local):
    doc = server.get("/v1/tilejson/lstm.json", params={"date": "2015-03-01"}).json()
    assert doc["tilejson"] == "3.0.0"
    ext = cubes.extent(local)
    assert doc["bounds"][0] < ext["west"] and doc["bounds"][2] > ext["east"]
    url = doc["tiles"][0].replace("{z}", "7").replace("{x}", "27").replace("{y}", "53")
    assert "date=2015-03-01" in url and server.get(url).status_code == 200
    legend = get_png(server, "/v1/legend", colormap="viridis")
    bar = legend[:16, 12 : 12 + 256]  # the bar, a margin from the left; ticks and units below
    np.testing.assert_array_equal(bar[0, 255, :3], cmap.get("viridis")[255][:3])
    assert (legend[16:, :, :3] < 100).all(-1).any()  # dark tick labels under the bar
    doc = server.get("/v1/legend", params={"f": "json", "rescale": "0,0.5"}).json()
    assert doc["stops"][0][0] == 0 and doc["stops"][-1][0] == 0.5
    assert [(t["label"], t["position"]) for t in doc["ticks"]] == [
        ("0", 0),
        ("0.1", 0.2),
        ("0.2", 0.4),
        ("0.3", 0.6),
        ("0.4", 0.8),
        ("0.5", 1),
    ]
    assert doc["units"] == "m3 m-3"


def test_zarr_over_http_reads_the_local_store(server, local, world):
    remote = xr.open_zarr(f"{server.base_url}/v1/zarr/extended")
    for p in ("lstm", "smap"):
        np.testing.assert_array_equal(remote[p].values.astype(np.float32), local[p].values)
    np.testing.assert_array_equal(remote["mask"].values, local["mask"].values)
    assert server.get("/v1/zarr/extended/nothing/here").status_code == 404
    assert server.get("/v1/zarr/extended/../extended.zarr/zarr.json").status_code == 404


BBOX = "-104,28.5,-102.5,30"


def test_subset_download_formats(server, local, world):
    params = {"bbox": BBOX, "start": "2015-01-01", "end": "2015-01-31", "products": "lstm,fused"}
    r = server.get("/v1/subset", params={**params, "format": "zarr"})
    assert r.status_code == 200 and r.headers["content-type"] == "application/zip"
    path = world["folder"] / "subset.zarr.zip"
    path.write_bytes(r.content)
    assert "zarr.json" in zipfile.ZipFile(path).namelist()
    sub = xr.open_zarr(zarr.storage.ZipStore(path, mode="r")).load()
    path.unlink()
    row0, col0 = sub.attrs["row0"] - local.attrs["row0"], sub.attrs["col0"] - local.attrs["col0"]
    window = local.isel(
        time=slice(365, 396),
        y=slice(row0, row0 + sub.sizes["y"]),
        x=slice(col0, col0 + sub.sizes["x"]),
    )
    keep = sub["mask"].values
    np.testing.assert_array_equal(sub["lstm"].values[:, keep], window["lstm"].values[:, keep])
    np.testing.assert_allclose(
        sub["fused"].values[:, keep],
        (0.5 * window["lstm"] + 0.5 * window["noah"]).values[:, keep],
        atol=1e-6,
    )
    nc = server.get("/v1/subset", params={**params, "format": "netcdf"})
    ds = xr.open_dataset(io.BytesIO(nc.content), engine="h5netcdf")
    np.testing.assert_array_equal(ds["lstm"].values, sub["lstm"].values)
    table = pd.read_csv(
        io.StringIO(server.get("/v1/subset", params={**params, "format": "csv"}).text)
    )
    assert len(table) == int(keep.sum()) * 31
    assert (
        server.get(
            "/v1/subset",
            params={
                **params,
                "start": "2014-01-01",
                "end": "2016-12-30",
                "bbox": "-180,-90,180,90",
                "products": "lstm",
            },
        ).status_code
        == 200
    )


@pytest.mark.parametrize(
    ("params", "status", "needle"),
    [
        ({"lat": 45.0, "lon": -103.0}, 404, "extent"),
        ({"lat": 89.99, "lon": 0.0}, 404, "extent"),
        ({"lat": 95.0, "lon": 0.0}, 422, "lat"),
        ({"lat": 29.0, "lon": -103.0, "start": "2015-02-30"}, 422, "start"),
        ({"lat": 29.0, "lon": -103.0, "end": "yesterday"}, 422, "end"),
        ({"lat": 29.0, "lon": -103.0, "start": "2015-05-01", "end": "2015-04-01"}, 422, "end"),
        ({"lat": 29.0, "lon": -103.0, "products": "lstm,bogus"}, 422, "products"),
        ({"lat": 29.0, "lon": -103.0, "start": "2030-01-01", "end": "2031-01-01"}, 404, "outside"),
        ({"lat": 29.0, "lon": -103.0, "weight": 2}, 422, "weight"),
        ({"lat": 29.0, "lon": -103.0, "format": "xml"}, 422, "format"),
        ({"lat": 29.0, "lon": -103.0, "cube": "other"}, 404, "twin"),
    ],
)
def test_series_errors(server, local, params, status, needle):
    r = server.get("/v1/series", params=params)
    assert r.status_code == status, r.text
    assert needle in json.dumps(r.json())
    if needle in ("extent", "outside"):
        assert r.json()["extent"] == pytest.approx(cubes.extent(local))


def test_errors_are_rfc9457_problems_with_rounded_extents(server, local):
    outside = server.get("/v1/series", params={"lat": 10.0, "lon": -97.0})
    assert outside.status_code == 404
    assert outside.headers["content-type"] == "application/problem+json"
    body = outside.json()
    assert (body["type"], body["title"], body["status"]) == ("about:blank", "Not Found", 404)
    assert "{" not in body["detail"] and "lat 28." in body["detail"], body["detail"]
    for side in ("west", "south", "east", "north"):
        assert body["extent"][side] == round(body["extent"][side], 4)
    ocean = server.get(
        "/v1/subset",
        params={"bbox": "-140,30,-130,35", "start": "2015-01-01", "end": "2015-01-31"},
    )
    assert ocean.status_code == 404 and ocean.json()["parameter"] == "bbox", ocean.text
    assert ocean.json()["extent"] == body["extent"]
    unknown = server.get("/v1/series", params={"lat": 29.0, "lon": -103.0, "cube": "nope"})
    assert unknown.status_code == 404 and unknown.json()["parameter"] == "cube"


@pytest.mark.parametrize(
    ("url", "params", "status"),
    [
        ("/v1/tiles/bogus/7/27/53.png", {}, 422),
        ("/v1/tiles/lstm/7/27/53.png", {"date": "2015-13-01"}, 422),
        ("/v1/tiles/lstm/7/27/53.png", {"date": "1999-01-01"}, 404),
        ("/v1/tiles/lstm/7/27/53.png", {"colormap": "nope"}, 422),
        ("/v1/tiles/lstm/7/27/53.png", {"rescale": "0.5,0.1"}, 422),
        ("/v1/tiles/lstm/7/999/53.png", {}, 404),
        ("/v1/tiles/lstm/40/1/1.png", {}, 404),
        ("/v1/tiles/lstm/NoSuchTMS/7/27/53.png", {}, 404),
        ("/v1/edr/extended/position", {"coords": "POINT(abc)"}, 422),
        ("/v1/edr/extended/position", {"coords": "POINT(-103 29)", "datetime": "x/y"}, 422),
        ("/v1/subset", {"bbox": "1,2,3", "start": "2015-01-01", "end": "2015-01-02"}, 422),
        ("/v1/subset", {"bbox": "10,10,11,11", "start": "2015-01-01", "end": "2015-01-02"}, 404),
    ],
)
def test_other_errors_are_4xx(server, url, params, status):
    r = server.get(url, params=params)
    assert 400 <= r.status_code < 500, (r.status_code, r.text)
    if status is not None:
        assert r.status_code == status, r.text
    assert isinstance(r.json()["detail"], str | list)


def test_batch_errors(server):
    assert (
        server.post(
            "/v1/series", content="not json", headers={"content-type": "application/json"}
        ).status_code
        == 422
    )
    assert (
        server.post(
            "/v1/series", content="x,y\n1,2", headers={"content-type": "text/csv"}
        ).status_code
        == 422
    )
    many = "lat,lon\n" + "29.0,-103.0\n" * 501
    r = server.post("/v1/series", content=many, headers={"content-type": "text/csv"})
    assert r.status_code == 413 and r.json()["limit"] == 500


def test_web_map_page_and_assets(server):
    page = server.get("/")
    assert page.status_code == 200 and "leaflet.js" in page.text
    for asset in ("/static/app.js", "/static/style.css"):
        assert server.get(asset).status_code == 200


def test_api_docs_load_nothing_from_outside(server):
    page = server.get("/docs")
    assert page.status_code == 200 and "/openapi.json" in page.text
    assert "http://" not in page.text and "https://" not in page.text
    for asset in re.findall(r"(?:src|href)=['\"](/static/[^'\"]+)", page.text):
        assert server.get(asset).status_code == 200, asset
    assert server.get("/redoc").status_code == 404  # its page would load from a CDN


def test_tile_png_with_every_colour_and_no_data_falls_back_to_rgba():
    from service import colormaps
    from service.colormaps import NO_DATA
    from service.tiles import encode_indexed

    table = colormaps.table("viridis")
    colors = np.arange(256 * 256, dtype=np.int16).reshape(256, 256) % (NO_DATA + 1)
    decoded = np.asarray(Image.open(io.BytesIO(encode_indexed(colors, table))).convert("RGBA"))
    np.testing.assert_array_equal(decoded, table[colors])
    few = np.where(colors % 2 == 0, NO_DATA, colors % 50).astype(np.int16)
    decoded = np.asarray(Image.open(io.BytesIO(encode_indexed(few, table))).convert("RGBA"))
    np.testing.assert_array_equal(decoded, table[few])


def test_continuous_colormaps_are_rio_tilers_own():
    """The service reads rio-tiler's colormap files itself (a server starts ~0.8 s sooner without
    importing rio_tiler): the same names and colours as rio_tiler.colormap.cmap."""
    from rio_tiler.colormap import cmap

    from service import colormaps
    from service.colormaps import NO_DATA

    assert sorted(colormaps.continuous()) == sorted(cmap.list())
    for name in cmap.list():
        colours = cmap.get(name)
        expected = np.array([colours[i] for i in range(256)], np.uint8)
        np.testing.assert_array_equal(colormaps.table(name)[:NO_DATA], expected, err_msg=name)


def test_rate_limit_answers_429(world):
    proc, url = start_server(
        [world["store"]], {"SMAPX_RATE_LIMIT_PER_MINUTE": "5", "SMAPX_CUBES": "[]"}
    )
    try:
        with httpx.Client(base_url=url, timeout=30) as client:
            minute = time.time() // 60
            codes = [client.get("/v1/products").status_code for _ in range(7)]
            limited = client.get("/v1/products")
            assert client.get("/healthz").status_code == 200
            if time.time() // 60 != minute:
                pytest.skip("the one-minute window turned during the test")
    finally:
        proc.terminate()
        proc.wait(20)
    assert codes[:5] == [200] * 5
    assert codes[5:] == [429, 429] and limited.status_code == 429
    assert (
        1 <= int(limited.headers["retry-after"]) <= 120 and "5 requests" in limited.json()["detail"]
    )


def test_jobs_without_a_queue_answer_503(server):
    for r in (server.get("/v1/jobs"), server.get("/v1/jobs/0123456789abcdef")):
        assert r.status_code == 503 and "queue is unavailable" in r.json()["detail"]

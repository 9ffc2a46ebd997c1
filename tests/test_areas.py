"""Area statistics over HTTP, against a real uvicorn server on a cube of random values over
Kansas with its climatology: a polygon's, a state's and a county's daily means and drought-class
shares equal a direct computation here (each cell's square built and intersected with shapely in
EPSG:6933, numpy weighting), and every bad area answers one clear error."""

import csv
import io
import shutil
import sqlite3
import struct
import subprocess
import warnings

import httpx
import morecantile
import numpy as np
import pytest
import shapely
import zarr
from PIL import Image
from pyproj import Transformer
from rio_tiler.colormap import cmap
from shapely.geometry import box, shape

from model import grid
from model.product import areas, export
from model.product import cube as cubes
from service.areas import ATLAS_DIR
from tests import kansas
from tests.climatologies import calendar_day
from tests.kansas import DAYS, EMPTY_DAY
from tests.served import NO_REDIS, serving

pytestmark = pytest.mark.integration

MAX_CELL_DAYS = 300_000  # Kansas: 150 cells x 730 days x 2 products fit, 3 do not
SQUARE = {  # a Polygon with a hole, crossing cells partly
    "type": "Polygon",
    "coordinates": [
        [[-99.3, 37.6], [-97.1, 37.9], [-96.8, 39.4], [-98.9, 39.7], [-99.3, 37.6]],
        [[-98.4, 38.4], [-97.7, 38.4], [-97.7, 38.9], [-98.4, 38.4]],
    ],
}
TO_EASE = Transformer.from_crs("EPSG:4326", "EPSG:6933", always_xy=True)


@pytest.fixture(scope="module")
def cube_path(tmp_path_factory):
    return kansas.build(tmp_path_factory.mktemp("areas") / "kansas.zarr")


@pytest.fixture(scope="module")
def server(cube_path):
    env = {
        "SMAPX_CUBES": "[]",
        "SMAPX_REDIS_URL": NO_REDIS,
        "SMAPX_AREA_MAX_VERTICES": "200",
        "SMAPX_AREA_MAX_CELL_DAYS": str(MAX_CELL_DAYS),
    }
    with serving([cube_path], env) as url, httpx.Client(base_url=url, timeout=60) as client:
        yield client


@pytest.fixture(scope="module")
def stored(cube_path):
    """The cube's region, origin, lstm (time, y, x) in m3/m3 and lstm percentiles, as stored."""
    group = zarr.open_group(str(cube_path), mode="r")
    cube = cubes.open_cube(cube_path)
    lstm = np.asarray(group["lstm"][...], np.float64)
    percentiles = cubes.read_climatology(cube_path)["percentiles"]["lstm"].astype(np.float64)
    return {
        "mask": cube["mask"].values,
        "row0": int(cube.attrs["row0"]),
        "col0": int(cube.attrs["col0"]),
        "codes": lstm,
        "lstm": np.where(lstm == cubes.FILL, np.nan, lstm / 10_000),
        "percentile": np.where(percentiles == cubes.FILL, np.nan, percentiles / 100).transpose(
            2, 0, 1
        ),
    }


def direct(stored, lonlat_geometry) -> dict:
    """Mean and class shares by the definition: every region cell's square in EPSG:6933, its
    share inside the projected polygon, numpy weighting over the cells with data."""
    area = shapely.transform(
        lonlat_geometry, lambda xy: np.column_stack(TO_EASE.transform(xy[:, 0], xy[:, 1]))
    )
    size = grid.CELL_SIZE
    weights = np.zeros(stored["mask"].shape)
    for iy, ix in zip(*np.nonzero(stored["mask"]), strict=True):
        left = grid.X_MIN + (ix + stored["col0"]) * size
        top = grid.Y_MAX - (iy + stored["row0"]) * size
        weights[iy, ix] = box(left, top - size, left + size, top).intersection(area).area / size**2
    out = {"covered_km2": weights.sum() * size**2 / 1e6}
    lstm, pct = stored["lstm"], stored["percentile"]
    with np.errstate(invalid="ignore"):
        w = np.where(np.isnan(lstm), 0, weights)
        out["mean"] = np.nansum(lstm * w, axis=(1, 2)) / w.sum(axis=(1, 2))
        w = np.where(np.isnan(pct), 0, weights)
        out["pct_mean"] = np.nansum(pct * w, axis=(1, 2)) / w.sum(axis=(1, 2))
        for name, upper in (("D0", 30), ("D1", 20), ("D2", 10), ("D3", 5), ("D4", 2)):
            out[name] = 100 * (w * (pct <= upper)).sum(axis=(1, 2)) / w.sum(axis=(1, 2))
    return out


def as_array(values: list) -> np.ndarray:
    return np.array([np.nan if v is None else v for v in values])


def check_equal(body: dict, expected: dict) -> None:
    assert body["dates"] == [str(d.date()) for d in DAYS]
    assert body["lstm"]["mean"][EMPTY_DAY] is None
    assert body["area"]["covered_km2"] == pytest.approx(expected["covered_km2"], abs=0.1)
    np.testing.assert_allclose(as_array(body["lstm"]["mean"]), expected["mean"], atol=1e-6)
    pct = body["lstm_percentile"]
    np.testing.assert_allclose(as_array(pct["mean"]), expected["pct_mean"], atol=1e-4)
    for name in ("D0", "D1", "D2", "D3", "D4"):
        np.testing.assert_allclose(as_array(pct[name]), expected[name], atol=1e-3)
    d0, d4 = as_array(pct["D0"]), as_array(pct["D4"])
    assert np.nanmin(d0) < np.nanmax(d0) <= 100 and (d4 <= d0)[~np.isnan(d0)].all()


def test_polygon_mean_and_class_shares_equal_a_direct_computation(server, stored):
    r = server.post("/v1/areas/series", params={"products": "lstm,lstm_percentile"}, json=SQUARE)
    assert r.status_code == 200, r.text
    check_equal(r.json(), direct(stored, shape(SQUARE)))
    feature = {"type": "Feature", "properties": {}, "geometry": SQUARE}
    again = server.post(
        "/v1/areas/series",
        params={"products": "lstm", "start": "2010-03-01", "end": "2010-03-31"},
        json=feature,
    ).json()
    assert again["dates"][0] == "2010-03-01" and len(again["dates"]) == 31
    assert again["lstm"]["mean"] == r.json()["lstm"]["mean"][59:90]


def test_state_and_county_by_fips_equal_a_direct_computation(server, stored):
    kansas = server.get(
        "/v1/areas/state:20/series", params={"products": "lstm,lstm_percentile"}
    ).json()
    assert kansas["area"]["name"] == "Kansas"
    # the Census gives Kansas 213,100 km2 of land and water: the atlas decodes to it
    assert kansas["area"]["area_km2"] == pytest.approx(213_100, rel=0.005)
    _, geometry = areas.atlas_area(ATLAS_DIR, "state", "20")
    check_equal(kansas, direct(stored, geometry))
    riley = server.get(
        "/v1/areas/county:20161/series", params={"products": "lstm,lstm_percentile"}
    ).json()
    assert riley["area"]["name"] == "Riley" and 1 <= riley["area"]["cells"] <= 6
    _, geometry = areas.atlas_area(ATLAS_DIR, "county", "20161")
    check_equal(riley, direct(stored, geometry))


def test_csv_holds_the_json_values(server):
    params = {"products": "lstm,lstm_percentile", "end": "2010-02-28"}
    body = server.get("/v1/areas/county:20161/series", params=params).json()
    r = server.get("/v1/areas/county:20161/series", params={**params, "format": "csv"})
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(r.text)))
    assert list(rows[0]) == [
        "time",
        "lstm_mean",
        "lstm_percentile_mean",
        *(f"lstm_percentile_D{k}" for k in range(5)),
    ]
    assert [row["time"] for row in rows] == body["dates"]
    for row, mean, d2 in zip(
        rows, body["lstm"]["mean"], body["lstm_percentile"]["D2"], strict=True
    ):
        assert (row["lstm_mean"] == "") == (mean is None)
        if mean is not None:
            assert float(row["lstm_mean"]) == pytest.approx(mean, abs=1e-6)
            assert float(row["lstm_percentile_D2"]) == pytest.approx(d2, abs=1e-4)


RING = [[-99.0, 38.0], [-98.0, 38.0], [-98.0, 39.0], [-99.0, 39.0], [-99.0, 38.0]]


@pytest.mark.parametrize(
    ("request_", "status", "words"),
    [
        (  # a bow tie
            {
                "type": "Polygon",
                "coordinates": [[[-99, 38], [-98, 39], [-98, 38], [-99, 39], [-99, 38]]],
            },
            422,
            "Self-intersection",
        ),
        ({"type": "Polygon", "coordinates": [RING[:-1]]}, 422, "closed"),
        ({"type": "Point", "coordinates": [-98, 38]}, 422, "Polygon, MultiPolygon or Feature"),
        (
            {"type": "Polygon", "coordinates": [[[-99, 38], [-98, 95], [-98, 38], [-99, 38]]]},
            422,
            "EPSG:4326",
        ),
        (
            {
                "type": "Polygon",
                "coordinates": [[[-99 + k / 1000, 38] for k in range(300)] + [[-99, 38]]],
            },
            413,
            "more than 200 vertices",
        ),
        (
            {"type": "Polygon", "coordinates": [[[10, 45], [11, 45], [11, 46], [10, 45]]]},
            404,
            "covers no cell",
        ),
        ("county:99999", 404, "no county has FIPS code 99999"),
        ("state:123", 422, "state:FIPS (2 digits)"),
        ("country:US", 422, "county:FIPS"),
        ("state:20?products=lstm,noah,lstm_percentile", 413, "cell-days"),
        ("state:20?start=2030-01-01", 404, "outside the cube"),
    ],
)
def test_bad_areas_answer_one_clear_error(server, request_, status, words):
    if isinstance(request_, str):
        r = server.get(
            f"/v1/areas/{request_.replace('?', '/series?')}"
            if "?" in request_
            else f"/v1/areas/{request_}/series"
        )
    else:
        r = server.post("/v1/areas/series", json=request_)
    assert r.status_code == status, r.text[:300]
    assert words in r.json()["detail"]
    r = server.post("/v1/areas/series", content=b"{not json")
    assert r.status_code == 422 and "not JSON" in r.json()["detail"]


def test_drought_shapes_hold_each_cells_class(server, stored):
    day = 300
    r = server.get(f"/v1/drought/{DAYS[day].date()}.geojson", params={"product": "lstm_percentile"})
    assert r.status_code == 200 and r.headers["content-type"] == "application/geo+json"
    body = r.json()
    assert body["type"] == "FeatureCollection"
    features = {f["properties"]["class"]: f for f in body["features"]}
    assert list(features) == ["D0", "D1", "D2", "D3", "D4"]
    geometries = {name: shape(f["geometry"]) for name, f in features.items()}
    for geometry in geometries.values():
        assert geometry.is_valid
        for polygon in getattr(geometry, "geoms", [geometry]):  # RFC 7946: right-hand rule
            assert polygon.exterior.is_ccw and not any(r.is_ccw for r in polygon.interiors)
    names = list(geometries)
    for a in range(len(names)):
        for b in range(a + 1, len(names)):
            assert geometries[names[a]].intersection(geometries[names[b]]).area < 1e-9
    # the class of every region cell, from its stored percentile, holds its centre
    bounds = [(-np.inf, 2, "D4"), (2, 5, "D3"), (5, 10, "D2"), (10, 20, "D1"), (20, 30, "D0")]
    counts = dict.fromkeys(names, 0)
    for iy, ix in zip(*np.nonzero(stored["mask"]), strict=True):
        p = stored["percentile"][day, iy, ix]
        lat, lon = grid.rowcol_to_latlon(iy + stored["row0"], ix + stored["col0"])
        centre = shapely.Point(float(lon), float(lat))
        expected = next((name for low, high, name in bounds if low < p <= high), None)
        for name, geometry in geometries.items():
            assert geometry.contains(centre) == (name == expected), (p, name)
        if expected:
            counts[expected] += 1
    assert {n: f["properties"]["cells"] for n, f in features.items()} == counts
    assert all(counts.values())

    clipped = server.get(
        f"/v1/drought/{DAYS[day].date()}.geojson", params={"bbox": "-99,38,-97,39.5"}
    ).json()
    for feature in clipped["features"]:
        if feature["geometry"]:
            west, south, east, north = shape(feature["geometry"]).bounds
            assert west >= -99 and east <= -97 and south >= 38 and north <= 39.5
            full = geometries[feature["properties"]["class"]].intersection(box(-99, 38, -97, 39.5))
            assert shape(feature["geometry"]).symmetric_difference(full).area < 1e-9


@pytest.mark.parametrize(
    ("url", "status", "words"),
    [
        ("/v1/drought/2030-01-01.geojson", 404, "outside the cube"),
        ("/v1/drought/2010-13-01.geojson", 422, "not a YYYY-MM-DD day"),
        ("/v1/drought/2010-06-01.geojson?product=lstm", 422, "*_percentile"),
        ("/v1/drought/2010-06-01.geojson?product=smap_percentile", 422, "not available"),
        ("/v1/drought/2010-06-01.geojson?bbox=1,2,3", 422, "bbox"),
    ],
)
def test_bad_drought_shape_requests_answer_one_clear_error(server, url, status, words):
    r = server.get(url)
    assert r.status_code == status, r.text[:300]
    assert words in r.json()["detail"]


def direct_weekly(codes: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(Tuesdays, weekly means in codes, exact weekly percentiles) of (time, y, x) codes by the
    definition: a week is Wednesday..Tuesday inside the record, its mean over the days with a
    value; its percentile among the weekly means of the base period's (the whole record here)
    weeks whose Tuesday is within 3 calendar days of the year of its own."""
    ends = np.array([t for t, d in enumerate(DAYS) if d.day_of_week == 1 and t >= 6])
    values = np.where(codes == cubes.FILL, np.nan, codes)
    with np.errstate(invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        means = np.stack([np.nanmean(values[t - 6 : t + 1], axis=0) for t in ends])
    doy = np.array([calendar_day(DAYS[t]) for t in ends])
    percent = np.full(means.shape, np.nan)
    for w in range(len(ends)):
        distance = np.abs(doy - doy[w])
        base = means[np.minimum(distance, 365 - distance) <= 3]
        valid = ~np.isnan(base)
        below = (valid & (base < means[w])).sum(axis=0)
        equal = (valid & (base == means[w])).sum(axis=0)
        with np.errstate(invalid="ignore", divide="ignore"):
            percent[w] = np.where(
                np.isnan(means[w]), np.nan, 100 * (below + 0.5 * equal) / valid.sum(axis=0)
            )
    return ends, means, percent


def test_weekly_point_series_equal_the_definition(server, stored):
    ends, means, percent = direct_weekly(stored["codes"])
    iy, ix = (int(v[0]) for v in np.nonzero(stored["mask"]))
    lat, lon = grid.rowcol_to_latlon(iy + stored["row0"], ix + stored["col0"])
    r = server.get(
        "/v1/series",
        params={
            "lat": float(lat),
            "lon": float(lon),
            "products": "lstm,lstm_percentile",
            "period": "week",
        },
    )
    assert r.status_code == 200, r.text[:300]
    body = r.json()
    assert body["time"] == [str(DAYS[t].date()) for t in ends]
    assert all(DAYS[t].day_name() == "Tuesday" for t in ends)
    mean = means[:, iy, ix]
    np.testing.assert_allclose(as_array(body["lstm"]), np.rint(mean) / 10_000, atol=1e-9)
    got, exact = as_array(body["lstm_percentile"]), percent[:, iy, ix]
    assert (np.isnan(got) == np.isnan(exact)).all()
    ok = ~np.isnan(exact)
    assert ((exact[ok] - 1e-6 <= got[ok]) & (got[ok] < exact[ok] + 0.01)).all()
    assert {25, 75} <= set(got[ok])  # two base years: a week ranks 25th or 75th (50th if tied)
    csv_text = server.get(
        "/v1/series",
        params={
            "lat": float(lat),
            "lon": float(lon),
            "products": "lstm",
            "period": "week",
            "format": "csv",
            "end": "2010-02-28",
        },
    ).text
    rows = list(csv.DictReader(io.StringIO(csv_text)))
    assert [(r["time"], r["lstm"]) for r in rows[:2]] == [
        ("2010-01-12", str(body["lstm"][0])),
        ("2010-01-19", str(body["lstm"][1])),
    ]


def test_weekly_area_statistics_equal_a_direct_computation(server, stored):
    ends, means, percent = direct_weekly(stored["codes"])
    weekly_stored = {
        **stored,
        "lstm": np.rint(means) / 10_000,  # weekly means as the cells' codes
        "percentile": percent,
    }
    expected = direct(weekly_stored, shape(SQUARE))
    r = server.post(
        "/v1/areas/series",
        params={"products": "lstm,lstm_percentile", "period": "week"},
        json=SQUARE,
    )
    assert r.status_code == 200, r.text[:300]
    body = r.json()
    assert body["period"] == "week" and body["dates"] == [str(DAYS[t].date()) for t in ends]
    np.testing.assert_allclose(as_array(body["lstm"]["mean"]), expected["mean"], atol=1e-6)
    for name in ("D0", "D1", "D2", "D3", "D4"):
        np.testing.assert_allclose(
            as_array(body["lstm_percentile"][name]), expected[name], atol=1e-3
        )
    np.testing.assert_allclose(
        as_array(body["lstm_percentile"]["mean"]), expected["pct_mean"], atol=0.01
    )


def test_weekly_drought_shapes_hold_each_cells_weekly_class(server, stored):
    ends, _, percent = direct_weekly(stored["codes"])
    w = 30
    body = server.get(
        f"/v1/drought/{DAYS[ends[w]].date()}.geojson", params={"period": "week"}
    ).json()
    cells = {f["properties"]["class"]: f["properties"]["cells"] for f in body["features"]}
    p = percent[w][stored["mask"]]
    assert cells == {
        "D4": int((p <= 2).sum()),
        "D3": int(((p > 2) & (p <= 5)).sum()),
        "D2": int(((p > 5) & (p <= 10)).sum()),
        "D1": int(((p > 10) & (p <= 20)).sum()),
        "D0": int(((p > 20) & (p <= 30)).sum()),
    }
    assert sum(cells.values()) > 10


@pytest.mark.parametrize(
    ("url", "status", "words"),
    [
        (
            "/v1/drought/2010-06-02.geojson?period=week",
            422,
            "weeks end on Tuesdays (the week holding it ends 2010-06-08)",
        ),
        ("/v1/drought/2010-01-05.geojson?period=week", 404, "does not lie wholly in the cube"),
        (
            "/v1/areas/state:20/series?period=week&start=2010-01-01&end=2010-01-10",
            404,
            "no whole week",
        ),
        ("/v1/series?lat=38.5&lon=-97.5&period=week&end=2010-01-11", 404, "no whole week"),
        ("/v1/series?lat=38.5&lon=-97.5&period=month", 422, "period"),
    ],
)
def test_bad_weeks_answer_one_clear_error(server, url, status, words):
    r = server.get(url)
    assert r.status_code == status, r.text[:300]
    assert words in r.json()["detail"]


def test_weekly_batch_series_equal_each_points_weekly_series(server):
    """POST /v1/series with period=week answers each point's weeks as GET /v1/series does, in
    JSON and CSV."""
    points = [("a", 38.5, -97.5), ("b", 37.2, -99.1)]
    params = {"products": "lstm,lstm_percentile", "period": "week", "start": "2010-03-01"}
    body = "id,lat,lon\n" + "".join(f"{p},{lat},{lon}\n" for p, lat, lon in points)
    headers = {"Content-Type": "text/csv"}
    batch = server.post("/v1/series", params=params, content=body, headers=headers)
    assert batch.status_code == 200, batch.text[:300]
    rows = list(
        csv.DictReader(
            io.StringIO(
                server.post(
                    "/v1/series", params={**params, "format": "csv"}, content=body, headers=headers
                ).text
            )
        )
    )
    for (pid, lat, lon), got in zip(points, batch.json()["series"], strict=True):
        one = server.get("/v1/series", params={**params, "lat": lat, "lon": lon}).json()
        assert got["cell"]["id"] == pid and got["time"] == one["time"]
        assert DAYS[DAYS.searchsorted(one["time"][0])].day_name() == "Tuesday"
        assert got["lstm"] == one["lstm"] and got["lstm_percentile"] == one["lstm_percentile"]
        mine = [r for r in rows if r["id"] == pid]
        assert [r["time"] for r in mine] == one["time"]
        assert [float(r["lstm_percentile"] or "nan") for r in mine] == pytest.approx(
            as_array(one["lstm_percentile"]), nan_ok=True
        )


def direct_change(pct: np.ndarray, t: int, lag: int) -> float:
    return np.nan if t < lag else pct[t] - pct[t - lag]


def direct_onset(pct: np.ndarray, t: int) -> float:
    """1 if the day's percentile is below 20 and one of the 20 days before was above 40."""
    before = pct[max(t - 20, 0) : t]
    before = before[~np.isnan(before)]
    if np.isnan(pct[t]) or before.size == 0:
        return np.nan
    return float(pct[t] < 20 and before.max() > 40)


def test_flash_drought_series_and_areas_equal_the_definition(server, stored):
    iy, ix = (int(v[3]) for v in np.nonzero(stored["mask"]))
    lat, lon = grid.rowcol_to_latlon(iy + stored["row0"], ix + stored["col0"])
    products = "lstm_change_7d,lstm_change_14d,lstm_change_28d,lstm_onset"
    body = server.get(
        "/v1/series", params={"lat": float(lat), "lon": float(lon), "products": products}
    ).json()
    assert body["product_units"]["lstm_change_7d"] == "percentile points"
    pct = stored["percentile"][:, iy, ix]
    for lag in (7, 14, 28):
        expected = [direct_change(pct, t, lag) for t in range(len(DAYS))]
        got = as_array(body[f"lstm_change_{lag}d"])
        np.testing.assert_allclose(got, expected, atol=1e-5)  # 0.01 points as float32 text
    expected = np.array([direct_onset(pct, t) for t in range(len(DAYS))])
    got = as_array(body["lstm_onset"])
    np.testing.assert_array_equal(got, expected)
    assert (got == 1).sum() >= 5 and (got == 0).sum() > 500

    r = server.post(
        "/v1/areas/series", params={"products": "lstm_change_14d,lstm_onset"}, json=SQUARE
    )
    assert r.status_code == 200, r.text[:300]
    area = r.json()
    cells = list(zip(*np.nonzero(stored["mask"]), strict=True))
    for product, value in (
        ("lstm_change_14d", lambda p, t: direct_change(p, t, 14)),
        ("lstm_onset", direct_onset),  # its area mean: the share of the area in onset, 0..1
    ):
        field = np.full((len(DAYS), *stored["mask"].shape), np.nan)
        for y, x in cells:
            pct = stored["percentile"][:, y, x]
            field[:, y, x] = [value(pct, t) for t in range(len(DAYS))]
        expected = direct({**stored, "lstm": field}, shape(SQUARE))
        np.testing.assert_allclose(as_array(area[product]["mean"]), expected["mean"], atol=1e-6)


def test_flash_drought_maps_hold_each_cells_onset(server, stored):
    """A tile of lstm_onset in the onset colormap paints each cell's flag of the day."""
    onsets = [
        (t, iy, ix)
        for t in range(21, len(DAYS))
        for iy, ix in zip(*np.nonzero(stored["mask"]), strict=True)
        if direct_onset(stored["percentile"][:, iy, ix], t) == 1
    ]
    t, iy, ix = onsets[len(onsets) // 2]
    lat, lon = grid.rowcol_to_latlon(iy + stored["row0"], ix + stored["col0"])
    tms = morecantile.tms.get("WebMercatorQuad")
    tile = tms.tile(float(lon), float(lat), 9)
    png = server.get(
        f"/v1/tiles/lstm_onset/9/{tile.x}/{tile.y}.png",
        params={"date": str(DAYS[t].date()), "colormap": "onset"},
    )
    assert png.status_code == 200, png.text[:300]
    image = np.asarray(Image.open(io.BytesIO(png.content)).convert("RGBA"))
    left, bottom, right, top = tms.xy_bounds(tile)
    x, y = tms.xy(float(lon), float(lat))
    col, row = int((x - left) / (right - left) * 256), int((top - y) / (top - bottom) * 256)
    assert tuple(image[row, col]) == (0xB2, 0x18, 0x2B, 255)
    legend = server.get("/v1/legend", params={"colormap": "onset", "f": "json"}).json()
    assert [c["class"] for c in legend["classes"]] == ["none", "onset"]
    bad = server.get("/v1/tiles/lstm/9/0/0.png", params={"colormap": "onset"})
    assert bad.status_code == 422 and "_onset" in bad.json()["detail"]


def test_flash_drought_exports_equal_the_series(server, cube_path):
    """A bulk-job subset of the flash products holds what the series answer (points)."""
    cube = cubes.with_climatology(cubes.open_cube(cube_path), cube_path)
    products = ["lstm_change_7d", "lstm_change_28d", "lstm_onset"]
    request = {
        "points": [[38.5, -97.5], [39.2, -99.1]],
        "start": "2010-01-01",
        "end": "2011-12-31",
        "products": products,
        "format": "netcdf",
    }
    part = export.subset(cube, request).load()
    for k, (lat, lon) in enumerate(request["points"]):
        body = server.get(
            "/v1/series", params={"lat": lat, "lon": lon, "products": ",".join(products)}
        ).json()
        for p in products:
            np.testing.assert_allclose(
                part[p].isel(point=k).values, as_array(body[p]), atol=1e-5, equal_nan=True
            )


def test_weekly_tiles_paint_each_cells_weekly_value(server, stored):
    ends, means, _ = direct_weekly(stored["codes"])
    w = 40
    iy, ix = (int(v[5]) for v in np.nonzero(stored["mask"]))
    lat, lon = grid.rowcol_to_latlon(iy + stored["row0"], ix + stored["col0"])
    tms = morecantile.tms.get("WebMercatorQuad")
    tile = tms.tile(float(lon), float(lat), 9)
    day = str(DAYS[ends[w]].date())
    r = server.get(
        f"/v1/tiles/lstm/9/{tile.x}/{tile.y}.png",
        params={"date": day, "period": "week", "colormap": "greys", "rescale": "0,0.51"},
    )
    assert r.status_code == 200, r.text[:300]
    image = np.asarray(Image.open(io.BytesIO(r.content)).convert("RGBA"))
    left, bottom, right, top = tms.xy_bounds(tile)
    x, y = tms.xy(float(lon), float(lat))
    col, row = int((x - left) / (right - left) * 256), int((top - y) / (top - bottom) * 256)
    index = int(np.clip(np.rint(np.rint(means[w, iy, ix]) / 10_000 * 255 / 0.51), 0, 255))
    daily = server.get(
        f"/v1/tiles/lstm/9/{tile.x}/{tile.y}.png",
        params={"date": day, "colormap": "greys", "rescale": "0,0.51"},
    )
    assert daily.content != r.content  # the week's mean, not the day's value
    assert tuple(image[row, col]) == tuple(cmap.get("greys")[index])
    wednesday = server.get(
        f"/v1/tiles/lstm/9/{tile.x}/{tile.y}.png", params={"date": "2010-06-02", "period": "week"}
    )
    assert wednesday.status_code == 422 and "Tuesdays" in wednesday.json()["detail"]


def test_drought_shapes_download_as_a_geopackage(server, tmp_path):
    day = str(DAYS[300].date())
    geojson = server.get(f"/v1/drought/{day}.geojson").json()
    r = server.get(f"/v1/drought/{day}.gpkg")
    assert r.status_code == 200 and r.headers["content-type"] == "application/geopackage+sqlite3"
    assert f"drought_lstm_percentile_{day}.gpkg" in r.headers["content-disposition"]
    path = tmp_path / "drought.gpkg"
    path.write_bytes(r.content)
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA application_id").fetchone()[0] == 0x47504B47
    table = f"drought_lstm_percentile_{day.replace('-', '_')}"
    assert db.execute("SELECT table_name, data_type, srs_id FROM gpkg_contents").fetchall() == [
        (table, "features", 4326)
    ]
    assert db.execute("SELECT geometry_type_name FROM gpkg_geometry_columns").fetchone() == (
        "MULTIPOLYGON",
    )
    rows = db.execute(f'SELECT class, cells, geom FROM "{table}" ORDER BY fid').fetchall()
    db.close()
    assert [(c, n) for c, n, _ in rows] == [
        (f["properties"]["class"], f["properties"]["cells"]) for f in geojson["features"]
    ]
    for (_, _, blob), feature in zip(rows, geojson["features"], strict=True):
        if feature["geometry"] is None:
            assert blob is None
            continue
        assert blob[:2] == b"GP" and struct.unpack("<i", blob[4:8])[0] == 4326
        geometry = shapely.from_wkb(blob[8 + 32 :])
        assert geometry.geom_type == "MultiPolygon"
        assert geometry.symmetric_difference(shape(feature["geometry"])).area < 1e-12
        assert struct.unpack("<4d", blob[8:40]) == pytest.approx(
            [geometry.bounds[0], geometry.bounds[2], geometry.bounds[1], geometry.bounds[3]]
        )
    if shutil.which("ogrinfo"):  # GDAL's own reader, where Debian's gdal-bin is installed
        info = subprocess.run(
            ["ogrinfo", "-al", "-so", str(path)], capture_output=True, text=True, check=True
        ).stdout
        assert "using driver `GPKG' successful" in info
        assert "Geometry: Multi Polygon" in info and "Feature Count: 5" in info

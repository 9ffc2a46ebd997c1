"""WMTS 1.0.0 against a real uvicorn server, with GDAL's WMTS driver (rasterio's) as the client:
a tile GDAL reads through the capabilities is the XYZ tile of the same day, in both tile matrix
sets and both styles; KVP and REST answer the same; bad requests answer an OWS ExceptionReport."""

import io
import xml.etree.ElementTree as ET

import httpx
import morecantile
import numpy as np
import pytest
import rasterio
from PIL import Image

from tests import kansas
from tests.served import NO_REDIS, serving

pytestmark = pytest.mark.integration

NS = {"w": "http://www.opengis.net/wmts/1.0", "ows": "http://www.opengis.net/ows/1.1"}
DAY = "2010-06-01"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    store = kansas.build(tmp_path_factory.mktemp("wmts") / "kansas.zarr")
    env = {"SMAPX_CUBES": "[]", "SMAPX_REDIS_URL": NO_REDIS}
    with serving([store], env) as url, httpx.Client(base_url=url, timeout=60) as client:
        yield client


def rgba(png: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(png)).convert("RGBA"))


def gdal_tile(server, layer, style, matrix_set, tms_id, z, lon, lat) -> tuple:
    """(the tile GDAL reads through WMTS as RGBA, the tile's x, y) of the tile holding lon/lat."""
    tms = morecantile.tms.get(tms_id)
    tile = tms.tile(lon, lat, z)
    b = tms.xy_bounds(tile)
    url = f"{server.base_url}/v1/wmts/1.0.0/WMTSCapabilities.xml?time={DAY}"
    description = (
        f"<GDAL_WMTS><GetCapabilitiesUrl>{url}</GetCapabilitiesUrl><Layer>{layer}</Layer>"
        f"<Style>{style}</Style><TileMatrixSet>{matrix_set}</TileMatrixSet>"
        f"<TileMatrix>{z}</TileMatrix><DataWindow><UpperLeftX>{b.left!r}</UpperLeftX>"
        f"<UpperLeftY>{b.top!r}</UpperLeftY><LowerRightX>{b.right!r}</LowerRightX>"
        f"<LowerRightY>{b.bottom!r}</LowerRightY></DataWindow></GDAL_WMTS>"
    )
    with rasterio.open(description) as ds:
        assert (ds.width, ds.height, ds.count) == (256, 256, 4)
        return ds.read().transpose(1, 2, 0), tile.x, tile.y


@pytest.mark.parametrize(
    ("layer", "style", "matrix_set", "tms_id", "colormap"),
    [
        ("lstm", "default", "GoogleMapsCompatible", "WebMercatorQuad", "ylgnbu"),
        ("lstm_percentile", "drought", "GoogleMapsCompatible", "WebMercatorQuad", "drought"),
        ("noah", "default", "WGS1984Quad", "WGS1984Quad", "ylgnbu"),
    ],
)
def test_gdal_reads_through_wmts_the_xyz_tile_of_the_day(
    server, layer, style, matrix_set, tms_id, colormap
):
    got, x, y = gdal_tile(server, layer, style, matrix_set, tms_id, 6, -97.5, 38.5)
    r = server.get(
        f"/v1/tiles/{layer}/{tms_id}/6/{x}/{y}.png", params={"date": DAY, "colormap": colormap}
    )
    assert r.status_code == 200, r.text
    want = rgba(r.content)
    assert (want[..., 3] > 0).sum() > 10_000  # the tile holds the region, not just transparency
    np.testing.assert_array_equal(got, want)
    other = server.get(
        f"/v1/tiles/{layer}/{tms_id}/6/{x}/{y}.png",
        params={"date": "2010-06-02", "colormap": colormap},
    )
    assert not np.array_equal(rgba(other.content), want)  # so the day is the one asked for


def test_capabilities_list_a_layer_per_product_with_the_day_as_time(server):
    r = server.get("/v1/wmts/1.0.0/WMTSCapabilities.xml")
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/xml")
    root = ET.fromstring(r.content)
    layers = {
        layer.find("ows:Identifier", NS).text: layer
        for layer in root.iterfind("w:Contents/w:Layer", NS)
    }
    products = server.get("/v1/products").json()["products"]
    assert set(layers) == set(products) and "lstm_percentile" in layers
    for name, layer in layers.items():
        styles = [s.find("ows:Identifier", NS).text for s in layer.iterfind("w:Style", NS)]
        assert styles == (["default", "drought"] if name.endswith("_percentile") else ["default"])
        dimension = layer.find("w:Dimension", NS)
        assert dimension.find("ows:Identifier", NS).text == "Time"
        assert dimension.find("w:Default", NS).text == "2011-12-31"
        assert dimension.find("w:Value", NS).text == "2010-01-01/2011-12-31/P1D"
        links = [t.text for t in layer.iterfind("w:TileMatrixSetLink/w:TileMatrixSet", NS)]
        assert links == ["GoogleMapsCompatible", "WGS1984Quad"]
    sets = {
        s.find("ows:Identifier", NS).text: s
        for s in root.iterfind("w:Contents/w:TileMatrixSet", NS)
    }
    assert sets["WGS1984Quad"].find("ows:SupportedCRS", NS).text == "urn:ogc:def:crs:EPSG::4326"
    first = sets["WGS1984Quad"].find("w:TileMatrix", NS)
    assert first.find("w:TopLeftCorner", NS).text == "90 -180"  # latitude first in EPSG:4326
    assert (first.find("w:MatrixWidth", NS).text, first.find("w:MatrixHeight", NS).text) == (
        "2",
        "1",
    )
    kvp = server.get("/v1/wmts", params={"service": "WMTS", "request": "GetCapabilities"})
    assert kvp.content == r.content


def test_kvp_and_rest_tiles_are_the_same(server):
    rest = server.get(
        f"/v1/wmts/1.0.0/lstm_percentile/drought/{DAY}/GoogleMapsCompatible/6/24/14.png"
    )
    kvp = server.get(
        "/v1/wmts",
        params={
            "SERVICE": "WMTS",
            "REQUEST": "GetTile",
            "VERSION": "1.0.0",
            "LAYER": "lstm_percentile",
            "STYLE": "drought",
            "FORMAT": "image/png",
            "TILEMATRIXSET": "GoogleMapsCompatible",
            "TILEMATRIX": "6",
            "TILEROW": "24",
            "TILECOL": "14",
            "TIME": DAY,
        },
    )
    assert rest.status_code == kvp.status_code == 200
    assert rest.headers["content-type"] == "image/png" and rest.content == kvp.content
    xyz = server.get(
        "/v1/tiles/lstm_percentile/6/14/24.png", params={"date": DAY, "colormap": "drought"}
    )
    assert xyz.content == rest.content


REST = f"/v1/wmts/1.0.0/lstm/default/{DAY}/GoogleMapsCompatible"
KVP = "/v1/wmts?SERVICE=WMTS&REQUEST=GetTile&FORMAT=image/png"


@pytest.mark.parametrize(
    ("url", "status", "code", "locator", "words"),
    [
        (
            f"/v1/wmts/1.0.0/lstm/drought/{DAY}/GoogleMapsCompatible/6/24/14.png",
            400,
            "InvalidParameterValue",
            "Style",
            "not a style of layer lstm",
        ),
        (
            f"/v1/wmts/1.0.0/lstm/default/{DAY}/InspireCRS84Quad/6/24/14.png",
            400,
            "InvalidParameterValue",
            "TileMatrixSet",
            "unknown 'InspireCRS84Quad'",
        ),
        (
            "/v1/wmts/1.0.0/lstm/default/2030-01-01/GoogleMapsCompatible/6/24/14.png",
            400,
            "InvalidParameterValue",
            "Time",
            "outside the cube",
        ),
        (f"{REST}/13/24/14.png", 400, "InvalidParameterValue", "TileMatrix", "outside 0..12"),
        (f"{REST}/six/24/14.png", 400, "InvalidParameterValue", "TileMatrix", "whole number"),
        (f"{REST}/6/64/14.png", 400, "TileOutOfRange", "TileRow", "64 outside 0..63"),
        (f"{REST}/6/24/-1.png", 400, "TileOutOfRange", "TileCol", "-1 outside 0..63"),
        (
            f"/v1/wmts/1.0.0/smap/default/{DAY}/GoogleMapsCompatible/6/24/14.png",
            400,
            "InvalidParameterValue",
            "Layer",
            "not available",
        ),
        (f"{REST}/6/24/14.png?cube=nowhere", 400, "InvalidParameterValue", "cube", "not served"),
        (
            "/v1/wmts?SERVICE=WMS&REQUEST=GetCapabilities",
            400,
            "InvalidParameterValue",
            "Service",
            "expected WMTS",
        ),
        ("/v1/wmts?SERVICE=WMTS", 400, "MissingParameterValue", "Request", "GetCapabilities"),
        ("/v1/wmts?REQUEST=GetMap", 501, "OperationNotSupported", "GetMap", "not offered"),
        (
            "/v1/wmts?REQUEST=GetTile&LAYER=lstm&TILEMATRIXSET=WGS1984Quad",
            400,
            "MissingParameterValue",
            "TileMatrix",
            "GetTile needs TileMatrix, TileRow, TileCol",
        ),
        (
            f"{KVP}&LAYER=lstm&TILEMATRIXSET=WGS1984Quad&TILEMATRIX=2&TILEROW=4&TILECOL=1",
            400,
            "TileOutOfRange",
            "TileRow",
            "4 outside 0..3",
        ),
        (
            f"{KVP}&LAYER=lstm&TILEMATRIXSET=WGS1984Quad&TILEMATRIX=2&TILEROW=1&TILECOL=1"
            "&TIME=2010-13-01",
            400,
            "InvalidParameterValue",
            "Time",
            "not a YYYY-MM-DD day",
        ),
        (
            f"{KVP}&LAYER=lstm&TILEMATRIXSET=WGS1984Quad&TILEMATRIX=2&TILEROW=1&TILECOL=1"
            "&FORMAT=image/jpeg",
            400,
            "InvalidParameterValue",
            "Format",
            "only image/png",
        ),
        (
            "/v1/wmts/1.0.0/WMTSCapabilities.xml?time=2030-01-01",
            400,
            "InvalidParameterValue",
            "Time",
            "outside the cube",
        ),
    ],
)
def test_bad_wmts_requests_answer_an_ows_exception_report(
    server, url, status, code, locator, words
):
    """As WMTS 1.0.0 says (OWS Common 1.1's ExceptionReport, its codes' HTTP statuses), on the
    RESTful and the KVP encoding alike."""
    r = server.get(url)
    assert r.status_code == status, r.text[:300]
    assert r.headers["content-type"].startswith("application/xml")
    report = ET.fromstring(r.content)
    assert report.tag == f"{{{NS['ows']}}}ExceptionReport" and report.get("version") == "1.1.0"
    (exception,) = report.findall("ows:Exception", NS)
    assert (exception.get("exceptionCode"), exception.get("locator")) == (code, locator)
    assert words in exception.findtext("ows:ExceptionText", namespaces=NS)


def test_other_routes_keep_answering_problem_json(server):
    r = server.get("/v1/tiles/lstm/13/99999/0.png")
    assert r.status_code == 404 and r.headers["content-type"] == "application/problem+json"

"""The web map's area tools in a real browser (Debian chromium driven by Playwright) against a
real server of the Kansas cube: picking a state, then a county, or drawing a polygon charts the
area's mean and drought-class shares the API answers, and the day's drought shapes download."""

import json
import urllib.request
from pathlib import Path

import pytest

from tests import kansas
from tests.served import NO_REDIS, serving

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
VENDOR = ROOT / "service" / "static" / "vendor"
DAY = "2011-07-12"
VIEW = f"#cube=kansas&product=lstm_percentile&date={DAY}&view=38.5,-98,6"


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    if not Path(CHROMIUM).exists():
        pytest.skip(f"Debian chromium not at {CHROMIUM} (make browser installs it)")
    if not (VENDOR / "counties-10m.json").exists():
        pytest.skip("web-map assets not in service/static/vendor (make install)")
    store = kansas.build(tmp_path_factory.mktemp("webmap-areas") / "kansas.zarr")
    with serving([store], {"SMAPX_CUBES": "[]", "SMAPX_REDIS_URL": NO_REDIS}) as url:
        yield url


@pytest.fixture(scope="module")
def page(site):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        context = browser.new_context(
            viewport={"width": 1200, "height": 800}, accept_downloads=True
        )
        page = context.new_page()
        errors = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.goto(site + "/" + VIEW)
        page.wait_for_selector("body[data-areas='ready']", timeout=30_000)
        page.click("#areas summary")
        yield page
        browser.close()
        assert errors == []


def api(site: str, path: str) -> dict:
    with urllib.request.urlopen(site + path, timeout=30) as r:
        return json.load(r)


def charted(page) -> dict:
    page.wait_for_function(
        "window.smapxAreas.plot && !document.getElementById('area-panel').hidden"
    )
    return page.evaluate(
        "() => ({ title: document.getElementById('area-title').textContent,"
        " series: window.smapxAreas.plot.series.map((s) => s.label),"
        " data: window.smapxAreas.plot.data.map((d) => Array.from(d)),"
        " csv: document.getElementById('area-csv').getAttribute('href') })"
    )


def test_a_drawn_polygon_is_charted_and_the_day_s_shapes_download(site, page):
    page.click("#area-draw")
    corners = [(38.0, -99.0), (38.0, -97.0), (39.5, -97.0)]
    for lat, lon in corners:
        x, y = page.evaluate(
            "([lat, lon]) => { const p = window.smapxMap.latLngToContainerPoint([lat, lon]);"
            " const r = document.getElementById('map').getBoundingClientRect();"
            " return [p.x + r.left, p.y + r.top]; }",
            [lat, lon],
        )
        page.mouse.click(x, y)
    with page.expect_response(lambda r: r.url.split("?")[0].endswith("/v1/areas/series")) as sent:
        page.mouse.dblclick(x, y)
    polygon = json.loads(sent.value.request.post_data)
    assert polygon["type"] == "Polygon" and len(polygon["coordinates"][0]) >= 4
    page.wait_for_function("document.getElementById('area-title').textContent.startsWith('The')")
    chart = charted(page)
    assert chart["data"][1] == sent.value.json()["lstm"]["mean"]

    with page.expect_download() as download:
        page.click("#drought-shapes")
    assert download.value.suggested_filename == f"drought-lstm_percentile-{DAY}.geojson"
    shapes = json.loads(Path(download.value.path()).read_text())
    assert [f["properties"]["class"] for f in shapes["features"]] == ["D0", "D1", "D2", "D3", "D4"]
    assert shapes["features"][0]["properties"]["date"] == DAY


def test_a_state_then_a_county_chart_what_the_api_answers(site, page):
    with page.expect_response(lambda r: "/v1/areas/state:20/series" in r.url):
        page.select_option("#area-state", label="Kansas")
    chart = charted(page)
    assert chart["title"].startswith("Kansas")
    assert chart["series"][1:] == ["lstm mean (m³/m³)", "D0 %", "D1 %", "D2 %", "D3 %", "D4 %"]
    query = "products=lstm%2Clstm_percentile&cube=kansas&start=2010-07-12&end=2011-07-12"
    body = api(site, f"/v1/areas/state:20/series?{query}")
    assert chart["data"][1] == body["lstm"]["mean"]
    assert chart["data"][2] == body["lstm_percentile"]["D0"]
    assert chart["data"][6] == body["lstm_percentile"]["D4"]
    assert chart["csv"] == f"/v1/areas/state:20/series?{query}&format=csv"

    page.wait_for_function("document.querySelectorAll('#area-county option').length > 100")
    with page.expect_response(lambda r: "/v1/areas/county:20161/series" in r.url):
        page.select_option("#area-county", label="Riley")
    page.wait_for_function("document.getElementById('area-title').textContent.startsWith('Riley')")
    riley = api(site, f"/v1/areas/county:20161/series?{query}")
    assert charted(page)["data"][1] == riley["lstm"]["mean"]

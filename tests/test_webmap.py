"""The web map in a real browser (Debian chromium driven by Playwright) against a real server:
the offline base map's vector layers are drawn over the product, the readout shows the value
under the cursor, the date picker, step buttons and animation move the tiles, the URL restores a
view, and the chart of a clicked cell sits below the map and exports what it shows. Screenshots
are saved under artifacts/ for people to look at."""

import csv
import io
import json
import os
import re
import urllib.request
from pathlib import Path

import pytest

from model.evaluation import report
from tests.served import POINT, build_cube, serving, start_server, start_worker

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = ROOT / "artifacts"
CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
VENDOR = ROOT / "service" / "static" / "vendor"
LAST_DAY = "2016-12-30"  # the test cube's last day (tests.test_service.DAYS)


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    if not Path(CHROMIUM).exists():
        pytest.skip(f"Debian chromium not at {CHROMIUM} (make browser installs it)")
    if not (VENDOR / ".installed").exists():
        pytest.skip("web-map assets not in service/static/vendor (make install runs npm ci)")
    store = tmp_path_factory.mktemp("webmap") / "extended.zarr"
    build_cube(store)
    with serving([store], {"SMAPX_CUBES": "[]"}) as url:
        yield url


@pytest.fixture(scope="module")
def browser(site):
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture
def page(browser):
    """A fresh page; JavaScript errors and requests that left the server fail the test."""
    context = browser.new_context(viewport={"width": 1200, "height": 800}, accept_downloads=True)
    page = context.new_page()
    errors, outside = [], []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on(
        "request",
        lambda r: (
            None
            if r.url.startswith(("http://127.0.0.1", "data:", "blob:"))
            else outside.append(r.url)
        ),
    )
    yield page
    context.close()
    assert errors == []
    assert outside == []


def api(site: str, path: str):
    with urllib.request.urlopen(site + path, timeout=10) as r:
        return json.load(r)


def open_map(page, url: str) -> None:
    with page.expect_response(lambda r: "/v1/tiles/" in r.url and r.status == 200, timeout=30_000):
        page.goto(url)
    page.wait_for_selector("body[data-basemap='ready']", timeout=30_000)
    page.wait_for_function("document.querySelectorAll('.leaflet-tile-loaded').length > 0")


def screen_point(page, lat: float, lon: float) -> tuple[float, float]:
    return page.evaluate(
        "([lat, lon]) => { const p = window.smapxMap.latLngToContainerPoint([lat, lon]);"
        " const r = document.getElementById('map').getBoundingClientRect();"
        " return [p.x + r.left, p.y + r.top]; }",
        [lat, lon],
    )


def expect_tile(page, day: str):
    """The next PNG tile of the map's product for `day`."""
    return page.expect_response(
        lambda r: "/v1/tiles/lstm/" in r.url and f"date={day}&" in r.url and r.status == 200
    )


def tile_date(response) -> str:
    return re.search(r"date=([0-9-]+)", response.url).group(1)


# The fewest loaded tiles of the shown product layers at any moment over `ms` milliseconds: 0 means
# the map showed bare base map at some point (an old frame dropped before the new one loaded).
FEWEST_SHOWN_TILES = """(ms) => new Promise((resolve) => {
  let fewest = Infinity;
  const count = () => [...document.querySelectorAll('.leaflet-tile-pane .leaflet-layer')]
    .filter((layer) => Number(getComputedStyle(layer).opacity) > 0.5)
    .reduce((n, layer) => n + layer.querySelectorAll('img.leaflet-tile-loaded').length, 0);
  const timer = setInterval(() => { fewest = Math.min(fewest, count()); }, 10);
  setTimeout(() => { clearInterval(timer); resolve(fewest); }, ms);
})"""


CENTRE_AND_ZOOM = """() => { const c = window.smapxMap.getCenter();
  return [c.lat, c.lng, window.smapxMap.getZoom()]; }"""
SHOWN_TILE_URLS = """() => [...document.querySelectorAll('.leaflet-tile-pane .leaflet-layer')]
  .filter((layer) => Number(getComputedStyle(layer).opacity) > 0.5)
  .flatMap((layer) => [...layer.querySelectorAll('img.leaflet-tile-loaded')].map((i) => i.src))"""


def uncovered(element) -> bool:
    """Whether the element is the one a click at its centre reaches."""
    return element.evaluate(
        "(e) => { const b = e.getBoundingClientRect();"
        " return e.contains(document.elementFromPoint(b.x + b.width / 2, b.y + b.height / 2)); }"
    )


def test_colours_are_the_reports():
    text = (ROOT / "service" / "static" / "app.js").read_text()
    colours = dict(
        re.findall(r'(\w+): "(#[0-9a-f]{6})"', re.search(r"COLORS = \{(.*?)\}", text)[1])
    )
    expected = {p: report.COLORS[p] for p in ("smap", "lstm", "noah", "lsm2")}
    assert colours == {**expected, "fused": report.COLORS[report.WEIGHTED]}


def test_base_map_layers_and_readout(site, page):
    open_map(page, site)
    assert page.input_value("#date") == LAST_DAY  # the latest day with data
    x, y = screen_point(page, *POINT)
    page.mouse.move(x, y)
    page.wait_for_function("document.getElementById('readout').textContent.includes('m³/m³')")
    readout = page.inner_text("#readout")
    lat, lon = (float(v) for v in re.findall(r"([0-9.]+)° [NW]", readout))
    assert abs(lat - POINT[0]) < 0.05 and abs(-lon - POINT[1]) < 0.05
    expected = api(
        site, f"/v1/series?lat={lat}&lon={-lon}&start={LAST_DAY}&end={LAST_DAY}&products=lstm"
    )["lstm"][0]
    assert f"lstm {expected:.3f} m³/m³" in readout
    # Zoomed out over the plains: coasts, borders, states, lakes and names are all in view.
    # braces: setView returns the map, and serialising that object graph back took 24 s
    page.evaluate("() => { window.smapxMap.setView([38, -92], 5, { animate: false }); }")
    page.wait_for_function("document.querySelectorAll('.leaflet-labels-pane .place').length > 10")
    lines = page.evaluate(
        "() => Object.fromEntries(['coast', 'country', 'state', 'lake', 'land'].map((c) =>"
        " [c, [...document.querySelectorAll('path.' + c)].map((p) => p.getAttribute('d').length)"
        ".reduce((a, b) => a + b, 0)]))"
    )
    assert all(length > 200 for length in lines.values()), lines
    z = page.evaluate(
        "() => ['land', 'tilePane', 'lines', 'labels'].map((n) =>"
        " +getComputedStyle(window.smapxMap.getPane(n)).zIndex)"
    )
    assert z[0] < z[1] < z[2] < z[3]  # borders and names are drawn above the product tiles
    border = page.evaluate(
        "() => [...document.querySelectorAll('path.country')].some((p) => {"
        " const b = p.getBoundingClientRect(); return b.width > 50 && b.height > 20; })"
    )
    assert border

    places = page.locator(".leaflet-labels-pane .place").all_inner_texts()
    assert {"Chicago", "Dallas", "Kansas City"} <= set(places)
    assert "SimpleMaps (CC BY 4.0)" in page.inner_text(".leaflet-control-attribution")
    page.screenshot(path=str(ARTIFACTS / "webmap-basemap.png"))


def test_date_picker_steps_and_play_move_the_map(site, page):
    open_map(page, site)
    with expect_tile(page, "2015-06-01"):
        page.fill("#date", "2015-06-01")
        page.dispatch_event("#date", "change")
    with expect_tile(page, "2015-06-08"):
        page.click("button[data-step='1'][data-unit='week']")
    assert page.input_value("#date") == "2015-06-08"
    with expect_tile(page, "2015-05-08"):
        page.click("button[data-step='-1'][data-unit='month']")
    assert "date=2015-05-08" in page.url
    page.locator("#map").focus()
    with expect_tile(page, "2015-05-09"):
        page.keyboard.press("ArrowRight")
    with expect_tile(page, "2015-05-02"):
        page.keyboard.press("Shift+ArrowLeft")
    with expect_tile(page, "2015-06-02"):
        page.keyboard.press("PageUp")

    page.select_option("#play-window", "30")
    page.select_option("#play-unit", "week")
    seen = set()
    page.on("request", lambda r: seen.add(tile_date(r)) if "/v1/tiles/" in r.url else None)
    page.click("#play")
    page.wait_for_function("document.getElementById('date').value !== '2015-06-02'")
    shown = page.evaluate(FEWEST_SHOWN_TILES, 3000)
    page.click("#play")
    assert page.inner_text("#play").endswith("Play")
    assert page.input_value("#date") == "2015-06-02"  # Pause goes back to the user's day
    assert shown > 0  # every frame replaced the one before only once its tiles were in
    # A 30-day window stepped by weeks: 2015-05-03, 05-10, 05-17, 05-24, 05-31 and the end day.
    assert (
        {"2015-05-03", "2015-05-10"}
        <= seen
        <= {
            "2015-05-03",
            "2015-05-10",
            "2015-05-17",
            "2015-05-24",
            "2015-05-31",
            "2015-06-02",
        }
    )


def test_chart_below_the_map_exports_what_it_shows(site, page):
    open_map(page, site)
    x, y = screen_point(page, *POINT)
    with page.expect_response(lambda r: "/v1/series" in r.url and "products=smap" in r.url):
        page.mouse.click(x, y)
    page.wait_for_selector("body[data-chart='5']", timeout=15_000)
    title = page.inner_text("#chart-title")
    assert re.search(r"29\.\d+° N, 10[23]\.\d+° W", title), title
    map_box = page.locator("#map").bounding_box()
    chart_box = page.locator("#chart-panel").bounding_box()
    assert (
        map_box["y"] + map_box["height"] <= chart_box["y"] + 1
    )  # the chart does not cover the map
    assert map_box["height"] > 450
    legend = page.locator("#chart .u-legend th").all_inner_texts()
    assert [name.strip() for name in legend[1:]] == ["smap", "lstm", "noah", "lsm2", "fused"]
    page.screenshot(path=str(ARTIFACTS / "webmap-chart.png"))

    with page.expect_download() as download:
        page.click("#export-csv")
    text = Path(download.value.path()).read_text()
    rows = list(csv.reader(io.StringIO(text.split("\n", 1)[1])))
    assert rows[0] == ["time", "smap", "lstm", "noah", "lsm2", "fused"]
    days = [r[0] for r in rows[1:] if r]
    assert days[-1] == LAST_DAY and len(days) == 366  # the last year by default
    cell = api(site, f"/v1/series?lat={POINT[0]}&lon={POINT[1]}&products=lstm,noah&start={days[0]}")
    assert [float(r[2]) for r in rows[1:4]] == cell["lstm"][:3]
    assert [float(r[3]) for r in rows[1:4]] == cell["noah"][:3]

    page.click("#chart-window button[data-years='all']")
    with page.expect_download() as download:
        page.click("#export-csv")
    assert len(Path(download.value.path()).read_text().splitlines()) == 2 + 3 * 365
    with page.expect_download() as download:
        page.click("#export-png")
    assert Path(download.value.path()).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_url_restores_a_view(site, page):
    view = "product=noah&date=2015-03-10&colormap=viridis&range=0,0.4&view=30.5,-100.5,6"
    with page.expect_response(lambda r: "/v1/tiles/noah/" in r.url) as tile:
        page.goto(f"{site}/#cube=extended&{view}&point=29,-103&window=all")
    assert "date=2015-03-10" in tile.value.url and "colormap=viridis" in tile.value.url
    assert "rescale=0,0.4" in tile.value.url
    page.wait_for_selector("body[data-basemap='ready']", timeout=30_000)
    page.wait_for_selector("body[data-chart='5']", timeout=15_000)
    assert page.input_value("#product") == "noah"
    assert page.input_value("#date") == "2015-03-10"
    center, zoom = page.evaluate(
        "() => { const c = window.smapxMap.getCenter(); "
        "return [[c.lat, c.lng], window.smapxMap.getZoom()]; }"
    )
    assert zoom == 6 and abs(center[0] - 30.5) < 0.05 and abs(center[1] + 100.5) < 0.05
    # the labels are redrawn when the zoom animation to the restored view ends
    page.locator(".leaflet-labels-pane .place", has_text="San Antonio").wait_for(timeout=10_000)
    places = page.locator(".leaflet-labels-pane .place").all_inner_texts()
    assert "San Antonio" in places and "Austin" in places
    page.wait_for_function("document.querySelectorAll('.leaflet-tile-loaded').length > 0")
    page.wait_for_timeout(300)
    page.screenshot(path=str(ARTIFACTS / "webmap-restored.png"))


@pytest.mark.parametrize("spread", [0.01, 0.0])
def test_chart_draws_a_band_where_there_is_spread_and_percentiles_on_their_own(site, page, spread):
    """Where /v1/products lists lstm_spread and lstm_percentile, the chart of lstm's family
    draws the values with the spread as a band around lstm (none where the spread is zero, as
    of a one-member model), and the percentiles on a panel of their own a click away; the
    responses of the real server are extended here with such series (its cube has none)."""

    def products(route):
        body = route.fetch().json()
        extra = {"units": "", "description": ""}
        body["cubes"]["extended"]["products"] |= {"lstm_spread": extra, "lstm_percentile": extra}
        route.fulfill(json=body)

    def series(route):
        derived = ("lstm_spread", "lstm_percentile")
        url = route.request.url
        asked = re.search(r"products=([^&]+)", url).group(1).split(",")
        plain = [p for p in asked if p not in derived]
        body = route.fetch(url=url.replace(",".join(asked), ",".join(plain or ["lstm"]))).json()
        if "lstm_spread" in asked:
            body["lstm_spread"] = [spread] * len(body["time"])
        if "lstm_percentile" in asked:
            body["lstm_percentile"] = [50.0] * len(body["time"])
        route.fulfill(json=body)

    page.route("**/v1/products", products)
    page.route("**/v1/series?*", series)
    open_map(page, site)
    x, y = screen_point(page, *POINT)
    page.mouse.click(x, y)
    lines = ["smap", "lstm", "noah", "lsm2", "fused"]
    band = ["lstm +1 sd", "lstm −1 sd"] if spread else []
    page.wait_for_selector(f"body[data-chart='{len(lines) + len(band)}']", timeout=15_000)
    legend = [t.strip() for t in page.locator("#chart .u-legend th").all_inner_texts()]
    assert legend[1:] == lines + band
    assert page.locator("#chart-kind button").all_inner_texts() == ["values", "percentiles"]
    with page.expect_download() as download:
        page.click("#export-csv")
    header = Path(download.value.path()).read_text().splitlines()[1]
    assert header == "time," + ",".join(lines + (["lstm_spread"] if spread else []))
    page.screenshot(path=str(ARTIFACTS / f"webmap-band-{spread}.png"))

    page.click("#chart-kind button[data-kind='percentile']")
    page.wait_for_selector("body[data-chart='1']", timeout=15_000)
    legend = [t.strip() for t in page.locator("#chart .u-legend th").all_inner_texts()]
    assert legend[1:] == ["lstm_percentile"]
    assert page.evaluate("() => window.smapxChart().axes[1].label") == "percentile"


@pytest.fixture(scope="module")
def jobs_site(tmp_path_factory, redis_url):
    """A server with a worker behind it, so that bulk jobs run."""
    folder = tmp_path_factory.mktemp("webmap-jobs")
    store = folder / "extended.zarr"
    build_cube(store)
    env = {
        "SMAPX_REDIS_URL": redis_url,
        "SMAPX_JOBS_DIR": str(folder / "results"),
        "SMAPX_CUBES": "[]",
        "SMAPX_TORCH_THREADS": "1",
    }
    worker = start_worker(env, f"webmap-test-{os.getpid()}@%h")
    server, url = start_server([store], env)
    try:
        yield url
    finally:
        for proc in (server, worker):
            proc.terminate()
        for proc in (server, worker):
            proc.wait(30)


def test_download_of_the_cells_in_view_runs_as_a_bulk_job(jobs_site, page):
    open_map(page, jobs_site)
    page.click("#download summary")
    page.wait_for_function("document.getElementById('dl-end').value !== ''")  # on 'toggle'
    assert page.input_value("#dl-end") == LAST_DAY
    page.fill("#dl-start", "2015-06-01")
    page.fill("#dl-end", "2015-06-30")
    page.select_option("#dl-format", "csv")
    page.click("#dl-submit")
    link = page.wait_for_selector("#dl-status a", timeout=90_000)
    assert "done" in page.inner_text("#dl-status")
    page.screenshot(path=str(ARTIFACTS / "webmap-download.png"))
    text = page.request.get(link.evaluate("a => a.href")).text()  # links are relative
    rows = list(csv.DictReader(io.StringIO(text)))
    cells = {(r["lat"], r["lon"]) for r in rows}
    assert len(rows) == 30 * len(cells) and len(cells) > 30  # every cell of the cube in view
    row = rows[0]
    expected = api(
        jobs_site,
        f"/v1/series?lat={row['lat']}&lon={row['lon']}&start={row['time']}&end={row['time']}",
    )["lstm"][0]
    assert float(row["lstm"]) == pytest.approx(expected, abs=1e-4)


@pytest.fixture(scope="module")
def demo_site(browser, demo_cube):
    """The demo's cube (the demo's own stages over a small region) behind a real server."""
    with serving([demo_cube], {"SMAPX_CUBES": "[]"}) as url:
        yield url


def legend_classes(page) -> list[str]:
    return [t.strip() for t in page.locator("#legend li").all_inner_texts()]


def test_the_drought_analysts_path_on_the_demo_cube(demo_site, page, browser):
    """Open the map, choose lstm_percentile and drought, read the labelled class legend, share
    the URL and open it in a new page (same view, same tiles), click a cell and read the chart:
    the percentiles of the map's family, lines toggled from the legend, values a click away."""
    open_map(page, demo_site)
    extent = api(demo_site, "/v1/products")["extent"]
    corner = screen_point(page, extent["north"], extent["east"])
    panel = page.locator("#panel").bounding_box()
    assert corner[0] < panel["x"] or corner[1] > panel["y"] + panel["height"]  # region in view

    with page.expect_response(lambda r: "/v1/tiles/lstm_percentile/" in r.url and r.ok):
        page.select_option("#product", "lstm_percentile")
    page.wait_for_selector("#legend .ticks span")
    ticks = page.locator("#legend .ticks span")
    assert ticks.all_inner_texts() == ["0", "20", "40", "60", "80", "100"]
    bar = page.locator("#legend .bar").bounding_box()
    for k, value in enumerate(range(0, 101, 20)):  # each label centred where its value is
        box = ticks.nth(k).bounding_box()
        centre = box["x"] + box["width"] / 2
        assert abs(centre - (bar["x"] + bar["width"] * value / 100)) < 2, (value, centre, bar)
    assert "percentile" in page.inner_text("#legend .units")
    assert page.inner_text("#range-units") == "%"

    with page.expect_response(lambda r: "colormap=drought" in r.url and r.ok):
        page.select_option("#colormap", "drought")
    page.wait_for_selector("#legend li")
    classes = legend_classes(page)
    assert len(classes) == 11 and classes[2].split() == ["D2", "severe", "drought"]
    assert page.locator("#range-field").is_hidden()  # classes have no range
    # the drought frame replaces the shown one only once its tiles are in
    page.wait_for_function(
        f"() => {{ const shown = ({SHOWN_TILE_URLS})();"
        " return shown.length > 0 && shown.every((u) => u.includes('colormap=drought')); }"
    )
    page.screenshot(path=str(ARTIFACTS / "analyst-drought.png"))
    shared = page.url
    assert "product=lstm_percentile" in shared and "colormap=drought" in shared
    first_tiles = set(page.evaluate(SHOWN_TILE_URLS))
    view = page.evaluate(CENTRE_AND_ZOOM)

    other = browser.new_context(viewport={"width": 1200, "height": 800}).new_page()
    try:
        with other.expect_response(lambda r: "colormap=drought" in r.url and r.ok):
            other.goto(shared)
        other.wait_for_selector("#legend li")
        other.wait_for_function("document.querySelectorAll('.leaflet-tile-loaded').length > 0")
        assert other.input_value("#product") == "lstm_percentile"
        assert other.input_value("#colormap") == "drought"
        assert other.input_value("#date") == page.input_value("#date")
        assert legend_classes(other) == classes
        assert other.evaluate(CENTRE_AND_ZOOM) == pytest.approx(view, abs=1e-3)
        other.wait_for_function(  # the frame shown, not one still loading hidden beneath it
            f"(z) => ({SHOWN_TILE_URLS})().filter((u) => u.includes(`/${{z}}/`)).length >= 4",
            arg=view[2],
        )
        tiles = set(other.evaluate(SHOWN_TILE_URLS))
        zoomed = {t for t in tiles if f"/{view[2]}/" in t}
        assert len(zoomed & first_tiles) >= 4  # the same tiles of the same day and colours
        assert {t.split("?")[1] for t in tiles} == {t.split("?")[1] for t in first_tiles}
        other.screenshot(path=str(ARTIFACTS / "analyst-shared.png"))
    finally:
        other.context.close()

    lat, lon = 37.5, -97.5
    x, y = screen_point(page, lat, lon)
    with page.expect_response(lambda r: "/v1/series" in r.url and "lstm_percentile" in r.url):
        page.mouse.click(x, y)
    family = ["lstm_percentile", "noah_percentile", "lsm2_percentile", "fused_percentile"]
    page.wait_for_selector(f"body[data-chart='{len(family)}']", timeout=15_000)
    legend = [t.strip() for t in page.locator("#chart .u-legend th").all_inner_texts()]
    assert legend[1:] == family
    page.locator("#chart .u-legend th", has_text="noah_percentile").click()  # hides the line
    assert page.evaluate("() => window.smapxChart().series[2].show") is False

    # read the chart: the value under the cursor is the API's for that day
    over = page.locator("#chart .u-over").bounding_box()
    page.mouse.move(over["x"] + over["width"] * 0.5, over["y"] + over["height"] * 0.5)
    values = page.locator("#chart .u-legend td.u-value").all_inner_texts()
    day, shown = values[0].strip(), values[1].strip()
    assert re.fullmatch(r"\d{4}-\d\d-\d\d", day), values
    cell = api(
        demo_site, f"/v1/series?lat={lat}&lon={lon}&start={day}&end={day}&products=lstm_percentile"
    )
    assert shown == f"{cell['lstm_percentile'][0]:.0f}"
    panel = page.locator("#panel").bounding_box()
    assert panel["y"] + panel["height"] <= page.locator("#chart-panel").bounding_box()["y"] + 1
    for tool in page.locator("#chart-panel header button").all():  # none under the panel
        assert uncovered(tool), tool.inner_text()
    page.screenshot(path=str(ARTIFACTS / "analyst-chart.png"))

    page.click("#chart-kind button[data-kind='value']")
    page.wait_for_selector("body[data-chart='5']", timeout=15_000)  # one member: no band
    legend = [t.strip() for t in page.locator("#chart .u-legend th").all_inner_texts()]
    assert legend[1:] == ["smap", "lstm", "noah", "lsm2", "fused"]


def test_the_map_follows_a_growing_cube(site, page):
    """The map re-reads the catalogue, so days a growing cube adds can be chosen without a
    reload (the catalogue's answer is moved a day on here; the page's clock is run forward)."""
    grown = {}

    def products(route):
        body = route.fetch().json()
        for served in body["cubes"].values():
            served["extent"] |= grown
        route.fulfill(json=body)

    page.clock.install()
    page.route("**/v1/products", products)
    open_map(page, site)
    assert page.get_attribute("#date", "max") == LAST_DAY
    grown["end"] = "2016-12-31"
    with page.expect_request("**/v1/products"):
        page.clock.run_for(31_000)
    page.wait_for_function("document.getElementById('date').max === '2016-12-31'")

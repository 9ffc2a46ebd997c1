"""The web map in a real browser (Debian chromium driven by Playwright): the page loads, a tile
request succeeds, a click on a region cell draws its series; a screenshot is saved under
artifacts/ for people to look at."""

from pathlib import Path

import pytest

from tests.test_service import POINT, build_cube, start_server

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
VENDOR = ROOT / "service" / "static" / "vendor" / "leaflet.js"


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    if not Path(CHROMIUM).exists():
        pytest.skip(f"Debian chromium not at {CHROMIUM} (make browser installs it)")
    if not VENDOR.exists():
        pytest.skip(
            "web-map JS not installed into service/static/vendor (make install runs npm ci)"
        )
    store = tmp_path_factory.mktemp("webmap") / "extended.zarr"
    build_cube(store)
    proc, url = start_server([store], {"SMAPX_CUBES": "[]"})
    try:
        yield url
    finally:
        proc.terminate()
        proc.wait(20)


def test_map_loads_tiles_and_click_draws_chart(site):
    from playwright.sync_api import sync_playwright

    artifacts = ROOT / "artifacts"
    artifacts.mkdir(exist_ok=True)
    errors = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            page = browser.new_page(viewport={"width": 1200, "height": 800})
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            with page.expect_response(
                lambda r: "/v1/tiles/lstm/" in r.url and r.status == 200, timeout=30_000
            ) as tile:
                page.goto(site)
            assert tile.value.headers["content-type"] == "image/png"
            page.wait_for_function("document.querySelectorAll('.leaflet-tile-loaded').length > 0")
            x, y = page.evaluate(
                "([lat, lon]) => { const p = window.smapxMap"
                ".latLngToContainerPoint([lat, lon]); return [p.x, p.y]; }",
                list(POINT),
            )
            with page.expect_response(lambda r: "/v1/series" in r.url) as series:
                page.mouse.click(x, y)
            assert series.value.status == 200
            page.wait_for_selector("body[data-chart='5']", timeout=15_000)
            assert page.locator("#chart canvas").count() >= 1
            assert page.locator(".u-legend th").count() == 6
            assert "row 104, col 206" in page.inner_text("#message")
            page.wait_for_timeout(300)
            page.screenshot(path=str(artifacts / "webmap.png"))
        finally:
            browser.close()
    assert errors == []
    assert (artifacts / "webmap.png").stat().st_size > 10_000

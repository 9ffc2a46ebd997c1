"""The service follows a growing cube: a real uvicorn server, polled from a thread while the cube
grows day by day, shows each new end within SMAPX_RELOAD_SECONDS, never answers 5xx, and never
answers a day that is not the grown cube's; series and tiles carry validators and answer 304."""

import json
import threading
import time
import urllib.error
import urllib.request

import numpy as np
import pandas as pd
import pytest

from model.product import cube as cubes
from model.production.extend import extend
from model.training import checkpoint
from tests.served import start_server
from tests.twins import GROWTH_DAYS, START, day

pytestmark = pytest.mark.integration

RELOAD_SECONDS = 1


def get(url: str, headers: dict | None = None):
    """(status, headers (case-insensitive), body)."""
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:
            return answer.status, answer.headers, answer.read()
    except urllib.error.HTTPError as error:
        return error.code, error.headers, error.read()


class Poller(threading.Thread):
    """Asks for the catalogue and a point's series as fast as it can, keeping every answer."""

    def __init__(self, base: str, point: tuple[float, float]):
        super().__init__(daemon=True)
        self.base, self.point = base, point
        self.answers: list[tuple[str, int, bytes]] = []
        self.stop = threading.Event()

    def run(self) -> None:
        lat, lon = self.point
        urls = [
            f"{self.base}/v1/products",
            f"{self.base}/v1/series?lat={lat}&lon={lon}&products=lstm,smap",
        ]
        while not self.stop.is_set():
            for url in urls:
                status, _, body = get(url)
                self.answers.append((url, status, body))


def region_point(store) -> tuple[float, float]:
    opened = cubes.open_cube(store)
    iy, ix = np.argwhere(opened["mask"].values)[0]
    return float(opened["lat"].values[iy, ix]), float(opened["lon"].values[iy, ix])


def test_server_follows_the_growing_cube(twin, tmp_path):  # noqa: F811
    inputs, _, model, _ = twin
    ckpt = checkpoint.load(model)
    store = tmp_path / "living.zarr"
    extend(ckpt, inputs, START, day(0), store, progress=False)
    point = region_point(store)
    env = {"SMAPX_RELOAD_SECONDS": str(RELOAD_SECONDS), "SMAPX_RATE_LIMIT_PER_MINUTE": "0"}
    proc, base = start_server([store], env)  # polled as fast as it answers: no rate limit
    poller = Poller(base, point)
    lags = []
    try:
        tile = f"{base}/v1/tiles/lstm/5/7/12.png?date={day(0)}"
        status, first_tile, _ = get(tile)
        assert status == 200 and first_tile["Cache-Control"] == "public, no-cache"
        assert get(tile, {"If-None-Match": first_tile["ETag"]})[0] == 304
        poller.start()
        for offset in range(1, GROWTH_DAYS + 1):
            extend(ckpt, inputs, START, day(offset), store, progress=False)
            grown = time.monotonic()
            while json.loads(get(f"{base}/v1/products")[2])["extent"]["end"] != day(offset):
                assert time.monotonic() - grown < 3 * RELOAD_SECONDS, f"{day(offset)} not shown"
                time.sleep(0.05)
            lags.append(time.monotonic() - grown)
        status, later_tile, _ = get(tile, {"If-None-Match": first_tile["ETag"]})
        assert status == 304 and later_tile["ETag"] == first_tile["ETag"]
        series = f"{base}/v1/series?lat={point[0]}&lon={point[1]}"
        status, headers, _ = get(series)
        assert status == 200 and headers["Last-Modified"].endswith("GMT")
        assert get(series, {"If-Modified-Since": headers["Last-Modified"]})[0] == 304
        assert get(series, {"If-Modified-Since": "Thu, 01 Jan 2015 00:00:00 GMT"})[0] == 200
        assert get(series, {"If-Modified-Since": "yesterday"})[0] == 200
        both = {"If-Modified-Since": headers["Last-Modified"], "If-None-Match": '"other"'}
        assert get(series, both)[0] == 200  # If-None-Match decides
    finally:
        poller.stop.set()
        try:
            if poller.is_alive():
                poller.join(60)
        finally:
            proc.terminate()
            proc.wait(30)
    # a poll period, then one generation's load (metadata only): 1.55 s at most measured on a
    # busy 2-core machine with a 1 s period
    assert max(lags) < 3 * RELOAD_SECONDS, lags
    final = cubes.open_cube(store)
    iy, ix = cubes.locate(final, *point)
    expected = {p: final[p].values[:, iy, ix] for p in ("lstm", "smap")}
    dates = [str(d.date()) for d in pd.DatetimeIndex(final.time.values)]
    series_seen = set()
    assert poller.answers and all(status < 500 for _, status, _ in poller.answers)
    for url, status, body in poller.answers:
        assert status == 200, body
        if "/series" not in url:
            continue
        answer = json.loads(body)
        n = len(answer["time"])
        series_seen.add(n)
        assert answer["time"] == dates[:n]
        for product, values in expected.items():
            got = np.array([np.nan if v is None else v for v in answer[product]], np.float32)
            np.testing.assert_allclose(got, values[:n], atol=1e-4)
            assert product == "smap" or np.isfinite(got).all()
    assert len(series_seen) >= 3, series_seen


def test_reloading_is_off_at_zero(twin, tmp_path):  # noqa: F811
    inputs, _, model, _ = twin
    ckpt = checkpoint.load(model)
    store = tmp_path / "still.zarr"
    extend(ckpt, inputs, START, day(0), store, progress=False)
    proc, base = start_server([store], {"SMAPX_RELOAD_SECONDS": "0"})
    try:
        extend(ckpt, inputs, START, day(1), store, progress=False)
        time.sleep(2)
        products = json.loads(get(f"{base}/v1/products")[2])
        assert products["extent"]["end"] == day(0)
        assert products["cubes"]["still"]["generation"] == 1
    finally:
        proc.terminate()
        proc.wait(30)

"""A small product cube with known values, and the real smapx server that serves it: what the
service's tests share."""

import io
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from model.product import cube as cubes

ROOT = Path(__file__).resolve().parents[1]
SMAPX = str(Path(sys.executable).parent / "smapx")
ROWS, COLS = np.meshgrid(np.arange(100, 108), np.arange(200, 209), indexing="ij")
REGION = (ROWS + COLS) % 7 != 0
DAYS = pd.date_range("2014-01-01", periods=3 * 365)
POINT = (29.0, -103.0)
NO_REDIS = "redis://127.0.0.1:9/0"


def known_values(product: str, t, iy, ix) -> np.ndarray:
    """A formula of (t, y, x) per product; smap observed every third day only."""
    base = 0.12 + 0.004 * iy + 0.003 * ix + 0.05 * np.sin(t / 29.0)
    value = {
        "lstm": base,
        "noah": base + 0.04 - 0.002 * ix,
        "lsm2": base - 0.02,
        "lstm_spread": 0.01 + 0.001 * iy + 0.0005 * ix,
        "smap": np.where(t % 3 == 0, base + 0.01, np.nan),
    }[product]
    return np.broadcast_to(value, np.broadcast_shapes(np.shape(t), np.shape(iy), np.shape(ix)))


def stored(values: np.ndarray) -> np.ndarray:
    """Decoded cube values as the API writes them: decimals at the stored precision (1e-4)."""
    return np.round(values.astype(np.float64), 4)


def build_cube(store: Path, days=DAYS, products=("smap", "lstm", "noah", "lsm2")) -> None:
    """A cube over the test region whose every value is known_values' formula."""
    template = cubes.template(days, ROWS[REGION], COLS[REGION], products)
    cubes.create(store, template)
    for block in cubes.blocks(template):
        t = np.arange(block.time.start, block.time.stop)[:, None, None]
        iy = np.arange(block.y.start, block.y.stop)[None, :, None]
        ix = np.arange(block.x.start, block.x.stop)[None, None, :]
        inside = template["mask"].values[block.y, block.x][None]
        values = {p: np.where(inside, known_values(p, t, iy, ix), np.nan) for p in products}
        cubes.write_block(store, block, values)


def start_server(cube_paths, env: dict) -> tuple[subprocess.Popen, str]:
    port = free_port()
    args = [SMAPX, "serve", "--host", "127.0.0.1", "--port", str(port)]
    for path in cube_paths:
        args += ["--cube", str(path)]
    proc = subprocess.Popen(
        args, env={**os.environ, **env}, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    try:
        wait_for_port(port, 60, proc)
    except (TimeoutError, RuntimeError):  # its stderr says why
        proc.kill()
        raise RuntimeError(proc.stderr.read().decode()) from None
    return proc, f"http://127.0.0.1:{port}"


def get_png(server, url, **params) -> np.ndarray:
    r = server.get(url, params=params)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "image/png"
    return np.asarray(Image.open(io.BytesIO(r.content)).convert("RGBA"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port: int, timeout: float = 20.0, process=None) -> None:
    """Until something listens on the port; fails at once if `process` (the server) has exited."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"the server for port {port} exited with code {process.returncode}")
        time.sleep(0.05)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port} after {timeout} s")


def wait_done(client, job_id: str, timeout: float = 90.0) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = client.get(f"/v1/jobs/{job_id}").json()
        assert 0 <= job["percent"] <= 100
        if job["state"] in ("done", "failed", "cancelled"):
            return job
        time.sleep(0.2)
    raise TimeoutError(f"job {job_id} not done after {timeout} s: {job}")


@contextmanager
def serving(cube_paths, env: dict) -> Iterator[str]:
    """A real smapx server of the cubes for the duration; its base URL."""
    proc, url = start_server(cube_paths, env)
    try:
        yield url
    finally:
        proc.terminate()
        proc.wait(20)


def start_worker(env: dict, hostname: str) -> subprocess.Popen:
    """A real smapx worker process (one task at a time) with the given settings."""
    return subprocess.Popen(
        [SMAPX, "worker", "--concurrency", "1", "--loglevel", "warning", "--hostname", hostname],
        env={**os.environ, **env},
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )

"""Bulk jobs through the HTTP service with a real Redis and a real Celery worker process: API key,
size estimate, 413 over the limit, progress to done, files with sizes and sha256, downloads
whose contents equal the cube's."""

import hashlib
import io
import os
import subprocess
import time

import httpx
import numpy as np
import pandas as pd
import pytest
import xarray as xr

from model.product import cube as cubes
from tests.conftest import ROOT
from tests.test_service import POINT, SMAPX, build_cube, start_server

KEY = "s3cret"
LIMIT = 50_000
EXPIRY_SECONDS = 8


@pytest.fixture(scope="module")
def stack(tmp_path_factory, redis_url):
    folder = tmp_path_factory.mktemp("jobs")
    store = folder / "extended.zarr"
    build_cube(store)
    env = {
        "SMAPX_REDIS_URL": redis_url,
        "SMAPX_JOBS_DIR": str(folder / "results"),
        "SMAPX_API_KEYS": f'["{KEY}"]',
        "SMAPX_MAX_JOB_VALUES": str(LIMIT),
        "SMAPX_CUBES": f'["{store}"]',
        "SMAPX_TORCH_THREADS": "1",
        "SMAPX_JOB_EXPIRY_HOURS": str(EXPIRY_SECONDS / 3600),
    }
    worker = subprocess.Popen(
        [
            SMAPX,
            "worker",
            "--concurrency",
            "1",
            "--loglevel",
            "warning",
            "--hostname",
            f"service-test-{os.getpid()}@%h",
        ],
        env={**os.environ, **env},
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    server, url = start_server([store], env)
    try:
        with httpx.Client(base_url=url, timeout=30) as client:
            yield client, cubes.open_cube(store).load(), folder / "results"
    finally:
        for proc in (server, worker):
            proc.terminate()
        for proc in (server, worker):
            proc.wait(30)


def wait_done(client, job_id: str, timeout: float = 90.0) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = client.get(f"/v1/jobs/{job_id}").json()
        assert 0 <= job["percent"] <= 100
        if job["state"] in ("done", "failed", "cancelled"):
            return job
        time.sleep(0.2)
    raise TimeoutError(f"job {job_id} not done after {timeout} s: {job}")


BBOX_REQUEST = {
    "products": ["lstm", "fused"],
    "start": "2015-01-01",
    "end": "2015-03-31",
    "bbox": [-104.0, 28.5, -102.5, 30.0],
    "format": "netcdf",
    "weight": 0.4,
}


def test_job_needs_a_key(stack):
    client, *_ = stack
    assert client.post("/v1/jobs", json=BBOX_REQUEST).status_code == 401
    assert (
        client.post("/v1/jobs", json=BBOX_REQUEST, headers={"X-API-Key": "wrong"}).status_code
        == 401
    )


def test_job_too_large_is_413_with_the_limit(stack):
    client, *_ = stack
    big = {**BBOX_REQUEST, "start": "2014-01-01", "end": "2016-12-30", "bbox": [-180, -90, 180, 90]}
    r = client.post("/v1/jobs", json=big, headers={"X-API-Key": KEY})
    assert r.status_code == 413
    assert r.json()["limit"] == LIMIT and str(LIMIT) in r.json()["detail"]


def test_job_request_errors_are_422(stack):
    client, *_ = stack
    for bad in (
        {**BBOX_REQUEST, "products": ["nope"]},
        {**BBOX_REQUEST, "end": "2014-12-31"},
        {**BBOX_REQUEST, "format": "shp"},
        {**BBOX_REQUEST, "points": [[29, -103]]},
    ):
        r = client.post("/v1/jobs", json=bad, headers={"X-API-Key": KEY})
        assert r.status_code == 422, r.text


def test_bbox_job_netcdf_equals_cube(stack):
    client, local, _ = stack
    r = client.post("/v1/jobs", json=BBOX_REQUEST, headers={"X-API-Key": KEY})
    assert r.status_code == 202, r.text
    submitted = r.json()
    assert submitted["estimate"]["days"] == 90 and submitted["estimate"]["products"] == 2
    assert submitted["estimate"]["values"] <= LIMIT
    job = wait_done(client, submitted["id"])
    assert job["state"] == "done" and job["percent"] == 100 and job["expires"]
    assert job["request"]["weight"] == 0.4 and job["request"]["format"] == "netcdf"
    listing = client.get(f"/v1/jobs/{submitted['id']}/files").json()
    (entry,) = listing["files"]
    data = client.get(entry["href"]).content
    assert len(data) == entry["size"] and hashlib.sha256(data).hexdigest() == entry["sha256"]
    ds = xr.open_dataset(io.BytesIO(data), engine="h5netcdf").load()
    row0, col0 = ds.attrs["row0"] - local.attrs["row0"], ds.attrs["col0"] - local.attrs["col0"]
    window = local.isel(
        time=slice(365, 455),
        y=slice(row0, row0 + ds.sizes["y"]),
        x=slice(col0, col0 + ds.sizes["x"]),
    )
    keep = ds["mask"].values.astype(bool)
    np.testing.assert_array_equal(ds["lstm"].values[:, keep], window["lstm"].values[:, keep])
    np.testing.assert_allclose(
        ds["fused"].values[:, keep],
        (0.4 * window["lstm"] + 0.6 * window["noah"]).values[:, keep],
        atol=1e-6,
    )
    assert submitted["id"] in [j["id"] for j in client.get("/v1/jobs").json()["jobs"]]


def submit_point_csv(client, product: str, end: str) -> str:
    """A CSV job of one product at POINT from 2016-01-01 to `end`; its id."""
    request = {
        "products": [product],
        "start": "2016-01-01",
        "end": end,
        "points": [list(POINT)],
        "format": "csv",
    }
    return client.post("/v1/jobs", json=request, headers={"X-API-Key": KEY}).json()["id"]


def test_points_job_csv(stack):
    client, local, _ = stack
    job_id = submit_point_csv(client, "noah", "2016-01-31")
    assert wait_done(client, job_id)["state"] == "done"
    (entry,) = client.get(f"/v1/jobs/{job_id}/files").json()["files"]
    table = pd.read_csv(io.StringIO(client.get(entry["href"]).text))
    iy, ix = cubes.locate(local, *POINT)
    np.testing.assert_allclose(table["noah"], local["noah"].values[730:761, iy, ix], atol=5e-5)
    assert client.get(f"/v1/jobs/{job_id}/files/other.csv").status_code == 404
    assert client.get("/v1/jobs/0000000000000000").status_code == 404


def test_results_expire_with_their_records(stack):
    client, _, results = stack
    job_id = submit_point_csv(client, "lstm", "2016-01-05")
    job = wait_done(client, job_id)
    assert job["state"] == "done" and (results / job_id).is_dir()
    href = client.get(f"/v1/jobs/{job_id}/files").json()["files"][0]["href"]
    time.sleep(EXPIRY_SECONDS + 1)
    assert client.get(f"/v1/jobs/{job_id}").status_code == 404
    assert client.get(href).status_code == 404
    assert job_id not in [j["id"] for j in client.get("/v1/jobs").json()["jobs"]]
    assert not (results / job_id).exists()

"""Bulk jobs through the HTTP service with a real Redis and a real Celery worker process: API key,
size estimate, 413 over the limit, progress to done, files with sizes and sha256, downloads
whose contents equal the cube's; jobs kept per key, and results that outlive Redis."""

import hashlib
import io
import json
import os
import time

import httpx
import numpy as np
import pandas as pd
import pytest
import redis
import xarray as xr

from model.product import cube as cubes
from tests.served import POINT, build_cube, start_server, start_worker, wait_done
from worker.heartbeat import WORKER_KEY

KEY = "s3cret"
OTHER = "an0ther"
ADMIN = "r00t"
LIMIT = 50_000
BYTES_LIMIT = 1_000_000
EXPIRY_HOURS = 1.0


def own_db(redis_url: str) -> str:
    """This module's database of the session's Redis."""
    return redis_url.rsplit("/", 1)[0] + "/3"


@pytest.fixture(scope="module")
def stack(tmp_path_factory, redis_url):
    folder = tmp_path_factory.mktemp("jobs")
    store = folder / "extended.zarr"
    build_cube(store)
    redis.Redis.from_url(own_db(redis_url)).flushdb()
    env = {
        "SMAPX_REDIS_URL": own_db(redis_url),
        "SMAPX_JOBS_DIR": str(folder / "results"),
        "SMAPX_API_KEYS": f'["{KEY}", "{OTHER}"]',
        "SMAPX_ADMIN_API_KEY": ADMIN,
        "SMAPX_MAX_JOB_VALUES": str(LIMIT),
        "SMAPX_MAX_JOB_BYTES": str(BYTES_LIMIT),
        "SMAPX_CUBES": f'["{store}"]',
        "SMAPX_TORCH_THREADS": "1",
        "SMAPX_JOB_EXPIRY_HOURS": str(EXPIRY_HOURS),
    }
    worker = start_worker(env, f"service-test-{os.getpid()}@%h")
    server, url = start_server([store], env)
    try:
        with httpx.Client(base_url=url, timeout=30, headers={"X-API-Key": KEY}) as client:
            yield client, cubes.open_cube(store).load(), folder / "results"
    finally:
        for proc in (server, worker):
            proc.terminate()
        for proc in (server, worker):
            proc.wait(30)


BBOX_REQUEST = {
    "products": ["lstm", "fused"],
    "start": "2015-01-01",
    "end": "2015-03-31",
    "bbox": [-104.0, 28.5, -102.5, 30.0],
    "format": "netcdf",
    "weight": 0.4,
}


def test_job_needs_a_key_in_its_header(stack):
    client, *_ = stack
    anonymous = httpx.Client(base_url=client.base_url, timeout=30)
    assert anonymous.post("/v1/jobs", json=BBOX_REQUEST).status_code == 401
    assert anonymous.get("/v1/jobs").status_code == 401
    assert anonymous.get("/v1/jobs", params={"api_key": KEY}).status_code == 401
    assert (
        anonymous.post("/v1/jobs", json=BBOX_REQUEST, headers={"X-API-Key": "wrong"}).status_code
        == 401
    )
    assert anonymous.post("/v1/jobs", json=BBOX_REQUEST, params={"api_key": KEY}).status_code == 401


def test_job_too_large_is_413_with_the_limit(stack):
    client, *_ = stack
    big = {**BBOX_REQUEST, "start": "2014-01-01", "end": "2016-12-30", "bbox": [-180, -90, 180, 90]}
    r = client.post("/v1/jobs", json=big, headers={"X-API-Key": KEY})
    assert r.status_code == 413
    assert r.json()["limit"] == LIMIT and str(LIMIT) in r.json()["detail"]


def test_a_csv_job_is_estimated_and_limited_by_its_bytes(stack):
    """A CSV repeats a date and a location on every row: its estimate counts them, so it is
    near the file's true size, and the byte limit refuses a CSV whose values alone would pass;
    the same request as NetCDF passes."""
    client, *_ = stack
    small = {**BBOX_REQUEST, "format": "csv", "products": ["lstm"]}
    r = client.post("/v1/jobs", json=small)
    assert r.status_code == 202, r.text
    estimated = r.json()["estimate"]["bytes"]
    assert wait_done(client, r.json()["id"])["state"] == "done"
    (entry,) = client.get(f"/v1/jobs/{r.json()['id']}/files").json()["files"]
    assert 0.8 < estimated / entry["size"] < 1.5, (estimated, entry["size"])
    many = {**small, "bbox": None, "points": [list(POINT)] * 40, "start": "2014-01-01"}
    many["end"] = "2016-09-26"  # 1000 days x 40 points: 40,000 values, under LIMIT
    r = client.post("/v1/jobs", json=many)
    assert r.status_code == 413 and r.json()["limit"] == BYTES_LIMIT, r.text
    assert "csv files would take about" in r.json()["detail"]
    r = client.post("/v1/jobs", json={**many, "format": "netcdf"})
    assert r.status_code == 202 and r.json()["estimate"]["values"] == 40_000, r.text


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


def expire_now(redis_url: str, results, job_id: str) -> None:
    """What the passing of a job's expiry does: Redis drops its record (the TTL its finish
    set), and the copy beside its results says it expired."""
    manifest = results / job_id / "job.json"
    record = json.loads(manifest.read_text())
    manifest.write_text(json.dumps({**record, "expires": "2000-01-01T00:00:00+00:00"}))
    redis.Redis.from_url(own_db(redis_url)).delete(f"smapx:job:{job_id}")


def test_results_expire_with_their_records(stack, redis_url):
    client, _, results = stack
    job_id = submit_point_csv(client, "lstm", "2016-01-05")
    job = wait_done(client, job_id)
    assert job["state"] == "done" and (results / job_id).is_dir()
    finished, expires = (pd.Timestamp(job[k]) for k in ("finished", "expires"))
    assert expires - finished == pd.Timedelta(hours=EXPIRY_HOURS)
    ttl = redis.Redis.from_url(own_db(redis_url)).ttl(f"smapx:job:{job_id}")
    assert EXPIRY_HOURS * 3600 - 60 < ttl <= EXPIRY_HOURS * 3600
    href = client.get(f"/v1/jobs/{job_id}/files").json()["files"][0]["href"]
    expire_now(redis_url, results, job_id)
    assert client.get(f"/v1/jobs/{job_id}").status_code == 404
    assert client.get(href).status_code == 404
    assert job_id not in [j["id"] for j in client.get("/v1/jobs").json()["jobs"]]
    assert not (results / job_id).exists()


def test_jobs_are_kept_per_key_and_show_no_server_path(stack):
    client, _, results = stack
    job_id = submit_point_csv(client, "lstm", "2016-01-03")
    job = wait_done(client, job_id)
    href = client.get(f"/v1/jobs/{job_id}/files").json()["files"][0]["href"]
    assert href == f"/v1/jobs/{job_id}/files/subset.csv"
    assert job["links"]["self"] == f"/v1/jobs/{job_id}" and job["request"]["cube"] == "extended"
    text = json.dumps([job, client.get("/v1/jobs").json()])
    assert str(results.parent) not in text and "owner" not in text

    other = {"X-API-Key": OTHER}
    assert job_id not in [j["id"] for j in client.get("/v1/jobs", headers=other).json()["jobs"]]
    for method, path in (
        ("GET", f"/v1/jobs/{job_id}"),
        ("GET", f"/v1/jobs/{job_id}/files"),
        ("GET", href),
        ("DELETE", f"/v1/jobs/{job_id}"),
    ):
        assert client.request(method, path, headers=other).status_code == 404, (method, path)
    admin = {"X-API-Key": ADMIN}
    assert job_id in [j["id"] for j in client.get("/v1/jobs", headers=admin).json()["jobs"]]
    assert client.get(href, headers=admin).status_code == 200
    assert client.get(f"/v1/jobs/{job_id}").json()["state"] == "done"


def test_results_outlive_a_redis_that_lost_everything(stack, redis_url):
    """Redis restarted without persistence (its data gone) mid-job: finished results stay on
    disk, listed and downloadable from the record kept beside them; nothing is swept, and the
    job that was under way is put back by the worker and finishes. (The results of finished
    jobs are taken before the next job starts: none of their files is in flight.)"""
    client, _, results = stack
    finished = submit_point_csv(client, "noah", "2016-01-04")
    wait_done(client, finished)
    entry = client.get(f"/v1/jobs/{finished}/files").json()["files"][0]
    before = {p: p.read_bytes() for p in results.rglob("*") if p.is_file()}
    running = submit_point_csv(client, "lstm", "2016-12-31")
    redis.Redis.from_url(own_db(redis_url)).flushdb()
    listed = client.get("/v1/jobs").json()["jobs"]
    assert {finished, running} <= {j["id"] for j in listed}
    data = client.get(entry["href"]).content
    assert hashlib.sha256(data).hexdigest() == entry["sha256"]
    assert client.get(f"/v1/jobs/{finished}").json()["state"] == "done"
    assert wait_done(client, running)["state"] == "done"
    client.get("/v1/jobs")
    assert {p: p.read_bytes() for p in before if p.exists()} == before, "a result was lost"
    (entry,) = client.get(f"/v1/jobs/{running}/files").json()["files"]
    assert hashlib.sha256(client.get(entry["href"]).content).hexdigest() == entry["sha256"]


def test_healthz_stops_counting_a_stopped_worker_at_once(stack, redis_url, tmp_path):
    client = stack[0]
    beats = redis.Redis.from_url(own_db(redis_url))
    name = f"stopped-{os.getpid()}"
    env = {"SMAPX_REDIS_URL": own_db(redis_url), "SMAPX_JOBS_DIR": str(tmp_path)}
    extra = start_worker(env, f"{name}@%h")
    deadline = time.monotonic() + 60
    # Both beats, the module's worker's too: a count it raised late would pass for the extra's.
    while not (keys := beats.keys(f"{WORKER_KEY}{name}@*")) or not beats.keys(
        f"{WORKER_KEY}service-test-{os.getpid()}@*"
    ):
        assert time.monotonic() < deadline, "the workers never beat"
        time.sleep(0.2)
    counted = client.get("/healthz").json()["workers"]
    extra.terminate()
    assert extra.wait(30) == 0
    assert not beats.exists(*keys)
    assert client.get("/healthz").json()["workers"] == counted - 1  # not three beats later

"""Dead workers noticed in seconds and damaged cubes refused in one line, with real Redis, real
worker processes and a real server: an export whose worker is SIGKILLed finishes on another
within a minute under the default settings, a local pool replaces a killed worker, and a cube
with a missing or corrupt chunk is not served."""

import hashlib
import os
import signal
import subprocess
import time
from contextlib import ExitStack, contextmanager

import httpx
import pandas as pd
import pytest
import redis

from model.errors import InputError
from model.product import cube as cubes
from tests import inprocess
from tests.served import (
    REGION,
    SMAPX,
    build_cube,
    free_port,
    start_server,
    start_worker,
)
from worker.held import HELD_KEY

pytestmark = pytest.mark.integration
LONG_DAYS = pd.date_range("1986-01-01", "2016-12-31")
REDO_SECONDS = 60
LONG_EXPORT = {
    "products": ["smap", "lstm", "noah", "lsm2", "fused"],
    "start": "1986-01-01",
    "end": "2016-12-31",
    "bbox": [-180, -90, 180, 90],
    "format": "csv",
}
REDONE_DAYS = pd.date_range("2013-01-01", "2016-12-31")  # frozen mid-way, so it can be short
REDONE_EXPORT = {**LONG_EXPORT, "start": "2013-01-01"}


@pytest.fixture(scope="module")
def long_cube(tmp_path_factory):
    store = tmp_path_factory.mktemp("long") / "extended.zarr"
    build_cube(store, LONG_DAYS)  # 31 years: an export long enough to kill mid-way
    return store


@pytest.fixture(scope="module")
def liveness(tmp_path_factory, redis_url, long_cube):
    """A long cube served with the default visibility timeout, on this module's Redis db."""
    folder = tmp_path_factory.mktemp("liveness")
    store = long_cube
    url = redis_url.rsplit("/", 1)[0] + "/9"
    redis.Redis.from_url(url).flushdb()
    env = {
        "SMAPX_REDIS_URL": url,
        "SMAPX_JOBS_DIR": str(folder / "results"),
        "SMAPX_CUBES": f'["{store}"]',
        "SMAPX_TORCH_THREADS": "1",
    }
    server, base = start_server([store], env)
    try:
        with httpx.Client(base_url=base, timeout=30) as client:
            yield client, env, folder / "results"
    finally:
        server.terminate()
        server.wait(30)


@contextmanager
def two_workers(env: dict, label: str):
    """Two ready workers on the env's Redis, this process pointed at it too; stopped after."""
    from worker.pool import pointing_at, stop, wait_ready

    names = [f"{label}-{k}-{os.getpid()}@test" for k in range(2)]
    procs = [start_worker(env, name) for name in names]
    try:
        with pointing_at(env["SMAPX_REDIS_URL"]):
            wait_ready(names, procs)
            yield names, procs
    finally:
        stop(procs)


def kill_holder(names, procs, url: str, running) -> float:
    """SIGKILL the worker that runs the task; the time of the kill. The worker whose record
    (worker.held, written at receipt) holds a task is frozen (SIGSTOP) once the task runs, so even
    a short task cannot end before it is seen running and killed."""
    r = redis.Redis.from_url(url)
    deadline = time.monotonic() + 180
    while True:
        assert time.monotonic() < deadline, "the task never started"
        holders = [k for k, name in enumerate(names) if r.exists(HELD_KEY + name)]
        if len(holders) == 1 and running():
            doomed = procs[holders[0]]
            break
        time.sleep(0.02)
    doomed.send_signal(signal.SIGSTOP)
    assert running(), "the task ended before its worker was frozen: make it longer"
    doomed.send_signal(signal.SIGKILL)
    doomed.wait()
    return time.monotonic()


def test_sigkilled_worker_mid_export_is_redone_within_a_minute(liveness):
    """Two workers; the one running an export is SIGKILLed; with the default settings the other
    redoes it within a minute, and the file is whole with the sha256 the job reports."""
    client, env, results = liveness
    with two_workers(env, "export") as (names, procs):
        job_id = client.post("/v1/jobs", json=REDONE_EXPORT).json()["id"]

        def running() -> bool:
            return client.get(f"/v1/jobs/{job_id}").json()["state"] == "running"

        killed = kill_holder(names, procs, env["SMAPX_REDIS_URL"], running)
        while (job := client.get(f"/v1/jobs/{job_id}").json())["state"] == "running":
            assert time.monotonic() - killed < REDO_SECONDS, f"not redone in time: {job}"
            time.sleep(0.5)
        took = time.monotonic() - killed
    assert job["state"] == "done", job
    data = downloaded(client, job_id)
    assert data.count(b"\n") == 1 + len(REDONE_DAYS) * int(REGION.sum())
    assert sorted(p.name for p in (results / job_id).iterdir()) == ["job.json", "subset.csv"]
    print(f"export redone {took:.1f} s after its worker was killed")


def test_a_live_worker_keeps_a_task_longer_than_the_visibility_timeout(liveness):
    """A 2 s visibility timeout and an export that runs well past it (~5 s on the fastest CPU
    seen): while its worker lives, the task's delivery time is renewed every second, so it
    never ages past the timeout and no other worker is handed it."""
    client, env, _ = liveness
    short = {**env, "SMAPX_TASK_VISIBILITY_TIMEOUT": "2"}
    r = redis.Redis.from_url(env["SMAPX_REDIS_URL"])
    with two_workers(short, "keeper"):
        job_id = client.post("/v1/jobs", json=LONG_EXPORT).json()["id"]
        ages, held = [], 0.0
        while client.get(f"/v1/jobs/{job_id}").json()["state"] in ("queued", "running"):
            scores = r.zrange("unacked_index", 0, -1, withscores=True)
            if scores:
                held = held or time.monotonic()
                ages.append(time.time() - min(score for _, score in scores))
            time.sleep(0.1)
        held = time.monotonic() - held
    assert client.get(f"/v1/jobs/{job_id}").json()["state"] == "done"
    assert held > 3, f"the export took {held:.1f} s: too short to outlive the timeout"
    assert max(ages) < 2, f"a held task aged {max(ages):.1f} s"


def wait_state(
    client: httpx.Client, job_id: str, states: set[str], seconds: float, poll: float = 0.2
) -> dict:
    deadline = time.monotonic() + seconds
    while (job := client.get(f"/v1/jobs/{job_id}").json())["state"] not in states:
        assert time.monotonic() < deadline, f"job not {states} in {seconds} s: {job}"
        time.sleep(poll)
    return job


def downloaded(client: httpx.Client, job_id: str) -> bytes:
    """A done job's file, checked against its reported size and sha256."""
    (entry,) = client.get(f"/v1/jobs/{job_id}/files").json()["files"]
    data = client.get(entry["href"]).content
    assert len(data) == entry["size"] and hashlib.sha256(data).hexdigest() == entry["sha256"]
    return data


def test_resume_requeues_a_stuck_export_and_reruns_a_cancelled_one(liveness):
    """An export whose task was lost (a broker flushed) stays queued whatever the workers do;
    `smapx job ID --resume` queues it again under its id. A cancelled one reruns the same way."""
    client, env, _ = liveness
    small = {**LONG_EXPORT, "start": "2016-12-01", "bbox": None, "points": [[29.0, -103.0]]}
    stuck = client.post("/v1/jobs", json=small).json()["id"]
    redis.Redis.from_url(env["SMAPX_REDIS_URL"]).delete("smapx")  # the queue: its task is lost
    cancelled = client.post("/v1/jobs", json=small).json()["id"]
    client.delete(f"/v1/jobs/{cancelled}")
    worker = start_worker(env, f"resumer-{os.getpid()}@test")
    try:
        time.sleep(3)
        assert client.get(f"/v1/jobs/{stuck}").json()["state"] == "queued"
        for job_id in (stuck, cancelled):
            resumed = subprocess.run(
                [SMAPX, "job", job_id, "--resume"],
                env={**os.environ, **env},
                capture_output=True,
                text=True,
                timeout=60,
            )
            assert resumed.returncode == 0, resumed.stderr
            assert wait_state(client, job_id, {"done", "failed"}, 60)["state"] == "done"
            assert downloaded(client, job_id).count(b"\n") == 32
    finally:
        worker.terminate()
        worker.wait(30)


def test_a_redis_restarted_without_persistence_mid_export_loses_no_result(long_cube, tmp_path):
    """A private Redis without persistence, killed while an export runs and started again
    empty: the finished job's files stay listed and downloadable, the running export is put back
    from disk and finishes with the checksums it reports, and no file on disk is deleted. The
    worker is frozen (SIGSTOP) through the restart, so even a short export is still mid-way."""
    from worker.pool import pointing_at, private_redis, wait_ready

    port = free_port()
    env = {
        "SMAPX_REDIS_URL": f"redis://127.0.0.1:{port}/0",
        "SMAPX_JOBS_DIR": str(tmp_path / "results"),
        "SMAPX_CUBES": f'["{long_cube}"]',
        "SMAPX_TORCH_THREADS": "1",
    }
    name = f"survivor-{os.getpid()}@test"
    life = ExitStack()
    life.enter_context(private_redis(port))
    server, base = start_server([long_cube], env)
    worker = start_worker(env, name)
    try:
        client = life.enter_context(httpx.Client(base_url=base, timeout=30))
        with pointing_at(env["SMAPX_REDIS_URL"]):
            wait_ready([name], [worker])
        small = {**LONG_EXPORT, "start": "2016-12-01", "bbox": None, "points": [[29.0, -103.0]]}
        finished = client.post("/v1/jobs", json=small).json()["id"]
        wait_state(client, finished, {"done"}, 60)
        kept = downloaded(client, finished)
        running = client.post("/v1/jobs", json=REDONE_EXPORT).json()["id"]
        wait_state(client, running, {"running"}, 60, poll=0.01)
        worker.send_signal(signal.SIGSTOP)
        assert client.get(f"/v1/jobs/{running}").json()["state"] == "running"
        on_disk = [p for p in (tmp_path / "results").rglob("*") if p.is_file()]
        life.close()  # Redis gone, and all it held
        life.enter_context(private_redis(port))
        client = life.enter_context(httpx.Client(base_url=base, timeout=30))
        assert finished in [j["id"] for j in client.get("/v1/jobs").json()["jobs"]]
        assert downloaded(client, finished) == kept
        assert client.get(f"/v1/jobs/{running}").json()["state"] == "running"
        worker.send_signal(signal.SIGCONT)
        done = wait_state(client, running, {"done", "failed"}, 120)
        assert done["state"] == "done", done
        data = downloaded(client, running)
        assert data.count(b"\n") == 1 + len(REDONE_DAYS) * int(REGION.sum())
        assert all(p.exists() for p in on_disk if p.name == "job.json" or finished in str(p))
    finally:
        worker.send_signal(signal.SIGCONT)
        worker.terminate()
        worker.wait(30)
        server.terminate()
        server.wait(30)
        life.close()


def test_cancelling_a_running_export_stops_it_writing(liveness):
    client, env, results = liveness
    worker = start_worker(env, f"canceller-{os.getpid()}@test")
    try:
        job_id = client.post("/v1/jobs", json=LONG_EXPORT).json()["id"]
        deadline = time.monotonic() + 120
        while client.get(f"/v1/jobs/{job_id}").json()["state"] != "running":
            assert time.monotonic() < deadline, "the export never started"
            time.sleep(0.02)
        assert client.delete(f"/v1/jobs/{job_id}").json()["state"] == "cancelled"
        after = {**LONG_EXPORT, "start": "2016-12-01", "bbox": None, "points": [[29.0, -103.0]]}
        behind = client.post("/v1/jobs", json=after).json()["id"]  # runs once the first stops
        while client.get(f"/v1/jobs/{behind}").json()["state"] != "done":
            assert time.monotonic() < deadline + 120, "the worker never came free"
            time.sleep(0.2)
    finally:
        worker.terminate()
        worker.wait(30)
    assert client.get(f"/v1/jobs/{job_id}").json()["state"] == "cancelled"
    assert [p.name for p in (results / job_id).iterdir()] == ["job.json"]


def test_stale_subset_folders_are_swept(tmp_path, monkeypatch):
    from service import zarr_access

    monkeypatch.setattr(zarr_access.tempfile, "gettempdir", lambda: str(tmp_path))
    stale, fresh = tmp_path / "smapx-subset-old", tmp_path / "smapx-subset-new"
    for folder in (stale, fresh):
        folder.mkdir()
        (folder / "subset.nc").write_bytes(b"partial")
    os.utime(stale, (time.time() - 7200, time.time() - 7200))
    zarr_access.sweep_stale_subsets()
    assert not stale.exists() and fresh.exists()


def test_local_pool_reaps_and_replaces_a_killed_worker(redis_url):
    from worker.pool import local_workers, pointing_at, wait_ready

    url = redis_url.rsplit("/", 1)[0] + "/10"
    with pointing_at(url), local_workers(1, threads=1) as procs:
        first = procs[0]
        first.send_signal(signal.SIGKILL)
        deadline = time.monotonic() + 30
        while procs[0] is first:
            assert time.monotonic() < deadline, "the killed worker was not replaced"
            time.sleep(0.1)
        assert not os.path.exists(f"/proc/{first.pid}"), "the killed worker is left a zombie"
        names = [f"smapx-{os.getpid()}-0@{os.uname().nodename}"]
        wait_ready(names, procs)
        assert procs[0].poll() is None


def chunk_path(store, product: str) -> list:
    return sorted(p for p in (store / product / "c").rglob("*") if p.is_file())


@pytest.mark.parametrize("damage", ["missing-chunk", "corrupt-chunk", "missing-marker", "no-mask"])
def test_a_damaged_cube_is_refused_in_one_line(tmp_path, damage):
    from service.catalog import Catalog

    store = tmp_path / "extended.zarr"
    build_cube(store)
    if damage == "missing-chunk":
        chunk_path(store, "lstm")[0].unlink()
    elif damage == "corrupt-chunk":
        chunk_path(store, "noah")[-1].write_bytes(b"not a chunk")
    elif damage == "missing-marker":
        next((store / cubes.MARKERS).iterdir()).unlink()
    else:
        for path in sorted((store / "mask").rglob("*"), reverse=True):
            path.unlink() if path.is_file() else path.rmdir()
        (store / "mask").rmdir()
    with pytest.raises(InputError) as caught:
        Catalog([str(store)])
    assert "\n" not in str(caught.value) and str(store) in str(caught.value)
    args = ["serve", "--cube", str(store), "--port", "9"]
    if damage != "missing-chunk":  # the others in this process (tests.inprocess)
        code, _, err = inprocess.run(*args, env={"SMAPX_CUBES": "[]"})
        assert code != 0 and len(err.strip().splitlines()) == 1, err
        return
    served = subprocess.run(
        [SMAPX, *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "SMAPX_CUBES": "[]"},
    )
    assert served.returncode != 0 and len(served.stderr.strip().splitlines()) == 1, served.stderr

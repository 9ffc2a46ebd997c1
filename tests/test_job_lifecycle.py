"""Bulk jobs under cancels and Redis restarts, with a real Redis, a real worker process and a real
server: a cancel reaches a running export within seconds, a cancelled job never comes back
(whatever order submits, cancels, Redis restarts and the workers' restores come in: a property
run over seeded random sequences), the job records in Redis and beside the results agree, and
a caller's job list costs what the caller's own jobs cost."""

import json
import os
import random
import threading
import time
from contextlib import contextmanager

import httpx
import pytest
import redis

from tests.served import POINT, build_cube, start_server, start_worker

pytestmark = pytest.mark.integration
KEY, OTHER, IDLE = "lifecycle-key", "lifecycle-other", "lifecycle-idle"
BIG_POINTS = 10_000
SMALL = {
    "products": ["lstm"],
    "start": "2016-01-01",
    "end": "2016-01-10",
    "points": [list(POINT)],
    "format": "csv",
}
BIG = {
    **SMALL,
    "products": ["lstm", "noah"],
    "start": "2014-01-01",
    "end": "2016-12-30",
    "points": [list(POINT)] * BIG_POINTS,
}


def database(redis_url: str, number: int) -> str:
    return redis_url.rsplit("/", 1)[0] + f"/{number}"


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    path = tmp_path_factory.mktemp("lifecycle") / "extended.zarr"
    build_cube(path)
    return path


@pytest.fixture(scope="module")
def stack(store, redis_url, tmp_path_factory):
    """A server and one worker (one task at a time, a heartbeat every second) on a Redis
    database of their own, with three keys and room for a job of 10,000 points over 3 years."""
    url = database(redis_url, 13)
    redis.Redis.from_url(url).flushdb()
    results = tmp_path_factory.mktemp("lifecycle-results")
    env = {
        "SMAPX_REDIS_URL": url,
        "SMAPX_JOBS_DIR": str(results),
        "SMAPX_API_KEYS": json.dumps([KEY, OTHER, IDLE]),
        "SMAPX_MAX_JOB_VALUES": str(10**9),
        "SMAPX_CUBES": json.dumps([str(store)]),
        "SMAPX_TORCH_THREADS": "1",
        "SMAPX_TASK_VISIBILITY_TIMEOUT": "4",
        "SMAPX_RATE_LIMIT_PER_MINUTE": "0",
    }
    worker = start_worker(env, f"lifecycle-{os.getpid()}@%h")
    server, base = start_server([store], env)
    try:
        with httpx.Client(base_url=base, timeout=60, headers={"X-API-Key": KEY}) as client:
            yield client, redis.Redis.from_url(url, decode_responses=True), results
    finally:
        for proc in (server, worker):
            proc.terminate()
        for proc in (server, worker):
            proc.wait(30)


def until(condition, timeout: float = 60.0, every: float = 0.05):
    """Poll until `condition()` is truthy; its value (a TimeoutError after `timeout` s)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(every)
    raise TimeoutError(f"not so after {timeout} s: {condition.__doc__ or condition}")


def submit(client, request: dict, key: str = KEY) -> str:
    r = client.post("/v1/jobs", json=request, headers={"X-API-Key": key})
    assert r.status_code == 202, r.text
    return r.json()["id"]


def both_copies(db: redis.Redis, results, job_id: str) -> tuple[dict | None, dict | None]:
    """(the record in Redis, the record beside the results), None where there is none."""
    raw = db.hgetall(f"smapx:job:{job_id}")
    in_redis = {k: json.loads(v) for k, v in raw.items()} if raw else None
    path = results / job_id / "job.json"
    return in_redis, json.loads(path.read_text()) if path.exists() else None


def test_a_cancel_stops_a_running_export_within_seconds(stack):
    """A 10,000-point CSV export (22 million values, a minute of work) is cancelled once it
    writes; the job queued behind it starts within seconds, and the cancelled one left no file
    and stays cancelled."""
    client, db, results = stack
    big = submit(client, BIG)
    until(lambda: client.get(f"/v1/jobs/{big}").json()["stage"] == "writing")
    small = submit(client, SMALL)
    cancelled_at = time.monotonic()
    r = client.delete(f"/v1/jobs/{big}")
    assert r.status_code == 200 and r.json()["state"] == "cancelled"
    until(lambda: client.get(f"/v1/jobs/{small}").json()["state"] != "queued", timeout=120)
    stop_seconds = time.monotonic() - cancelled_at
    print(f"cancel to stop: {stop_seconds:.2f} s")
    assert stop_seconds < 10
    assert until(lambda: client.get(f"/v1/jobs/{small}").json()["state"] == "done")
    assert not [p for p in (results / big).rglob("*") if p.suffix == ".csv"]
    in_redis, on_disk = both_copies(db, results, big)
    assert in_redis["state"] == on_disk["state"] == "cancelled"


def test_a_cancelled_job_never_comes_back_after_redis_restarts(stack):
    """A queued job and a running one are cancelled; Redis then restarts empty (its queue with
    it). The worker's heartbeat puts both records back from disk, cancelled, queues neither,
    and a cancel sent while Redis holds nothing reaches the job all the same. Every job is a
    long one: once the running job stops, the worker takes the next, and a short one could be
    done before its cancel arrives (seen on a fast CPU)."""
    client, db, results = stack
    running = submit(client, BIG)
    until(lambda: client.get(f"/v1/jobs/{running}").json()["state"] == "running")
    queued, later = submit(client, BIG), submit(client, BIG)
    for job_id in (running, queued):
        assert client.delete(f"/v1/jobs/{job_id}").json()["state"] == "cancelled"
    db.flushdb()
    assert client.delete(f"/v1/jobs/{later}").json()["state"] == "cancelled"
    until(lambda: all(db.exists(f"smapx:job:{j}") for j in (running, queued, later)))
    probe = submit(client, SMALL)  # queued after the restore: done means the queue moved on
    until(lambda: client.get(f"/v1/jobs/{probe}").json()["state"] == "done", timeout=120)
    for job_id in (running, queued, later):
        in_redis, on_disk = both_copies(db, results, job_id)
        assert in_redis["state"] == on_disk["state"] == "cancelled", job_id
        assert client.get(f"/v1/jobs/{job_id}").json()["state"] == "cancelled"


def test_delete_of_a_finished_job_deletes_it_and_its_files(stack):
    client, db, results = stack
    job_id = submit(client, SMALL)
    until(lambda: client.get(f"/v1/jobs/{job_id}").json()["state"] == "done")
    href = client.get(f"/v1/jobs/{job_id}/files").json()["files"][0]["href"]
    assert client.get(href).status_code == 200
    r = client.delete(f"/v1/jobs/{job_id}")
    assert r.status_code == 200, r.text
    assert r.json() == {
        "id": job_id,
        "state": "deleted",
        "detail": f"job {job_id} was done; its record and files are deleted",
    }
    for path in (f"/v1/jobs/{job_id}", f"/v1/jobs/{job_id}/files", href):
        assert client.get(path).status_code == 404, path
    assert client.delete(f"/v1/jobs/{job_id}").status_code == 404
    assert not (results / job_id).exists() and not db.exists(f"smapx:job:{job_id}")
    assert job_id not in [j["id"] for j in client.get("/v1/jobs").json()["jobs"]]


def list_cost(client, db: redis.Redis, key: str, repeat: int = 21) -> tuple[float, int]:
    """(median seconds of GET /v1/jobs for a key, Redis hgetall calls it made per request)."""

    def hgetalls() -> int:
        return db.info("commandstats").get("cmdstat_hgetall", {}).get("calls", 0)

    times, before = [], hgetalls()
    for _ in range(repeat):
        started = time.perf_counter()
        r = client.get("/v1/jobs", headers={"X-API-Key": key})
        times.append(time.perf_counter() - started)
        assert r.status_code == 200 and r.json()["jobs"] == []
    return sorted(times)[repeat // 2], (hgetalls() - before) // repeat


def test_the_job_list_costs_what_the_callers_own_jobs_cost(stack, request):
    """A key with no jobs lists them without reading one record of another key's 4 jobs of
    10,000 points (cancelled at once, so the worker skips them)."""
    client, db, _ = stack
    empty_seconds, _ = list_cost(client, db, IDLE)
    jobs = int(os.environ.get("SMAPX_TEST_LIST_JOBS", "4"))
    for _ in range(jobs):
        client.delete(f"/v1/jobs/{submit(client, BIG, OTHER)}", headers={"X-API-Key": OTHER})
    busy_seconds, reads = list_cost(client, db, IDLE)
    print(f"job list of a key with no jobs: {1000 * empty_seconds:.1f} ms; beside {jobs} jobs")
    print(f"of {BIG_POINTS} points of another key: {1000 * busy_seconds:.1f} ms")
    assert reads == 0
    assert len(client.get("/v1/jobs", headers={"X-API-Key": OTHER}).json()["jobs"]) >= jobs


AGREE = ("id", "owner", "state", "started", "finished", "expires", "result")
SEQUENCES = 20


@contextmanager
def pointed_at(redis_url: str, jobs_dir):
    """This process's settings and Celery app on a Redis and a jobs folder, then back."""
    from model.settings import get_settings
    from worker.app import configure

    saved = {k: os.environ.get(k) for k in ("SMAPX_REDIS_URL", "SMAPX_JOBS_DIR")}
    os.environ.update(SMAPX_REDIS_URL=redis_url, SMAPX_JOBS_DIR=str(jobs_dir))
    get_settings.cache_clear()
    configure()
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        get_settings.cache_clear()
        configure()


def race(job_id: str) -> None:
    """A cancel and a worker's start of the same job at the same moment."""
    from worker import jobs

    racers = [
        threading.Thread(target=jobs.cancel_job, args=(job_id,)),
        threading.Thread(target=jobs.start_job, args=(job_id, "reading")),
    ]
    for t in racers:
        t.start()
    for t in racers:
        t.join()


def random_steps(seed: int, db: redis.Redis, jobs_dir, cube: str, steps: int = 12) -> None:
    """One seeded random sequence of steps, the property checked after each."""
    from worker import jobs, submit, tasks

    actions = {
        "start": lambda j: jobs.start_job(j, "reading"),
        "cancel": jobs.cancel_job,
        "race": race,
        "run": tasks.export,
        "restart": lambda j: db.flushdb(),
        "restore": lambda j: submit.requeue_lost_exports(),
    }
    rng, ids, cancelled = random.Random(seed), [], set()
    request = {**SMALL, "end": "2016-01-03"}
    db.flushdb()
    for _ in range(steps):
        step = rng.choice(["submit", *actions])
        if step == "submit" or not ids:
            ids.append(submit.submit_export(request, cube, owner="o"))
        else:
            job_id = rng.choice(ids)
            was = jobs.require_job(job_id)["state"]
            actions[step](job_id)
            if step in ("cancel", "race") and was not in jobs.FINAL:
                cancelled.add(job_id)  # a cancel of an unfinished job wins, whatever the order
        for j in ids:
            in_redis, on_disk = both_copies(db, jobs_dir, j)
            where = (seed, step, j)
            if in_redis is not None:
                assert {k: in_redis[k] for k in AGREE} == {k: on_disk[k] for k in AGREE}, where
            assert j not in cancelled or on_disk["state"] == "cancelled", where
            assert j not in cancelled or (in_redis or on_disk)["state"] == "cancelled", where


def test_random_submits_cancels_and_redis_restarts_keep_both_records_agreeing(
    store, redis_url, tmp_path
):
    """The property: whatever order jobs are submitted, started, cancelled (also while Redis is
    empty, and racing a worker's start), run by a worker, and Redis restarts empty and the
    workers restore lost records, the record in Redis and the one beside the results agree
    after every step, and no job once cancelled is ever done. SEQUENCES random sequences of 12
    steps, seeded 0, 1, ... (a failure names its seed and reruns alike on any machine); the
    worker's side runs in this process."""
    url = database(redis_url, 12)
    db = redis.Redis.from_url(url, decode_responses=True)
    started = time.monotonic()
    with pointed_at(url, tmp_path):
        for seed in range(SEQUENCES):
            random_steps(seed, db, tmp_path, str(store))
    print(f"{SEQUENCES} random sequences of 12 steps in {time.monotonic() - started:.1f} s")


def test_redis_shows_a_new_state_only_once_the_copy_beside_the_results_holds_it(
    store, redis_url, tmp_path, monkeypatch
):
    """Whoever sees a job's new state in Redis finds its copy beside the results final: a look
    at a finished job's folder never meets the copy in flight, and a Redis lost just then puts
    back the finished record, not a running one that would run again over its files (a result
    once seemed lost so in the service's test of results outliving Redis)."""
    from worker import jobs, submit, tasks

    transition, seen = jobs._transition, []

    def watched(job_id, to_state, from_states, **fields):
        changed = transition(job_id, to_state, from_states, **fields)
        if changed and to_state is not None:
            seen.append((to_state, jobs.read_manifest(job_id)["state"]))
        return changed

    monkeypatch.setattr(jobs, "_transition", watched)
    url = database(redis_url, 15)
    redis.Redis.from_url(url).flushdb()
    request = {**SMALL, "end": "2016-01-03"}
    with pointed_at(url, tmp_path):
        done = submit.submit_export(request, str(store), owner="o")
        tasks.export(done)
        jobs.cancel_job(submit.submit_export(request, str(store), owner="o"))
        assert jobs.require_job(done)["state"] == "done"
    assert [state for state, _ in seen] == ["running", "done", "cancelled"], seen
    assert all(state == copy for state, copy in seen), seen

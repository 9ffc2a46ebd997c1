"""The production pipeline against a real Redis and real worker processes (never eager mode):
cubes made by workers equal the in-process cube chunk for chunk, through a SIGKILL, a double
submission, a resume, a cancel, and over an S3-compatible store (moto's server)."""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest

from model.dataset import open_input, write_input
from model.engine.inference import predict_with_spread
from model.product import climatology
from model.product import cube as cubes
from model.production import extend as extension
from model.production.extend import compute_block, compute_blocks, extend, plan
from model.settings import get_settings
from model.training import checkpoint
from tests.pools import END, START, local_files, make_world, request_for, store_files
from tests.served import free_port, wait_for_port
from worker import held, pool

SMAPX = str(Path(sys.executable).with_name("smapx"))
ROOT = Path(__file__).resolve().parents[1]
VISIBILITY_S = 4
RUNNING = ("queued", "running")


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    folder = tmp_path_factory.mktemp("world")
    inputs, model = make_world(folder)
    reference = folder / "reference.zarr"
    extend(checkpoint.load(model), open_input(inputs), START, END, reference, progress=False)
    return {"inputs": inputs, "model": model, "reference": reference, "folder": folder}


@pytest.fixture(scope="module")
def ranked_reference(world, tmp_path_factory) -> Path:
    """The in-process cube with the climatology `smapx extend` adds to a record of a year or
    more: what the command line writes, on a pool or not."""
    ranked = tmp_path_factory.mktemp("ranked") / "reference.zarr"
    shutil.copytree(world["reference"], ranked)
    climatology.compute(ranked, progress=False)
    return ranked


@pytest.fixture(scope="module")
def worker_redis(redis_url):
    """A database of the session's Redis for this module alone, empty at the start."""
    import redis

    url = redis_url.rsplit("/", 1)[0] + "/5"
    redis.Redis.from_url(url).flushdb()
    return url


@pytest.fixture(scope="module")
def pointed(worker_redis):
    """This process submits to the module's Redis with a short redelivery timeout."""
    from worker.app import configure

    saved = {k: os.environ.get(k) for k in ("SMAPX_REDIS_URL", "SMAPX_TASK_VISIBILITY_TIMEOUT")}
    os.environ.update(SMAPX_REDIS_URL=worker_redis, SMAPX_TASK_VISIBILITY_TIMEOUT=str(VISIBILITY_S))
    get_settings.cache_clear()
    configure()
    yield worker_redis
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
    get_settings.cache_clear()
    configure()


def start_worker(url: str, name: str, extra_env: dict | None = None) -> subprocess.Popen:
    """`smapx worker` exactly as the compose file runs it, in its own process."""
    env = {
        **os.environ,
        "SMAPX_REDIS_URL": url,
        "SMAPX_TASK_VISIBILITY_TIMEOUT": str(VISIBILITY_S),
        **(extra_env or {}),
    }
    return subprocess.Popen(
        [
            SMAPX,
            "worker",
            "--concurrency",
            "1",
            "--threads",
            "1",
            "--loglevel",
            "warning",
            "--hostname",
            f"{name}@test",
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def ready(procs, names):
    from worker.pool import wait_ready

    wait_ready([f"{n}@test" for n in names], procs)


@pytest.fixture(scope="module")
def s3(pointed):
    """moto's S3-compatible server on a free port, with a bucket; its fsspec options."""
    import s3fs
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port)
    server.start()
    wait_for_port(port)
    options = {
        "key": "testing",
        "secret": "testing",
        "client_kwargs": {"endpoint_url": f"http://127.0.0.1:{port}"},
    }
    s3fs.S3FileSystem(**options).mkdir("cubes")
    saved = os.environ.get("SMAPX_STORAGE_OPTIONS")
    os.environ["SMAPX_STORAGE_OPTIONS"] = json.dumps(options)
    get_settings.cache_clear()
    yield options
    if saved is None:
        os.environ.pop("SMAPX_STORAGE_OPTIONS", None)
    else:
        os.environ["SMAPX_STORAGE_OPTIONS"] = saved
    get_settings.cache_clear()
    server.stop()


def compose_service(name: str) -> tuple[list[str], dict]:
    """The command and environment docker-compose.yml gives a service (Redis URL left out)."""
    import yaml

    spec = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"][name]
    env = {k: str(v) for k, v in spec.get("environment", {}).items() if k != "SMAPX_REDIS_URL"}
    program, *args = spec["command"]
    return [SMAPX if program == "smapx" else program, *args], env


@pytest.fixture(scope="module")
def jobs_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("jobs")


@pytest.fixture(scope="module")
def steady(pointed, s3, jobs_dir):
    """One worker for the module, started with the compose file's worker command."""
    from worker.pool import stop

    command, env = compose_service("worker")
    env.update(
        SMAPX_REDIS_URL=pointed,
        SMAPX_TASK_VISIBILITY_TIMEOUT=str(VISIBILITY_S),
        SMAPX_STORAGE_OPTIONS=json.dumps(s3),
        SMAPX_JOBS_DIR=str(jobs_dir),
    )
    proc = subprocess.Popen(
        [*command, "--hostname", "steady@test"],
        env={**os.environ, **env},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    ready([proc], ["steady"])
    yield proc
    stop([proc])


@contextmanager
def paused(worker_name: str):
    """The worker takes no task from the queue inside the context."""
    from kombu.transport.redis import Transport

    from worker.app import QUEUE, app

    destination = [f"{worker_name}@test"]
    assert app.control.cancel_consumer(QUEUE, destination=destination, reply=True)
    # A BRPOP the worker sent before it stopped consuming is still waiting in Redis; a task it
    # pops is handed back to the queue, but only after the test may have counted the queue.
    time.sleep(Transport.brpop_timeout + 0.5)
    try:
        yield
    finally:
        assert app.control.add_consumer(QUEUE, destination=destination, reply=True)


def test_the_fingerprint_changes_with_every_file_of_the_checkpoint(world, tmp_path):
    from worker.extension import fingerprint

    model = tmp_path / "model"
    shutil.copytree(world["model"], model)
    request = request_for(world, tmp_path / "cube.zarr") | {"model": str(model)}
    original = fingerprint(request)
    files = checkpoint.files(model)
    assert {p.name for p in files} >= {
        "config.json",
        "member_0.safetensors",
        "probe.npy",
        "probe_reference.npy",
    }
    for path in files:
        saved = path.read_bytes()
        path.write_bytes(saved[:-1] + bytes([saved[-1] ^ 1]))
        assert fingerprint(request) != original, f"{path.name} is not in the fingerprint"
        path.write_bytes(saved)
    assert fingerprint(request) == original


@pytest.mark.parametrize("hidden", [64, 256], ids=["torch-path", "kernel-path"])
def test_blocks_run_together_give_the_bytes_of_blocks_run_alone(tmp_path, monkeypatch, hidden):
    """The in-process extension runs the blocks of a time chunk through the network together;
    each block still gets the bytes a worker computes for it alone (the torch path batches each
    block alone, the kernels are exact per cell)."""
    inputs_path, model_path = make_world(tmp_path, hidden)
    ckpt, inputs = checkpoint.load(model_path), open_input(inputs_path).load()
    template = plan(ckpt, inputs, START, END)
    blocks = cubes.blocks(template)
    calls = []
    monkeypatch.setattr(
        extension,
        "predict_with_spread",
        lambda *a, **k: calls.append(k["groups"]) or predict_with_spread(*a, **k),
    )
    monkeypatch.setattr(extension, "BATCH_CELLS", 30)  # two 12-cell blocks per batch
    batched = list(compute_blocks(ckpt, inputs, template, blocks))
    assert calls == [[12, 12]] * 4, "8 blocks in 2 time chunks run as 4 batches of 2"
    assert [block for block, _ in batched] == blocks
    for block, values in batched:
        alone = compute_block(ckpt, inputs, template, block)
        assert values.keys() == alone.keys() >= {"lstm", "smap", "noah"}
        assert all(values[p].tobytes() == alone[p].tobytes() for p in values), block.name


def test_cli_two_workers_equal_in_process_cube(world, ranked_reference, tmp_path):
    """`smapx extend ... --workers 2` with no Redis configured: a private redis-server and two
    worker processes, the same chunk bytes as the in-process cube, all stopped at the end."""
    out = tmp_path / "pool.zarr"
    env = {k: v for k, v in os.environ.items() if not k.startswith("SMAPX_")}
    result = subprocess.run(
        [
            SMAPX,
            "extend",
            "--model",
            str(world["model"]),
            "--input",
            str(world["inputs"]),
            "--start",
            START,
            "--end",
            END,
            "--out",
            str(out),
            "--workers",
            "2",
        ],
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=240,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"wrote {out}" in result.stdout
    assert "no worker answers" not in result.stderr  # its own workers were only starting
    reference = local_files(ranked_reference)
    made = local_files(out)
    assert made.keys() == reference.keys()
    assert [k for k in reference if made[k] != reference[k]] == []
    assert len([k for k in reference if k.startswith("lstm/c/")]) == 8
    assert len(cubes.blocks_done(out)) == 8


def test_release_hands_back_only_what_a_dead_worker_held(redis_url):
    """A dead worker's held tags go to the epoch in the broker's index, so the next sweep
    delivers them again; an acknowledged tag (gone from the index) is not put back, another
    worker's tags are not touched, and a record past its lifetime hands back nothing."""
    import redis

    url = redis_url.rsplit("/", 1)[0] + "/4"
    r = redis.Redis.from_url(url, decode_responses=True)
    r.flushdb()
    r.zadd(held.UNACKED_INDEX, {"held": 100.0, "other": 100.0})
    r.sadd(held.HELD_KEY + "dead@host", "held", "acknowledged")
    r.sadd(held.HELD_KEY + "live@host", "other")
    r.set(held.WORKER_KEY + "dead@host", 1.0)
    with pool.pointing_at(url):
        assert held.release("dead@host") == 1
        assert held.release("gone@host") == 0  # no record: the timeout still applies
    assert r.zrange(held.UNACKED_INDEX, 0, -1, withscores=True) == [
        ("held", 0.0),
        ("other", 100.0),
    ]
    assert r.keys("smapx:*") == [held.HELD_KEY + "live@host"]


def test_cli_pool_worker_killed_mid_extension_is_replaced_and_redone_within_a_minute(
    world, ranked_reference, redis_url, tmp_path
):
    """`smapx extend --workers 1` under the default settings: its worker is SIGKILLed while it
    holds a block; the pool starts another, the held block is delivered again, and the command
    ends within a minute of the kill with the in-process cube's bytes."""
    import redis

    url = redis_url.rsplit("/", 1)[0] + "/4"
    r = redis.Redis.from_url(url)
    r.flushdb()
    out = tmp_path / "survived.zarr"
    env = {k: v for k, v in os.environ.items() if not k.startswith("SMAPX_")}
    args = ["extend", "--model", str(world["model"]), "--input", str(world["inputs"])]
    args += ["--start", START, "--end", END, "--out", str(out), "--workers", "1"]
    command = subprocess.Popen(
        [SMAPX, *args],
        env={**env, "SMAPX_REDIS_URL": url, "SMAPX_TORCH_THREADS": "1"},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        name = f"smapx-{command.pid}-0@{socket.gethostname()}"
        deadline = time.monotonic() + 180
        while True:  # frozen, the worker is seen holding a block it has recorded, then killed
            assert command.poll() is None, command.stderr.read()[-3000:]
            assert time.monotonic() < deadline, "the worker never held a block it had recorded"
            children = Path(f"/proc/{command.pid}/task/{command.pid}/children").read_text()
            if children and cubes.blocks_done(out):
                worker = int(children.split()[0])
                os.kill(worker, signal.SIGSTOP)
                if recorded_holding(r, name):
                    break
                os.kill(worker, signal.SIGCONT)
            time.sleep(0.005)
        os.kill(worker, signal.SIGKILL)
        killed = time.monotonic()
        assert len(cubes.blocks_done(out)) < 8
        stdout, stderr = command.communicate(timeout=120)
        took = time.monotonic() - killed
    finally:
        command.kill()
    assert command.returncode == 0, stderr[-3000:]
    assert "starting another (1 task(s) it held handed back)" in stderr
    assert took < 60, f"the extension ended {took:.0f} s after its worker was killed"
    reference, made = local_files(ranked_reference), local_files(out)
    assert made.keys() == reference.keys()
    assert [k for k in reference if made[k] != reference[k]] == []
    print(f"extension finished {took:.1f} s after its worker was killed")


def test_killed_worker_job_completes_and_equals_in_process(world, pointed, steady, tmp_path):
    """SIGKILL the only active worker while it holds a block; the other worker gets the block
    again once its visibility timeout passes, and the cube ends identical to the in-process one."""
    import redis

    from worker import jobs
    from worker.submit import follow, submit_extend

    out = tmp_path / "killed.zarr"
    r = redis.Redis.from_url(pointed)
    with paused("steady"):
        doomed = start_worker(pointed, "doomed")
        ready([doomed], ["doomed"])
        job_id = submit_extend(request_for(world, out))
        holding_a_block(doomed, out, r, 1)
        doomed.send_signal(signal.SIGKILL)
        doomed.wait()
        assert r.hlen("unacked") == 1, "the killed worker must leave a block unacknowledged"
        assert jobs.get_job(job_id)["blocks_done"] < 8
    job = follow(job_id, progress=False)
    assert job["state"] == "done" and job["blocks_done"] == 8 and job["percent"] == 100.0
    assert local_files(out) == local_files(world["reference"])


def test_killed_pool_children_are_replaced_and_their_blocks_rerun(world, pointed, steady, tmp_path):
    """A prefork worker (`--concurrency 2`) whose children are SIGKILLed mid-block: the blocks
    are handed back at once (reject on worker lost) and the cube equals the in-process one."""
    import redis

    from worker.pool import stop
    from worker.submit import follow, submit_extend

    out = tmp_path / "children.zarr"
    r = redis.Redis.from_url(pointed)
    with paused("steady"):
        env = {**os.environ, "SMAPX_REDIS_URL": pointed, "SMAPX_TASK_VISIBILITY_TIMEOUT": "3600"}
        pool = subprocess.Popen(
            [
                SMAPX,
                "worker",
                "--concurrency",
                "2",
                "--loglevel",
                "warning",
                "--hostname",
                "forked@test",
            ],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            ready([pool], ["forked"])
            job_id = submit_extend(request_for(world, out))
            deadline = time.monotonic() + 120
            while not (cubes.blocks_done(out) and r.hlen("unacked") == 2):
                assert time.monotonic() < deadline, "the pool never got going"
                time.sleep(0.01)
            children = Path(f"/proc/{pool.pid}/task/{pool.pid}/children").read_text().split()
            assert len(children) == 2
            for child in children:
                os.kill(int(child), signal.SIGKILL)
            job = follow(job_id, progress=False)
        finally:
            stop([pool])
    assert job["state"] == "done" and job["blocks_done"] == 8
    assert local_files(out) == local_files(world["reference"])


def test_submit_twice_and_resume_touch_only_missing_blocks(world, pointed, steady, tmp_path):
    from worker import jobs
    from worker.submit import follow, resume_job, submit_extend

    out = tmp_path / "twice.zarr"
    request = request_for(world, out)
    first = submit_extend(request)
    assert submit_extend(request) == first, "a running job is not submitted twice"
    assert follow(first, progress=False)["blocks_done"] == 8
    stamps = {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()}

    again = submit_extend(request)
    assert again != first
    assert jobs.get_job(again)["state"] == "done"
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()} == stamps

    lost = sorted(cubes.blocks_done(out))[:2]  # as if the pool died while writing them
    for name in lost:
        (out / cubes.MARKERS / name).unlink()
    torn = out / "lstm" / chunk_key(lost[0])
    torn.write_bytes(b"torn")
    jobs.finish_job(first, "failed", error="pool lost")
    resumed = follow(resume_job(first), progress=False)
    assert resumed["blocks_done"] == 8
    assert local_files(out) == local_files(world["reference"])
    rewritten = {
        p.relative_to(out).as_posix() for p, t in stamps.items() if p.stat().st_mtime_ns != t
    }
    allowed = {f"{product}/{chunk_key(name)}" for name in lost for product in cubes.PRODUCTS}
    allowed |= {f"{cubes.MARKERS}/{name}" for name in lost}
    assert f"lstm/{chunk_key(lost[0])}" in rewritten
    assert rewritten <= allowed


def chunk_key(block_name: str) -> str:
    """The chunk key of a block named t<t0>-y<y0>-x<x0> (blocks are one chunk each)."""
    t0, y0, x0 = (int(part[1:]) for part in block_name.split("-"))
    return f"c/{t0 // cubes.CHUNK_TIME}/{y0 // cubes.CHUNK_Y}/{x0 // cubes.CHUNK_X}"


def test_cancel_skips_blocks_and_resume_finishes(world, pointed, steady, tmp_path):
    from worker import jobs
    from worker.submit import follow, resume_job, submit_extend

    out = tmp_path / "cancelled.zarr"
    wait_drained(pointed)
    with paused("steady"):
        job_id = submit_extend(request_for(world, out))
        assert queue_length(pointed) == 8
        assert jobs.cancel_job(job_id)["state"] == "cancelled"
    wait_drained(pointed)
    assert cubes.blocks_done(out) == set()
    assert jobs.get_job(job_id)["state"] == "cancelled"
    done = follow(resume_job(job_id), progress=False)
    assert done["state"] == "done" and done["id"] != job_id
    assert local_files(out) == local_files(world["reference"])


def test_resume_requeues_a_stuck_job(world, pointed, steady, tmp_path):
    """A job whose queued tasks were lost (a broker restarted without persistence) stays
    queued for ever; `--resume` queues its unwritten blocks again under the same job."""
    import redis

    from worker import jobs
    from worker.app import QUEUE
    from worker.submit import follow, resume_job, submit_extend

    out = tmp_path / "stuck.zarr"
    wait_drained(pointed)  # the last test's final ack may still be on its way
    with paused("steady"):
        job_id = submit_extend(request_for(world, out))
        redis.Redis.from_url(pointed).delete(QUEUE)
        assert queue_length(pointed) == 0 and jobs.get_job(job_id)["state"] == "queued"
        assert resume_job(job_id) == job_id
        assert queue_length(pointed) == 8
    done = follow(job_id, progress=False)
    assert done["state"] == "done" and done["blocks_done"] == 8
    assert local_files(out) == local_files(world["reference"])


def holding_a_block(proc: subprocess.Popen, out: Path, r, unacked: int) -> None:
    """Stop `proc` (SIGSTOP) once it has written a block and holds `unacked` more: between
    acknowledging one block and taking the next a worker holds none, so the state is checked
    while the process cannot move."""
    deadline = time.monotonic() + 120
    while True:
        assert time.monotonic() < deadline, "the worker never got going"
        if cubes.blocks_done(out) and r.hlen("unacked") == unacked:
            proc.send_signal(signal.SIGSTOP)
            if r.hlen("unacked") == unacked:
                return
            proc.send_signal(signal.SIGCONT)
        time.sleep(0.01)


def recorded_holding(r, name: str) -> bool:
    """Whether worker `name` holds one block and its record (worker.held) lists it. Kombu marks a
    message unacknowledged as it fetches it, a moment before Celery's receipt signal records it:
    a worker killed in between leaves the block to the visibility timeout, so it is not frozen
    there."""
    holding = {t.decode() for t in r.hkeys("unacked")}
    return len(holding) == 1 and holding <= {t.decode() for t in r.smembers(held.HELD_KEY + name)}


def queue_length(url: str) -> int:
    import redis

    r = redis.Redis.from_url(url)
    return r.llen("smapx") + r.hlen("unacked")


def wait_drained(url: str) -> None:
    """Wait until no task is queued or unacknowledged: a worker acknowledges a block after the
    job already reads done, so a test that counts messages starts from an empty queue."""
    deadline = time.monotonic() + 60
    while queue_length(url) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert queue_length(url) == 0


def test_s3_store_equals_in_process_cube_through_resubmit_and_resume(world, pointed, s3, steady):
    """The same job written by a worker to an S3-compatible server (moto) holds the same bytes;
    sent again it rewrites nothing; with a block lost and its chunk torn, a resume mends it."""
    import s3fs

    from worker import jobs
    from worker.submit import follow, resume_job, submit_extend

    url, root = "s3://cubes/extended.zarr", "cubes/extended.zarr"
    request = request_for(world, url)
    first = submit_extend(request)
    assert submit_extend(request) == first
    assert follow(first, progress=False)["state"] == "done"
    fs = s3fs.S3FileSystem(**s3)
    reference = local_files(world["reference"])
    assert store_files(fs, root) == reference
    assert len(cubes.blocks_done(url, s3)) == 8

    stamps = {p: fs.info(p)["LastModified"] for p in fs.find(root)}
    again = submit_extend(request)
    assert jobs.get_job(again)["state"] == "done"
    fs.invalidate_cache()
    assert {p: fs.info(p)["LastModified"] for p in fs.find(root)} == stamps

    lost = max(cubes.blocks_done(url, s3))
    fs.rm(f"{root}/{cubes.MARKERS}/{lost}")
    fs.pipe(f"{root}/lstm/{chunk_key(lost)}", b"torn")
    jobs.finish_job(again, "failed", error="pool lost")
    assert follow(resume_job(again), progress=False)["blocks_done"] == 8
    fs.invalidate_cache()
    assert store_files(fs, root) == reference


def test_a_cube_on_s3_is_served_over_http_and_exported_by_a_worker(
    world, pointed, s3, steady, tmp_path
):
    """The service and the export task reach a URL cube with the settings' storage options:
    its series, Zarr keys and exports equal the local cube's."""
    import hashlib

    import httpx
    import s3fs

    from model import grid
    from model.product.export import export_subset
    from worker.pool import stop
    from worker.submit import follow, submit_export

    url = "s3://cubes/served.zarr"
    s3fs.S3FileSystem(**s3).put(str(world["reference"]), "cubes/served.zarr", recursive=True)
    port = free_port()
    api = subprocess.Popen(
        [SMAPX, "serve", "--cube", url, "--host", "127.0.0.1", "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for_port(port, timeout=120, process=api)
        base = f"http://127.0.0.1:{port}/v1"
        lat, lon = grid.rowcol_to_latlon(101, 201)
        got = httpx.get(
            f"{base}/series",
            params={
                "lat": float(lat),
                "lon": float(lon),
                "cube": "served",
                "start": "2012-03-01",
                "end": "2012-03-31",
            },
        ).json()
        local = cubes.open_cube(world["reference"])
        iy, ix = cubes.locate(local, float(lat), float(lon))
        expected = local["lstm"].sel(time=slice("2012-03-01", "2012-03-31")).values[:, iy, ix]
        np.testing.assert_allclose(np.array(got["lstm"], dtype=float), expected, atol=1e-6)
        key = httpx.get(f"{base}/zarr/served/lstm/zarr.json")
        assert key.content == (world["reference"] / "lstm" / "zarr.json").read_bytes()
    finally:
        stop([api])
    request = {
        "products": ["lstm", "smap"],
        "start": "2012-03-01",
        "end": "2012-04-30",
        "points": [[float(lat), float(lon)]],
        "format": "csv",
    }
    job = follow(submit_export(request, url), progress=False)
    assert job["state"] == "done", job.get("error")
    expected_files = export_subset(str(world["reference"]), request, tmp_path)
    assert {f["name"]: f["sha256"] for f in job["result"]} == {
        p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in expected_files
    }


def bad_request(world, tmp_path, case: str) -> dict:
    request = request_for(world, tmp_path / "bad.zarr")
    if case == "unknown model":
        request["model"] = str(tmp_path / "no-such-model")
    elif case == "period outside the forcing":
        request["start"] = "2001-01-01"
    elif case == "region with no cells":
        request["input"] = str(tmp_path / "empty.zarr")
        write_input(open_input(world["inputs"]).isel(cell=[]).load(), request["input"])
    else:
        (tmp_path / "a-file").write_text("not a folder")
        request["out"] = str(tmp_path / "a-file" / "cube.zarr")
    return request


@pytest.mark.parametrize(
    "case, message",
    [
        ("unknown model", "not a model checkpoint"),
        ("period outside the forcing", "period 2001-01-01..2015-06-30 is outside the data"),
        ("region with no cells", "the region has no cells"),
        ("store not writable", "is not a writable folder"),
    ],
)
def test_bad_requests_fail_at_submission(world, pointed, tmp_path, case, message):
    from model.errors import SmapxError
    from worker import jobs
    from worker.submit import run_extend

    before = len(jobs.list_jobs())
    with pytest.raises(SmapxError, match=message):
        run_extend(bad_request(world, tmp_path, case), workers=2)
    assert len(jobs.list_jobs()) == before
    assert queue_length(pointed) == 0
    assert not (tmp_path / "bad.zarr").exists()


def test_cli_bad_request_is_one_line_and_starts_nothing(world, tmp_path):
    request = bad_request(world, tmp_path, "period outside the forcing")
    result = subprocess.run(
        [
            SMAPX,
            "extend",
            "--model",
            request["model"],
            "--input",
            request["input"],
            "--start",
            request["start"],
            "--end",
            request["end"],
            "--out",
            request["out"],
            "--workers",
            "2",
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        "error: period 2001-01-01..2015-06-30 is outside the data (2010-01-01..2015-12-31)"
    ]


def test_export_job_records_files_with_checksums(world, pointed, steady, tmp_path):
    """The export task writes what model.product.export writes in-process, and records size and
    sha256."""
    import hashlib

    from model import grid
    from model.product.export import export_subset
    from worker.submit import follow, submit_export

    lat, lon = grid.rowcol_to_latlon(101, 201)
    request = {
        "products": ["lstm", "smap", "noah"],
        "start": "2012-03-01",
        "end": "2012-04-30",
        "points": [[float(lat), float(lon)]],
        "format": "csv",
    }
    job = follow(submit_export(request, str(world["reference"])), progress=False)
    expected = export_subset(str(world["reference"]), request, tmp_path)
    files = {f["name"]: f for f in job["result"]}
    assert sorted(files) == sorted(p.name for p in expected)
    for path in expected:
        data = path.read_bytes()
        assert files[path.name]["size"] == len(data)
        assert files[path.name]["sha256"] == hashlib.sha256(data).hexdigest()


def test_cli_queue_and_jobs_commands(world, ranked_reference, pointed, steady, tmp_path):
    """`smapx extend --queue` runs on the pool; `smapx jobs` and `smapx job ID` show its record."""
    from worker import jobs

    env = {**os.environ, "SMAPX_REDIS_URL": pointed}

    def smapx(*args):
        return subprocess.run(
            [SMAPX, *args], env=env, capture_output=True, text=True, check=False, timeout=240
        )

    out = tmp_path / "queued.zarr"
    request = request_for(world, out)
    queued = smapx("extend", *[f"--{k}={v}" for k, v in request.items()], "--queue")
    assert queued.returncode == 0, queued.stderr[-2000:]
    assert local_files(out) == local_files(ranked_reference)
    ranking, newest = jobs.list_jobs(2)  # the extension, then its climatology on the pool
    assert newest["request"]["out"] == str(out) and newest["state"] == "done"
    assert ranking["kind"] == "climatology" and ranking["request"]["cube"] == str(out)
    assert ranking["state"] == "done"
    listing = smapx("jobs")
    assert listing.returncode == 0
    assert [line.split()[:3] for line in listing.stdout.splitlines()[1:3]] == [
        [job["id"], job["kind"], job["state"]] for job in (ranking, newest)
    ]
    assert json.loads(smapx("job", newest["id"]).stdout) == jobs.get_job(newest["id"])
    missing = smapx("job", "nope")
    assert missing.returncode == 1
    assert missing.stderr.strip() == "error: no job 'nope' (unknown or expired)"


def test_cli_trains_on_the_pool_with_progress_per_epoch(world, pointed, steady, tmp_path):
    """`smapx train --queue`: the worker trains and saves; the job went through its epochs."""
    from worker import jobs

    out = tmp_path / "pool-model"
    options = {
        "input": world["inputs"],
        "start": "2015-04-01",
        "end": "2015-06-30",
        "out": out,
        "hidden": 16,
        "window": 30,
        "burn-in": 5,
        "max-epochs": 2,
        "ensemble": 2,
        "validation": "tail",
        "validation-days": 20,
        "threads": 1,
    }
    run = subprocess.run(
        [SMAPX, "train", *[f"--{k}={v}" for k, v in options.items()], "--queue"],
        env={**os.environ, "SMAPX_REDIS_URL": pointed},
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    assert f"wrote {out}: validation (tail: 2015-06-11..2015-06-30)" in run.stdout
    assert checkpoint.load(out).config["hidden"] == 16
    job = jobs.list_jobs(1)[0]
    assert job["kind"] == "train" and job["state"] == "done" and job["percent"] == 100
    assert job["result"]["validation"]["members"] == 2


def test_compose_api_and_worker_run_an_export_end_to_end(world, pointed, steady, jobs_dir):
    """The compose file's api command (on a local cube and port) takes a bulk job over HTTP;
    the compose worker runs it; the files it lists are those the service then serves."""
    import httpx

    from worker.pool import stop

    command, env = compose_service("api")
    command[command.index("--cube") + 1] = str(world["reference"])
    port = free_port()
    command[command.index("--port") + 1] = str(port)
    command[command.index("--host") + 1] = "127.0.0.1"
    env.update(SMAPX_REDIS_URL=pointed, SMAPX_JOBS_DIR=str(jobs_dir))
    api = subprocess.Popen(
        command, env={**os.environ, **env}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        wait_for_port(port, timeout=120, process=api)
        base = f"http://127.0.0.1:{port}/v1"
        body = {
            "products": ["lstm"],
            "start": "2012-01-01",
            "end": "2012-01-10",
            "bbox": [-180, -90, 180, 90],
            "format": "csv",
        }
        submitted = httpx.post(f"{base}/jobs", json=body, timeout=30)
        assert submitted.status_code == 202, submitted.text
        job_id = submitted.json()["id"]
        deadline = time.monotonic() + 60
        while (state := httpx.get(f"{base}/jobs/{job_id}").json()["state"]) in RUNNING:
            assert time.monotonic() < deadline
            time.sleep(0.2)
        assert state == "done"
        listed = httpx.get(f"{base}/jobs/{job_id}/files").json()["files"]
        assert listed and all(f["size"] > 0 for f in listed)
        served = httpx.get(base.removesuffix("/v1") + listed[0]["href"])
        assert len(served.content) == listed[0]["size"]
    finally:
        stop([api])


def test_block_failing_in_a_worker_fails_the_job_with_its_error(world, pointed, steady, tmp_path):
    """An input that vanishes after submission: a user error, so no retries; the job is failed
    with the error text and its other blocks do nothing."""
    import shutil

    from model.errors import SmapxError
    from worker import jobs
    from worker.submit import follow, submit_extend

    inputs = tmp_path / "inputs.zarr"
    shutil.copytree(world["inputs"], inputs)
    request = {**request_for(world, tmp_path / "failing.zarr"), "input": str(inputs)}
    with paused("steady"):
        job_id = submit_extend(request)
        shutil.rmtree(inputs)
    expected = f"job {job_id} failed: InputError: input dataset not found"
    with pytest.raises(SmapxError, match=expected):
        follow(job_id, progress=False)
    wait_drained(pointed)
    job = jobs.get_job(job_id)
    assert job["state"] == "failed" and job["blocks_done"] == 0 and job["finished"]
    assert cubes.blocks_done(tmp_path / "failing.zarr") == set()


def test_private_redis_lives_only_inside_its_context():
    """The embedded default when no Redis is configured or running: a redis-server of our own."""
    import redis

    from worker.pool import private_redis

    with private_redis() as url:
        client = redis.Redis.from_url(url)
        assert client.set("smapx:probe", "1") and client.get("smapx:probe") == b"1"
        port = client.connection_pool.connection_kwargs["port"]
    with pytest.raises(redis.ConnectionError):
        redis.Redis(port=port, socket_connect_timeout=1).ping()


def test_climatology_on_the_pool_resumes_and_publishes_whole_as_one_process_ranks(
    world, ranked_reference, pointed, steady, tmp_path, monkeypatch
):
    """A climatology job, one window of cells per task: a computation that stopped with one
    window group written resumes without writing it again, the served climatology (of another
    base) stays until every group is written, and the one published in its place holds the
    bytes of the in-process climatology."""
    from worker import climatology as pool_climatology
    from worker import jobs
    from worker.submit import follow, submit_climatology

    out = tmp_path / "ranked.zarr"
    shutil.copytree(world["reference"], out)
    climatology.compute(out, "2011-01-01/2012-12-31", progress=False)
    monkeypatch.setattr(climatology, "BATCH_COLUMNS", 36)  # a 12-cell window x 3 products
    request = pool_climatology.checked(out)
    template = cubes.open_cube(out)
    windows = climatology.window_groups(template, request["plan"])
    assert len(windows) == 4
    climatology.begin(out, template, request["plan"])
    climatology.rank_window_group(out, template, request["plan"], 2)  # then it stopped
    ((ys, xs),) = windows[2]
    mine = f"/{ys.start // cubes.CHUNK_Y}/{xs.start // cubes.CHUNK_X}"
    staged = out / cubes.CLIMATOLOGY_STAGED
    written = {
        p.relative_to(staged): p.stat().st_mtime_ns
        for p in staged.rglob("*")
        if p.is_file() and p.as_posix().endswith(mine)
    }
    assert len(written) == 9  # 3 products: percentiles of 2 time chunks, window means
    generation = cubes.generation(out)["generation"]
    wait_drained(pointed)
    with paused("steady"):
        job_id = submit_climatology(request)
        assert jobs.get_job(job_id)["blocks_done"] == 1 and queue_length(pointed) == 3
        assert cubes.climatology_info(out)["base_end"] == "2012-12-31"
    job = follow(job_id, progress=False)
    assert (job["kind"], job["blocks_done"], job["blocks_total"]) == ("climatology", 4, 4)
    assert cubes.climatology_info(out)["base_end"] == "2015-06-30"
    assert cubes.generation(out)["generation"] == generation + 1
    served = out / cubes.CLIMATOLOGY
    assert {p: (served / p).stat().st_mtime_ns for p in written} == written
    assert local_files(out) == local_files(ranked_reference)


def test_jobs_made_within_one_second_are_listed_newest_first(pointed):
    """The job index orders by creation to the millisecond: ordered by the second, jobs made
    together (a daily run's chain, a bulk submission) listed in random order."""
    from worker import jobs

    made = []
    for k in range(6):
        made.append(jobs.create_job("extend", {"test": "order", "k": k}))
        time.sleep(0.002)
    listed = [j["id"] for j in jobs.list_jobs(50, kind="extend") if j["id"] in made]
    assert listed == made[::-1]

"""`smapx daily` through the real CLI and a real Redis: files arrive in the watched folders,
the daily run ingests them and grows the cube; run twice it does nothing the second time; after
three missed days one run catches up; with --queue the growth runs on the worker pool; every run
is a job. The first daily run is a process of its own; the other commands run in this one
(tests.inprocess)."""

import json
import os
import shutil
import subprocess
import sys

import pytest

from model.dataset import open_input
from model.product import cube as cubes
from model.production.extend import extend
from model.training import checkpoint
from model.training.train import TrainConfig, train
from tests.inprocess import smapx
from tests.real_formats import BBOX, DAYS
from tests.served import start_worker
from tests.twins import assert_same_cube

pytestmark = pytest.mark.integration

SMAPX = [sys.executable, "-c", "from cli.main import main; main()"]
FOLDERS = {"smap": "smap", "fora": "forcing", "noah": "noah"}


def smapx_process(*args, env: dict) -> str:
    run = subprocess.run(
        [*SMAPX, *map(str, args)],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, **env},
    )
    assert run.returncode == 0, run.stderr
    return run.stdout


def deliver(files, inbox, first: int, stop: int) -> None:  # noqa: F811
    """The files of days first..stop-1 arrive in the inbox folders."""
    days = {f"{d:%Y%m%d}" for d in DAYS[first:stop]}
    for folder in FOLDERS:
        (inbox / folder).mkdir(parents=True, exist_ok=True)
        for path in (files / folder).iterdir():
            if any(day in path.name for day in days):
                shutil.copy2(path, inbox / folder / path.name)


def test_daily_ingests_grows_and_catches_up(files, tmp_path, redis_url):  # noqa: F811
    env = {"SMAPX_REDIS_URL": redis_url, "SMAPX_TORCH_THREADS": "1"}
    inbox, data = tmp_path / "inbox", tmp_path / "input.zarr"
    deliver(files, inbox, 0, 120)
    smapx("ingest", "smap", inbox / "smap", "--bbox", BBOX, "--out", data, env=env)
    smapx("ingest", "nldas", inbox / "fora", "--out", data, env=env)
    smapx("ingest", "static", files / "sand.tif", "--name", "sand", "--out", data, env=env)
    config = TrainConfig(
        start="2015-04-01",
        end="2015-07-29",
        hidden=16,
        window=30,
        burn_in=5,
        batch_size=8,
        iterations_per_epoch=5,
        max_epochs=2,
        validation_days=40,
        ensemble=1,
        threads=1,
    )
    ckpt, log = train(open_input(data), config, progress=False)
    model = checkpoint.save(tmp_path / "model", ckpt, log)
    cube = tmp_path / "cube.zarr"
    daily = [
        "daily",
        "--input",
        data,
        "--start",
        "2015-04-01",
        "--cube",
        f"{model}={cube}",
        "--smap",
        inbox / "smap",
        "--forcing",
        inbox / "fora",
        "--min-hours",
        1,
    ]
    first = smapx_process(*daily, env=env)
    assert f"ends {DAYS[119].date()}" in first
    deliver(files, inbox, 120, 123)
    caught_up = smapx(*daily, env=env)
    assert "ingested forcing: 3 day(s)" in caught_up and f"ends {DAYS[122].date()}" in caught_up
    assert "0 block(s)" not in caught_up
    again = smapx(*daily, env=env)
    assert "ingested" not in again and "0 block(s) computed" in again
    fresh = tmp_path / "fresh.zarr"
    extend(checkpoint.load(model), open_input(data), "2015-04-01", DAYS[122], fresh, progress=False)
    assert_same_cube(cube, fresh)
    assert cubes.generation(cube)["generation"] == 2
    records = json.loads(smapx("jobs", "--json", env=env))
    runs = [r for r in records if r["kind"] == "daily"]
    assert [r["state"] for r in runs] == ["done"] * 3
    assert runs[0]["result"]["cubes"][str(cube)]["blocks"] == 0

    deliver(files, inbox, 123, 125)  # the growth now runs on the worker pool
    worker = start_worker(env, f"daily-{os.getpid()}@%h")
    try:
        queued = smapx(*daily, "--queue", env=env)
    finally:
        worker.terminate()
        worker.wait(30)
    assert "ingested forcing: 2 day(s)" in queued and f"ends {DAYS[124].date()}, job " in queued
    extend(checkpoint.load(model), open_input(data), "2015-04-01", DAYS[124], fresh, progress=False)
    assert_same_cube(cube, fresh)
    kinds = [r["kind"] for r in json.loads(smapx("jobs", "--json", env=env))]
    assert kinds.count("daily") == 4 and "extend" in kinds


def test_a_second_daily_run_on_a_dataset_is_refused_while_one_holds_it(tmp_path):
    """The daily chain's lock is filelock's, as every other lock here: a run while another
    process holds it stops at once with one line, and the lock goes with its holder."""
    from model.errors import InputError
    from model.production.daily import _one_run

    dataset = tmp_path / "input.zarr"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys; from filelock import FileLock; lock = FileLock(sys.argv[1]); "
            "lock.acquire(); print('held', flush=True); sys.stdin.read()",
            f"{dataset}.daily.lock",
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(InputError, match="in progress"), _one_run(dataset):
            pass
    finally:
        holder.communicate("")
    with _one_run(dataset):
        pass

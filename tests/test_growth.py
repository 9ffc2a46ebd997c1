"""A cube grows in place on the twin world: day by day it stays byte-identical to a cube
extended at once over the whole period, a repeated request does nothing, and a cube refuses a
checkpoint or input dataset that did not make it."""

import os

import numpy as np
import pandas as pd
import pytest

from model.errors import InputError
from model.grid import parse_bbox
from model.product import climatology
from model.product import cube as cubes
from model.production.extend import extend, plan
from model.training import checkpoint
from model.world import WorldConfig, build_world
from tests.inprocess import settings, smapx
from tests.served import start_worker
from tests.twins import GROWTH_DAYS, START, WORLD, assert_same_cube, day, stored_bytes
from worker.submit import run_extend

pytestmark = pytest.mark.integration


def test_a_live_demo_grows_its_served_cube_a_day_at_a_time(twin, tmp_path, monkeypatch):
    from cli import demo

    inputs, input_path, model, _ = twin
    ckpt = checkpoint.load(model)
    config = demo.DemoConfig(out=tmp_path, start=START, end=day(2), live_days=2, live_seconds=0.2)
    assert demo.live_start(config) == day(0)
    live, fresh = tmp_path / "live.zarr", tmp_path / "fresh.zarr"
    extend(ckpt, inputs, START, day(0), live, progress=False)
    monkeypatch.setattr(demo.get_settings(), "reload_seconds", 30.0)
    demo.grow_while_serving(model, input_path, config, live).join(300)
    assert demo.get_settings().reload_seconds == 0.1  # the server follows each step
    assert cubes.generation(live)["generation"] == 3 and cubes.generation(live)["end"] == day(2)
    extend(ckpt, inputs, START, day(2), fresh, progress=False)
    assert_same_cube(live, fresh)


def test_growing_day_by_day_equals_one_extension(twin, tmp_path, monkeypatch):
    """With 64-day time chunks the ten days cross a chunk boundary: a new chunk starts."""
    monkeypatch.setattr(cubes, "CHUNK_TIME", 64)
    inputs, _, model, _ = twin
    ckpt = checkpoint.load(model)
    grown, fresh = tmp_path / "grown.zarr", tmp_path / "fresh.zarr"
    extend(ckpt, inputs, START, day(0), grown, progress=False)
    first = cubes.open_cube(grown)["lstm"].values
    n_blocks = len(cubes.blocks(cubes.open_cube(grown)))
    computed = []
    for offset in range(1, GROWTH_DAYS + 1):
        computed.append(extend(ckpt, inputs, START, day(offset), grown, progress=False))
        assert cubes.generation(grown)["generation"] == offset + 1
        assert cubes.generation(grown)["end"] == day(offset)
    spatial_blocks = n_blocks // -(-len(first) // 64)
    assert computed == [spatial_blocks] * GROWTH_DAYS
    extend(ckpt, inputs, START, day(GROWTH_DAYS), fresh, progress=False)
    assert_same_cube(grown, fresh)
    after = cubes.open_cube(grown)
    assert after.sizes["time"] == len(first) + GROWTH_DAYS
    assert (after["lstm"].values[: len(first)] == first)[~pd.isna(first)].all()


def test_a_second_identical_request_does_nothing(twin, tmp_path):
    inputs, _, model, _ = twin
    ckpt = checkpoint.load(model)
    out = tmp_path / "cube.zarr"
    assert extend(ckpt, inputs, START, day(0), out, progress=False) > 0
    before, record = stored_bytes(out), cubes.generation(out)
    assert extend(ckpt, inputs, START, day(0), out, progress=False) == 0
    assert stored_bytes(out) == before and cubes.generation(out) == record


def test_a_cube_refuses_another_checkpoint_input_or_a_shorter_end(twin, tmp_path):
    inputs, _, model, other_model = twin
    out = tmp_path / "cube.zarr"
    extend(checkpoint.load(model), inputs, START, day(0), out, progress=False)
    before = stored_bytes(out)
    with pytest.raises(InputError, match="another checkpoint"):
        extend(checkpoint.load(other_model), inputs, START, day(1), out, progress=False)
    other_world = build_world(
        WorldConfig(
            seed=WORLD["seed"] + 1,
            stride=WORLD["stride"],
            bbox=parse_bbox(WORLD["bbox"]),
            start=WORLD["start"],
            end="2016-07-31",
        )
    ).inputs
    with pytest.raises(InputError, match="another input dataset"):
        extend(checkpoint.load(model), other_world, START, day(1), out, progress=False)
    with pytest.raises(InputError, match="another start"):
        extend(checkpoint.load(model), inputs, "2015-01-02", day(1), out, progress=False)
    with pytest.raises(InputError, match="only grows"):
        extend(checkpoint.load(model), inputs, START, day(-1), out, progress=False)
    assert stored_bytes(out) == before


def test_cli_grows_on_a_worker_pool_as_one_process_extends(twin, tmp_path, redis_url):
    """`smapx extend --queue` on one pool of two worker processes grows the cube, in steps of
    five days, into the cube one process writes at once (the pool `--workers N` starts for one
    command is test_worker's). The commands run in this process (tests.inprocess)."""
    inputs, input_path, model, other_model = twin
    env = {"SMAPX_REDIS_URL": redis_url.rsplit("/", 1)[0] + "/14", "SMAPX_TORCH_THREADS": "1"}
    grown, fresh = tmp_path / "grown.zarr", tmp_path / "fresh.zarr"
    args = ["extend", "--input", input_path, "--start", START]
    workers = [start_worker(env, f"growth-{k}-{os.getpid()}@%h") for k in range(2)]
    try:
        for offset in range(0, GROWTH_DAYS + 1, 5):
            smapx(*args, "--model", model, "--end", day(offset), "--out", grown, "--queue", env=env)
    finally:
        for worker in workers:
            worker.terminate()
        for worker in workers:
            worker.wait(30)
    again = smapx(*args, "--model", model, "--end", day(GROWTH_DAYS), "--out", grown, env=env)
    assert "nothing to do" in again
    base = f"{START}/{day(0)}"  # the climatology the grown cube was given at its creation
    smapx(
        *args, "--model", model, "--end", day(GROWTH_DAYS), "--out", fresh, "--base", base, env=env
    )
    assert_same_cube(grown, fresh)
    assert cubes.generation(grown)["end"] == day(GROWTH_DAYS)
    mixed = {"model": other_model, "input": input_path, "start": START, "out": grown}
    with settings(env), pytest.raises(InputError, match="another checkpoint"):
        run_extend({**mixed, "end": day(GROWTH_DAYS + 1)}, progress=False)


def test_growth_ranks_added_days_against_the_same_base(twin, tmp_path):
    """A grown cube's new days get their percentiles before they are published, against the
    climatology's own base: the same as a cube extended at once and ranked on that base."""
    inputs, _, model, _ = twin
    ckpt = checkpoint.load(model)
    grown, whole = tmp_path / "grown.zarr", tmp_path / "whole.zarr"
    extend(ckpt, inputs, START, "2016-03-31", grown, progress=False)
    attrs = climatology.compute(grown, progress=False)
    generation = cubes.generation(grown)["generation"]
    extend(ckpt, inputs, START, "2016-07-31", grown, progress=False)
    assert cubes.generation(grown)["generation"] == generation + 1
    extend(ckpt, inputs, START, "2016-07-31", whole, progress=False)
    climatology.compute(whole, f"{attrs['base_start']}/{attrs['base_end']}", progress=False)
    a, b = cubes.read_climatology(grown), cubes.read_climatology(whole)
    for p in a["percentiles"]:
        assert np.array_equal(a["percentiles"][p], b["percentiles"][p]), p
    cube = cubes.open_cube(grown)
    assert cube["lstm_percentile"].sel(time="2016-07-31").notnull().sum() > 0
    assert cube.sizes["time"] == len(pd.date_range(START, "2016-07-31"))


def test_a_cube_of_older_time_chunks_or_no_cube_is_refused(twin, tmp_path):
    inputs, _, model, _ = twin
    ckpt = checkpoint.load(model)
    out = tmp_path / "old.zarr"
    template = plan(ckpt, inputs, START, day(0))
    template.to_zarr(out, compute=False, zarr_format=3, consolidated=True)
    with pytest.raises(InputError, match="time chunks"):
        extend(ckpt, inputs, START, day(1), out, progress=False)
    template[["mask"]].to_zarr(tmp_path / "other.zarr", zarr_format=3, consolidated=True)
    with pytest.raises(InputError, match="not a product cube"):
        extend(ckpt, inputs, START, day(1), tmp_path / "other.zarr", progress=False)

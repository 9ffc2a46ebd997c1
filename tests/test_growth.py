"""A cube grows in place on the twin world: day by day it stays byte-identical to a cube
extended at once over the whole period, a repeated request does nothing, and a cube refuses a
checkpoint or input dataset that did not make it."""

import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from model.dataset import write_input
from model.errors import InputError
from model.product import cube as cubes
from model.product.extend import extend, plan
from model.training import checkpoint
from model.training.train import TrainConfig, train
from model.world import WorldConfig, build_world, parse_bbox

pytestmark = pytest.mark.integration

WORLD = {"seed": 11, "stride": 4, "bbox": "-100,35,-95,38", "start": "2014-06-01"}
START, DAY_D, GROWTH_DAYS = "2015-01-01", "2016-06-20", 10
SMAPX = [sys.executable, "-c", "from cli.main import main; main()"]


def quick_config(**changes) -> TrainConfig:
    """A few seconds of training on two cores: skill does not matter here, bytes do."""
    settings = {
        "start": "2015-04-01",
        "end": "2016-03-31",
        "hidden": 16,
        "window": 60,
        "burn_in": 10,
        "batch_size": 16,
        "iterations_per_epoch": 10,
        "max_epochs": 2,
        "validation_days": 30,
        "ensemble": 1,
        "threads": 1,
        **changes,
    }
    return TrainConfig(**settings)


@pytest.fixture(scope="module")
def twin(tmp_path_factory):
    """(input dataset, its Zarr path, a checkpoint path, a second checkpoint path)."""
    folder = tmp_path_factory.mktemp("twin")
    config = WorldConfig(
        seed=WORLD["seed"],
        stride=WORLD["stride"],
        bbox=parse_bbox(WORLD["bbox"]),
        start=WORLD["start"],
        end="2016-07-31",
    )
    inputs = build_world(config).inputs
    write_input(inputs, folder / "input.zarr")
    models = []
    for seed in (1, 2):
        ckpt, log = train(inputs, quick_config(seed=seed), progress=False)
        models.append(checkpoint.save(folder / f"model{seed}", ckpt, log))
    return inputs, folder / "input.zarr", *models


def stored_bytes(store: Path) -> dict[str, bytes]:
    """Every file of the Zarr hierarchy (metadata and chunks), by key; the bookkeeping beside
    it (block markers, job record, generation) is not the cube."""
    skip = (cubes.MARKERS, cubes.JOB_INFO, cubes.GENERATION)
    return {
        str(p.relative_to(store)): p.read_bytes()
        for p in sorted(store.rglob("*"))
        if p.is_file() and not str(p.relative_to(store)).startswith(skip)
    }


def assert_same_cube(grown: Path, fresh: Path) -> None:
    a, b = stored_bytes(grown), stored_bytes(fresh)
    assert sorted(a) == sorted(b)
    differing = [key for key in a if a[key] != b[key]]
    assert not differing, f"keys differ: {differing[:5]}"


def day(offset: int) -> str:
    return str((pd.Timestamp(DAY_D) + pd.Timedelta(days=offset)).date())


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


def _cli_extend(model, input_path, end, out, *extra) -> subprocess.CompletedProcess:
    args = ["extend", "--model", str(model), "--input", str(input_path), "--start", START]
    return subprocess.run(
        [*SMAPX, *args, "--end", end, "--out", str(out), *extra],
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_cli_grows_on_two_workers_as_one_process_extends(twin, tmp_path, monkeypatch):
    """`smapx extend --workers 2` (a private Redis and two worker processes) grows the cube, in
    steps of five days, into the cube one process writes at once."""
    monkeypatch.setenv("SMAPX_TORCH_THREADS", "1")
    inputs, input_path, model, _ = twin
    grown, fresh = tmp_path / "grown.zarr", tmp_path / "fresh.zarr"
    for offset in range(0, GROWTH_DAYS + 1, 5):
        run = _cli_extend(model, input_path, day(offset), grown, "--workers", "2")
        assert run.returncode == 0, run.stderr
    again = _cli_extend(model, input_path, day(GROWTH_DAYS), grown)
    assert again.returncode == 0 and "nothing to do" in again.stdout
    extend(checkpoint.load(model), inputs, START, day(GROWTH_DAYS), fresh, progress=False)
    assert_same_cube(grown, fresh)
    assert cubes.generation(grown)["end"] == day(GROWTH_DAYS)
    mixed = _cli_extend(twin[3], input_path, day(GROWTH_DAYS + 1), grown, "--workers", "2")
    assert mixed.returncode == 1 and "another checkpoint" in mixed.stderr


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

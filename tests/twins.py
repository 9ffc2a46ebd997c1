"""A small twin world and two quickly trained checkpoints, and how to compare two cubes byte for
byte: what the tests of growth, reloads and the daily chain share."""

from pathlib import Path

import pandas as pd

from model.dataset import write_input
from model.grid import parse_bbox
from model.product import cube as cubes
from model.training import checkpoint
from model.training.train import TrainConfig, train
from model.world import WorldConfig, build_world

WORLD = {"seed": 11, "stride": 4, "bbox": "-100,35,-95,38", "start": "2014-06-01"}


START, DAY_D, GROWTH_DAYS = "2015-01-01", "2016-06-20", 10


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


def make_twin(folder: Path):
    """(input dataset, its Zarr path, a checkpoint path, a second checkpoint path)."""
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

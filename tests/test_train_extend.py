"""Training, checkpoints and in-process extension on a small learnable dataset."""

import dataclasses
import io
import json
import shutil
import subprocess
import sys
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from model import grid
from model.dataset import make_input_dataset, open_input, select_period, write_input
from model.errors import InputError, OutOfRangeError
from model.product import cube
from model.production.extend import extend, plan, spinup_indices
from model.training import checkpoint
from model.training.budget import parse_duration
from model.training.holdout import holdout
from model.training.normalize import Normalizer
from model.training.reference import probe_references
from model.training.train import bagged, masked_cell_rmse, masked_mse, train
from tests.twins import quick_config

SMAPX = [sys.executable, "-c", "from cli.main import main; main()"]


def small_dataset(n_days=400, seed=0) -> xr.Dataset:
    """Cells in two cube blocks whose 'SMAP' is a leaky bucket of the precipitation."""
    rng = np.random.default_rng(seed)
    rows = np.array([100, 101, 102, 110, 111, 140, 141])
    cols = np.array([200, 201, 205, 210, 212, 250, 251])
    time = pd.date_range("2015-01-01", periods=n_days)
    precip = rng.gamma(0.4, 2.0, (n_days, len(rows))).astype(np.float32)
    tair = (285 + 10 * np.sin(2 * np.pi * np.arange(n_days) / 365))[:, None].repeat(len(rows), 1)
    sm = np.zeros((n_days, len(rows)), np.float32)
    level = np.full(len(rows), 0.2)
    for t in range(n_days):
        level = 0.9 * level + 0.1 * (0.1 + 0.05 * np.log1p(precip[t]))
        sm[t] = level
    target = sm.copy()
    target[rng.random(target.shape) < 0.5] = np.nan
    sand = np.linspace(10, 80, len(rows))
    return make_input_dataset(
        time,
        rows,
        cols,
        {"precip": precip, "tair": tair.astype(np.float32)},
        {"sand": sand},
        target=target,
        lsm={"noah": sm + 0.02},
    )


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    ds = small_dataset()
    config = quick_config(
        start="2015-01-01",
        end="2016-01-31",
        iterations_per_epoch=20,
        max_epochs=6,
        patience=6,
        validation_days=60,
        learning_rate=1e-2,
        ensemble=2,
    )
    ckpt, log = train(ds, config, progress=False)
    path = checkpoint.save(tmp_path_factory.mktemp("model") / "m", ckpt, log)
    return ds, path, ckpt, log


def test_masked_loss_ignores_missing_days():
    import torch

    pred = torch.tensor([[1.0, 2.0, 3.0]])
    target = torch.tensor([[1.0, float("nan"), 5.0]])
    assert masked_mse(pred, target).item() == pytest.approx(2.0)


def test_cell_rmse_loss_weighs_every_cell_the_same():
    import torch

    pred = torch.tensor([[1.0, 2.0, 3.0], [0.0, 0.0, 0.0], [1.0, 1.0, 1.0]])
    target = torch.tensor([[1.0, float("nan"), 5.0], [3.0, 4.0, float("nan")], [float("nan")] * 3])
    expected = (np.sqrt(2.0) + np.sqrt(12.5)) / 2  # the third cell has no observation
    assert masked_cell_rmse(pred, target).item() == pytest.approx(expected, rel=1e-4)


def test_the_seasons_protocol_holds_out_a_block_in_every_season_with_gaps():
    time = pd.date_range("2015-04-01", "2016-03-31")
    split = holdout(time, "seasons", validation_days=61, gap_days=5, window=120)
    assert split.scored.sum() == 60 and split.window_end == len(time)
    seasons = {(m % 12) // 3 for m in time[split.scored].month}
    assert seasons == {0, 1, 2, 3}
    assert not (split.fit & split.scored).any()
    scored_days = np.flatnonzero(split.scored)
    fit_days = np.flatnonzero(split.fit)
    assert np.abs(fit_days[:, None] - scored_days[None, :]).min() == 6  # 5 days of gap
    assert split.fit.sum() == len(time) - 4 * (15 + 10)
    two_years = holdout(pd.date_range("2015-04-01", "2017-03-31"), "seasons", 61, 5, 120)
    assert two_years.description.startswith("8 blocks of 7 days")
    summer = holdout(pd.date_range("2015-04-01", "2015-07-29"), "seasons", 40, 5, 30)
    assert summer.description.startswith("2 blocks of 20 days")


def test_the_tail_protocol_holds_out_the_last_days():
    time = pd.date_range("2015-04-01", "2016-03-31")
    split = holdout(time, "tail", validation_days=61, gap_days=5, window=120)
    assert split.window_end == 305 and split.scored[305:].all() and not split.scored[:305].any()
    assert split.description == "2016-01-31..2016-03-31"


@pytest.mark.parametrize(
    "protocol, days, message",
    [
        ("folds", 366, "one of seasons, tail"),
        ("seasons", 100, "too short for 1 validation block"),
        ("tail", 150, "too short for a window"),
    ],
)
def test_a_protocol_that_cannot_split_the_period_says_why(protocol, days, message):
    with pytest.raises(InputError, match=message):
        holdout(pd.date_range("2015-04-01", periods=days), protocol, 61, 5, 120)


@pytest.mark.parametrize("text, seconds", [("15m", 900), ("90s", 90), ("1.5h", 5400), ("45", 45)])
def test_budgets_read_as_durations(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "0", "-5m", "15 minutes", "m"])
def test_a_malformed_budget_is_refused(text):
    with pytest.raises(InputError, match="budget"):
        parse_duration(text)


def test_a_budget_stops_the_first_member_early_and_starts_no_member_that_cannot_fit(caplog):
    ds = small_dataset()
    config = quick_config(start="2015-01-01", end="2016-01-31", max_epochs=5, ensemble=3)
    tight, log = train(ds, dataclasses.replace(config, budget_seconds=0.001), progress=False)
    assert tight.validation["members"] == 1 and tight.validation["epochs"] == 1
    assert "budget: 1 of 3 members trained; member 2 would need" in caplog.text
    assert tight.validation["budget_seconds"] == 0.001
    assert len(pd.read_csv(io.StringIO(log))) == 1
    ample, _ = train(ds, dataclasses.replace(config, budget_seconds=600), progress=False)
    assert ample.validation["members"] == 3
    assert ample.validation["training_seconds"] < 600


def test_a_validation_that_scores_no_cell_trains_every_epoch_and_keeps_the_last(caplog):
    config = quick_config(
        start="2015-01-01", end="2016-01-31", validation="tail", validation_days=4, max_epochs=3
    )
    ckpt, log = train(small_dataset(), config, progress=False)  # < 5 SMAP days held out per cell
    assert ckpt.validation["epochs"] == 3 and len(pd.read_csv(io.StringIO(log))) == 3
    assert "validation scores no cell" in caplog.text


@pytest.mark.parametrize(
    "change, message",
    [
        ({"loss": "mae"}, "loss: one of mse, cell_rmse"),
        ({"schedule": "step"}, "schedule: one of constant, cosine"),
        ({"burn_in": 60}, "burn_in"),
        ({"bagging": 1.0}, "bagging: a share of cells in"),
    ],
)
def test_training_choices_that_do_not_exist_are_refused_before_any_work(change, message):
    with pytest.raises(InputError, match=message):
        train(small_dataset(), quick_config(**change), progress=False)


def test_cosine_schedule_and_cell_rmse_loss_train():
    config = quick_config(
        start="2015-01-01", end="2016-01-31", schedule="cosine", loss="cell_rmse", max_epochs=3
    )
    ckpt, log = train(small_dataset(), config, progress=False)
    assert np.isfinite(ckpt.validation["median_rmse"])
    assert ckpt.config["schedule"] == "cosine" and ckpt.config["loss"] == "cell_rmse"


def test_bagged_members_train_on_a_seeded_share_of_the_cells(monkeypatch):
    from model.training import train as training

    cells = np.arange(0, 200, 2)
    kept = bagged(cells, 0.3, np.random.default_rng(43))
    assert len(kept) == 70 and set(kept) <= set(cells) and (np.diff(kept) > 0).all()
    assert (bagged(cells, 0.3, np.random.default_rng(43)) == kept).all()
    assert bagged(cells, 0.0, np.random.default_rng(43)) is cells

    seen = []
    original = training._epoch
    monkeypatch.setattr(
        training, "_epoch", lambda *a, **k: seen.append(len(a[4])) or original(*a, **k)
    )
    config = quick_config(start="2015-01-01", end="2016-01-31", max_epochs=2, ensemble=2)
    train(small_dataset(), replace(config, bagging=0.5), progress=False)
    first, further = seen[0], seen[-1]
    assert further == round(first * 0.5), "the first member trains on every cell, the next on half"


def test_an_epoch_costs_the_same_whatever_the_cell_count(monkeypatch):
    """Minibatches of (cell, window) pairs and validation on a fixed sample of cells: the network
    sees inputs of the same shapes, epoch for epoch, on 7 cells and on 28; and trained on a
    sample of 7 of the 28 cells (its inputs alone read), its probe too."""
    from model.training.network import SoilMoistureLSTM

    small = small_dataset()
    parts = [small_dataset(seed=k).assign_coords(row=small.row + 10 * k) for k in range(4)]
    large = xr.concat(parts, "cell").assign_coords(cell=np.arange(28))
    config = quick_config(
        start="2015-01-01", end="2016-01-31", max_epochs=3, patience=3, ensemble=1
    )
    config = replace(config, validation_cells=5)
    original = SoilMoistureLSTM.forward
    shapes = {}
    runs = (("small", small, config), ("large", large, config))
    runs += (("sampled", large, replace(config, training_cells=7)),)
    for name, inputs, run in runs:
        seen = shapes[name] = []
        monkeypatch.setattr(
            SoilMoistureLSTM,
            "forward",
            lambda net, x, seen=seen: seen.append(tuple(x.shape)) or original(net, x),
        )
        ckpt, _ = train(inputs, run, progress=False)
        assert ckpt.validation["n_cells"] <= 5
    *epochs, probe = shapes["small"]  # the checkpoint's probe, once, of at most 64 cells
    assert shapes["large"] == [*epochs, (28, *probe[1:])] and probe[0] == 7
    assert {s[0] for s in epochs} == {config.batch_size, 5}
    assert shapes["sampled"] == shapes["small"] and ckpt.probe.shape[0] == 7


def test_normalisation_uses_the_training_period_and_transforms_precip():
    ds = small_dataset()
    norm = Normalizer.fit(ds.isel(time=slice(0, 100)))
    precip = ds.forcing.sel(variable="precip").values[:100]
    expected = np.log10(np.sqrt(precip) + 0.1)
    assert norm.forcing_mean[0] == pytest.approx(expected.mean(), rel=1e-5)
    x = norm.inputs(ds)
    assert x.shape == (7, 400, 3) and np.isfinite(x).all()
    assert abs(x[:, :100, 0].mean()) < 1e-5
    cells, days = np.array([5, 0, 3]), np.r_[10:20, 0:5]
    np.testing.assert_array_equal(norm.inputs(ds, cells, days), x[cells][:, days])
    reordered = ds.sel(variable=ds["variable"].values[::-1])
    np.testing.assert_array_equal(norm.inputs(reordered, cells, days), x[cells][:, days])


def test_training_learns_and_checkpoint_round_trips(trained):
    _, path, ckpt, _ = trained
    loaded = checkpoint.load(path)
    assert len(loaded.state_dicts) == 2 and loaded.config["hidden"] == 16
    saved = ckpt.state_dicts[0]
    assert loaded.state_dicts[0].keys() == saved.keys()
    assert all(np.array_equal(value, saved[name]) for name, value in loaded.state_dicts[0].items())
    losses = pd.read_csv(path / "training_log.csv")
    first = losses[(losses.stage == "train") & (losses.member == 0)]
    assert first.train_loss.iloc[-1] < first.train_loss.iloc[0]
    assert loaded.validation["median_rmse"] < 0.02
    assert loaded.validation["protocol"] == "seasons"
    assert loaded.validation["period"].startswith("4 blocks of 15 days (2015-02-")
    # the engine's probe: real normalised inputs of the training period, every cell (7 < 64)
    train_inputs = loaded.normalizer.inputs(select_period(trained[0], "2015-01-01", "2016-01-31"))
    np.testing.assert_array_equal(loaded.probe, train_inputs[:, :365])


def test_the_checkpoint_keeps_each_members_float32_outputs_on_its_probe(trained):
    _, path, ckpt, _ = trained
    loaded = checkpoint.load(path)
    assert sorted(p.name for p in path.glob("member_*")) == [
        "member_0.safetensors",
        "member_1.safetensors",
    ]
    assert loaded.probe_reference.shape == (2, *loaded.probe.shape[:2])
    np.testing.assert_array_equal(loaded.probe_reference, probe_references(ckpt, ckpt.probe))
    second = loaded.member(1)
    assert len(second.state_dicts) == 1
    assert all(
        second.state_dicts[0][name] is value for name, value in loaded.state_dicts[1].items()
    )
    np.testing.assert_array_equal(second.probe_reference, loaded.probe_reference[1:])


def test_a_probe_of_the_wrong_shape_is_refused(trained, tmp_path):
    _, _, ckpt, _ = trained
    bad = checkpoint.save(
        tmp_path / "bad", dataclasses.replace(ckpt, probe=np.zeros((2, 5, 9), np.float32))
    )
    with pytest.raises(InputError, match="probe.npy"):
        checkpoint.load(bad)
    one_member = dataclasses.replace(ckpt, probe_reference=ckpt.probe_reference[:1])
    with pytest.raises(InputError, match="probe_reference.npy"):
        checkpoint.load(checkpoint.save(tmp_path / "bad_reference", one_member))


def test_checkpoints_of_earlier_versions_still_load(trained, tmp_path):
    import torch

    _, path, ckpt, _ = trained
    old = tmp_path / "old"
    shutil.copytree(path, old)
    for k, state in enumerate(ckpt.state_dicts):
        (old / f"member_{k}.safetensors").unlink()
        torch.save(
            {name: torch.from_numpy(value) for name, value in state.items()}, old / f"member_{k}.pt"
        )
    (old / "probe_reference.npy").unlink()
    loaded = checkpoint.load(old)
    for a, b in zip(loaded.state_dicts, ckpt.state_dicts, strict=True):
        assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)
    checkpoint.save(old, loaded)  # saving over it leaves one weights file per member
    assert sorted(p.name for p in old.glob("member_*")) == [
        "member_0.safetensors",
        "member_1.safetensors",
    ]


def test_training_is_deterministic_for_a_seed():
    ds = small_dataset()
    config = quick_config(
        start="2015-01-01",
        end="2015-12-31",
        hidden=8,
        batch_size=8,
        iterations_per_epoch=5,
        validation_days=60,
        refit=False,
    )
    a, _ = train(ds, config, progress=False)
    b, _ = train(ds, config, progress=False)
    for x, y in zip(a.state_dicts[0].values(), b.state_dicts[0].values()):
        assert bool((x == y).all())


def test_spinup_indices():
    np.testing.assert_array_equal(spinup_indices(10, 15, 5), np.arange(5, 15))
    np.testing.assert_array_equal(spinup_indices(2, 4, 5), np.r_[0, 1, 2, 0, 1, 2, 3])


def test_extension_writes_a_cube_on_the_grid(trained, tmp_path):
    ds, path, _, _ = trained
    extend(
        checkpoint.load(path),
        ds,
        "2015-03-01",
        "2016-02-04",
        tmp_path / "cube.zarr",
        progress=False,
    )
    out = cube.open_cube(tmp_path / "cube.zarr")
    assert cube.describe(tmp_path / "cube.zarr") == {
        "products": ["smap", "lstm", "noah", "lstm_spread"],
        "days": 341,
        "cells": 7,
    }
    assert out.sizes["time"] == 341
    assert set(cube.products(out)) == {"lstm", "smap", "noah", "lstm_spread"}
    import rioxarray  # noqa: F401  (the .rio accessor reads the CRS open_cube keeps)

    assert out.rio.crs.to_epsg() == grid.EPSG
    stored = xr.open_zarr(tmp_path / "cube.zarr", decode_coords=False)
    assert all(
        stored[name].attrs["grid_mapping"] == "spatial_ref"
        for name in [*cube.products(out), "mask"]
    )
    mask = out["mask"].values
    assert mask.sum() == 7
    lstm = out["lstm"].values
    assert np.isnan(lstm[:, ~mask]).all() and np.isfinite(lstm[:, mask]).all()
    iy, ix = ds.row.values - out.attrs["row0"], ds.col.values - out.attrs["col0"]
    np.testing.assert_allclose(
        out["smap"].values[:, iy, ix], ds.target.sel(time=out.time).values, atol=6e-5
    )
    np.testing.assert_allclose(
        out["noah"].values[:, iy, ix], ds.noah.sel(time=out.time).values, atol=6e-5
    )
    truth = ds.noah.sel(time=out.time).values - 0.02
    assert np.sqrt(np.nanmean((lstm[:, iy, ix] - truth) ** 2)) < 0.02
    np.testing.assert_allclose(out.x.values[ix], grid.col_to_x(ds.col.values))
    np.testing.assert_allclose(out.lat.values[iy, ix], ds.lat.values, atol=1e-4)
    extend(
        checkpoint.load(path),
        ds,
        "2015-03-01",
        "2016-02-04",
        tmp_path / "again.zarr",
        progress=False,
    )
    np.testing.assert_array_equal(cube.open_cube(tmp_path / "again.zarr")["lstm"].values, lstm)


def test_cube_crs_is_stored_as_rioxarray_writes_it():
    import rioxarray  # noqa: F401

    planned = cube.template(
        pd.date_range("2015-01-01", periods=3), [10, 11], [20, 22], ("lstm", "smap")
    )
    expected = planned.drop_vars("spatial_ref").rio.write_crs(f"EPSG:{grid.EPSG}")
    assert planned["spatial_ref"].attrs == expected["spatial_ref"].attrs
    assert list(planned["spatial_ref"].attrs) == list(expected["spatial_ref"].attrs)
    for name in planned.data_vars:
        assert planned[name].encoding["grid_mapping"] == expected[name].encoding["grid_mapping"]


def test_plan_rejects_bad_requests(trained):
    ds, _, ckpt, _ = trained
    with pytest.raises(OutOfRangeError, match="outside the data"):
        plan(ckpt, ds, "2014-01-01", "2015-06-01")
    with pytest.raises(InputError, match="before start"):
        plan(ckpt, ds, "2015-06-01", "2015-05-01")
    with pytest.raises(InputError, match="lacks variable"):
        plan(ckpt, ds.sel(variable=["precip"]), "2015-02-01", "2015-06-01")


def test_a_checkpoint_keeps_its_grid_and_extends_only_inputs_on_it(trained):
    """A 36 km checkpoint records no grid (its config and digest are as before); one trained on
    9 km inputs records 9 km, writes a 9 km cube from them, and neither runs on the other's."""
    ds36, _, ckpt36, _ = trained
    assert "grid" not in ckpt36.config and ckpt36.grid == grid.M36
    ds9 = ds36.assign_attrs(grid=grid.M09.attr)
    config = quick_config(
        start="2015-01-01", end="2015-12-31", max_epochs=1, iterations_per_epoch=2, ensemble=1
    )
    ckpt9, _ = train(ds9, config, progress=False)
    assert ckpt9.config["grid"] == "9km" and ckpt9.grid == grid.M09
    planned = plan(ckpt9, ds9, "2015-02-01", "2015-03-01")
    assert grid.of(planned.attrs) == grid.M09
    np.testing.assert_allclose(np.diff(planned.x.values), grid.M09.cell_size)
    np.testing.assert_allclose(planned.x.values[0], grid.M09.col_to_x(ds9.col.values.min()))
    with pytest.raises(InputError) as caught:
        plan(ckpt9, ds36, "2015-02-01", "2015-03-01")
    assert str(caught.value) == (
        "the checkpoint is on the 9 km grid but the input dataset is on the 36 km grid; "
        "use one grid throughout"
    )
    with pytest.raises(InputError, match="checkpoint is on the 36 km grid but the input"):
        plan(ckpt36, ds9, "2015-02-01", "2015-03-01")


def test_cli_train_and_extend_errors_are_one_line(trained, tmp_path):
    ds, path, _, _ = trained
    write_input(ds, tmp_path / "input.zarr")
    runs = [
        [
            "extend",
            "--model",
            str(path),
            "--input",
            str(tmp_path / "input.zarr"),
            "--start",
            "2010-01-01",
            "--end",
            "2015-02-01",
            "--out",
            str(tmp_path / "c.zarr"),
        ],
        [
            "extend",
            "--model",
            str(tmp_path),
            "--input",
            str(tmp_path / "input.zarr"),
            "--start",
            "2015-01-01",
            "--end",
            "2015-02-01",
            "--out",
            str(tmp_path / "c.zarr"),
        ],
        [
            "train",
            "--input",
            str(tmp_path / "input.zarr"),
            "--start",
            "2015-01-01",
            "--end",
            "2015-02-01",
            "--out",
            str(tmp_path / "m"),
        ],
        [
            "train",
            "--input",
            str(tmp_path / "missing.zarr"),
            "--start",
            "2015-01-01",
            "--end",
            "2015-12-01",
            "--out",
            str(tmp_path / "m"),
        ],
    ]
    messages = ["outside the data", "not a model checkpoint", "days is too short for", "not found"]
    for args, message in zip(runs, messages):
        run = subprocess.run([*SMAPX, *args], capture_output=True, text=True, check=False)
        assert run.returncode == 1, run.stderr
        assert message in run.stderr and "Traceback" not in run.stderr
    assert open_input(tmp_path / "input.zarr").sizes["cell"] == 7


def test_cli_train_reads_a_yaml_config_that_options_override_and_saves_it(trained, tmp_path):
    """`smapx train --config FILE`: TrainConfig's fields from YAML, an option on the command line
    over the file's value; the checkpoint keeps the run's train.yaml, which reruns it."""
    import yaml

    ds, path, _, _ = trained
    saved = yaml.safe_load((path / "train.yaml").read_text())
    config = json.loads((path / "config.json").read_text())
    assert saved == {k: config[k] for k in saved} and saved["max_epochs"] == 6
    write_input(ds, tmp_path / "input.zarr")
    run_config = {
        "start": "2015-01-01",
        "end": "2016-01-31",
        "hidden": 8,
        "max_epochs": 1,
        "iterations_per_epoch": 2,
        "validation_days": 60,
        "ensemble": 1,
        "seed": 3,
    }
    (tmp_path / "run.yaml").write_text(yaml.safe_dump(run_config))
    args = [
        "train",
        "--input",
        str(tmp_path / "input.zarr"),
        "--config",
        str(tmp_path / "run.yaml"),
    ]
    run = subprocess.run(
        [*SMAPX, *args, "--seed", "7", "--out", str(tmp_path / "m")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert run.returncode == 0, run.stderr
    written = json.loads((tmp_path / "m" / "config.json").read_text())
    assert {k: written[k] for k in run_config} == {**run_config, "seed": 7}
    rerun = yaml.safe_load((tmp_path / "m" / "train.yaml").read_text())
    assert {k: rerun[k] for k in run_config} == {**run_config, "seed": 7}
    (tmp_path / "bad.yaml").write_text("hiden: 8\n")
    bad = subprocess.run(
        [*SMAPX, "train", "--input", "x", "--out", "y", "--config", str(tmp_path / "bad.yaml")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert bad.returncode == 1 and "unknown key(s) ['hiden']" in bad.stderr
    assert "Traceback" not in bad.stderr

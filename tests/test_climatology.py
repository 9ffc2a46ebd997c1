"""Climatology of a small twin-world cube against a direct numpy computation of the definition
(percentile = 100 * (n_below + 0.5 * n_equal) / n over the base values of the cell within 15
days of the day of year, 29 February taking 28 February's window; anomaly = value - window
mean), its stability as the cube grows, the command line, and the ensemble spread."""

import shutil
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from model.engine.inference import predict, predict_with_spread
from model.product import climatology, kinds
from model.product import cube as cubes
from model.production.extend import extend
from model.training.checkpoint import Checkpoint
from model.training.network import SoilMoistureLSTM
from model.training.normalize import Normalizer
from model.world import WorldConfig, build_world
from tests import inprocess
from tests.climatologies import calendar_day, direct, stored_codes, write_cube

SMAPX = [sys.executable, "-c", "from cli.main import main; main()"]
WORLD = {"seed": 7, "stride": 8, "start": "2009-01-01", "end": "2013-12-31"}
BASE = "2009-01-01/2012-12-31"
RANKED = ("lstm", "noah", "lsm2", "fused")


def twin_world_values(end: str = WORLD["end"]) -> tuple:
    """(world, {product: (time, cell) m3/m3}): lstm is the 0-5 cm truth seen through a noisy,
    biased lens (what the extension learns), noah and lsm2 the world's wrong models, smap its
    retrievals; values on the cube's 1e-4 steps, so ties occur as in a real cube."""
    world = build_world(WorldConfig(**{**WORLD, "end": end}))
    truth = world.truth["truth"].sel(depth=0.025, method="nearest").values
    rng = np.random.default_rng(3)
    lstm = np.clip(truth + 0.01 + rng.normal(0, 0.01, truth.shape), 0.02, 0.5)
    values = {
        "lstm": lstm,
        "noah": world.inputs["noah"].values,
        "lsm2": world.inputs["lsm2"].values,
        "smap": world.inputs["target"].values,
    }
    return world, values


@pytest.fixture(scope="module")
def world_values():
    """twin_world_values() over the whole 5 years, made once for the module."""
    return twin_world_values()


@pytest.fixture(scope="module")
def twin(tmp_path_factory, world_values):
    """A 5-year twin-world cube (2012 is a leap year) with a 2009-2012 climatology."""
    world, values = world_values
    store = tmp_path_factory.mktemp("twin") / "cube.zarr"
    write_cube(store, world, values)
    climatology.compute(store, BASE, progress=False)
    return store


def sample(store, n: int, seed: int, days: list[int] | None = None):
    """Random (t, iy, ix) of region cells and days, plus every cell's value on `days`."""
    cube = cubes.open_cube(store)
    iy, ix = np.nonzero(cube["mask"].values)
    rng = np.random.default_rng(seed)
    picks = [
        (int(rng.integers(cube.sizes["time"])), iy[k], ix[k]) for k in rng.integers(len(iy), size=n)
    ]
    for t in days or []:
        picks += [(t, a, b) for a, b in zip(iy[:20], ix[:20], strict=True)]
    return cube, picks


@pytest.mark.parametrize("product", RANKED)
def test_percentile_and_anomaly_equal_the_definition(twin, product):
    cube, picks = sample(twin, 150, seed=len(product), days=[1154])
    times = pd.DatetimeIndex(cube.time.values)
    assert times[1154] == pd.Timestamp("2012-02-29")
    doys = np.array([calendar_day(d) for d in times])
    codes = stored_codes(twin, product)
    base = slice(0, int(times.searchsorted(pd.Timestamp("2013-01-01"))))
    percentile = cube[f"{product}_percentile"].values
    anomaly = export_block(cube, f"{product}_anomaly", 0.5)
    checked = 0
    for t, iy, ix in picks:
        if codes[t, iy, ix] == cubes.FILL:
            assert np.isnan(percentile[t, iy, ix]) and np.isnan(anomaly[t, iy, ix])
            continue
        exact, mean = direct(codes, doys, base, t, iy, ix)
        assert exact - 1e-4 <= percentile[t, iy, ix] < exact + 0.01 + 1e-4, (t, iy, ix)
        assert anomaly[t, iy, ix] == pytest.approx(codes[t, iy, ix] * 1e-4 - mean, abs=6e-5)
        checked += 1
    assert checked > 100


def export_block(window, product: str, weight: float) -> np.ndarray:
    """A derived product over a window of the cube (its whole record) as an export writes it,
    fused at `weight`."""
    weights = xr.DataArray(np.full(window["mask"].shape, weight), dims=("y", "x"))
    block = kinds.kind_of(product).block(window, product, weights, slice(0, window.sizes["time"]))
    return block.values


def test_fused_percentile_and_anomaly_follow_the_weight(twin):
    """At w = 0.7, fused_percentile and fused_anomaly rank fused at 0.7, not the stored 0.5:
    checked over the climatology's block of cells that holds the most region cells (an export
    ranks block by block), at 80 of its cells and days."""
    cube = cubes.open_cube(twin)
    ys, xs = max(climatology.spatial_windows(cube), key=lambda w: int(cube["mask"][w].sum()))
    window = cube.isel(y=ys, x=xs)
    iy, ix = np.nonzero(window["mask"].values)
    rng = np.random.default_rng(3)
    picks = [
        (int(rng.integers(cube.sizes["time"])), iy[k], ix[k])
        for k in rng.integers(len(iy), size=80)
    ]
    times = pd.DatetimeIndex(cube.time.values)
    doys = np.array([calendar_day(d) for d in times])
    lstm, noah = (stored_codes(twin, p)[:, ys, xs] for p in ("lstm", "noah"))
    missing = (lstm == cubes.FILL) | (noah == cubes.FILL)
    codes = np.where(missing, cubes.FILL, np.rint(0.7 * lstm + (1 - 0.7) * noah))
    base = slice(0, int(times.searchsorted(pd.Timestamp("2013-01-01"))))
    percentile = export_block(window, "fused_percentile", 0.7)
    anomaly = export_block(window, "fused_anomaly", 0.7)
    stored = window["fused_percentile"].values
    moved = 0
    for t, y, x in picks:
        exact, mean = direct(codes, doys, base, t, y, x)
        assert exact - 1e-4 <= percentile[t, y, x] < exact + 0.01 + 1e-4, (t, y, x)
        assert anomaly[t, y, x] == pytest.approx(codes[t, y, x] * 1e-4 - mean, abs=6e-5)
        moved += abs(percentile[t, y, x] - stored[t, y, x]) > 0.5
    assert moved > 10, "the stored 0.5 percentiles would pass for 0.7"


def test_climatology_records_its_base_and_products(twin):
    info = cubes.climatology_info(twin)
    assert (info["base_start"], info["base_end"]) == ("2009-01-01", "2012-12-31")
    assert info["products"] == ["lstm", "noah", "lsm2", "fused"]
    assert info["days"] == cubes.open_cube(twin).sizes["time"]


def test_growing_the_cube_keeps_the_climatology(twin, world_values, tmp_path):
    """A cube ranked over its first 4 years, then grown by a year: the days it had keep their
    percentiles and means, the new days rank against the same base, as if computed at once (the
    module's cube: the same values ranked over the same base); the growth writes the new days'
    percentiles alone (not a file of the means or of the earlier time chunk is written again)."""
    world, values = world_values
    short, grown = tmp_path / "short.zarr", tmp_path / "grown.zarr"
    write_cube(short, world, values, n_days=1461)
    write_cube(grown, world, values)
    attrs = climatology.compute(short, progress=False)
    assert (attrs["base_start"], attrs["base_end"]) == ("2009-01-01", "2012-12-31")
    assert climatology.rank_grown(grown, world.inputs.time.values) == 0, "no climatology yet"
    shutil.copytree(short / cubes.CLIMATOLOGY, grown / cubes.CLIMATOLOGY)
    kept = {
        p: p.stat().st_mtime_ns
        for p in (grown / cubes.CLIMATOLOGY).rglob("*")
        if p.is_file() and ("_window_mean/c/" in str(p) or "_percentile/c/0/" in str(p))
    }
    assert {p.parts[-5] for p in kept} == {
        f"{p}_{a}" for p in RANKED for a in ("percentile", "window_mean")
    }
    assert climatology.rank_grown(grown, world.inputs.time.values) == 365
    assert {p: p.stat().st_mtime_ns for p in kept} == kept
    assert climatology.update(grown, progress=False) == 0
    assert cubes.climatology_info(twin)["base_end"] == attrs["base_end"]
    before, after, at_once = (cubes.read_climatology(s) for s in (short, grown, twin))
    for p in RANKED:
        assert np.array_equal(after["percentiles"][p][:, :, :1461], before["percentiles"][p])
        assert np.array_equal(after["percentiles"][p], at_once["percentiles"][p])
        np.testing.assert_array_equal(after["means"][p], before["means"][p])
    assert cubes.open_cube(grown)["lstm_percentile"].sel(time="2013-07-01").notnull().any()


def test_cli_computes_and_rejects_a_bad_base(tmp_path):
    """The first command in a process of its own, the others in this one (tests.inprocess)."""
    world, values = twin_world_values("2010-12-31")
    store = tmp_path / "c.zarr"
    write_cube(store, world, {"lstm": values["lstm"]})
    cubes.publish(store, world.inputs.time.values)
    done = subprocess.run(
        [*SMAPX, "climatology", "--cube", str(store), "--base", "2009-01-01/2010-12-31"],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    assert "lstm" in done.stdout and "2009-01-01/2010-12-31" in done.stdout
    assert cubes.climatology_info(store)["products"] == ["lstm"]
    assert cubes.generation(store)["generation"] == 2  # servers reopen the recomputed cube
    code, out, err = inprocess.run("climatology", "--cube", store)
    assert code == 0 and "0 added day(s)" in out, err
    assert cubes.generation(store)["generation"] == 2  # nothing changed: no new generation
    for base, message in [
        ("2009-01-01/2009-06-30", "shorter than a year"),
        ("2001-01-01/2010-12-31", "outside the cube"),
        ("2010-01-01", "expected YYYY-MM-DD/YYYY-MM-DD"),
    ]:
        code, _, err = inprocess.run("climatology", "--cube", store, "--base", base)
        assert code == 1 and message in err, err
        assert len(err.strip().splitlines()) == 1


def two_member_model():
    """A small input dataset and an untrained two-member checkpoint whose members differ."""
    import torch

    world = build_world(WorldConfig(seed=3, stride=8, start="2014-01-01", end="2015-06-30"))
    inputs = world.inputs.isel(cell=slice(0, 12))
    normalizer = Normalizer.fit(inputs)
    states = []
    for seed in (0, 1):
        torch.manual_seed(seed)
        states.append(SoilMoistureLSTM(normalizer.n_inputs, 32, 0.5).state_dict())
    config = {"hidden": 32, "dropout": 0.5, "start": "2014-01-01", "end": "2015-06-30"}
    return inputs, Checkpoint(config, normalizer, states)


def test_spread_is_zero_for_one_member_and_numpy_std_for_two(tmp_path):
    inputs, two = two_member_model()
    x = two.normalizer.inputs(inputs)
    mean, spread = predict_with_spread(two, x, warmup=30)
    members = [predict(two.member(k), x, warmup=30) for k in (0, 1)]
    np.testing.assert_array_equal(mean, predict(two, x, warmup=30))
    np.testing.assert_array_equal(spread, np.std(members, axis=0).astype(np.float32))
    assert spread.mean() > 0.002, "untrained members should disagree"
    assert not predict_with_spread(two.member(0), x, warmup=30)[1].any()

    stores = {}
    for name, ckpt in {
        "one": two.member(0),
        "two": two,
        "a": two.member(0),
        "b": two.member(1),
    }.items():
        stores[name] = tmp_path / f"{name}.zarr"
        extend(ckpt, inputs, "2014-01-01", "2015-06-30", stores[name], progress=False)
    cube = {name: cubes.open_cube(store).load() for name, store in stores.items()}
    region = cube["one"]["mask"].values
    assert (cube["one"]["lstm_spread"].values[:, region] == 0).all()
    members = np.stack([cube[k]["lstm"].values[:, region] for k in ("a", "b")])
    np.testing.assert_allclose(
        cube["two"]["lstm_spread"].values[:, region], np.std(members, axis=0), atol=1e-4
    )
    assert np.isnan(cube["two"]["lstm_spread"].values[:, ~region]).all()

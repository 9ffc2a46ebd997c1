"""The synthetic twin world: determinism, physics (water balance, bounds), observation models
(SMAP-like noise, gaps and masks, stations) and the files other modules read."""

import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from cli.main import app
from model import grid
from model.dataset import FORCING_VARIABLES, open_input, select_period
from model.training.normalize import Normalizer
from model.world import WorldConfig, build_world, open_truth, read_world_stations, write_world
from model.world.blocks import bytes_per_cell_day, write_world_blocks
from model.world.observe import STATION_RANGE

SMALL = {"seed": 7, "stride": 8, "start": "2014-01-01", "end": "2016-12-31"}


@pytest.fixture(scope="module")
def world():
    return build_world(WorldConfig(**SMALL))


@pytest.fixture(scope="module")
def written(world, tmp_path_factory):
    return write_world(world, tmp_path_factory.mktemp("world") / "w")


def _corr(a, b):
    a, b = a - a.mean(0), b - b.mean(0)
    return (a * b).sum(0) / np.sqrt((a * a).sum(0) * (b * b).sum(0))


def test_same_seed_gives_identical_world_other_seed_differs(world):
    again = build_world(WorldConfig(**SMALL))
    for name in ("forcing", "static", "target", "noah", "lsm2"):
        np.testing.assert_array_equal(again.inputs[name].values, world.inputs[name].values)
    np.testing.assert_array_equal(again.truth["truth"].values, world.truth["truth"].values)
    np.testing.assert_array_equal(again.stations.values, world.stations.values)
    pd.testing.assert_frame_equal(again.sensors, world.sensors)
    other = build_world(WorldConfig(**{**SMALL, "seed": 8}))
    assert not np.allclose(other.inputs["forcing"].values, world.inputs["forcing"].values)


def test_water_balance_closes_every_day(world):
    t = world.truth
    before = np.concatenate([t["storage_start"].values[None], t["storage"].values[:-1]]).astype(
        np.float64
    )
    change = t["storage"].values - before
    residual = (
        t["precip"].values - t["et"].values - t["runoff"].values - t["drainage"].values - change
    )
    assert np.abs(residual).max() < 2e-3  # mm/day: float32 rounding of ~500 mm stores
    yearly = {k: float(t[k].mean()) * 365.25 for k in ("precip", "et", "runoff", "drainage")}
    assert 500 < yearly["precip"] < 1400
    assert 0.35 < yearly["et"] / yearly["precip"] < 0.8
    assert yearly["runoff"] > 20 and yearly["drainage"] > 20
    # Precipitation in the budget is the forcing the LSTM sees (kg m-2 h-1 daily mean rate).
    rate = world.inputs["forcing"].sel(variable="precip").values
    np.testing.assert_allclose(t["precip"].values, rate * 24.0, rtol=1e-6)


def test_soil_moisture_stays_between_residual_and_porosity(world):
    t = world.truth
    residual, porosity = t["residual"].values, t["porosity"].values
    assert (residual > 0).all() and (residual < t["wilting"].values).all()
    theta = t["truth"].values
    assert (theta >= residual[None, :, None] - 1e-6).all()
    assert (theta <= porosity[None, :, None] + 1e-6).all()
    assert theta.min() < 0.08 and theta.max() > 0.35  # dry deserts and wet soils both occur
    for name in ("noah", "lsm2"):
        values = world.inputs[name].values
        assert np.isfinite(values).all() and values.min() > 0 and values.max() < 0.65


def test_smap_like_noise_has_the_configured_size(world):
    target = world.inputs["target"].values
    surface = world.truth["truth"].sel(depth=0.025).values
    error = target - surface - world.truth["smap_bias"].values
    unclipped = np.isfinite(target) & (surface > 0.1)
    assert np.std(error[unclipped]) == pytest.approx(world.config.smap_noise, rel=0.1)
    assert abs(np.mean(error[unclipped])) < 0.002
    assert float(world.truth["smap_bias"].mean()) == pytest.approx(
        world.config.smap_bias, abs=0.004
    )


def test_smap_like_gaps_launch_and_masks(world):
    target = world.inputs["target"]
    before_launch = target.sel(time=slice(None, "2015-03-31")).values
    assert np.isnan(before_launch).all()
    flown = target.sel(time=slice("2015-04-01", None)).values
    assert np.isfinite(flown).any(axis=0).sum() > 0.9 * flown.shape[1]
    frozen = world.truth["frozen"].values
    masked = world.truth["vegetation_masked"].values
    assert frozen.any() and masked.any()
    assert np.isnan(target.values[frozen | masked]).all()
    assert (world.truth["flag_vegdense"].values[masked.any(0)] == 1).all()
    for cell in range(flown.shape[1]):
        days = np.flatnonzero(np.isfinite(flown[:, cell]))
        if len(days) > 1:
            assert np.diff(days).min() >= min(world.config.revisit)
    open_days = ~(frozen | masked)[-flown.shape[0] :]
    fraction = np.isfinite(flown).sum() / open_days.sum()
    assert 0.33 < fraction < 0.43  # a 2-3 day revisit, less a few failed retrievals


def test_stations_networks_depths_and_representativeness(world):
    sensors, values = world.sensors, world.stations
    assert list(sensors.columns) == [
        "sensor",
        "station",
        "network",
        "lat",
        "lon",
        "depth_m",
        "row",
        "col",
    ]
    assert values.dims == ("time", "sensor") and list(values.sensor.values) == list(
        sensors["sensor"]
    )
    per_station = sensors.groupby("station")["depth_m"].apply(sorted)
    assert all(d == [0.05, 0.1, 0.2, 0.5, 1.0] for d in per_station)
    stations = sensors.drop_duplicates("station")
    dense, sparse = stations[stations.network == "dense"], stations[stations.network == "sparse"]
    cfg = world.config
    assert (
        len(dense) == cfg.dense_networks * cfg.dense_stations and len(sparse) == cfg.sparse_stations
    )
    assert (dense.groupby(["row", "col"]).size() == cfg.dense_stations).all()
    sparse_cells = set(zip(sparse.row, sparse.col))
    assert len(sparse_cells) == len(sparse) and not sparse_cells & set(zip(dense.row, dense.col))
    rows, cols = grid.latlon_to_rowcol(stations.lat.to_numpy(), stations.lon.to_numpy())
    np.testing.assert_array_equal(rows, stations.row)
    np.testing.assert_array_equal(cols, stations.col)
    v = values.values
    assert np.isnan(v).any() and 0.5 < np.isfinite(v).mean() < 0.95
    assert np.nanmin(v) >= STATION_RANGE[0] and np.nanmax(v) <= STATION_RANGE[1]
    cell_of = {
        (r, c): i for i, (r, c) in enumerate(zip(world.inputs.row.values, world.inputs.col.values))
    }
    frozen = world.truth["frozen"].values[
        :, [cell_of[(r, c)] for r, c in zip(sensors.row, sensors.col)]
    ]
    shallow_probe = (sensors.depth_m <= 0.2).to_numpy()
    assert np.isnan(v[:, shallow_probe][frozen[:, shallow_probe]]).all()
    assert np.isfinite(v[:, ~shallow_probe][frozen[:, ~shallow_probe]]).any()
    shallow = sensors[sensors.depth_m == 0.05]
    truth = world.truth["truth"].sel(depth=0.05).values
    r = []
    for sensor in shallow.itertuples():
        probe = values.sel(sensor=sensor.sensor).values
        ok = np.isfinite(probe)
        r.append(_corr(probe[ok], truth[ok, cell_of[(sensor.row, sensor.col)]]))
    assert 0.75 < np.median(r) < 0.995  # point truth, not cell truth


def test_wrong_models_are_sane_but_wrong(world):
    truth = world.truth["truth_0_10"].values
    for name in ("noah", "lsm2"):
        sim = world.inputs[name].values
        assert np.median(_corr(sim, truth)) > 0.7
        assert np.sqrt(np.mean((sim - truth) ** 2)) > 0.025


def test_wet_east_dry_west_and_warm_south(world):
    lon, lat = world.inputs.lon.values, world.inputs.lat.values
    precip = world.inputs["forcing"].sel(variable="precip").mean("time").values * 24 * 365.25
    assert precip[lon > -90].mean() > 1.8 * precip[(lon < -103) & (lon > -118)].mean()
    tair = world.inputs["forcing"].sel(variable="tair").mean("time").values
    assert tair[lat < 33].mean() > tair[lat > 43].mean() + 8


def test_written_world_is_an_input_dataset_the_normalizer_fits(world, written):
    ds = open_input(written / "input.zarr")
    assert [str(v) for v in ds["variable"].values] == list(FORCING_VARIABLES)
    assert {"sand", "clay", "silt", "bulk", "capa", "ndvi", "elevation", "flag_vegdense"} == {
        str(v) for v in ds["static_variable"].values
    }
    np.testing.assert_array_equal(ds["target"].values, world.inputs["target"].values)
    np.testing.assert_array_equal(ds["noah"].values, world.inputs["noah"].values)
    normalizer = Normalizer.fit(select_period(ds, "2015-04-01", "2016-03-31"))
    x = normalizer.inputs(select_period(ds, "2015-04-01", "2016-03-31"))
    assert x.shape == (ds.sizes["cell"], 366, 16)
    assert np.isfinite(x).all() and np.abs(x.mean(axis=(0, 1))).max() < 0.05
    truth = open_truth(written)
    np.testing.assert_array_equal(truth["truth"].values, world.truth["truth"].values)
    assert list(truth["depth_label"].values) == [
        "0-5 cm",
        "5 cm",
        "10 cm",
        "20 cm",
        "50 cm",
        "100 cm",
    ]
    sensors, values = read_world_stations(written)
    pd.testing.assert_frame_equal(sensors, world.sensors)
    np.testing.assert_array_equal(values.values, world.stations.values)


def test_cli_writes_a_world_and_reports_it(tmp_path):
    out = tmp_path / "w"
    result = CliRunner().invoke(
        app,
        [
            "world",
            "--out",
            str(out),
            "--stride",
            "4",
            "--start",
            "2015-01-01",
            "--end",
            "2015-12-31",
            "--bbox",
            "-100,30,-90,40",
        ],
    )
    assert result.exit_code == 0, result.output
    ds = open_input(out / "input.zarr")
    assert ((ds.lon >= -100) & (ds.lon <= -90) & (ds.lat >= 30) & (ds.lat <= 40)).all()
    n_obs = int(ds["target"].notnull().sum())
    assert (
        f"{ds.sizes['cell']} cells, 365 days (2015-01-01..2015-12-31), {n_obs} SMAP-like"
        in result.output
    )
    assert (out / "stations" / "sensors.csv").is_file()


def test_cli_bad_bbox_is_one_line_exit_1(tmp_path):
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            "from cli.main import main; main()",
            "world",
            "--out",
            str(tmp_path / "w"),
            "--bbox",
            "0,0,1,1",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines() == [
        "error: no CONUS land cell at stride 3 inside bbox (0.0, 0.0, 1.0, 1.0)"
    ]


def correlation_length_km(maps: np.ndarray, lat: np.ndarray, lon: np.ndarray) -> tuple:
    """(distance at which the correlogram of daily anomaly maps falls to 1/e, correlation of
    neighbouring cells). Anomaly: each cell's departure from its own mean, less the day's mean
    over the region, so neither climatology nor region-wide weather counts as structure."""
    anomaly = maps - maps.mean(0)
    anomaly -= anomaly.mean(1, keepdims=True)
    anomaly /= anomaly.std(1, keepdims=True)
    corr = anomaly.T @ anomaly / len(anomaly)
    km_per_deg_lon = 111.2 * np.cos(np.radians(lat.mean()))
    dist = np.hypot((lon[:, None] - lon) * km_per_deg_lon, (lat[:, None] - lat) * 111.2)
    upper = np.triu_indices(len(lat), 1)
    dist, corr = dist[upper], corr[upper]
    edges = np.arange(20.0, 620.0, 40.0)
    centres = (edges[:-1] + edges[1:]) / 2
    curve = np.array([corr[(dist >= a) & (dist < b)].mean() for a, b in zip(edges, edges[1:])])
    below = np.nonzero(curve < 1 / np.e)[0][0]
    x0, x1, y0, y1 = centres[below - 1], centres[below], curve[below - 1], curve[below]
    return x0 + (y0 - 1 / np.e) * (x1 - x0) / (y0 - y1), float(curve[0])


def test_day_maps_have_realistic_correlation_lengths():
    """Soil moisture anomalies of one day decorrelate over ~100-300 km in SMAP and in dense
    networks (storm footprints, soil and vegetation patches); neighbouring 36 km cells are alike.
    The twin world's mesoscale fields have a 50 km kernel (1/e at 100 km) under a regional part,
    which puts daily 0-5 cm maps' 1/e length near 120 km: checked to lie in 80-300 km with
    neighbours correlated above 0.65 (independent cell noise gave 0.34 and under 36 km)."""
    region = build_world(
        WorldConfig(
            seed=7,
            stride=1,
            bbox=(-104.0, 33.0, -92.0, 41.0),
            start="2015-01-01",
            end="2015-12-31",
            spinup_days=120,
        )
    )
    lat, lon = region.inputs["lat"].values, region.inputs["lon"].values
    surface = region.truth["truth"].isel(depth=0).values.astype(np.float64)
    length, neighbours = correlation_length_km(surface, lat, lon)
    assert 80 < length < 300 and neighbours > 0.65, (length, neighbours)
    precip = region.inputs["forcing"].sel(variable="precip").values.astype(np.float64)
    length, neighbours = correlation_length_km(precip, lat, lon)
    assert 60 < length < 300 and neighbours > 0.6, (length, neighbours)


def test_a_9km_world_keeps_its_realism_in_kilometres():
    """Correlation lengths are set in kilometres, not cells: over one region, daily 0-5 cm maps
    and rain of a 9 km world (every 4th cell, so as many cells as at 36 km) decorrelate over the
    same distance as a 36 km world's (both ~110 km here; the length grows with the region, as
    region-wide weather is taken out)."""
    lengths = {}
    for name, stride in (("36km", 1), ("9km", 4)):
        built = build_world(
            WorldConfig(
                seed=7,
                stride=stride,
                bbox=(-104.0, 33.0, -92.0, 41.0),
                start="2015-01-01",
                end="2015-09-30",
                spinup_days=120,
                grid=name,
            )
        )
        lat, lon = built.inputs["lat"].values, built.inputs["lon"].values
        surface = built.truth["truth"].isel(depth=0).values.astype(np.float64)
        precip = built.inputs["forcing"].sel(variable="precip").values.astype(np.float64)
        lengths[name] = [correlation_length_km(v, lat, lon)[0] for v in (surface, precip)]
    assert 80 < lengths["36km"][0] < 300
    np.testing.assert_allclose(lengths["9km"], lengths["36km"], rtol=0.15)


def test_a_9km_world_is_on_the_9km_grid():
    """Its cells are the grid's, its stations lie in their 9 km cells, and SMAP's revisit bands
    stay three 36 km columns (twelve 9 km ones) wide."""
    config = WorldConfig(
        seed=7,
        stride=1,
        bbox=(-100.0, 35.0, -96.0, 38.0),
        start="2015-01-01",
        end="2015-12-31",
        spinup_days=120,
        grid="9km",
    )
    fine = build_world(config)
    inputs = fine.inputs
    assert grid.of(inputs.attrs) == grid.M09 and grid.of(fine.truth.attrs) == grid.M09
    rows, cols = grid.M09.bbox_cells(*config.bbox)
    assert inputs.sizes["cell"] == len(rows) > 1000  # Kansas and Oklahoma are all land
    np.testing.assert_array_equal(inputs.row.values, rows)
    np.testing.assert_array_equal(inputs.col.values, cols)
    sites = fine.sensors.drop_duplicates("station")
    held = grid.M09.latlon_to_rowcol(sites.lat.to_numpy(), sites.lon.to_numpy())
    np.testing.assert_array_equal(held[0], sites.row.to_numpy())
    np.testing.assert_array_equal(held[1], sites.col.to_numpy())
    launched = inputs["target"].sel(time=slice("2015-04-01", None)).notnull().values
    band = cols // 12
    for b in np.unique(band)[:3]:
        seen = launched[:, band == b].any(1)
        others = launched[:, band == b + 1].any(1)
        assert seen.sum() > 60 and not np.array_equal(seen, others)


def test_cli_world_on_the_9km_grid_keeps_every_cell(tmp_path):
    out = tmp_path / "w9"
    args = ["world", "--grid", "9km", "--bbox=-99.6,38.1,-99.0,38.6", "--out", str(out)]
    result = CliRunner().invoke(app, [*args, "--start", "2015-01-01", "--end", "2015-02-28"])
    assert result.exit_code == 0, result.output
    ds = open_input(out / "input.zarr")
    assert ds.attrs["grid"] == "EASE2 9 km EPSG:6933"
    np.testing.assert_array_equal(ds.row.values, grid.M09.bbox_cells(-99.6, 38.1, -99.0, 38.6)[0])
    assert f"{ds.sizes['cell']} cells, 59 days" in result.output
    assert grid.of(open_truth(out).attrs) == grid.M09


def test_a_world_written_in_blocks_is_the_world_built_whole(tmp_path):
    """Block by block (memory for one block's cells), the world is the one built whole: its
    forcing, land, truth, LSMs and stations to a few float32 roundings; only the SMAP-like
    noise is drawn per block. Its inputs, kept to 12 significant bits, take under 25 bytes per
    cell-day of the 44 their float32 values hold."""
    config = WorldConfig(
        seed=5,
        stride=1,
        bbox=(-100.0, 36.0, -99.0, 37.0),
        start="2014-01-01",
        end="2015-12-31",
        spinup_days=100,
        grid="9km",
    )
    whole = build_world(config)
    line = write_world_blocks(config, tmp_path / "w", block_cells=40)
    cells = whole.inputs.sizes["cell"]
    assert cells > 100 and line.startswith(f"{cells} cells, 730 days (2014-01-01..2015-12-31)")
    blocks = open_input(tmp_path / "w" / "input.zarr")
    assert blocks["forcing"].encoding["chunks"] == (366, 40, 8)
    assert blocks["forcing"].dtype == blocks["target"].dtype == np.float32
    rounding = 2.0**-12  # the inputs keep 12 significant bits on disk
    forcing, stored = whole.inputs["forcing"].values, blocks["forcing"].values
    for k in range(forcing.shape[-1]):  # and a few float32 roundings of each variable's range
        scale = np.abs(forcing[..., k]).max()
        np.testing.assert_allclose(
            stored[..., k], forcing[..., k], rtol=rounding, atol=1e-5 * scale
        )
    np.testing.assert_array_equal(blocks["static"].values, whole.inputs["static"].values)
    for name in ("noah", "lsm2"):
        np.testing.assert_allclose(blocks[name].values, whole.inputs[name].values, rtol=rounding)
    truth = open_truth(tmp_path / "w")["truth"].values
    np.testing.assert_allclose(truth, whole.truth["truth"].values, atol=1e-5)
    assert blocks.attrs == whole.inputs.attrs
    sensors, values = read_world_stations(tmp_path / "w")
    pd.testing.assert_frame_equal(sensors, whole.sensors, check_dtype=False)
    np.testing.assert_allclose(values.values, whole.stations.values, atol=1e-5)
    observed = int(blocks["target"].notnull().sum())
    assert abs(observed - int(whole.inputs["target"].notnull().sum())) < 0.01 * observed
    assert f"{observed} SMAP-like observations" in line
    assert bytes_per_cell_day(tmp_path / "w" / "input.zarr", cells, 730) < 25

"""Evaluation against in situ probes: hand-computable metrics on a tiny cube, the root-zone filter,
fusion weights, the report and the `smapx evaluate` command, and the twin world end to end."""

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from model import grid, world
from model.errors import InputError
from model.evaluation.evaluate import Options, evaluate
from model.evaluation.insitu import Stations, read_stations, write_csv
from model.evaluation.matching import match_sites
from model.evaluation.periods import period_labels, years_from_window
from model.evaluation.report import run, write_report
from model.evaluation.rootzone import exponential_filter, fit_tc
from model.product import cube as cubes
from model.product import export, fusion
from model.settings import get_settings
from tests.tiny import COLS, ROWS, TIME, WINDOW, patterns, products, tiny_stations


@pytest.fixture(scope="module")
def tiny_cube(tmp_path_factory):
    path = tmp_path_factory.mktemp("cube") / "cube.zarr"
    template = cubes.template(
        TIME, ROWS, COLS, ("smap", "lstm", "noah", "lsm2"), {"training_period": WINDOW}
    )
    cubes.create(path, template)
    shape = (len(TIME), template.sizes["y"], template.sizes["x"])
    values = {p: np.broadcast_to(v[:, None, None], shape) for p, v in products().items()}
    for block in cubes.blocks(template):
        cubes.write_block(
            path, block, {p: v[block.time, block.y, block.x] for p, v in values.items()}
        )
    return cubes.open_cube(path)


@pytest.fixture(scope="module")
def result(tiny_cube):
    return evaluate(tiny_cube, tiny_stations(), Options(tc_days=10))


def score(result, site_prefix, product, period, metric):
    m = result.metrics
    row = m[
        m["site"].str.startswith(site_prefix) & (m["product"] == product) & (m["period"] == period)
    ]
    assert len(row) == 1
    return float(row[metric].iloc[0])


def test_exponential_filter_by_hand():
    out = exponential_filter(np.array([[1.0], [np.nan], [3.0]]), 1.0)[:, 0]
    gain = 1 / (1 + np.exp(-2.0))
    np.testing.assert_allclose(out, [1.0, np.nan, 1 + gain * 2.0])


def test_fit_tc_recovers_the_characteristic_time():
    _, _, truth = patterns()
    deep = exponential_filter(truth[:, None], 10.0)
    use = np.ones(len(TIME), bool)
    assert fit_tc(truth[:, None], deep, use, 30)[0] == 10.0


def test_periods_and_years_from_window():
    window = (pd.Timestamp("2015-04-01"), pd.Timestamp("2015-12-31"))
    days = pd.DatetimeIndex(
        [
            "2014-03-31",
            "2014-04-01",
            "2015-03-31",
            "2015-04-01",
            "2015-12-31",
            "2016-01-01",
            "2016-12-30",
            "2016-12-31",
        ]
    )
    assert list(period_labels(days, window)) == ["before"] * 3 + ["training"] * 2 + ["after"] * 3
    assert list(years_from_window(days, window)) == [-2, -1, -1, 0, 0, 1, 1, 2]


def test_sites_matching_and_problems(result):
    sites = result.sites.set_index("site")
    assert sorted(sites.index) == [
        "S1 rootzone 0.50 m",
        "S1 surface 0.05 m",
        "cell 0,1 surface 0.05 m",
    ]
    dense = sites.loc["cell 0,1 surface 0.05 m"]
    assert (dense["kind"], dense["n_sensors"], dense["stations"]) == ("dense", 2, "D1;D2")
    assert sites.loc["S1 surface 0.05 m", "kind"] == "sparse"
    problems = {p["station"]: p["problem"] for p in result.problems}
    assert problems["FAR"].startswith("outside the cube's region")
    assert problems["S1"].startswith("depth 2.00 m is beyond")


def test_surface_uses_each_stations_shallowest_probe(tiny_cube):
    """SMAP senses ~5 cm: a station's 10 cm probe stands for the surface only when it has
    nothing shallower (here S1 has 5 cm; the dense pair's D2 has only 10 cm)."""
    stations = tiny_stations()
    sensors = stations.sensors.copy()
    sensors.loc["S1@10"] = sensors.loc["S1@5"].copy()
    sensors.loc["D2@5", "depth_m"] = 0.10
    sensors.loc["S1@10", ["depth_from", "depth_to", "depth_m"]] = 0.10
    values = stations.values.assign(**{"S1@10": stations.values["S1@5"] + 0.05})
    sites, obs, _ = match_sites(tiny_cube, Stations(sensors, values))
    by_name = dict(zip(sites["site"], range(len(sites))))
    np.testing.assert_allclose(obs[:, by_name["S1 surface 0.05 m"]], stations.values["S1@5"])
    dense = sites.set_index("site").loc["cell 0,1 surface 0.05-0.10 m"]
    assert dense["n_sensors"] == 2


def test_metrics_by_period_match_hand_values(result):
    tol = 2e-4  # int16 storage at 1e-4 m3/m3
    for site in ("S1 surface", "cell 0,1"):
        assert score(result, site, "lstm", "training", "rmse") == pytest.approx(0.01, abs=tol)
        assert score(result, site, "lstm", "prolonged", "rmse") == pytest.approx(0.02, abs=tol)
        assert score(result, site, "lstm", "before", "bias") == pytest.approx(0.0, abs=tol)
        assert score(result, site, "noah", "all", "rmse") == pytest.approx(0.02, abs=tol)
        assert score(result, site, "lsm2", "all", "bias") == pytest.approx(-0.03, abs=tol)
        assert score(result, site, "lsm2", "all", "ubrmse") == pytest.approx(0.0, abs=tol)
        assert score(result, site, "lsm2", "all", "r") == pytest.approx(1.0, abs=1e-4)
        assert score(result, site, "smap", "training", "rmse") == pytest.approx(0.0, abs=tol)
        # (lstm + noah)/2 errors: 0.005 a + 0.01 b -> sqrt((0.015^2 + 0.005^2) / 2)
        assert score(result, site, "lstm+noah", "training", "rmse") == pytest.approx(
            np.sqrt(1.25e-4), abs=tol
        )
        # (noah + lsm2)/2 errors: 0.01 b - 0.015 -> sqrt((0.005^2 + 0.025^2) / 2)
        assert score(result, site, "noah+lsm2", "all", "rmse") == pytest.approx(
            np.sqrt(3.25e-4), abs=tol
        )
    assert score(result, "S1 surface", "lstm", "training", "n") == 275
    assert score(result, "S1 surface", "lstm", "prolonged", "n") == 731 - 275


def test_root_zone_compares_the_filtered_series(result):
    lstm = products()["lstm"]
    _, _, truth = patterns()
    filtered = exponential_filter(lstm[:, None], 10.0)[:, 0]
    deep = exponential_filter(truth[:, None], 10.0)[:, 0]
    expected = np.sqrt(np.mean((filtered - deep) ** 2))
    assert score(result, "S1 rootzone", "lstm", "all", "rmse") == pytest.approx(expected, abs=3e-4)
    assert expected < 0.01  # the filter averages the daily noise away


def test_fusion_weights_from_error_variances(result):
    # training window: lstm error variance 1e-4, noah 4e-4, uncorrelated -> w = 0.8
    weights = result.weights.set_index(["row", "col"])
    assert weights.loc[(90, 220), "weight"] == pytest.approx(0.8, abs=0.02)
    assert weights.loc[(90, 220), "method"] == "in situ error variances"
    # weighted errors outside the window: 0.8 * 0.02 a + 0.2 * 0.02 b
    assert score(
        result, "S1 surface", "lstm+noah (weighted)", "prolonged", "rmse"
    ) == pytest.approx(np.sqrt(0.016**2 + 0.004**2), abs=5e-4)


def test_summary_shape_wins_and_claims(result):
    s = result.summary
    for product in ("lstm", "noah", "lsm2", "smap", "lstm+noah", "noah+lsm2"):
        for period in ("training", "prolonged"):
            assert set(s["products"][product][period]) >= {
                "bias",
                "rmse",
                "ubrmse",
                "r",
                "n_stations",
            }
    assert s["products"]["lstm"]["training"]["n_stations"] == 2
    assert s["products"]["lstm"]["prolonged"]["rmse"] == pytest.approx(0.02, abs=2e-4)
    assert s["wins"]["lstm+noah>noah"] == 1.0
    assert s["wins"]["lstm+noah>noah+lsm2"] == 1.0
    assert s["wins"]["lstm>noah"] == 1.0  # 0.0141 overall vs 0.02
    assert s["wins_by_kind_n_stations"]["dense"]["lstm+noah>noah"] == 1
    assert s["wins_n_stations"]["lstm+noah>noah"] == 2
    surface = result.metrics[
        (result.metrics["layer"] == "surface") & (result.metrics["period"] == "all")
    ]
    rmse = surface.pivot_table(index="site", columns="product", values="rmse")
    for pair, fraction in s["wins"].items():
        a, b = pair.split(">")
        assert fraction == pytest.approx((rmse[a] < rmse[b]).mean())
    claims = s["claims"]
    assert claims["prolonged_skill"]["rmse_ratio"] == pytest.approx(2.0, abs=0.05)
    assert claims["prolonged_skill"]["holds"] is False
    assert claims["prolonged_skill"]["finding"].startswith("the method")
    assert claims["fusion_beats_noah"]["holds"] is True
    json.dumps(s, allow_nan=False)


def test_triple_collocation_weights_cells_without_probes(tmp_path):
    rng = np.random.default_rng(0)
    time = pd.date_range("2015-04-01", "2016-12-31")
    rows, cols = np.array([90, 95]), np.array([220, 225])
    template = cubes.template(
        time, rows, cols, ("lstm", "noah", "lsm2"), {"training_period": WINDOW}
    )
    cubes.create(tmp_path / "c.zarr", template)
    truth = 0.25 + 0.05 * rng.standard_normal((len(time), 1, 1))
    shape = (len(time), template.sizes["y"], template.sizes["x"])
    values = {
        "lstm": truth + 0.01 * rng.standard_normal(shape),
        "noah": truth + 0.02 * rng.standard_normal(shape),
        "lsm2": truth + 0.02 * rng.standard_normal(shape),
    }
    for block in cubes.blocks(template):
        cubes.write_block(
            tmp_path / "c.zarr",
            block,
            {p: v[block.time, block.y, block.x] for p, v in values.items()},
        )
    lat, lon = grid.rowcol_to_latlon(rows[:1], cols[:1])
    stations = Stations(
        pd.DataFrame(
            [
                {
                    "sensor": "s",
                    "station": "s",
                    "network": "",
                    "kind": "",
                    "lat": lat[0],
                    "lon": lon[0],
                    "depth_from": 0.05,
                    "depth_to": 0.05,
                    "depth_m": 0.05,
                }
            ]
        ).set_index("sensor"),
        pd.DataFrame({"s": truth[:, 0, 0]}, index=time.rename("time")),
    )
    weights = evaluate(cubes.open_cube(tmp_path / "c.zarr"), stations).weights.set_index(
        ["row", "col"]
    )
    assert weights.loc[(95, 225), "method"] == "triple collocation"
    assert weights.loc[(95, 225), "weight"] == pytest.approx(0.8, abs=0.05)  # 4e-4 / (1e-4 + 4e-4)
    assert weights.loc[(90, 220), "method"] == "in situ error variances"


def test_report_files_and_figures(result, tmp_path):
    index = write_report(result, tmp_path)
    html = index.read_text()
    for name in (
        "map_skill.png",
        "skill_vs_years.png",
        "boxplots.png",
        "fusion_wins.png",
        "depth.png",
        "timeseries.png",
    ):
        assert (tmp_path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert f"src='{name}'" in html
    assert "FAR" in html and "outside the cube" in html
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["wins"]["lstm+noah>noah"] == 1.0
    table = pd.read_csv(tmp_path / "metrics.csv")
    assert set(table["period"]) == {"training", "before", "after", "prolonged", "all"}
    weights = fusion.read_weights(tmp_path / "fusion_weights.csv")
    assert weights.set_index(["row", "col"]).loc[(90, 220), "weight"] == pytest.approx(
        0.8, abs=0.02
    )
    assert set(weights["grid"]) == {grid.DEFAULT.attr}


def test_report_run_logs_to_its_file_and_leaves_logging_as_it_was(tiny_cube, tmp_path):
    """The report's log file gets the evaluation's messages; the caller's logger levels are
    restored afterwards (the run used to leave the package's logger at INFO)."""
    write_csv(tiny_stations(), tmp_path / "stations.csv")
    logger = logging.getLogger("model.evaluation")
    before = logger.level
    run(tiny_cube.encoding["source"], tmp_path / "stations.csv", tmp_path / "report")
    assert logger.level == before and not logger.handlers
    assert "surface) from 6 sensors" in (tmp_path / "report" / "evaluate.log").read_text()


def test_no_usable_station_is_a_clear_error(tiny_cube):
    stations = tiny_stations()
    far = stations.sensors.loc[["FAR@5"]]
    with pytest.raises(InputError, match="none of the 1 sensors.*outside the cube"):
        evaluate(tiny_cube, Stations(far, stations.values[["FAR@5"]]))


def test_training_period_needed_and_checked(tiny_cube):
    cube = tiny_cube.copy()
    cube.attrs = {k: v for k, v in cube.attrs.items() if k != "training_period"}
    with pytest.raises(InputError, match="no training_period"):
        evaluate(cube, tiny_stations())
    with pytest.raises(InputError, match="YYYY-MM-DD"):
        evaluate(tiny_cube, tiny_stations(), Options(training_period="2015"))


def _smapx(*args, cwd=None):
    exe = Path(sys.executable).with_name("smapx")
    return subprocess.run(
        [str(exe), *args],
        check=False,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=cwd,
        env={**os.environ, "MPLBACKEND": "Agg"},
    )


def test_cli_with_ismn_archive_over_a_cube(shared_data, tmp_path):
    """The real CEOP sample: ARM-1 lies in the cube (its cell holds the station's own daily means
    as 'lstm', so RMSE is the int16 rounding only); Barrow-ARM lies outside and is reported."""
    archive = shared_data / "ismn" / "Data_ceop_sep_ARM-1_20170810_20180809.zip"
    stations = read_stations(archive)
    arm = stations.sensors.index[stations.sensors["station"] == "COSMOS/ARM-1"][0]
    row, col = grid.latlon_to_rowcol(36.6054, -97.4878)
    time = pd.date_range("2017-08-01", "2018-08-31")
    template = cubes.template(
        time,
        [int(row)],
        [int(col)],
        ("lstm", "noah"),
        {"training_period": "2017-08-01..2017-12-31"},
    )
    cubes.create(tmp_path / "c.zarr", template)
    daily = stations.values[arm].reindex(time).interpolate(limit_direction="both").to_numpy()
    block = cubes.blocks(template)[0]
    cubes.write_block(
        tmp_path / "c.zarr",
        block,
        {"lstm": daily[:, None, None], "noah": daily[:, None, None] + 0.05},
    )
    done = _smapx(
        "evaluate",
        "--cube",
        str(tmp_path / "c.zarr"),
        "--stations",
        str(archive),
        "--out",
        str(tmp_path / "report"),
    )
    assert done.returncode == 0, done.stderr
    summary = json.loads((tmp_path / "report" / "summary.json").read_text())
    assert summary["products"]["lstm"]["all"]["rmse"] == pytest.approx(0.0, abs=1e-4)
    assert summary["products"]["noah"]["all"]["bias"] == pytest.approx(0.05, abs=1e-4)
    assert summary["products"]["lstm"]["training"]["n_stations"] == 1
    assert [p["station"] for p in summary["problems"]] == ["COSMOS/Barrow-ARM"]
    assert "COSMOS/Barrow-ARM" in (tmp_path / "report" / "evaluate.log").read_text()


def test_cli_bad_input_is_one_line(tmp_path):
    done = _smapx(
        "evaluate",
        "--cube",
        str(tmp_path / "none.zarr"),
        "--stations",
        str(tmp_path),
        "--out",
        str(tmp_path / "r"),
    )
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [f"error: cube not found: {tmp_path / 'none.zarr'}"]


def test_twin_world_end_to_end(tmp_path):
    """A small twin world; the cube's 'lstm' is the 0-5 cm truth plus noise, so its skill does not
    depend on the period, and deep probes see what the surface series cannot."""
    config = world.WorldConfig(
        start="2013-01-01",
        end="2018-12-31",
        bbox=(-100, 35, -95, 40),
        dense_networks=1,
        dense_stations=4,
        sparse_stations=6,
    )
    built = world.build_world(config)
    world.write_world(built, tmp_path / "W")
    inputs, truth = built.inputs, built.truth
    rng = np.random.default_rng(1)
    surface = truth["truth"].sel(depth=0.025).values
    template = cubes.template(
        inputs.time.values,
        inputs.row.values,
        inputs.col.values,
        ("smap", "lstm", "noah", "lsm2"),
        {"training_period": "2015-04-01..2016-03-31"},
    )
    cubes.create(tmp_path / "c.zarr", template)
    iy = inputs.row.values - template.attrs["row0"]
    ix = inputs.col.values - template.attrs["col0"]

    def spread(v):
        out = np.full((v.shape[0], template.sizes["y"], template.sizes["x"]), np.nan, np.float32)
        out[:, iy, ix] = v
        return out

    values = {
        "smap": spread(inputs["target"].values),
        "lstm": spread(surface + rng.normal(0, 0.02, surface.shape)),
        "noah": spread(inputs["noah"].values),
        "lsm2": spread(inputs["lsm2"].values),
    }
    for block in cubes.blocks(template):
        cubes.write_block(
            tmp_path / "c.zarr",
            block,
            {p: v[block.time, block.y, block.x] for p, v in values.items()},
        )
    done = _smapx(
        "evaluate",
        "--cube",
        str(tmp_path / "c.zarr"),
        "--stations",
        str(tmp_path / "W"),
        "--out",
        str(tmp_path / "report"),
    )
    assert done.returncode == 0, done.stderr
    summary = json.loads((tmp_path / "report" / "summary.json").read_text())
    assert summary["n_sites"]["dense"] >= 1 and summary["n_sites"]["sparse"] >= 1
    claims = summary["claims"]
    assert claims["prolonged_skill"]["holds"] is True
    assert claims["shallow_sensing_limit"]["holds"] is True
    assert (
        claims["shallow_sensing_limit"]["r_deep_filtered"]
        > claims["shallow_sensing_limit"]["r_deep"]
    )
    assert summary["wins"]["lstm+noah>noah"] >= 0.5  # the truth-plus-noise lstm pulls noah in
    assert "fusion_beats_noah" in (tmp_path / "report" / "index.html").read_text()


def test_weights_of_another_grid_are_refused_on_a_cube(tiny_cube, tmp_path, monkeypatch):
    """A weights file records its grid: the cube's own apply, those of the 9 km grid on this
    36 km cube are refused in one line that names both."""
    own, other = tmp_path / "own.csv", tmp_path / "other.csv"
    fusion.write_weights(own, [ROWS[0]], [COLS[0]], [0.8])
    fusion.write_weights(other, [ROWS[0]], [COLS[0]], [0.8], grid.M09)
    assert list(pd.read_csv(other)["grid"]) == ["EASE2 9 km EPSG:6933"]

    def weight_map(path):
        monkeypatch.setenv("SMAPX_WEIGHTS_PATH", str(path))
        get_settings.cache_clear()
        try:
            return export.weight_map(tiny_cube, None)
        finally:
            monkeypatch.delenv("SMAPX_WEIGHTS_PATH")
            get_settings.cache_clear()

    at = (ROWS[0] - tiny_cube.attrs["row0"], COLS[0] - tiny_cube.attrs["col0"])
    assert weight_map(own)[at] == 0.8
    with pytest.raises(InputError) as refused:
        weight_map(other)
    assert str(refused.value) == (
        f"fusion weights {other} is on the 9 km grid but cube {tiny_cube.encoding['source']} "
        "is on the 36 km grid; use one grid throughout"
    )

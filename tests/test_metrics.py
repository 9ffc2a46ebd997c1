"""Metrics against values computed by hand."""

import numpy as np
import pandas as pd
import pytest

from model import metrics


def test_hand_computed_values():
    obs = np.array([0.1, 0.2, 0.3, np.nan, 0.4])
    pred = np.array([0.2, 0.2, 0.4, 0.5, np.nan])
    # matched pairs: (0.2,0.1) (0.2,0.2) (0.4,0.3); diffs 0.1, 0, 0.1
    assert metrics.bias(pred, obs)[0] == pytest.approx(0.2 / 3)
    assert metrics.rmse(pred, obs)[0] == pytest.approx(np.sqrt(0.02 / 3))
    d = np.array([0.1, 0.0, 0.1]) - 0.2 / 3
    assert metrics.ubrmse(pred, obs)[0] == pytest.approx(np.sqrt(np.mean(d**2)))
    assert metrics.pearson_r(pred, obs)[0] == pytest.approx(
        np.corrcoef([0.2, 0.2, 0.4], [0.1, 0.2, 0.3])[0, 1]
    )
    # NSE = 1 - sum(d^2) / sum((o - mean o)^2) = 1 - 0.02 / 0.02 = 0
    assert metrics.nse(pred, obs)[0] == pytest.approx(0.0, abs=1e-12)
    assert metrics.all_metrics(pred, obs)["n"][0] == 3


def test_per_cell_columns_and_summary():
    rng = np.random.default_rng(0)
    obs = rng.random((100, 3))
    pred = obs + np.array([0.0, 0.1, -0.2])
    per_cell = metrics.all_metrics(pred, obs)
    np.testing.assert_allclose(per_cell["bias"], [0.0, 0.1, -0.2], atol=1e-12)
    np.testing.assert_allclose(per_cell["ubrmse"], 0.0, atol=1e-12)
    np.testing.assert_allclose(per_cell["r"], 1.0)
    summary = metrics.summarize(per_cell)
    assert summary["bias"] == pytest.approx(0.0, abs=1e-12) and summary["n_cells"] == 3


def test_anomaly_r_ignores_the_shared_seasonal_cycle():
    time = pd.date_range("2001-01-01", periods=3 * 365)
    season = np.sin(2 * np.pi * np.arange(len(time)) / 365.25)[:, None]
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=(len(time), 1)), rng.normal(size=(len(time), 1))
    assert metrics.pearson_r(season + 0.1 * a, season + 0.1 * b)[0] > 0.9
    assert abs(metrics.anomaly_r(season + 0.1 * a, season + 0.1 * b, time)[0]) < 0.15
    assert metrics.anomaly_r(season + 0.1 * a, season + 0.1 * a, time)[0] == pytest.approx(1.0)

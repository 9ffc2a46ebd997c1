"""Skill metrics on matched pairs, per cell (or station), over the time axis.

Arrays are (time, cell); a pair counts only where both are finite. Anomalies are departures from a
day-of-year climatology of each series over the same days (a 31-day moving window).
"""

import functools
import warnings

import numpy as np
import pandas as pd

METRICS = ("bias", "rmse", "ubrmse", "r", "anomaly_r", "nse", "n")


def _quiet(func):
    """Cells with no valid pair give NaN metrics, not 'mean of empty slice' warnings."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            return func(*args, **kwargs)

    return wrapper


def _pairs(pred, obs):
    pred, obs = np.asarray(pred, np.float64), np.asarray(obs, np.float64)
    if pred.ndim == 1:
        pred, obs = pred[:, None], obs[:, None]
    valid = np.isfinite(pred) & np.isfinite(obs)
    return np.where(valid, pred, np.nan), np.where(valid, obs, np.nan), valid.sum(0)


@_quiet
def bias(pred, obs):
    p, o, _ = _pairs(pred, obs)
    return np.nanmean(p - o, axis=0)


@_quiet
def rmse(pred, obs):
    p, o, _ = _pairs(pred, obs)
    return np.sqrt(np.nanmean((p - o) ** 2, axis=0))


@_quiet
def ubrmse(pred, obs):
    """RMSE after removing each series' mean over the matched pairs."""
    p, o, _ = _pairs(pred, obs)
    d = (p - np.nanmean(p, 0)) - (o - np.nanmean(o, 0))
    return np.sqrt(np.nanmean(d**2, axis=0))


@_quiet
def pearson_r(pred, obs):
    p, o, n = _pairs(pred, obs)
    pa, oa = p - np.nanmean(p, 0), o - np.nanmean(o, 0)
    den = np.sqrt(np.nansum(pa**2, 0) * np.nansum(oa**2, 0))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where((n > 2) & (den > 0), np.nansum(pa * oa, 0) / den, np.nan)


@_quiet
def nse(pred, obs):
    p, o, _ = _pairs(pred, obs)
    den = np.nansum((o - np.nanmean(o, 0)) ** 2, 0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, 1 - np.nansum((p - o) ** 2, 0) / den, np.nan)


@_quiet
def climatology_anomaly(values, time, window: int = 31):
    """Departure of (time, cell) values from their smoothed day-of-year mean."""
    values = np.asarray(values, np.float64)
    doy = pd.DatetimeIndex(time).day_of_year.to_numpy() - 1
    sums = np.zeros((366, values.shape[1]))
    counts = np.zeros((366, values.shape[1]))
    finite = np.isfinite(values)
    np.add.at(sums, doy, np.where(finite, values, 0))
    np.add.at(counts, doy, finite)
    kernel = np.ones(window)
    wrap = window // 2

    def smooth(a):
        padded = np.concatenate([a[-wrap:], a, a[:wrap]])
        return np.apply_along_axis(lambda c: np.convolve(c, kernel, "valid"), 0, padded)

    with np.errstate(invalid="ignore", divide="ignore"):
        clim = smooth(sums) / smooth(counts)
    return values - clim[doy]


@_quiet
def anomaly_r(pred, obs, time):
    p, o, _ = _pairs(pred, obs)
    return pearson_r(climatology_anomaly(p, time), climatology_anomaly(o, time))


def all_metrics(pred, obs, time=None) -> dict[str, np.ndarray]:
    """Every metric per cell, with the count of valid pairs."""
    _, _, n = _pairs(pred, obs)
    out = {
        "bias": bias(pred, obs),
        "rmse": rmse(pred, obs),
        "ubrmse": ubrmse(pred, obs),
        "r": pearson_r(pred, obs),
        "nse": nse(pred, obs),
        "n": n,
    }
    if time is not None:
        out["anomaly_r"] = anomaly_r(pred, obs, time)
    return out


@_quiet
def summarize(per_cell: dict[str, np.ndarray], min_pairs: int = 10) -> dict[str, float]:
    """Medians over cells with at least `min_pairs` pairs, and how many cells that is."""
    keep = np.asarray(per_cell["n"]) >= min_pairs
    out = {
        k: float(np.nanmedian(np.asarray(v)[keep])) if keep.any() else float("nan")
        for k, v in per_cell.items()
        if k != "n"
    }
    out["n_cells"] = int(keep.sum())
    return out

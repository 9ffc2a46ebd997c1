"""Evaluation of a product cube against in situ probes: the evidence that extended SMAP adds skill.

Steps: match each sensor to the cube cell holding it; group sensors into sites (a dense network's
sensors in one cell are averaged into one site, sparse stations stay apart); compare surface
probes (<= 10 cm) with the surface products and deeper probes with a root-zone estimate (an
exponential filter of each surface series); score every site and product inside the SMAP training
window and in the prolonged years before and after it; estimate LSTM-Noah fusion weights; and
decide the paper's claims. Problems with single stations are collected, never fatal.
"""

import logging
import warnings
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import xarray as xr
from tqdm import tqdm

from model import grid
from model.evaluation.claims import claims, lstm_vs_smap
from model.evaluation.insitu import Stations
from model.evaluation.matching import cell_series, match_sites, with_fusions
from model.evaluation.periods import period_labels, training_window
from model.evaluation.rootzone import root_zone
from model.evaluation.scores import (
    distance_table,
    json_number,
    medians,
    score_table,
    trend_table,
    wins,
)
from model.evaluation.weights import estimate_weights, site_weights

log = logging.getLogger(__name__)


@dataclass
class Options:
    """How to evaluate. `training_period` overrides the cube's attribute; `tc_days` fixes the
    root-zone filter's characteristic time instead of fitting it per site in the training window."""

    training_period: str | None = None
    tc_days: float | None = None
    min_pairs: int = 30
    dense_min_stations: int = 2
    progress: bool = False


@dataclass
class Evaluation:
    """Everything the report shows. Series arrays are (time, site), as compared with the probes."""

    sites: pd.DataFrame
    time: pd.DatetimeIndex
    window: tuple[pd.Timestamp, pd.Timestamp]
    obs: np.ndarray
    series: dict[str, np.ndarray]
    metrics: pd.DataFrame
    by_distance: pd.DataFrame
    trends: pd.DataFrame
    weights: pd.DataFrame
    summary: dict
    problems: list[dict] = field(default_factory=list)
    on: grid.Grid = grid.DEFAULT  # the cube's grid, which its weights' rows and cols are on


def evaluate(cube: xr.Dataset, stations: Stations, options: Options | None = None) -> Evaluation:
    """Match, score, fuse and decide: the full in situ evaluation of one cube."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN sites and periods score NaN
        return _evaluate(cube, stations, options or Options())


def _evaluate(cube: xr.Dataset, stations: Stations, options: Options) -> Evaluation:
    window = training_window(cube, options.training_period)
    time = pd.DatetimeIndex(cube.time.values)
    labels = period_labels(time, window)
    steps = tqdm(total=5, desc="evaluate", disable=not options.progress)
    sites, obs, problems = match_sites(cube, stations, options.dense_min_stations)
    log.info(
        "%d sites (%d surface) from %d sensors; %d problems",
        len(sites),
        int((sites["layer"] == "surface").sum()),
        len(stations.sensors),
        len(problems),
    )
    steps.update()
    raw = cell_series(cube, sites["iy"], sites["ix"])
    in_window = labels == "training"
    weights = estimate_weights(cube, sites, raw, obs, in_window, window, options.min_pairs)
    raw = with_fusions(
        raw, site_weights(weights, sites) if "lstm" in raw and "noah" in raw else None
    )
    steps.update()
    compared = root_zone(raw, sites, obs, in_window, options)
    steps.update()
    table = score_table(sites, time, obs, compared, labels, options.min_pairs)
    deep_raw = (sites["layer"] == "rootzone").to_numpy()
    raw_deep_table = score_table(
        sites[deep_raw],
        time,
        obs[:, deep_raw],
        {p: v[:, deep_raw] for p, v in raw.items()},
        labels,
        options.min_pairs,
    )
    by_distance = distance_table(sites, time, obs, compared, window, options.min_pairs)
    trends = trend_table(sites, time, obs, compared)
    steps.update()
    summary = {
        "training_period": f"{window[0].date()}..{window[1].date()}",
        "cube_period": f"{time[0].date()}..{time[-1].date()}",
        "n_sites": {
            "surface": int((sites["layer"] == "surface").sum()),
            "rootzone": int(deep_raw.sum()),
            "dense": int((sites["kind"] == "dense").sum()),
            "sparse": int((sites["kind"] == "sparse").sum()),
        },
        "n_sensors": len(stations.sensors),
        "products": medians(table, "surface"),
        "rootzone": medians(table, "rootzone"),
        "rootzone_raw": medians(raw_deep_table, "rootzone"),
        "rootzone_trends": _trend_summary(trends),
        "wins": wins(table, "all")[0],
        "wins_n_stations": wins(table, "all")[1],
        "wins_prolonged": wins(table, "prolonged")[0],
        "wins_ubrmse": wins(table, "all", metric="ubrmse")[0],
        "wins_by_kind": {k: wins(table, "all", k)[0] for k in ("dense", "sparse")},
        "wins_by_kind_n_stations": {k: wins(table, "all", k)[1] for k in ("dense", "sparse")},
        "fusion_weights": {
            "n_cells": len(weights),
            "by_method": weights["method"].value_counts().to_dict(),
            "median": json_number(weights["weight"].median()) if len(weights) else None,
        },
        "problems": problems,
    }
    summary["diagnostics"] = {"lstm_vs_smap": lstm_vs_smap(raw, labels, options.min_pairs)}
    summary["claims"] = claims(summary, summary["diagnostics"])
    steps.update()
    steps.close()
    return Evaluation(
        sites,
        time,
        window,
        obs,
        compared,
        table,
        by_distance,
        trends,
        weights,
        _clean(summary),
        problems,
        grid.of(cube.attrs),
    )


def _trend_summary(trends: pd.DataFrame) -> dict:
    out = {}
    for product, part in trends.dropna(subset=["annual_r"]).groupby("product", sort=False):
        same_sign = np.sign(part["trend_obs"]) == np.sign(part["trend_product"])
        out[product] = {
            "annual_r": json_number(part["annual_r"].median()),
            "trend_sign_agreement": json_number(same_sign.mean()),
            "n_stations": len(part),
        }
    return out


def _clean(node):
    """Plain JSON types all the way down (numpy scalars, NaN -> null)."""
    if isinstance(node, dict):
        return {str(k): _clean(v) for k, v in node.items()}
    if isinstance(node, (list, tuple)):
        return [_clean(v) for v in node]
    if isinstance(node, (bool, np.bool_)):
        return bool(node)
    if isinstance(node, (int, np.integer)):
        return int(node)
    if isinstance(node, (float, np.floating)):
        return json_number(node)
    return node

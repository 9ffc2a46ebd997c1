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

from model.errors import InputError, OutOfRangeError
from model.evaluation import metrics
from model.evaluation.insitu import Stations
from model.product import cube as cubes
from model.product import fusion

log = logging.getLogger("smapx.evaluate")

SURFACE_MAX_DEPTH = 0.10
ROOTZONE_MAX_DEPTH = 1.0
TC_CHOICES = (1, 2, 3, 5, 7, 10, 15, 20, 30, 45, 60, 90)
PERIODS = ("training", "before", "after", "prolonged", "all")
SCORES = ("bias", "rmse", "ubrmse", "r", "anomaly_r")
WEIGHTED = "lstm+noah (weighted)"
WIN_PAIRS = (
    ("lstm+noah", "noah"),
    ("lstm+noah", "noah+lsm2"),
    ("lstm", "noah"),
    ("noah+lsm2", "noah"),
    (WEIGHTED, "noah"),
    (WEIGHTED, "lstm+noah"),
)


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


def training_window(
    cube: xr.Dataset, period: str | None = None
) -> tuple[pd.Timestamp, pd.Timestamp]:
    """The SMAP training window 'YYYY-MM-DD..YYYY-MM-DD', given or from the cube's attributes."""
    text = period or cube.attrs.get("training_period")
    if not text:
        raise InputError(
            "the cube has no training_period attribute; give the SMAP training window "
            "as YYYY-MM-DD..YYYY-MM-DD"
        )
    try:
        start, end = (pd.Timestamp(part) for part in str(text).split(".."))
    except ValueError as exc:
        raise InputError(f"training period {text!r} is not YYYY-MM-DD..YYYY-MM-DD") from exc
    if end < start:
        raise InputError(f"training period {text!r} ends before it starts")
    return start, end


def period_labels(time: pd.DatetimeIndex, window) -> np.ndarray:
    """'training', 'before' or 'after' for every day."""
    start, end = window
    return np.where(time < start, "before", np.where(time > end, "after", "training"))


def years_from_window(time: pd.DatetimeIndex, window) -> np.ndarray:
    """Signed whole years between each day and the training window: 0 inside it, -1 in the year
    just before it, +1 in the year just after it, and so on."""
    start, end = window
    before = (start - time).days.to_numpy()
    after = (time - end).days.to_numpy()
    return np.where(
        before > 0, -((before - 1) // 365) - 1, np.where(after > 0, (after - 1) // 365 + 1, 0)
    ).astype(int)


def exponential_filter(values: np.ndarray, tc) -> np.ndarray:
    """Root-zone index of (time, n) daily surface series (recursive exponential filter, Albergel
    et al. 2008): gaps are bridged by the time since the last value; output on days with input."""
    values = np.asarray(values, np.float64)
    tc = np.broadcast_to(np.asarray(tc, np.float64), values.shape[1:])
    out = np.full(values.shape, np.nan)
    swi = np.full(values.shape[1:], np.nan)
    gain = np.ones(values.shape[1:])
    last = np.zeros(values.shape[1:])
    for t, v in enumerate(values):
        ok = np.isfinite(v)
        started = ok & np.isfinite(swi)
        fresh = ok & ~np.isfinite(swi)
        gain = np.where(
            started, gain / (gain + np.exp(-(t - last) / tc)), np.where(fresh, 1.0, gain)
        )
        swi = np.where(started, swi + gain * (v - swi), np.where(fresh, v, swi))
        last = np.where(ok, t, last)
        out[t] = np.where(ok, swi, np.nan)
    return out


def fit_tc(surface: np.ndarray, obs: np.ndarray, use: np.ndarray, min_pairs: int) -> np.ndarray:
    """Per column, the characteristic time (days) whose filtered series best correlates with the
    deep probe over the days in `use` (the training window); 20 days where it cannot be fitted.
    Every candidate is filtered in one pass, side by side, since the filter loops over days."""
    n_tc, n_col = len(TC_CHOICES), surface.shape[1]
    candidates = exponential_filter(np.tile(surface, n_tc), np.repeat(TC_CHOICES, n_col))
    target = np.tile(np.where(use[:, None], obs, np.nan), n_tc)
    r = metrics.pearson_r(candidates, target).reshape(n_tc, n_col)
    n = (np.isfinite(candidates) & np.isfinite(target)).sum(0).reshape(n_tc, n_col)
    r = np.where(np.isfinite(r) & (n >= min_pairs), r, -np.inf)
    return np.where(np.isfinite(r.max(0)), np.asarray(TC_CHOICES, float)[r.argmax(0)], 20.0)


# ---- matching ------------------------------------------------------------------------------


def match_sites(cube: xr.Dataset, stations: Stations, dense_min_stations: int = 2):
    """(sites table, obs (time, site), problems): sensors located in the cube and grouped.

    A site is either one station's sensors at one depth (sparse) or all sensors of a dense network
    in one cell at one depth, averaged day by day."""
    values = stations.values.reindex(pd.DatetimeIndex(cube.time.values))
    sensors, problems = locate_sensors(cube, stations, values)
    for p in problems:
        log.warning("%s: %s", p["station"], p["problem"])
    if sensors.empty:
        kinds = pd.Series([p["problem"].split(" (")[0] for p in problems]).value_counts()
        reasons = "; ".join(f"{n} x {reason}" for reason, n in kinds.head(3).items())
        raise InputError(
            f"none of the {len(stations.sensors)} sensors can be evaluated against "
            f"this cube: {reasons or 'no sensors in the stations'}"
        )
    sensors = shallowest_surface_probes(sensors)
    stations_per_cell = sensors.groupby(["iy", "ix"])["station"].transform("nunique")
    derived = np.where(stations_per_cell >= dense_min_stations, "dense", "sparse")
    sensors["kind"] = np.where(sensors["kind"].isin(["dense", "sparse"]), sensors["kind"], derived)
    sensors["group"] = np.where(
        sensors["kind"] == "dense",
        "cell " + sensors["iy"].astype(str) + "," + sensors["ix"].astype(str),
        sensors["station"],
    )
    sites, obs = group_sites(cube, sensors, values)
    return sites, obs, problems


def locate_sensors(cube: xr.Dataset, stations: Stations, values: pd.DataFrame):
    """(sensors the cube can serve, with their cell and layer; problems with the others)."""
    time = values.index
    problems = list(stations.problems)
    rows = []
    for sensor, meta in stations.sensors.iterrows():
        try:
            iy, ix = cubes.locate(cube, meta["lat"], meta["lon"])
        except OutOfRangeError:
            problems.append(
                {
                    "station": meta["station"],
                    "problem": f"outside the cube's region ({meta['lat']:.4f}, {meta['lon']:.4f})",
                }
            )
            continue
        depth = float(meta["depth_m"])
        if not 0 <= depth <= ROOTZONE_MAX_DEPTH:
            problems.append(
                {
                    "station": meta["station"],
                    "problem": f"depth {depth:.2f} m is beyond what the cube can serve "
                    f"(surface <= {SURFACE_MAX_DEPTH} m, root zone <= {ROOTZONE_MAX_DEPTH} m)",
                }
            )
            continue
        if sensor not in values or values[sensor].count() == 0:
            if sensor in stations.values and stations.values[sensor].count():
                problems.append(
                    {
                        "station": meta["station"],
                        "problem": "no values within the cube's period "
                        f"{time[0].date()}..{time[-1].date()}",
                    }
                )
            continue
        layer = "surface" if depth <= SURFACE_MAX_DEPTH else "rootzone"
        rows.append(
            {
                "sensor": sensor,
                "station": meta["station"],
                "kind": meta["kind"],
                "lat": meta["lat"],
                "lon": meta["lon"],
                "iy": iy,
                "ix": ix,
                "layer": layer,
                "depth_m": depth,
                "depth_key": 0.0 if layer == "surface" else round(depth, 2),
            }
        )
    return pd.DataFrame(rows), problems


def shallowest_surface_probes(sensors: pd.DataFrame) -> pd.DataFrame:
    """Of a station's probes within the surface layer, only the shallowest: SMAP senses ~5 cm, so
    a 10 cm probe stands for the surface only where the station has nothing shallower."""
    surface = sensors["layer"] == "surface"
    shallowest = sensors[surface].groupby("station")["depth_m"].transform("min")
    keep = ~surface | (sensors["depth_m"] == shallowest.reindex(sensors.index))
    return sensors[keep].reset_index(drop=True)


def group_sites(cube: xr.Dataset, sensors: pd.DataFrame, values: pd.DataFrame):
    """(sites table, daily mean of each site's sensors (time, site))."""
    sites, obs = [], []
    for (kind, group, layer, _), members in sensors.groupby(
        ["kind", "group", "layer", "depth_key"], sort=True
    ):
        first = members.iloc[0]
        depth, low, high = (
            members["depth_m"].mean(),
            members["depth_m"].min(),
            members["depth_m"].max(),
        )
        span = f"{low:.2f}-{high:.2f} m" if high > low else f"{depth:.2f} m"
        sites.append(
            {
                "site": f"{group} {layer} {span}",
                "kind": kind,
                "layer": layer,
                "depth_m": depth,
                "lat": members["lat"].mean(),
                "lon": members["lon"].mean(),
                "iy": int(first["iy"]),
                "ix": int(first["ix"]),
                "row": int(first["iy"]) + int(cube.attrs["row0"]),
                "col": int(first["ix"]) + int(cube.attrs["col0"]),
                "n_sensors": len(members),
                "stations": ";".join(sorted(set(members["station"]))),
            }
        )
        obs.append(np.nanmean(values[members["sensor"]].to_numpy(np.float64), axis=1))
    return pd.DataFrame(sites), np.stack(obs, axis=1)


def cell_series(cube: xr.Dataset, iy, ix) -> dict[str, np.ndarray]:
    """(time, point) float arrays of every cube product at the given cells, read in one pass."""
    points = {
        "y": xr.DataArray(np.asarray(iy), dims="point"),
        "x": xr.DataArray(np.asarray(ix), dims="point"),
    }
    names = cubes.estimates(cube)
    loaded = cube[names].isel(points).load()
    return {p: loaded[p].transpose("time", "point").values.astype(np.float64) for p in names}


def with_fusions(series: dict[str, np.ndarray], weight=None) -> dict[str, np.ndarray]:
    """Add the fused products the paper compares: (LSTM+Noah)/2, (Noah+LSM2)/2 and, given
    per-site weights, the weighted LSTM-Noah fusion."""
    out = dict(series)
    if "lstm" in series and "noah" in series:
        out["lstm+noah"] = fusion.fuse(series["lstm"], series["noah"]).astype(np.float64)
        if weight is not None:
            out[WEIGHTED] = fusion.fuse(series["lstm"], series["noah"], weight).astype(np.float64)
    if "noah" in series and "lsm2" in series:
        out["noah+lsm2"] = fusion.fuse(series["noah"], series["lsm2"]).astype(np.float64)
    return out


# ---- fusion weights ------------------------------------------------------------------------


def station_weights(lstm, noah, obs, use, min_pairs: int) -> np.ndarray:
    """Per site, the LSTM weight from the error variances and covariance of LSTM and Noah against
    the probe over the days in `use` (biases removed: a weight cannot fix a bias)."""
    valid = use[:, None] & np.isfinite(lstm) & np.isfinite(noah) & np.isfinite(obs)
    e_l = np.where(valid, lstm - obs, np.nan)
    e_n = np.where(valid, noah - obs, np.nan)
    with np.errstate(all="ignore"):
        e_l, e_n = e_l - np.nanmean(e_l, 0), e_n - np.nanmean(e_n, 0)
        weight = fusion.optimal_weight(
            np.nanmean(e_l**2, 0), np.nanmean(e_n**2, 0), np.nanmean(e_l * e_n, 0)
        )
    return np.where(valid.sum(0) >= min_pairs, weight, np.nan)


def collocation_weights(cube: xr.Dataset, window, min_pairs: int) -> pd.DataFrame:
    """Per region cell, the LSTM weight from triple collocation of LSTM, Noah and LSM2 over the
    training window (stretched to a year where the cube holds less of it)."""
    if not {"lstm", "noah", "lsm2"} <= set(cubes.products(cube)):
        return pd.DataFrame(columns=["row", "col", "weight"])
    time = pd.DatetimeIndex(cube.time.values)
    first = min(int(time.searchsorted(window[0])), max(len(time) - 365, 0))
    last = max(int(time.searchsorted(window[1], side="right")), first + 365)
    iy, ix = np.nonzero(cube["mask"].values)
    part = cube.isel(time=slice(first, last))
    x, y, z = (part[p].values[:, iy, ix] for p in ("lstm", "noah", "lsm2"))
    err_l, err_n, _ = fusion.triple_collocation(x, y, z, min_pairs)
    weight = fusion.optimal_weight(err_l, err_n)
    keep = np.isfinite(weight)
    return pd.DataFrame(
        {
            "row": iy[keep] + int(cube.attrs["row0"]),
            "col": ix[keep] + int(cube.attrs["col0"]),
            "weight": weight[keep],
        }
    )


def estimate_weights(cube, sites, raw, obs, in_window, window, min_pairs) -> pd.DataFrame:
    """Per-cell LSTM weights with their method: from the surface probes where a cell has them,
    else by triple collocation, as the service's `fused` product will read them."""
    table = collocation_weights(cube, window, min_pairs).assign(method="triple collocation")
    if "lstm" in raw and "noah" in raw:
        surface = (sites["layer"] == "surface").to_numpy()
        weight = station_weights(
            raw["lstm"][:, surface], raw["noah"][:, surface], obs[:, surface], in_window, min_pairs
        )
        probes = sites.loc[surface, ["row", "col"]].assign(weight=weight).dropna()
        probes = probes.groupby(["row", "col"], as_index=False)["weight"].mean()
        probes["method"] = "in situ error variances"
        table = pd.concat([probes, table]).drop_duplicates(["row", "col"], keep="first")
    return table.sort_values(["row", "col"]).reset_index(drop=True)


def site_weights(weights: pd.DataFrame, sites: pd.DataFrame) -> np.ndarray:
    lookup = weights.set_index(["row", "col"])["weight"]
    keys = pd.MultiIndex.from_frame(sites[["row", "col"]])
    return lookup.reindex(keys).fillna(fusion.DEFAULT_WEIGHT).to_numpy(np.float64)


# ---- scores --------------------------------------------------------------------------------


def score_table(sites, time, obs, series, labels, min_pairs) -> pd.DataFrame:
    """Long table: one row per site, product and period with every metric and the pair count."""
    if sites.empty:
        return pd.DataFrame(
            columns=[
                "site",
                "kind",
                "layer",
                "depth_m",
                "lat",
                "lon",
                "row",
                "col",
                "product",
                "period",
                *SCORES,
                "nse",
                "n",
            ]
        )
    masks = {
        "training": labels == "training",
        "before": labels == "before",
        "after": labels == "after",
        "prolonged": labels != "training",
        "all": np.ones(len(time), bool),
    }
    frames = []
    for product, values in series.items():
        for period, mask in masks.items():
            scores = metrics.all_metrics(values[mask], obs[mask], time[mask])
            frame = sites[["site", "kind", "layer", "depth_m", "lat", "lon", "row", "col"]].copy()
            frame["product"], frame["period"] = product, period
            for name in (*SCORES, "nse"):
                frame[name] = np.where(scores["n"] >= min_pairs, scores[name], np.nan)
            frame["n"] = scores["n"]
            frames.append(frame)
    return pd.concat(frames, ignore_index=True)


def distance_table(sites, time, obs, series, window, min_pairs) -> pd.DataFrame:
    """RMSE, ubRMSE and R per site, product and signed year from the training window."""
    years = years_from_window(time, window)
    frames = []
    for product, values in series.items():
        for year in np.unique(years):
            pred, ref = values[years == year], obs[years == year]
            n = (np.isfinite(pred) & np.isfinite(ref)).sum(0)
            enough = n >= min_pairs
            frames.append(
                pd.DataFrame(
                    {
                        "site": sites["site"],
                        "layer": sites["layer"],
                        "product": product,
                        "years_from_window": int(year),
                        "n": n,
                        "rmse": np.where(enough, metrics.rmse(pred, ref), np.nan),
                        "ubrmse": np.where(enough, metrics.ubrmse(pred, ref), np.nan),
                        "r": np.where(enough, metrics.pearson_r(pred, ref), np.nan),
                    }
                )
            )
    return pd.concat(frames, ignore_index=True)


def trend_table(sites, time, obs, series, min_days: int = 180) -> pd.DataFrame:
    """Root-zone interannual agreement: correlation of annual means (days where both exist, years
    with at least `min_days` of them) and the linear trends (per year) of probe and product."""
    deep = np.nonzero((sites["layer"] == "rootzone").to_numpy())[0]
    years = time.year.to_numpy()
    rows = []
    for product, values in series.items():
        both = np.isfinite(values[:, deep]) & np.isfinite(obs[:, deep])
        annual_p = pd.DataFrame(np.where(both, values[:, deep], np.nan)).groupby(years).mean()
        annual_o = pd.DataFrame(np.where(both, obs[:, deep], np.nan)).groupby(years).mean()
        full = pd.DataFrame(both).groupby(years).sum().to_numpy() >= min_days
        x = annual_p.index.to_numpy(float)
        for k, j in enumerate(deep):
            use = full[:, k]
            p, o = annual_p.to_numpy()[use, k], annual_o.to_numpy()[use, k]
            row = {
                "site": sites["site"].iloc[j],
                "product": product,
                "n_years": int(use.sum()),
                "annual_r": np.nan,
                "trend_obs": np.nan,
                "trend_product": np.nan,
            }
            if use.sum() >= 3:
                row["annual_r"] = float(np.corrcoef(p, o)[0, 1])
                row["trend_obs"] = float(np.polyfit(x[use], o, 1)[0])
                row["trend_product"] = float(np.polyfit(x[use], p, 1)[0])
            rows.append(row)
    return pd.DataFrame(
        rows, columns=["site", "product", "n_years", "annual_r", "trend_obs", "trend_product"]
    )


def wins(
    table: pd.DataFrame, period: str, kind: str | None = None, metric: str = "rmse"
) -> tuple[dict[str, float], dict[str, int]]:
    """Per product pair 'a>b', the fraction of surface sites where a's error (RMSE) is lower than
    b's, and the number of sites both were scored at."""
    scores = table[(table["layer"] == "surface") & (table["period"] == period)]
    if kind:
        scores = scores[scores["kind"] == kind]
    errors = scores.pivot_table(index="site", columns="product", values=metric)
    fractions, counts = {}, {}
    for a, b in WIN_PAIRS:
        if a in errors and b in errors:
            both = errors[[a, b]].dropna()
            fractions[f"{a}>{b}"] = float((both[a] < both[b]).mean()) if len(both) else float("nan")
            counts[f"{a}>{b}"] = len(both)
    return fractions, counts


def medians(table: pd.DataFrame, layer: str) -> dict:
    """{product: {period: {metric medians, n_stations}}} over the sites of one layer."""
    out = {}
    scores = table[(table["layer"] == layer) & table["rmse"].notna()]
    for product, by_product in scores.groupby("product", sort=False):
        out[product] = {}
        for period, part in by_product.groupby("period", sort=False):
            out[product][period] = {m: _number(part[m].median()) for m in SCORES}
            out[product][period]["n_stations"] = len(part)
    return out


def _number(value) -> float | None:
    """JSON-safe float: NaN becomes null."""
    value = float(value)
    return value if np.isfinite(value) else None


# ---- the paper's claims --------------------------------------------------------------------


def _get(summary, *keys):
    node = summary
    for key in keys:
        if not isinstance(node, dict) or node.get(key) is None:
            return None
        node = node[key]
    return node


def _ratio(a, b):
    return None if a is None or b in (None, 0) else a / b


def claims(summary: dict, diagnostics: dict) -> dict:
    """The three claims of the paper, each with its numbers, a verdict (None = cannot be decided
    from these stations) and, where it fails, which side the numbers point at."""
    surface = summary["products"]
    return {
        "prolonged_skill": _claim_prolonged(surface, diagnostics),
        "fusion_beats_noah": _claim_fusion(summary),
        "shallow_sensing_limit": _claim_depth(summary),
    }


def _claim_prolonged(surface, diagnostics) -> dict:
    rmse_t, rmse_p = (
        _get(surface, "lstm", "training", "rmse"),
        _get(surface, "lstm", "prolonged", "rmse"),
    )
    r_t, r_p = _get(surface, "lstm", "training", "r"), _get(surface, "lstm", "prolonged", "r")
    noah_ratio = _ratio(
        _get(surface, "noah", "prolonged", "rmse"), _get(surface, "noah", "training", "rmse")
    )
    claim = {
        "statement": "LSTM skill in the prolonged years is within 10% of its skill in the "
        "SMAP training window (median RMSE and R over surface probes)",
        "rmse_training": rmse_t,
        "rmse_prolonged": rmse_p,
        "r_training": r_t,
        "r_prolonged": r_p,
        "rmse_ratio": _ratio(rmse_p, rmse_t),
        "r_ratio": _ratio(r_p, r_t),
        "noah_rmse_ratio": noah_ratio,
        "holds": None,
    }
    if claim["rmse_ratio"] is None or claim["r_ratio"] is None:
        claim["finding"] = "not decidable: no surface probes both inside and outside the window"
        return claim
    claim["holds"] = bool(claim["rmse_ratio"] <= 1.10 and claim["r_ratio"] >= 0.90)
    if not claim["holds"]:
        lstm_smap = diagnostics.get("lstm_vs_smap", {})
        smap_ratio = _ratio(_get(lstm_smap, "after", "rmse"), _get(lstm_smap, "training", "rmse"))
        if noah_ratio is not None and noah_ratio > 1.10:
            claim["finding"] = (
                f"the world: Noah, which never saw the window, degrades as much "
                f"(RMSE ratio {noah_ratio:.2f}); the prolonged years are harder"
            )
        elif smap_ratio is not None and smap_ratio > 1.10:
            claim["finding"] = (
                f"the method: the LSTM drifts from SMAP itself after the window "
                f"(RMSE vs SMAP ratio {smap_ratio:.2f}); it generalises poorly"
            )
        else:
            claim["finding"] = (
                "the method: the LSTM loses skill against probes out of the window "
                "while Noah does not; too short a window or overfitting"
            )
    return claim


def _claim_fusion(summary) -> dict:
    w = summary["wins"]
    beats_noah, beats_pair = w.get("lstm+noah>noah"), w.get("lstm+noah>noah+lsm2")
    claim = {
        "statement": "(LSTM+Noah)/2 beats Noah alone at most surface sites and beats "
        "(Noah+LSM2)/2 (RMSE, all days)",
        "wins_over_noah": beats_noah,
        "wins_over_noah+lsm2": beats_pair,
        "ubrmse_wins_over_noah": summary["wins_ubrmse"].get("lstm+noah>noah"),
        "ubrmse_wins_over_noah+lsm2": summary["wins_ubrmse"].get("lstm+noah>noah+lsm2"),
        "by_kind": summary["wins_by_kind"],
        "holds": None,
    }
    if beats_noah is None or not np.isfinite(beats_noah):
        claim["finding"] = "not decidable: LSTM and Noah not both present at surface probes"
        return claim
    pair_ok = beats_pair is None or not np.isfinite(beats_pair) or beats_pair > 0.5
    claim["holds"] = bool(beats_noah > 0.5 and pair_ok)
    if not claim["holds"]:
        claim["finding"] = _fusion_finding(
            summary["products"], beats_noah, summary["diagnostics"].get("lstm_vs_smap", {})
        )
    return claim


def _fusion_finding(surface, beats_noah, lstm_smap) -> str:
    lstm, noah = _get(surface, "lstm", "all", "ubrmse"), _get(surface, "noah", "all", "ubrmse")
    smap = _get(surface, "smap", "all", "ubrmse")
    if beats_noah <= 0.5 and lstm is not None and noah is not None:
        if smap is not None and smap > 1.5 * noah:
            learned = _get(lstm_smap, "after", "r") or _get(lstm_smap, "training", "r")
            follows = (
                f"; the LSTM reproduces that target (R {learned:.2f} against SMAP), so the "
                "method does its job"
                if learned is not None
                else ""
            )
            return (
                f"the world: its SMAP-like target is itself far from the probes (ubRMSE "
                f"{smap:.3f}) while its Noah is close to them ({noah:.3f}){follows}; an LSTM "
                "that learns SMAP cannot help a Noah this good"
            )
        return (
            f"the method: the LSTM's random error (ubRMSE {lstm:.3f}) is too large next to "
            f"Noah's ({noah:.3f}) for an average to help"
        )
    bias = {p: _get(surface, p, "all", "bias") for p in ("noah", "lsm2", "lstm+noah", "noah+lsm2")}
    if None not in bias.values() and abs(bias["noah+lsm2"]) < abs(bias["lstm+noah"]):
        return (
            f"the world: Noah and LSM2 have opposite biases ({bias['noah']:+.3f}, "
            f"{bias['lsm2']:+.3f}) that cancel in their average, while (LSTM+Noah)/2 keeps half "
            f"of Noah's; compare ubRMSE, which removes the bias"
        )
    return (
        "the method: LSM2 carries more information independent of Noah than the LSTM does "
        "at these sites"
    )


def _claim_depth(summary) -> dict:
    r_surface = _get(summary, "products", "lstm", "all", "r")
    r_deep = _get(summary, "rootzone_raw", "lstm", "all", "r")
    r_filtered = _get(summary, "rootzone", "lstm", "all", "r")
    noah_deep = _get(summary, "rootzone_raw", "noah", "all", "r")
    claim = {
        "statement": "the LSTM, trained on SMAP's ~5 cm, loses skill against deeper probes "
        "(median R of its surface series: surface vs deep probes)",
        "r_surface": r_surface,
        "r_deep": r_deep,
        "r_deep_filtered": r_filtered,
        "noah_r_deep": noah_deep,
        "holds": None,
    }
    if r_surface is None or r_deep is None:
        claim["finding"] = "not decidable: no deep probes (or no surface probes) in the cube"
        return claim
    claim["holds"] = bool(r_deep < r_surface)
    if not claim["holds"]:
        claim["finding"] = (
            "the world: deep soil moisture follows the surface too closely in it "
            "(surface and deep probes agree as well with the LSTM)"
        )
    return claim


def lstm_vs_smap(series, labels, min_pairs: int) -> dict:
    """How close the LSTM stays to SMAP itself, inside the window and after it (where SMAP
    flies): separates a network that drifts from probes that disagree with SMAP."""
    if "smap" not in series or "lstm" not in series:
        return {}
    out = {}
    for period in ("training", "after"):
        mask = (labels == period)[:, None]
        pred = np.where(mask, series["lstm"], np.nan)
        n = (np.isfinite(pred) & np.isfinite(series["smap"])).sum(0)
        if n.sum() == 0:
            continue
        keep = n >= min_pairs
        out[period] = {
            "rmse": _number(np.nanmedian(metrics.rmse(pred, series["smap"])[keep]))
            if keep.any()
            else None,
            "r": _number(np.nanmedian(metrics.pearson_r(pred, series["smap"])[keep]))
            if keep.any()
            else None,
            "n_cells": int(keep.sum()),
        }
    return out


# ---- the whole evaluation ------------------------------------------------------------------


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
            "median": _number(weights["weight"].median()) if len(weights) else None,
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
    )


def root_zone(raw, sites, obs, in_window, options) -> dict[str, np.ndarray]:
    """Each product as compared with the probes: as is at surface sites, through the exponential
    filter at deep ones (characteristic time given, or fitted per site in the training window)."""
    deep = (sites["layer"] == "rootzone").to_numpy()
    if not deep.any():
        return raw
    names = list(raw)
    surface = np.concatenate([raw[p][:, deep] for p in names], axis=1)
    tc = (
        np.full(surface.shape[1], float(options.tc_days))
        if options.tc_days
        else fit_tc(surface, np.tile(obs[:, deep], len(names)), in_window, options.min_pairs)
    )
    filtered = np.split(exponential_filter(surface, tc), len(names), axis=1)
    out = {}
    for product, part in zip(names, filtered):
        out[product] = raw[product].copy()
        out[product][:, deep] = part
    return out


def _trend_summary(trends: pd.DataFrame) -> dict:
    out = {}
    for product, part in trends.dropna(subset=["annual_r"]).groupby("product", sort=False):
        same_sign = np.sign(part["trend_obs"]) == np.sign(part["trend_product"])
        out[product] = {
            "annual_r": _number(part["annual_r"].median()),
            "trend_sign_agreement": _number(same_sign.mean()),
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
        return _number(node)
    return node

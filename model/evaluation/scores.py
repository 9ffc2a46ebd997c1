"""Scores per site, product and period, skill by years from the training window, root-zone
trends, and how often one product beats another."""

import numpy as np
import pandas as pd

from model import metrics
from model.evaluation.periods import years_from_window

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
            out[product][period] = {m: json_number(part[m].median()) for m in SCORES}
            out[product][period]["n_stations"] = len(part)
    return out


def json_number(value) -> float | None:
    """JSON-safe float: NaN becomes null."""
    value = float(value)
    return value if np.isfinite(value) else None

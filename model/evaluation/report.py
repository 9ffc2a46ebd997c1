"""The evaluation report: tables (metrics.csv, summary.json, ...), PNG figures and an index.html
that people read as figures first and numbers second."""

import html
import json
import logging
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from model.evaluation.evaluate import Evaluation, Options, evaluate
from model.evaluation.insitu import KEEP_FLAGS, MIN_COUNT, read_stations
from model.evaluation.periods import years_from_window
from model.evaluation.scores import WEIGHTED
from model.product import fusion
from model.product.cube import open_cube

COLORS = {
    "smap": "#7f7f7f",
    "lstm": "#d62728",
    "noah": "#1f77b4",
    "lsm2": "#2ca02c",
    "lstm+noah": "#9467bd",
    "noah+lsm2": "#17becf",
    WEIGHTED: "#ff7f0e",
}
FIGURES = {
    "map_skill.png": "Where the LSTM is skilful and where fusion helps (surface probes)",
    "skill_vs_years.png": "Skill against probes by year from the SMAP training window",
    "boxplots.png": "Skill per product over all surface probes",
    "fusion_wins.png": "How often a product beats another, over dense and sparse sites",
    "depth.png": "The shallow sensing limit: skill at the surface and at depth",
    "rootzone_trends.png": "Root zone: interannual agreement of annual means with deep probes",
    "timeseries.png": "Probes and products at a few sites",
}


def run(
    cube: str | Path,
    stations: str | Path,
    out: str | Path,
    options: Options | None = None,
    keep_flags=KEEP_FLAGS,
    min_count: int = MIN_COUNT,
) -> Evaluation:
    """Evaluate a cube against a station source and write the report; the log of problems goes
    to out/evaluate.log as well as to the caller's handlers."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(out / "evaluate.log", mode="w")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    logger = logging.getLogger("model.evaluation")
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        evaluation = evaluate(
            open_cube(cube), read_stations(stations, keep_flags, min_count), options
        )
        write_report(
            evaluation,
            out,
            title=f"smapx evaluation of {Path(cube).name} against {Path(stations).name}",
        )
        logger.info("report written to %s", out / "index.html")
        return evaluation
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
        handler.close()


def write_report(evaluation: Evaluation, out: str | Path, title: str = "smapx evaluation") -> Path:
    """Write every table, figure and index.html of the report into `out`; returns index.html."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    ev = evaluation
    ev.metrics.to_csv(out / "metrics.csv", index=False, float_format="%.5f")
    ev.by_distance.to_csv(out / "skill_by_years.csv", index=False, float_format="%.5f")
    ev.trends.to_csv(out / "rootzone_trends.csv", index=False, float_format="%.6f")
    ev.sites.drop(columns=["iy", "ix"]).to_csv(out / "sites.csv", index=False)
    pd.DataFrame(ev.problems, columns=["station", "problem"]).to_csv(
        out / "problems.csv", index=False
    )
    fusion.write_weights(
        out / "fusion_weights.csv",
        ev.weights["row"],
        ev.weights["col"],
        ev.weights["weight"],
        ev.on,
    )
    (out / "summary.json").write_text(json.dumps(ev.summary, indent=2))
    plots = {
        "map_skill.png": plot_map,
        "skill_vs_years.png": plot_skill_vs_years,
        "boxplots.png": plot_boxplots,
        "fusion_wins.png": plot_wins,
        "depth.png": plot_depth,
        "rootzone_trends.png": plot_trends,
        "timeseries.png": plot_timeseries,
    }
    drawn = []
    for name, plot in plots.items():
        fig = plot(ev)
        if fig is not None:
            fig.savefig(out / name, dpi=110, bbox_inches="tight")
            drawn.append(name)
    index = out / "index.html"
    index.write_text(render_html(ev, drawn, title))
    return index


def _subplots(nrows: int = 1, ncols: int = 1, *, figsize, **kwargs):
    """A figure drawn by matplotlib's Agg canvas without pyplot's global state (thread-safe)."""
    fig = Figure(figsize=figsize)
    return fig, fig.subplots(nrows, ncols, **kwargs)


def _surface(ev: Evaluation, period: str) -> pd.DataFrame:
    m = ev.metrics
    return m[(m["layer"] == "surface") & (m["period"] == period)]


def _products(ev: Evaluation) -> list[str]:
    return [p for p in COLORS if p in ev.series]


def plot_map(ev: Evaluation):
    scores = _surface(ev, "all").pivot_table(index="site", columns="product", values=["r", "rmse"])
    if scores.empty or ("r", "lstm") not in scores:
        return None
    sites = ev.sites.set_index("site").loc[scores.index]
    panels = [("LSTM R against probes", scores[("r", "lstm")], "viridis", (None, None))]
    if ("rmse", "noah") in scores and ("rmse", "lstm+noah") in scores:
        gain = scores[("rmse", "noah")] - scores[("rmse", "lstm+noah")]
        limit = float(np.nanmax(np.abs(gain))) or 0.01
        panels.append(
            (
                "RMSE gain of (LSTM+Noah)/2 over Noah (m3/m3, >0 = fusion better)",
                gain,
                "RdBu",
                (-limit, limit),
            )
        )
    fig, axes = _subplots(1, len(panels), figsize=(6.5 * len(panels), 5), squeeze=False)
    for ax, (label, values, cmap, (lo, hi)) in zip(axes[0], panels):
        for kind, marker in (("sparse", "o"), ("dense", "s")):
            pick = (sites["kind"] == kind).to_numpy()
            if pick.any():
                art = ax.scatter(
                    sites["lon"][pick],
                    sites["lat"][pick],
                    c=values[pick],
                    cmap=cmap,
                    vmin=lo if lo is not None else np.nanmin(values),
                    vmax=hi if hi is not None else np.nanmax(values),
                    marker=marker,
                    s=70,
                    edgecolors="k",
                    label=f"{kind} site",
                )
        fig.colorbar(art, ax=ax, shrink=0.85)
        ax.set_title(label, fontsize=10)
        ax.set_xlabel("longitude")
        ax.set_ylabel("latitude")
        ax.legend(loc="best", fontsize=8)
        ax.grid(alpha=0.3)
    return fig


def whole_years(ev: Evaluation) -> list[int]:
    """Signed years from the training window that the cube covers whole (the window itself is
    0): a partial year at either end of the record would be drawn as an outlier."""
    years, days = np.unique(years_from_window(ev.time, ev.window), return_counts=True)
    return [int(y) for y, n in zip(years, days) if y == 0 or n >= 365]


def plot_skill_vs_years(ev: Evaluation):
    table = ev.by_distance[ev.by_distance["layer"] == "surface"]
    table = table[table["years_from_window"].isin(whole_years(ev))]
    if table["rmse"].notna().sum() == 0:
        return None
    med = table.groupby(["product", "years_from_window"])[["r", "ubrmse"]].median().reset_index()
    fig, axes = _subplots(1, 2, figsize=(12, 4.5))
    for ax, metric, label in (
        (axes[0], "r", "median R"),
        (axes[1], "ubrmse", "median ubRMSE (m3/m3)"),
    ):
        for product in _products(ev):
            part = med[med["product"] == product].dropna(subset=[metric])
            if len(part):
                ax.plot(
                    part["years_from_window"],
                    part[metric],
                    "o-",
                    color=COLORS[product],
                    label=product,
                    lw=2 if product in ("lstm", "noah") else 1.2,
                )
        ax.axvspan(-0.5, 0.5, color="gold", alpha=0.25, label="training window")
        ax.set_xlabel("years from the SMAP training window (0 = inside)")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8, loc="best")
    fig.suptitle("Skill against surface probes, away from the training window")
    return fig


def plot_boxplots(ev: Evaluation):
    scores = _surface(ev, "all")
    products = [
        p for p in _products(ev) if scores.loc[scores["product"] == p, "rmse"].notna().any()
    ]
    if not products:
        return None
    fig, axes = _subplots(1, 3, figsize=(15, 4.8))
    for ax, metric in zip(axes, ("rmse", "ubrmse", "r")):
        data = [scores.loc[scores["product"] == p, metric].dropna().to_numpy() for p in products]
        box = ax.boxplot(data, patch_artist=True, showfliers=True)
        for patch, product in zip(box["boxes"], products):
            patch.set_facecolor(COLORS[product])
            patch.set_alpha(0.6)
        ax.set_xticks(range(1, len(products) + 1), products, rotation=30, ha="right")
        ax.set_title(metric if metric == "r" else f"{metric} (m3/m3)")
        ax.grid(alpha=0.3, axis="y")
    fig.suptitle(f"Surface probes, all days ({len(scores['site'].unique())} sites)")
    return fig


def plot_wins(ev: Evaluation):
    s = ev.summary
    rows = []
    tables = [
        ("all", s["wins"], s["wins_n_stations"]),
        *[(k, s["wins_by_kind"][k], s["wins_by_kind_n_stations"][k]) for k in s["wins_by_kind"]],
    ]
    for kind, fractions, counts in tables:
        for pair, value in fractions.items():
            if value is not None:
                rows.append(
                    {
                        "kind": kind,
                        "pair": pair.replace(">", " beats "),
                        "value": value,
                        "n": counts.get(pair, 0),
                    }
                )
    if not rows:
        return None
    frame = pd.DataFrame(rows)
    pairs = list(dict.fromkeys(frame["pair"]))
    kinds = list(dict.fromkeys(frame["kind"]))
    fig, ax = _subplots(figsize=(10, 0.6 * len(pairs) + 1.5))
    height = 0.8 / len(kinds)
    for k, kind in enumerate(kinds):
        part = frame[frame["kind"] == kind].set_index("pair").reindex(pairs)
        y = np.arange(len(pairs)) + k * height
        ax.barh(y, part["value"], height, label=f"{kind} sites")
        for yy, value, n in zip(y, part["value"], part["n"]):
            if np.isfinite(value):
                ax.text(value + 0.01, yy, f"{value:.0%} of {int(n)}", va="center", fontsize=8)
    ax.axvline(0.5, color="k", ls="--", lw=1)
    ax.set_yticks(np.arange(len(pairs)) + 0.4 - height / 2, pairs)
    ax.set_xlim(0, 1.2)
    ax.set_xlabel("fraction of surface sites where the first has the lower RMSE (all days)")
    ax.invert_yaxis()
    ax.legend(fontsize=8, loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=len(kinds))
    ax.grid(alpha=0.3, axis="x")
    return fig


def plot_depth(ev: Evaluation):
    layers = [
        ("surface probes", ev.summary["products"]),
        ("deep probes, surface series", ev.summary.get("rootzone_raw", {})),
        ("deep probes, root-zone filter", ev.summary.get("rootzone", {})),
    ]
    products = [p for p in ("smap", "lstm", "noah", "lsm2", "lstm+noah") if p in ev.series]
    values = np.array(
        [
            [((layer.get(p) or {}).get("all") or {}).get("r") or np.nan for p in products]
            for _, layer in layers
        ],
        float,
    )
    if np.isnan(values[1:]).all():
        return None
    fig, ax = _subplots(figsize=(9, 4.5))
    width = 0.8 / len(products)
    for j, product in enumerate(products):
        ax.bar(
            np.arange(len(layers)) + j * width,
            values[:, j],
            width,
            color=COLORS[product],
            label=product,
        )
    ax.set_xticks(np.arange(len(layers)) + 0.4 - width / 2, [name for name, _ in layers])
    ax.set_ylabel("median R")
    ax.set_ylim(0, 1.12)
    ax.legend(fontsize=8, ncol=len(products), loc="upper center")
    ax.grid(alpha=0.3, axis="y")
    ax.set_title("Correlation with probes by depth")
    return fig


def plot_trends(ev: Evaluation):
    trends = ev.summary.get("rootzone_trends") or {}
    products = [p for p in COLORS if p in trends]
    if not products:
        return None
    fig, axes = _subplots(1, 2, figsize=(12, 4.2))
    panels = (
        ("annual_r", "median R of annual means"),
        ("trend_sign_agreement", "fraction of sites whose linear trend has the probes' sign"),
    )
    for ax, (key, label) in zip(axes, panels):
        values = [trends[p][key] if trends[p][key] is not None else np.nan for p in products]
        ax.bar(range(len(products)), values, color=[COLORS[p] for p in products])
        ax.set_xticks(range(len(products)), products, rotation=30, ha="right")
        ax.set_ylim(min(0.0, np.nanmin(values) if np.isfinite(values).any() else 0.0), 1.05)
        ax.set_title(label, fontsize=10)
        ax.grid(alpha=0.3, axis="y")
    n = max(trends[p]["n_stations"] for p in products)
    fig.suptitle(f"Root-zone estimates against deep probes, year by year ({n} sites with 3+ years)")
    return fig


def pick_sites(ev: Evaluation, count: int = 4) -> list[int]:
    """A few informative sites: the best-observed ones, both kinds and both layers if present."""
    n_obs = np.isfinite(ev.obs).sum(0)
    order = np.argsort(-n_obs)
    picked = []
    for key in ("kind", "layer"):
        for value in ev.sites[key].unique():
            match = [j for j in order if ev.sites[key].iloc[j] == value and j not in picked]
            if match and len(picked) < count:
                picked.append(match[0])
    picked += [j for j in order if j not in picked][: count - len(picked)]
    return [j for j in picked if n_obs[j] > 0]


def _two_years(ev: Evaluation, j: int) -> slice:
    """Two years of a site's record, across the end of the training window when the probes
    cover it (where prolonged skill begins), else its last two years."""
    days = np.nonzero(np.isfinite(ev.obs[:, j]))[0]
    edge = int(ev.time.searchsorted(ev.window[1]))
    centre = edge if days[0] <= edge <= days[-1] else max(days[-1] - 365, days[0] + 365)
    return slice(max(centre - 365, 0), centre + 365)


def plot_timeseries(ev: Evaluation):
    picked = pick_sites(ev)
    if not picked:
        return None
    fig, axes = _subplots(len(picked), 1, figsize=(13, 2.8 * len(picked)), squeeze=False)
    for ax, j in zip(axes[:, 0], picked):
        span = _two_years(ev, j)
        time = ev.time[span]
        for product in ("lstm", "noah", "lstm+noah"):
            if product in ev.series:
                ax.plot(
                    time, ev.series[product][span, j], color=COLORS[product], lw=1, label=product
                )
        if "smap" in ev.series:
            ax.plot(time, ev.series["smap"][span, j], ".", color=COLORS["smap"], ms=3, label="smap")
        ax.plot(time, ev.obs[span, j], "k.", ms=2, label="probes")
        start, end = ev.window
        if start <= time[-1] and end >= time[0]:
            ax.axvspan(max(start, time[0]), min(end, time[-1]), color="gold", alpha=0.15)
        ax.set_title(site_title(ev.sites.iloc[j]), fontsize=9)
        ax.set_ylabel("m3/m3")
        ax.grid(alpha=0.3)
    axes[0, 0].legend(fontsize=8, ncol=5, loc="upper right")
    fig.tight_layout()
    return fig


def site_title(site: pd.Series) -> str:
    """What a reader needs to place a site: its kind, where it is, the depth and the sensors."""
    where = (
        f"{abs(site['lat']):.2f}° {'N' if site['lat'] >= 0 else 'S'}, "
        f"{abs(site['lon']):.2f}° {'E' if site['lon'] >= 0 else 'W'}"
    )
    kind = {"dense": "Dense network", "sparse": "Station"}.get(site["kind"], "Site")
    stations = site["stations"].split(";")
    name = "" if site["kind"] == "dense" or len(stations) > 1 else f" {stations[0]}"
    depth = f"{100 * site['depth_m']:.0f} cm"
    if site["layer"] == "rootzone":
        what = f"probes at {depth} against the products' root-zone filter"
    else:
        what = f"surface probes at {depth}"
    return f"{kind}{name} at {where}: {what} ({site['n_sensors']} sensor(s))"


def locations(sites: pd.DataFrame) -> dict[str, tuple[int, int]]:
    """Per kind, (places, stations): a dense network is one place of many stations, each
    sparse station a place of its own; a place compared at several depths counts once."""
    out = {}
    for kind in ("dense", "sparse"):
        part = sites[sites["kind"] == kind]
        stations = {s for names in part["stations"] for s in names.split(";")}
        places = len(part.groupby(["iy", "ix"])) if kind == "dense" else len(stations)
        out[kind] = (places, len(stations))
    return out


def _fmt(value, digits=3) -> str:
    if value is None or (isinstance(value, float) and not np.isfinite(value)):
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return html.escape(str(value))


def _claims_html(claims: dict) -> str:
    rows = []
    for name, claim in claims.items():
        verdict = {True: ("holds", "ok"), False: ("fails", "bad"), None: ("undecided", "na")}[
            claim["holds"]
        ]
        numbers = ", ".join(
            f"{k} {_fmt(v)}"
            for k, v in claim.items()
            if k not in ("statement", "holds", "finding", "by_kind")
        )
        finding = (
            f"<br><b>Cause:</b> {html.escape(claim['finding'])}" if claim.get("finding") else ""
        )
        rows.append(
            f"<tr><td>{html.escape(name)}</td><td>{html.escape(claim['statement'])}"
            f"<br><small>{numbers}</small>{finding}</td>"
            f"<td class='{verdict[1]}'>{verdict[0]}</td></tr>"
        )
    return (
        "<table><tr><th>claim</th><th>statement and numbers</th><th>verdict</th></tr>"
        + "".join(rows)
        + "</table>"
    )


def _medians_html(products: dict) -> str:
    periods = ("training", "before", "after", "prolonged")
    head = "".join(f"<th colspan=3>{p}</th>" for p in periods)
    sub = "<th>RMSE</th><th>R</th><th>n</th>" * len(periods)
    rows = []
    for product, by_period in products.items():
        cells = "".join(
            f"<td>{_fmt((by_period.get(p) or {}).get('rmse'))}</td>"
            f"<td>{_fmt((by_period.get(p) or {}).get('r'))}</td>"
            f"<td>{(by_period.get(p) or {}).get('n_stations', 0)}</td>"
            for p in periods
        )
        rows.append(f"<tr><td>{html.escape(product)}</td>{cells}</tr>")
    return (
        f"<table><tr><th rowspan=2>product</th>{head}</tr><tr>{sub}</tr>"
        + "".join(rows)
        + "</table>"
    )


def render_html(ev: Evaluation, figures: list[str], title: str) -> str:
    s = ev.summary
    problems = (
        "".join(
            f"<li><b>{html.escape(p['station'])}</b>: {html.escape(p['problem'])}</li>"
            for p in ev.problems
        )
        or "<li>none</li>"
    )
    images = "".join(
        f"<figure><img src='{name}' alt='{html.escape(FIGURES[name])}'>"
        f"<figcaption>{html.escape(FIGURES[name])}</figcaption></figure>"
        for name in figures
    )
    n = s["n_sites"]
    (networks, dense_stations), (sparse, _) = locations(ev.sites).values()
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>
body {{ font-family: sans-serif; max-width: 1200px; margin: 2em auto; color: #222; }}
table {{ border-collapse: collapse; margin: 1em 0; }}
td, th {{ border: 1px solid #ccc; padding: 4px 8px; text-align: left; font-size: 14px; }}
.ok {{ background: #d4f4d4; font-weight: bold; }} .bad {{ background: #f8d0d0; font-weight: bold; }}
.na {{ background: #eee; }}
img {{ max-width: 100%; border: 1px solid #ddd; }} figure {{ margin: 2em 0; }}
figcaption {{ font-style: italic; }}
</style></head><body>
<h1>{html.escape(title)}</h1>
<p>Cube period {s["cube_period"]}; SMAP training window {s["training_period"]}.
{networks} dense network(s) of {dense_stations} stations in all and {sparse} sparse station(s),
{s["n_sensors"]} sensors, compared as {n["surface"]} surface and {n["rootzone"]} root-zone sites
(a site: a station's or network's probes at one depth);
{len(ev.problems)} problem(s).
Each station's shallowest probe within 10 cm is compared with the surface products; deeper
probes with an exponential filter of each product (root-zone estimate). The weighted LSTM-Noah
fusion takes its weights from the training window, at the probes' own cells where they have any:
judge it on the prolonged years (<code>wins_prolonged</code> in summary.json).</p>
<h2>The paper's claims</h2>
{_claims_html(s["claims"])}
<h2>Median skill over surface probes</h2>
{_medians_html(s["products"])}
<h2>Figures</h2>
{images}
<h2>Problems (stations not evaluated or partly evaluated)</h2>
<ul>{problems}</ul>
<h2>Files</h2>
<p><a href="summary.json">summary.json</a> · <a href="metrics.csv">metrics.csv</a> ·
<a href="skill_by_years.csv">skill_by_years.csv</a> ·
<a href="rootzone_trends.csv">rootzone_trends.csv</a> ·
<a href="sites.csv">sites.csv</a> · <a href="fusion_weights.csv">fusion_weights.csv</a> ·
<a href="problems.csv">problems.csv</a></p>
</body></html>
"""

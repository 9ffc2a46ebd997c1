"""The paper's claims decided from the evaluation summary, each with a finding that says which
side the numbers blame when one fails."""

import numpy as np

from model import metrics
from model.evaluation.scores import json_number


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
            "rmse": json_number(np.nanmedian(metrics.rmse(pred, series["smap"])[keep]))
            if keep.any()
            else None,
            "r": json_number(np.nanmedian(metrics.pearson_r(pred, series["smap"])[keep]))
            if keep.any()
            else None,
            "n_cells": int(keep.sum()),
        }
    return out

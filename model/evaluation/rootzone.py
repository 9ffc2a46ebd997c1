"""Root-zone estimates from surface series: the exponential filter (Albergel et al. 2008), its
characteristic time fitted per site in the training window."""

import numpy as np

from model import metrics

TC_CHOICES = (1, 2, 3, 5, 7, 10, 15, 20, 30, 45, 60, 90)


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

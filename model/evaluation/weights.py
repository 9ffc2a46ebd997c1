"""LSTM-Noah fusion weights per cell: from error variances against probes in the training window
where a cell has them, else by triple collocation of LSTM, Noah and LSM2."""

import numpy as np
import pandas as pd
import xarray as xr

from model.product import cube as cubes
from model.product import fusion


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

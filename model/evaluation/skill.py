"""Skill of a product cube at its region cells against a reference series, by period: what
`smapx demo` and the notes report for the LSTM against SMAP in unseen years and, in the twin
world, against the known truth."""

import numpy as np
import pandas as pd
import xarray as xr

from model import metrics


def at_cells(cube: xr.Dataset, product: str, rows, cols) -> xr.DataArray:
    """A product as (time, cell) at the given grid rows/cols of the cube."""
    iy = xr.DataArray(np.asarray(rows) - int(cube.attrs["row0"]), dims="cell")
    ix = xr.DataArray(np.asarray(cols) - int(cube.attrs["col0"]), dims="cell")
    return cube[product].isel(y=iy, x=ix)


def period_skill(pred: xr.DataArray, ref: xr.DataArray, start, end, min_pairs: int = 10) -> dict:
    """Median bias, RMSE, ubRMSE, R over cells for the days start..end both series share."""
    days = slice(pd.Timestamp(start), pd.Timestamp(end))
    p, r = xr.align(pred.sel(time=days), ref.sel(time=days), join="inner")
    per_cell = metrics.all_metrics(
        p.transpose("time", "cell").values, r.transpose("time", "cell").values
    )
    summary = metrics.summarize(per_cell, min_pairs=min_pairs)
    return {
        k: round(v, 4) if isinstance(v, float) else v
        for k, v in summary.items()
        if k in ("bias", "rmse", "ubrmse", "r", "n_cells")
    }

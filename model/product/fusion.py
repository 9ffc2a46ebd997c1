"""LSTM-Noah fusion: fused = w * lstm + (1 - w) * noah, computed on request, never stored.

w is 0.5 by default (the paper's simple average) or per cell, from a weights file that the
evaluation writes: CSV with columns row, col, weight (EASE2 grid row/col; weight applies to lstm)
and grid (the grid the rows and cols are on; a file without it is on the 36 km grid).
"""

from pathlib import Path

import numpy as np
import pandas as pd

from model import grid
from model.errors import InputError
from model.product import cube as cubes

DEFAULT_WEIGHT = 0.5


def fuse(lstm, noah, weight=DEFAULT_WEIGHT):
    """The one fusion formula, w * lstm + (1 - w) * noah, on arrays of any kind (numpy, xarray,
    stored codes) in the type they hold; NaN where either is NaN."""
    return weight * lstm + (1 - weight) * noah


def fuse_codes(lstm: np.ndarray, noah: np.ndarray, weight=DEFAULT_WEIGHT) -> np.ndarray:
    """Stored codes of the fusion (rounded to the storage step), FILL where either is missing."""
    value = np.rint(fuse(lstm.astype(np.float64), noah, np.asarray(weight, np.float64)))
    missing = (lstm == cubes.FILL) | (noah == cubes.FILL)
    return np.where(missing, cubes.FILL, value).astype(np.int32)


def check_weight(weight: float) -> float:
    if not 0.0 <= weight <= 1.0:
        raise InputError(f"weight must lie in [0, 1], got {weight}")
    return float(weight)


def read_weights(
    path: str | Path, on: grid.Grid | None = None, cube_name: str = "the cube"
) -> pd.DataFrame:
    """Per-cell weights (row, col, weight) as written by `smapx evaluate`; with `on` (the grid
    of the cube named `cube_name`), refused unless the file's cells are on that grid."""
    try:
        table = pd.read_csv(path)
    except (OSError, pd.errors.ParserError) as exc:
        raise InputError(f"cannot read fusion weights {path}: {exc}") from exc
    missing = {"row", "col", "weight"} - set(table.columns)
    if missing:
        raise InputError(f"fusion weights {path} lack column(s) {sorted(missing)}")
    if on is not None and len(table):
        grid.check_same(weights_grid(table, path), f"fusion weights {path}", on, cube_name)
    return table


def weights_grid(table: pd.DataFrame, path) -> grid.Grid:
    """The one grid a weights table records (36 km for a file from before grids were recorded)."""
    recorded = {grid.of({"grid": g}) for g in table.get("grid", pd.Series()).dropna().unique()}
    if len(recorded) > 1:
        kms = " and ".join(sorted(str(g.km) for g in recorded))
        raise InputError(f"fusion weights {path} mix the {kms} km grids; write them one grid apart")
    return recorded.pop() if recorded else grid.DEFAULT


def write_weights(path: str | Path, rows, cols, weights, on: grid.Grid = grid.DEFAULT) -> None:
    """Write per-cell weights of cells (rows, cols) of grid `on`, which the file records."""
    table = {"row": rows, "col": cols, "weight": np.clip(weights, 0, 1), "grid": on.attr}
    pd.DataFrame(table).to_csv(path, index=False)


def weight_grid(table: pd.DataFrame, row0: int, col0: int, shape, default: float = DEFAULT_WEIGHT):
    """A (y, x) array of weights over a cube window; cells without an estimate get `default`."""
    weights = np.full(shape, default, np.float64)
    iy, ix = table["row"].to_numpy() - row0, table["col"].to_numpy() - col0
    inside = (iy >= 0) & (iy < shape[0]) & (ix >= 0) & (ix < shape[1])
    weights[iy[inside], ix[inside]] = table["weight"].to_numpy()[inside]
    return weights


def optimal_weight(error_var_lstm, error_var_noah, error_cov=0.0):
    """The LSTM weight that minimises the fused error variance, clipped to [0, 1]: with errors of
    variance a, b and covariance c, w = (b - c) / (a + b - 2c). NaN where it is undefined."""
    a, b, c = (np.asarray(v, np.float64) for v in (error_var_lstm, error_var_noah, error_cov))
    den = a + b - 2 * c
    with np.errstate(invalid="ignore", divide="ignore"):
        weight = np.where(np.isfinite(den) & (den > 0), (b - c) / den, np.nan)
    return np.clip(weight, 0.0, 1.0)


def triple_collocation(x, y, z, min_pairs: int = 30):
    """Error variances of three collocated (time, cell) products with independent errors, each
    rescaled to y's units (covariance notation, McColl et al. 2014), so x's and y's are comparable.
    NaN where fewer than `min_pairs` days have all three."""
    x, y, z = (np.asarray(v, np.float64) for v in (x, y, z))
    valid = np.isfinite(x) & np.isfinite(y) & np.isfinite(z)
    n = valid.sum(0)
    x, y, z = (np.where(valid, v, np.nan) for v in (x, y, z))
    x, y, z = (v - np.nanmean(v, 0) for v in (x, y, z))
    with np.errstate(invalid="ignore", divide="ignore"):
        cxx, cyy, czz = (np.nanmean(v * v, 0) for v in (x, y, z))
        cxy, cxz, cyz = np.nanmean(x * y, 0), np.nanmean(x * z, 0), np.nanmean(y * z, 0)
        scale_x, scale_z = cyz / cxz, cxy / cxz
        ex = (cxx - cxy * cxz / cyz) * scale_x**2
        ey = cyy - cxy * cyz / cxz
        ez = (czz - cxz * cyz / cxy) * scale_z**2
    enough = n >= min_pairs
    return tuple(np.where(enough, np.maximum(e, 0.0), np.nan) for e in (ex, ey, ez))

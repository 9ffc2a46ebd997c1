"""LSTM-Noah fusion: fused = w * lstm + (1 - w) * noah, computed on request, never stored.

w is 0.5 by default (the paper's simple average) or per cell, from a weights file that the
evaluation writes: CSV with columns row, col, weight (EASE2 grid row/col; weight applies to lstm).
"""

from pathlib import Path

import numpy as np
import pandas as pd

from model.errors import InputError

DEFAULT_WEIGHT = 0.5


def fuse(lstm, noah, weight=DEFAULT_WEIGHT):
    """Weighted mean of the two products; NaN where either is missing."""
    weight = np.asarray(weight, np.float32)
    return (weight * np.asarray(lstm, np.float32) + (1 - weight) * np.asarray(noah, np.float32)).astype(np.float32)


def check_weight(weight: float) -> float:
    if not 0.0 <= weight <= 1.0:
        raise InputError(f"weight must lie in [0, 1], got {weight}")
    return float(weight)


def read_weights(path: str | Path) -> pd.DataFrame:
    """Per-cell weights (row, col, weight) as written by `smapx evaluate`."""
    try:
        table = pd.read_csv(path)
    except (OSError, pd.errors.ParserError) as exc:
        raise InputError(f"cannot read fusion weights {path}: {exc}") from exc
    missing = {"row", "col", "weight"} - set(table.columns)
    if missing:
        raise InputError(f"fusion weights {path} lack column(s) {sorted(missing)}")
    return table


def write_weights(path: str | Path, rows, cols, weights) -> None:
    pd.DataFrame({"row": rows, "col": cols, "weight": np.clip(weights, 0, 1)}).to_csv(path, index=False)


def weight_grid(table: pd.DataFrame, row0: int, col0: int, shape, default: float = DEFAULT_WEIGHT):
    """A (y, x) array of weights over a cube window; cells without an estimate get `default`."""
    grid = np.full(shape, default, np.float32)
    iy, ix = table["row"].to_numpy() - row0, table["col"].to_numpy() - col0
    inside = (iy >= 0) & (iy < shape[0]) & (ix >= 0) & (ix < shape[1])
    grid[iy[inside], ix[inside]] = table["weight"].to_numpy()[inside]
    return grid

"""Days of a cube's record against the SMAP training window: inside it, before or after it, and
whole years away from it."""

import numpy as np
import pandas as pd
import xarray as xr

from model.errors import InputError

PERIODS = ("training", "before", "after", "prolonged", "all")


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

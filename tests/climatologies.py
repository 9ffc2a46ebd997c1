"""Cubes of known values for the climatology's tests, their stored codes, and the percentile
computed straight from its definition."""

import datetime

import numpy as np
import pandas as pd
import zarr

from model.product import cube as cubes


def write_cube(store, world, values: dict, n_days: int | None = None) -> None:
    """A cube of the world's cells holding `values` (their first n_days), block by block."""
    rows, cols = world.inputs.row.values, world.inputs.col.values
    values = {p: v[:n_days] for p, v in values.items()}
    template = cubes.template(world.inputs.time.values[:n_days], rows, cols, tuple(values))
    cubes.create(store, template)
    row0, col0 = int(template.attrs["row0"]), int(template.attrs["col0"])
    for block in cubes.blocks(template):
        part = {}
        for p, v in values.items():
            field = np.full((template.sizes["time"], *template["mask"].shape), np.nan, np.float32)
            field[:, rows - row0, cols - col0] = v
            part[p] = field[block.time, block.y, block.x]
        cubes.write_block(store, block, part)


def stored_codes(store, product: str) -> np.ndarray:
    """(time, y, x) codes as the cube stores them; fused from lstm and noah at w = 0.5."""
    group = zarr.open_group(str(store), mode="r")
    if product == "fused":
        lstm, noah = (np.asarray(group[p][...], np.float64) for p in ("lstm", "noah"))
        missing = (lstm == cubes.FILL) | (noah == cubes.FILL)
        return np.where(missing, cubes.FILL, np.rint(0.5 * lstm + 0.5 * noah))
    return np.asarray(group[product][...], np.float64)


def calendar_day(day: pd.Timestamp) -> int:
    """Day of year of the month and day in 2001 (not a leap year); 29 Feb counts as 28 Feb."""
    return (
        datetime.date(2001, day.month, min(day.day, 28) if day.month == 2 else day.day)
        .timetuple()
        .tm_yday
    )


def direct(codes: np.ndarray, doys: np.ndarray, base: slice, t: int, iy: int, ix: int):
    """(percentile, window mean in m3/m3) of day t at a cell, by the definition, in numpy;
    doys: calendar_day of every day of the cube."""
    distance = np.abs(doys[base] - doys[t])
    in_window = np.minimum(distance, 365 - distance) <= 15
    window = codes[base, iy, ix][in_window]
    window = window[window != cubes.FILL]
    value = codes[t, iy, ix]
    n_below, n_equal = np.sum(window < value), np.sum(window == value)
    return 100 * (n_below + 0.5 * n_equal) / window.size, window.mean() * 1e-4

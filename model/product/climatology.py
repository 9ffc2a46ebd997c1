"""Climatology of a product cube (model.product.ranking defines it): every day of the record
ranked among the base period's values of the same cell near the same day of year, and their
mean. Drought monitoring reads soil moisture as such percentiles (US Drought Monitor classes
D0-D4 at the 30/20/10/5/2nd).

Products: those the product kinds rank (model.product.kinds: every stored product but smap,
observed for a few years only, and the ensemble's spread; and fused at the default weight, 0.5).
Computed block by block (a chunk-aligned window of cells, its whole record at once), so a
climatology of any size runs in bounded memory; the cube's stored values are read back, so the
climatology ranks exactly what the cube serves.
"""

from pathlib import Path

import numpy as np
import pandas as pd
from tqdm import tqdm

from model.errors import InputError, OutOfRangeError
from model.product import cube as cubes
from model.product import kinds
from model.product.fusion import DEFAULT_WEIGHT
from model.product.ranking import WINDOW_DAYS, day_of_year, rank

# region cells x products ranked together: (days x columns) int16 codes of a 30-year record
# take ~90 MB, a day of year's window and its sorted keys ~60 MB more
BATCH_COLUMNS = 4096


def parse_base(text: str | None) -> tuple[pd.Timestamp, pd.Timestamp] | None:
    """`A/B` (ISO days) as two timestamps, or None for the cube's whole record."""
    if text is None:
        return None
    parts = text.split("/")
    try:
        start, end = (pd.Timestamp(p) for p in parts)
    except ValueError:
        raise InputError(f"base: expected YYYY-MM-DD/YYYY-MM-DD, got {text!r}") from None
    if end < start:
        raise InputError(f"base: end {end.date()} is before start {start.date()}")
    return start, end


def spatial_windows(template) -> list[tuple[slice, slice]]:
    """The chunk-aligned windows of cells holding region cells: the climatology's blocks (those
    of the cube's first time chunk, which has them all)."""
    return [(b.y, b.x) for b in cubes.blocks(template) if b.time.start == 0]


def _block_codes(store, products: list[str], ys, xs) -> dict[str, np.ndarray]:
    """Codes (time, y, x) of each ranked product over a window of cells, fused at the default
    weight."""
    stored = {}

    def read(p):
        if p not in stored:
            stored[p] = cubes.read_codes(store, p, ys, xs)
        return stored[p]

    return {p: kinds.kind_of(p).codes(read, p, DEFAULT_WEIGHT).astype(np.int16) for p in products}


def _base_days(times: pd.DatetimeIndex, base) -> slice:
    start, end = base
    if start < times[0] or end > times[-1]:
        raise OutOfRangeError(
            f"base {start.date()}/{end.date()} is outside the cube "
            f"({times[0].date()}..{times[-1].date()})"
        )
    return slice(int(times.searchsorted(start)), int(times.searchsorted(end, side="right")))


def compute(store: str | Path, base: str | None = None, progress: bool = True) -> dict:
    """(Re)compute the cube's climatology over `base` (`A/B`; default: the whole record now) and
    rank every day of the record; returns the climatology's attributes."""
    template = cubes.open_cube(store)
    times = pd.DatetimeIndex(template.time.values)
    period = parse_base(base) or (times[0], times[-1])
    days = _base_days(times, period)
    if days.stop - days.start < cubes.DAYS_OF_YEAR:
        raise InputError(
            f"base {period[0].date()}/{period[1].date()} is shorter than a year: "
            "every day of the year needs base values"
        )
    products = kinds.ranked(cubes.products(template))
    if not products:
        raise InputError(f"cube {store} holds no product to rank")
    attrs = {
        "base_start": str(times[days.start].date()),
        "base_end": str(times[days.stop - 1].date()),
        "products": products,
        "window_days": WINDOW_DAYS,
        "fused_weight": DEFAULT_WEIGHT,
        "definition": "100 * (n_below + 0.5 * n_equal) / n over the base values of the cell "
        f"within {WINDOW_DAYS} days of the day of year (29 Feb: 28 Feb's)",
    }
    cubes.create_climatology(
        store, times, (template.sizes["y"], template.sizes["x"]), products, attrs
    )
    _rank_blocks(store, template, times, products, days, slice(0, len(times)), progress)
    return attrs


def update(store: str | Path, time=None, progress: bool = True) -> int:
    """Rank the days a grown cube added since its climatology was computed, against the same
    base; returns how many days were ranked (0 when none was missing). `time`: the cube's days
    once grown, for a growth whose blocks are written but whose time axis is not yet published
    (so readers see the new days with their percentiles); default the published axis."""
    info = cubes.climatology_info(store)
    if info is None:
        raise InputError(f"cube {store} has no climatology: run `smapx climatology --cube {store}`")
    template = cubes.open_cube(store)
    times = pd.DatetimeIndex(template.time.values if time is None else time)
    if info["days"] >= len(times):
        return 0
    cubes.grow_climatology(store, times)
    days = _base_days(times, parse_base(f"{info['base_start']}/{info['base_end']}"))
    new = slice(info["days"], len(times))
    _rank_blocks(store, template, times, info["products"], days, new, progress)
    return new.stop - new.start


def after_extension(store: str | Path, base: str | None = None, progress: bool = True) -> str:
    """Give a cube just extended or grown its climatology, so that its percentiles and anomalies
    exist wherever it was made (`smapx extend`, the demo): days a grown cube added are ranked
    against its base, a new base or a cube without a climatology is ranked whole, and a record
    shorter than a year gets none. A change publishes a new generation; returns one line that
    says what was done."""
    info = cubes.climatology_info(store)
    if base is None and info is not None:
        added = update(store, progress=progress)
        if added:
            cubes.republish(store)
        return (
            f"climatology of {store}: {added} added day(s) ranked against "
            f"{info['base_start']}/{info['base_end']}"
        )
    if base is None and cubes.open_cube(store).sizes["time"] < cubes.DAYS_OF_YEAR:
        return "no climatology: the record is shorter than a year"
    attrs = compute(store, base, progress)
    cubes.republish(store)
    return (
        f"climatology of {store}: {', '.join(attrs['products'])} over "
        f"{attrs['base_start']}/{attrs['base_end']}"
    )


def rank_grown(store: str | Path, time) -> int:
    """For a growth about to publish the days `time`: rank the added days when the cube has a
    climatology (the number ranked; 0 without one)."""
    if cubes.climatology_info(store) is None:
        return 0
    return update(store, time, progress=False)


def _rank_blocks(store, template, times, products, base_days: slice, ranked: slice, progress):
    """Rank the days `ranked` (of `times`) of every product, batching blocks up to BATCH_COLUMNS
    region cells x products so that small blocks share the per-day-of-year passes."""
    doy = day_of_year(times)
    mask = template["mask"].values
    batches = _batches(spatial_windows(template), mask, len(products))
    with tqdm(total=len(batches), desc="climatology", unit="batch", disable=not progress) as bar:
        for batch in batches:
            cells = [np.nonzero(mask[ys, xs]) for ys, xs in batch]
            columns = [
                codes[:, iy, ix]
                for (ys, xs), (iy, ix) in zip(batch, cells, strict=True)
                for codes in _block_codes(store, products, ys, xs).values()
            ]
            values = np.concatenate(columns, axis=1)
            pct, mean = rank(values[base_days], doy[base_days], values[ranked], doy[ranked])
            mean *= np.float32(cubes.SCALE)
            start = 0
            for (ys, xs), (iy, ix) in zip(batch, cells, strict=True):
                shape = (ys.stop - ys.start, xs.stop - xs.start)
                percentiles, means = {}, {}
                for p in products:
                    part = slice(start, start + len(iy))
                    percentiles[p] = np.full((pct.shape[0], *shape), cubes.FILL, np.int16)
                    percentiles[p][:, iy, ix] = pct[:, part]
                    means[p] = np.full((cubes.DAYS_OF_YEAR, *shape), np.nan, np.float32)
                    means[p][:, iy, ix] = mean[:, part]
                    start = part.stop
                cubes.write_climatology_block(store, ys, xs, ranked, percentiles, means)
            bar.update()


def _batches(windows, mask: np.ndarray, n_products: int) -> list[list[tuple[slice, slice]]]:
    batches, columns = [], 0
    for ys, xs in windows:
        size = int(mask[ys, xs].sum()) * n_products
        if not batches or columns + size > BATCH_COLUMNS:
            batches.append([])
            columns = 0
        batches[-1].append((ys, xs))
        columns += size
    return batches

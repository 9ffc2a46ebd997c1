"""Climatology of a product cube (model.product.ranking defines it): every day of the record
ranked among the base period's values of the same cell near the same day of year, and their
mean. Drought monitoring reads soil moisture as such percentiles (US Drought Monitor classes
D0-D4 at the 30/20/10/5/2nd).

Products: those the product kinds rank (model.product.kinds: every stored product but smap,
observed for a few years only, and the ensemble's spread; and fused at the default weight, 0.5).
Computed window group by window group (chunk-aligned windows of cells, up to BATCH_COLUMNS
columns, their whole record at once), so a climatology of any size runs in bounded memory, in
this process (`compute`) or one group per task on the worker pool (worker.climatology): both
write the same bytes. A recomputation is staged beside the served climatology, a group resumed
where it stopped is not written again, and the whole is swapped in once complete
(model.product.cube.publish_climatology), so readers never see a partial one. The cube's stored
values are read back, so the climatology ranks exactly what the cube serves. A grown cube's added
days are ranked alone (`update`): each against the base values of its own window, the window
means left as they are.
"""

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm import tqdm

from model.errors import InputError, OutOfRangeError
from model.product import cube as cubes
from model.product import kinds
from model.product.fusion import DEFAULT_WEIGHT
from model.product.ranking import WINDOW_DAYS, day_of_year, rank, rank_day, window_days

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


def _block_codes(
    store, products: list[str], ys, xs, times: slice = slice(None)
) -> dict[str, np.ndarray]:
    """Codes (time, y, x) of each ranked product over a window of cells and the days `times`,
    fused at the default weight."""
    stored = {}

    def read(p):
        if p not in stored:
            stored[p] = cubes.read_codes(store, p, ys, xs, times=times)
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


def plan(store: str | Path, base: str | None = None) -> dict:
    """What computing the cube's climatology over `base` (`A/B`; default: the whole record now)
    writes: {"attrs", "products", "days", "generation", "group_columns"} (the cube's days and
    generation, so a staged computation resumes only on the cube it started on; the columns of a
    window group, so every process splits the work alike). User errors raise here."""
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
    generation = cubes.generation(store)["generation"]
    return {
        "attrs": attrs,
        "products": products,
        "days": len(times),
        "generation": generation,
        "group_columns": BATCH_COLUMNS,
    }


def window_groups(template, planned: dict) -> list[list[tuple[slice, slice]]]:
    """The cube's windows of cells in groups of up to BATCH_COLUMNS region cells x products:
    the units of work, a task each on the pool."""
    mask = template["mask"].values
    columns = planned["group_columns"]
    return _batches(spatial_windows(template), mask, len(planned["products"]), columns)


def begin(store: str | Path, template, planned: dict) -> set[str]:
    """Stage an empty climatology for `planned`, unless one staged for the same plan is there
    (a computation stopped part way): the names of the window groups already written."""
    if cubes.staged_plan(store) == planned:
        return cubes.climatology_windows_done(store)
    shape = (template.sizes["y"], template.sizes["x"])
    cubes.stage_climatology(store, template.time.values, shape, planned)
    return set()


def group_name(index: int) -> str:
    return f"group{index:05d}"


def rank_window_group(store: str | Path, template, planned: dict, index: int) -> str:
    """Rank every day of the record in window group `index` against the base and write it
    into the staged climatology, then mark it done (a group already marked is not redone);
    its name. Memory: the group's codes over the whole record (~140 MB for 45 years)."""
    name = group_name(index)
    if cubes.staged_plan(store) != planned or name in cubes.climatology_windows_done(store):
        return name  # published already (a task delivered again), replaced, or written
    batch = window_groups(template, planned)[index]
    times = pd.DatetimeIndex(template.time.values)[: planned["days"]]
    attrs, products = planned["attrs"], planned["products"]
    base = _base_days(times, parse_base(f"{attrs['base_start']}/{attrs['base_end']}"))
    everything = slice(0, len(times))
    doy = day_of_year(times)
    cells = _cells(template, batch)
    values = _columns(store, products, batch, cells, everything)
    pct, mean = rank(values[base], doy[base], values, doy)
    _write_group(store, batch, cells, products, everything, pct, mean, cubes.CLIMATOLOGY_STAGED)
    cubes.mark_climatology_window(store, name)
    return name


def publish_when_complete(store: str | Path, template, planned: dict) -> bool:
    """Once every window group of `planned` is written, swap the staged climatology in and
    publish a new generation of the cube (servers reopen it); True if this call did. Whichever
    process writes the last group publishes; the others find nothing left to do."""
    if cubes.staged_plan(store) != planned:
        return False
    names = {group_name(k) for k in range(len(window_groups(template, planned)))}
    if not names <= cubes.climatology_windows_done(store):
        return False
    if not cubes.publish_climatology(store):
        return False
    cubes.republish(store)
    return True


def compute(store: str | Path, base: str | None = None, progress: bool = True) -> dict:
    """(Re)compute the cube's climatology over `base` (`A/B`; default: the whole record now),
    rank every day of the record, and publish it (a new generation); its attributes. A
    computation of the same plan that stopped part way resumes where it stopped."""
    planned = plan(store, base)
    template = cubes.open_cube(store)
    done = begin(store, template, planned)
    n_groups = len(window_groups(template, planned))
    with tqdm(total=n_groups, desc="climatology", unit="group", disable=not progress) as bar:
        bar.update(len(done))
        for index in range(n_groups):
            if group_name(index) not in done:
                rank_window_group(store, template, planned, index)
                bar.update()
    publish_when_complete(store, template, planned)
    return planned["attrs"]


def update(store: str | Path, time=None, progress: bool = True) -> int:
    """Rank the days a grown cube added since its climatology was computed, against the same
    base; returns how many days were ranked (0 when none was missing). Only what they need is
    read (the base days and the added days) and written (the added days' percentiles; the
    window means stay). `time`: the cube's days once grown, for a growth whose blocks are
    written but whose time axis is not yet published (so readers see the new days with their
    percentiles); default the published axis."""
    info = cubes.climatology_info(store)
    if info is None:
        raise InputError(f"cube {store} has no climatology: run `smapx climatology --cube {store}`")
    template = cubes.open_cube(store)
    times = pd.DatetimeIndex(template.time.values if time is None else time)
    if info["days"] >= len(times):
        return 0
    cubes.grow_climatology(store, times)
    base = _base_days(times, parse_base(f"{info['base_start']}/{info['base_end']}"))
    new = slice(info["days"], len(times))
    doy = day_of_year(times)
    products = info["products"]
    batches = _batches(
        spatial_windows(template), template["mask"].values, len(products), BATCH_COLUMNS
    )
    for batch in tqdm(batches, desc="climatology", unit="group", disable=not progress):
        cells = _cells(template, batch)
        base_values = _columns(store, products, batch, cells, base)
        added = _columns(store, products, batch, cells, new)
        pct = np.empty(added.shape, np.int16)
        for k, day in enumerate(doy[new]):
            window = base_values[window_days(doy[base], day)]
            pct[k] = rank_day(window, added[k])[0]
        _write_group(store, batch, cells, products, new, pct, None, cubes.CLIMATOLOGY)
    cubes.write_percentile_maps(store, new.start)
    return new.stop - new.start


def after_extension(
    store: str | Path,
    base: str | None = None,
    progress: bool = True,
    recompute: Callable[[str | Path, str | None], dict] | None = None,
) -> str:
    """Give a cube just extended or grown its climatology, so that its percentiles and anomalies
    exist wherever it was made (`smapx extend`, the demo): days a grown cube added are ranked
    against its base, a new base or a cube without a climatology is ranked whole (by
    `recompute(store, base)`, default `compute` in this process; the pool's runs one task per
    window group), and a record shorter than a year gets none. A change publishes a new
    generation; returns one line that says what was done."""
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
    attrs = (recompute or (lambda s, b: compute(s, b, progress)))(store, base)
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


def _cells(template, batch) -> list[tuple[np.ndarray, np.ndarray]]:
    """(iy, ix) of the region cells of each window of a group."""
    mask = template["mask"].values
    return [np.nonzero(mask[ys, xs]) for ys, xs in batch]


def _columns(store, products, batch, cells, times: slice) -> np.ndarray:
    """(day, column) codes over the days `times`: each window's region cells, product by
    product, window by window."""
    columns = [
        codes[:, iy, ix]
        for (ys, xs), (iy, ix) in zip(batch, cells, strict=True)
        for codes in _block_codes(store, products, ys, xs, times).values()
    ]
    return np.concatenate(columns, axis=1)


def _write_group(store, batch, cells, products, days: slice, pct, mean, into: str) -> None:
    """Scatter a group's (day, column) percentile codes of the days `days`, and its window
    means (when given, in codes), back into each window's cells, and write them into `into`."""
    if mean is not None:
        mean = mean * np.float32(cubes.SCALE)
    start = 0
    for (ys, xs), (iy, ix) in zip(batch, cells, strict=True):
        shape = (ys.stop - ys.start, xs.stop - xs.start)
        percentiles, means = {}, {}
        for p in products:
            part = slice(start, start + len(iy))
            percentiles[p] = np.full((pct.shape[0], *shape), cubes.FILL, np.int16)
            percentiles[p][:, iy, ix] = pct[:, part]
            if mean is not None:
                means[p] = np.full((cubes.DAYS_OF_YEAR, *shape), np.nan, np.float32)
                means[p][:, iy, ix] = mean[:, part]
            start = part.stop
        cubes.write_climatology_block(store, ys, xs, days, percentiles, means, into=into)


def _batches(
    windows, mask: np.ndarray, n_products: int, most: int
) -> list[list[tuple[slice, slice]]]:
    """Consecutive windows, at most `most` region cells x products together (a larger window
    alone)."""
    batches, columns = [], 0
    for ys, xs in windows:
        size = int(mask[ys, xs].sum()) * n_products
        if not batches or columns + size > most:
            batches.append([])
            columns = 0
        batches[-1].append((ys, xs))
        columns += size
    return batches

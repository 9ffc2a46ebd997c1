"""Ingest real products into an input dataset, growing it in place.

`smap` creates the dataset (the cells of a bbox or named region) unless it exists; every other
source adds to it. The store starts with every variable the schema needs - `forcing` with the eight
canonical variables, `target`, and `static` with no attribute yet - all NaN until a source fills
them, so a dataset is always openable and a source may arrive in any order.

The time axis is first grown (appending NaN days) to span the days of the files to read; each run
of consecutive days read is then written as one region, so ingesting a day changes only that day,
never the rest. Days before the first one need the time axis to
grow at its start: that one case rewrites the store, streamed chunk by chunk, and says so.
Readers work file by file (hourly NLDAS files are reduced to daily means one day at a time), so
memory stays bounded by one day of the source grid plus a month of cell values.
"""

import inspect
import shutil
from dataclasses import dataclass, field
from functools import wraps
from itertools import groupby
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr
import zarr
from tqdm import tqdm

from model import grid
from model.dataset import (
    FORCING_UNITS,
    FORCING_VARIABLES,
    input_coords,
    rounded,
    sole_writer,
    unwritten,
)
from model.errors import InputError
from model.sources import HOURLY_SOURCES, nldas, smap
from model.sources.regrid import Regridder
from model.sources.static import read_static

CHUNK_DAYS = 366
CHUNK_CELLS = 512
FLUSH_DAYS = 31


@dataclass
class Report:
    """What an ingest read, wrote and skipped, and why: printed as the command's summary."""

    source: str
    out: Path
    files_read: int = 0
    days_written: list = field(default_factory=list)
    skipped: list = field(default_factory=list)
    notes: list = field(default_factory=list)

    def skip(self, path: Path, reason: str) -> None:
        self.skipped.append((Path(path).name, reason))

    def lines(self) -> list[str]:
        days = sorted(self.days_written)
        span = f" ({days[0].date()}..{days[-1].date()})" if days else ""
        out = [
            (
                f"{self.source} -> {self.out}: read {self.files_read} files, wrote {len(days)} "
                f"days{span}, skipped {len(self.skipped)} files"
            )
        ]
        out += [f"  skipped {name}: {reason}" for name, reason in self.skipped]
        out += [f"  {note}" for note in self.notes]
        return out


def _sole_writer(ingest):
    """An ingest that holds its dataset (`out`) for itself while it runs
    (model.dataset.sole_writer)."""

    @wraps(ingest)
    def run(*args, **kwargs):
        with sole_writer(inspect.signature(ingest).bind(*args, **kwargs).arguments["out"]):
            return ingest(*args, **kwargs)

    return run


def parse_region(bbox: str | None, region: str | None) -> tuple[float, float, float, float] | None:
    """A lon/lat box from --bbox 'W,S,E,N' or --region NAME; None when neither is given."""
    if bbox and region:
        raise InputError("give either --bbox or --region, not both")
    if region and region.lower() not in grid.REGIONS:
        raise InputError(f"unknown region {region!r}; known: {', '.join(grid.REGIONS)}")
    text = region or bbox
    return grid.parse_bbox(text) if text else None


# ---------------------------------------------------------------- the store


def _chunks(dims: tuple, sizes: dict) -> tuple:
    """A year of days by up to CHUNK_CELLS cells by every variable."""
    return tuple(
        CHUNK_DAYS if d == "time" else min(CHUNK_CELLS, sizes[d]) if d == "cell" else sizes[d]
        for d in dims
    )


def create(path: Path, box, first_day, on: grid.Grid = grid.DEFAULT) -> xr.Dataset:
    """An empty input dataset over the cells of grid `on` whose centres fall in the box."""
    rows, cols = on.bbox_cells(*box)
    if rows.size == 0:
        raise InputError(f"no EASE2 {on.km} km cell centre lies in the box {box}")
    time = pd.DatetimeIndex([pd.Timestamp(first_day).normalize()])
    n_cell, n_var = len(rows), len(FORCING_VARIABLES)

    def empty(*shape):
        return unwritten(shape)

    ds = xr.Dataset(
        {
            "forcing": (
                ("time", "cell", "variable"),
                empty(1, n_cell, n_var),
                {"units": "; ".join(f"{v}: {FORCING_UNITS[v]}" for v in FORCING_VARIABLES)},
            ),
            "static": (("cell", "static_variable"), np.zeros((n_cell, 0), np.float32)),
            "target": (("time", "cell"), empty(1, n_cell), {"units": "m3 m-3"}),
        },
        coords=input_coords(time, rows, cols, FORCING_VARIABLES, [], on),
        attrs={"grid": on.attr, "bbox": list(box)},
    )
    ds.to_zarr(
        path,
        mode="w",
        compute=False,
        zarr_format=3,
        consolidated=True,
        encoding=_encoding(ds, ["forcing", "target"]),
    )
    return _open(path)


def _encoding(ds: xr.Dataset, names) -> dict:
    """The daily series `names` chunked (_chunks) and stored to KEEP_BITS significant bits, as
    the blocked twin world stores its inputs (model.dataset.rounded)."""
    enc = {n: {"chunks": _chunks(ds[n].dims, ds.sizes), **rounded()} for n in names}
    if "time" in ds.coords:
        enc["time"] = {
            "units": "days since 1970-01-01",
            "calendar": "proleptic_gregorian",
            "dtype": "int32",
            "chunks": (CHUNK_DAYS,),
        }
    return enc


def _open(path: Path) -> xr.Dataset:
    try:
        ds = xr.open_zarr(path, consolidated=None)
    except Exception as exc:
        raise InputError(f"cannot open input dataset {path}: {exc}") from exc
    if "time" not in ds.dims or "cell" not in ds.dims:
        raise InputError(f"{path} is not an input dataset (no time/cell dimensions)")
    return ds


def dataset_grid(path: Path, asked: grid.Grid | None = None) -> grid.Grid:
    """The grid of the input dataset at `path` (which must be `asked`, if given), or for a
    dataset yet to be created `asked`, else the default grid."""
    if not Path(path).exists():
        return asked or grid.DEFAULT
    held = grid.of(_open(path).attrs)
    if asked is not None:
        grid.check_same(asked, "--grid", held, f"the dataset {path}")
    return held


def open_or_create(
    path: Path, box, first_day, report: Report, on: grid.Grid = grid.DEFAULT
) -> xr.Dataset:
    """The existing dataset (whose cells must match the box, if one is given) or a new one on
    grid `on`."""
    if not Path(path).exists():
        if box is None:
            raise InputError(f"{path} does not exist; give --bbox W,S,E,N or --region to create it")
        report.notes.append(f"created {path} with the {on.km} km cells of {box}")
        return create(path, box, first_day, on)
    ds = _open(path)
    if box is not None:
        rows, cols = grid.of(ds.attrs).bbox_cells(*box)
        if not (np.array_equal(rows, ds.row.values) and np.array_equal(cols, ds.col.values)):
            raise InputError(
                f"{path} exists with other cells than {box}; drop --bbox/--region "
                f"to add to it, or write a new dataset"
            )
    return ds


def _time_vars(ds: xr.Dataset) -> list[str]:
    return [n for n in ds.data_vars if "time" in ds[n].dims]


def cover_days(path: Path, first, last, report: Report) -> pd.DatetimeIndex:
    """Grow the store's daily time axis to include first..last; returns the axis."""
    ds = _open(path)
    time = pd.DatetimeIndex(ds.time.values)
    first, last = pd.Timestamp(first), pd.Timestamp(last)
    if first < time[0]:
        _prepend(path, ds, pd.date_range(first, time[-1], freq="D"))
        report.notes.append(
            f"time axis extended back to {first.date()}: the store was rewritten once"
        )
        ds = _open(path)
        time = pd.DatetimeIndex(ds.time.values)
    if last > time[-1]:
        new = pd.date_range(time[-1] + pd.Timedelta(days=1), last, freq="D")
        part = xr.Dataset(
            {n: _nan_days(ds[n], len(time), len(new)) for n in _time_vars(ds)},
            coords={"time": new},
            attrs=ds.attrs,  # an append rewrites the store's attributes: keep its grid
        )
        part.to_zarr(path, append_dim="time", consolidated=True)
        time = time.append(new)
    return time


def _nan_days(var: xr.DataArray, n_have: int, n_new: int) -> xr.Variable:
    """n_new all-NaN days for a (time, ...) variable, in dask chunks that line up with the
    store's own chunks after n_have days: no append ever splits a chunk, and memory holds one
    chunk at a time."""
    store_chunks = var.encoding.get("chunks") or _chunks(var.dims, var.sizes)
    step = store_chunks[0]
    head = min(n_new, step - n_have % step)
    steps = (head,) + (step,) * ((n_new - head) // step)
    steps += (n_new - sum(steps),) if n_new > sum(steps) else ()
    values = unwritten((n_new, *var.shape[1:]), chunks=(steps, *store_chunks[1:]))
    return xr.Variable(var.dims, values)


def _prepend(path: Path, ds: xr.Dataset, days: pd.DatetimeIndex) -> None:
    """Rewrite the store with a longer time axis, streamed chunk by chunk."""
    grown = ds.reindex(time=days)
    for name in grown.variables:
        grown[name].encoding = {}
    sizes = dict(grown.sizes)
    grown = grown.chunk({"time": CHUNK_DAYS, "cell": min(CHUNK_CELLS, sizes["cell"])})
    tmp = Path(f"{path}.rewrite")
    shutil.rmtree(tmp, ignore_errors=True)
    grown.to_zarr(
        tmp,
        mode="w",
        zarr_format=3,
        consolidated=True,
        encoding=_encoding(grown, _time_vars(grown)),
    )
    old = Path(f"{path}.old")
    Path(path).rename(old)
    tmp.rename(path)
    shutil.rmtree(old)


def ensure_variable(path: Path, name: str, attrs: dict) -> None:
    """Add an all-NaN (time, cell) variable if the store lacks it; only metadata is written."""
    ds = _open(path)
    if name in ds:
        return
    shape = (ds.sizes["time"], ds.sizes["cell"])
    part = xr.Dataset(
        {name: (("time", "cell"), unwritten(shape), attrs)},
        attrs=ds.attrs,
    )
    part.to_zarr(
        path,
        mode="a",
        compute=False,
        consolidated=True,
        encoding={name: {"chunks": _chunks(("time", "cell"), ds.sizes), **rounded()}},
    )


class DayWriter:
    """Buffers per-day cell values and writes each run of consecutive days as one region, so
    only the days read are touched, and memory holds at most FLUSH_DAYS days of cells."""

    def __init__(self, path: Path, time: pd.DatetimeIndex, report: Report):
        self.path = path
        self.time = time
        self.report = report
        self.days: list[pd.Timestamp] = []
        self.values: dict[str, list[np.ndarray]] = {}

    def add(self, day: pd.Timestamp, values: dict[str, np.ndarray]) -> None:
        contiguous = not self.days or day == self.days[-1] + pd.Timedelta(days=1)
        if (
            not contiguous
            or len(self.days) >= FLUSH_DAYS
            or set(values) != set(self.values or values)
        ):
            self.flush()
        self.days.append(day)
        for name, array in values.items():
            self.values.setdefault(name, []).append(np.asarray(array, np.float32))

    def flush(self) -> None:
        if not self.days:
            return
        start = self.time.get_loc(self.days[0])
        part = xr.Dataset(
            {
                name: (("time", "cell", "variable")[: arrays[0].ndim + 1], np.stack(arrays))
                for name, arrays in self.values.items()
            }
        )
        part.to_zarr(self.path, mode="r+", region={"time": slice(start, start + len(self.days))})
        self.report.days_written += self.days
        self.days, self.values = [], {}


# ---------------------------------------------------------------- SMAP


@_sole_writer
def ingest_smap(
    folder: Path,
    out: Path,
    box=None,
    overpass=smap.Overpass.am,
    quality=smap.Quality.recommended,
    start=None,
    end=None,
    progress: bool = True,
    on: grid.Grid | None = None,
) -> Report:
    """SMAP L3 granules -> target(time, cell); creates the dataset (on grid `on`, 36 km unless
    given) if needed. The granules read are those of the product posted on the dataset's grid:
    SPL3SMP at 36 km, SPL3SMP_E at 9 km."""
    report = Report(f"SMAP L3 ({overpass.value}, quality {quality.value})", out)
    on = dataset_grid(Path(out), on)
    granules, passed_over = smap.find_granules(Path(folder), on)
    for path, reason in passed_over:
        report.skip(path, reason)
    granules = [g for g in granules if _in_period(g.day, start, end)]
    if not granules:
        raise InputError(
            f"no {smap.granule_prefix(on)}_*.h5 granule in {folder}" + _period_text(start, end)
        )
    ds = open_or_create(Path(out), box, granules[0].day, report, on)
    rows, cols = ds.row.values, ds.col.values
    time = cover_days(Path(out), granules[0].day, granules[-1].day, report)
    writer = DayWriter(Path(out), time, report)
    kept = rejected = out_of_range = 0
    for granule in tqdm(granules, desc="SMAP granules", unit="file", disable=not progress):
        try:
            values, counts = smap.read_granule(granule.path, overpass, quality, on)
        except InputError as exc:
            report.skip(granule.path, str(exc))
            continue
        report.files_read += 1
        kept += int(np.isfinite(values[rows, cols]).sum())
        rejected += counts.rejected_flag
        out_of_range += counts.out_of_range
        writer.add(granule.day, {"target": values[rows, cols]})
    writer.flush()
    report.notes.append(
        f"{kept} retrievals kept in the region's cells; over the whole grid "
        f"{rejected} dropped by the quality flag, {out_of_range} outside the "
        f"valid range"
    )
    return report


def _in_period(day, start, end) -> bool:
    return (start is None or day >= pd.Timestamp(start)) and (
        end is None or day <= pd.Timestamp(end)
    )


def _period_text(start, end) -> str:
    return f" between {start or 'the first'} and {end or 'the last'} day" if start or end else ""


# ---------------------------------------------------------------- NLDAS


@_sole_writer
def ingest_nldas(
    folder: Path,
    out: Path,
    kind: str,
    box=None,
    start=None,
    end=None,
    min_hours: int = 1,
    progress: bool = True,
    on: grid.Grid | None = None,
) -> Report:
    """Hourly NLDAS-2 files -> daily means, area-weighted over the dataset's cells on its grid
    (or grid `on` for a dataset this creates); kind is one of model.sources.HOURLY_SOURCES
    (forcing, noah, lsm2)."""
    if kind not in HOURLY_SOURCES:
        raise InputError(f"unknown NLDAS kind {kind!r}; known: {', '.join(HOURLY_SOURCES)}")
    products = HOURLY_SOURCES[kind].products
    report = Report(f"NLDAS-2 {kind}", out)
    on = dataset_grid(Path(out), on)
    files, passed_over = nldas.find_hourly(Path(folder), products)
    for path, reason in passed_over:
        report.skip(path, reason)
    files = [f for f in files if _in_period(f.day, start, end)]
    if not files:
        raise InputError(
            f"no NLDAS_{'/'.join(products)}0125_H hourly file in {folder}"
            + _period_text(start, end)
        )
    ds = open_or_create(Path(out), box, files[0].day, report, on)
    regrid = Regridder(nldas.LAT, nldas.LON, ds.row.values, ds.col.values, on)
    time = cover_days(Path(out), files[0].day, files[-1].day, report)
    to_store = _forcing_layout(ds, report) if kind == "forcing" else _lsm_layout(Path(out), kind)
    read = nldas.read_forcing if kind == "forcing" else nldas.read_soil_moisture
    writer = DayWriter(Path(out), time, report)
    partial, unwritten = [], []
    bar = tqdm(total=len(files), desc=f"NLDAS {kind} hours", unit="file", disable=not progress)
    for day, hours in groupby(files, key=lambda f: f.day):
        daily = None
        for hourly in hours:
            bar.update()
            try:
                fields = read(hourly.path)
                daily = daily or nldas.DailyMean(sorted(fields))
                daily.add(fields)
            except InputError as exc:
                report.skip(hourly.path, str(exc))
                continue
            report.files_read += 1
        hours = 0 if daily is None else daily.hours
        if hours < min_hours:
            unwritten.append((day, hours))
            continue
        if hours < 24:
            partial.append((day, hours))
        writer.add(day, to_store(daily.names, regrid(daily.mean())))
    bar.close()
    writer.flush()
    if partial:
        report.notes.append(
            f"days averaged over fewer than 24 hours ({len(partial)}): " + _examples(partial)
        )
    if unwritten:
        report.notes.append(
            f"days not written, fewer than {min_hours} readable hours "
            f"({len(unwritten)}): " + _examples(unwritten)
        )
    return report


def _examples(days_hours: list, shown: int = 5) -> str:
    text = ", ".join(f"{day.date()} ({hours} h)" for day, hours in days_hours[:shown])
    return text + (", ..." if len(days_hours) > shown else "")


def _forcing_layout(ds: xr.Dataset, report: Report):
    """Map (name, cell) daily values onto the store's forcing variables, in its order."""
    order = [str(v) for v in ds["variable"].values]
    unused = sorted(set(FORCING_VARIABLES) - set(order))
    if unused:
        report.notes.append(f"the dataset has no slot for {', '.join(unused)}; not stored")

    def to_store(names, values):
        by_name = dict(zip(names, values))
        nan = np.full(values.shape[1], np.nan, np.float32)
        return {"forcing": np.stack([by_name.get(n, nan) for n in order], axis=-1)}

    return to_store


def _lsm_layout(path: Path, prefix: str):
    """0-10 cm soil moisture -> `noah`/`lsm2`; deeper layers -> e.g. `noah_10_40cm`."""

    created = set()

    def name(layer):
        return prefix if layer == nldas.SURFACE_LAYER else f"{prefix}_{layer[0]}_{layer[1]}cm"

    def to_store(layers, values):
        for layer in set(layers) - created:
            ensure_variable(
                path,
                name(layer),
                {
                    "units": "m3 m-3",
                    "long_name": f"{prefix} soil moisture {layer[0]}-{layer[1]} cm",
                },
            )
            created.add(layer)
        return {name(layer): v for layer, v in zip(layers, values)}

    return to_store


# ---------------------------------------------------------------- static


@_sole_writer
def ingest_static(raster: Path, name: str, out: Path, categorical: bool = False) -> Report:
    """One GeoTIFF -> static[:, name] (replacing an attribute of that name)."""
    if not name or not name.replace("_", "").isalnum():
        raise InputError(f"--name must be a plain word (letters, digits, _), got {name!r}")
    report = Report(f"static {name} ({'mode' if categorical else 'mean'})", out)
    if not Path(out).exists():
        raise InputError(f"{out} does not exist; create it first with `smapx ingest smap`")
    ds = _open(Path(out))
    values = read_static(Path(raster), ds.row.values, ds.col.values, categorical, grid.of(ds.attrs))
    report.files_read = 1
    names = [str(v) for v in ds["static_variable"].values]
    if name in names:
        report.notes.append(f"replaced the existing attribute {name}")
    missing = int(np.isnan(values).sum())
    if missing:
        report.notes.append(f"{missing} of {values.size} cells have no data in {Path(raster).name}")
    _write_static_column(Path(out), names, name, values)
    return report


def _write_static_column(out: Path, names: list[str], name: str, values: np.ndarray) -> None:
    """Write one attribute's column in place: the other attributes are never rewritten, so a
    failure part-way loses none of them. A new attribute grows the arrays by one column and
    gets its name last, once its values are in. The first attribute replaces the empty arrays a
    new dataset starts with (their names array has no string type yet)."""
    group = zarr.open_group(str(out), mode="a")
    if not names:
        for array in ("static", "static_variable"):
            del group[array]
        first = xr.Dataset(
            {"static": (("cell", "static_variable"), values[:, None].astype(np.float32))},
            coords={"static_variable": np.array([name], dtype=object)},
            attrs=group.attrs.asdict(),
        )
        first.to_zarr(out, mode="a", consolidated=True)
        return
    static, static_names = group["static"], group["static_variable"]
    if name in names:
        static[:, names.index(name)] = values.astype(np.float32)
    else:
        static.resize((static.shape[0], len(names) + 1))
        static[:, len(names)] = values.astype(np.float32)
        static_names.resize((len(names) + 1,))
        static_names[len(names)] = name
    zarr.consolidate_metadata(str(out))

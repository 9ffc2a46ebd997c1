"""The input dataset: what training and inference read, one Zarr store per region.

Layout (an xarray Dataset):
    forcing(time, cell, variable)        daily meteorological forcing, canonical names below
    static(cell, static_variable)        land attributes, one value per cell
    target(time, cell)                   SMAP surface soil moisture, m3/m3, NaN where missing
    noah(time, cell), lsm2(time, cell)   optional land-surface models, 0-10 cm, m3/m3
    noah_10_40cm(time, cell), ...        optional deeper LSM layers, m3/m3 (`smapx ingest noah`)
    coords: time, cell, row, col, lat, lon (per cell), variable, static_variable
"""

import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr
from filelock import FileLock, Timeout
from zarr.codecs.numcodecs import BitRound

from model.errors import InputError, OutOfRangeError
from model.grid import DEFAULT, Grid

# A twin world written in blocks keeps its inputs to fewer significant bits with numcodecs'
# BitRound, which zarr reads and writes but notes, on every array, is not in the Zarr v3 spec.
warnings.filterwarnings("ignore", "Numcodecs codecs are not in the Zarr", category=UserWarning)

FORCING_VARIABLES = ("precip", "tair", "spfh", "swdown", "lwdown", "wind_u", "wind_v", "psurf")
PRECIP_VARIABLES = frozenset({"precip"})
FORCING_UNITS = {
    "precip": "kg m-2 h-1 (daily mean rate)",
    "tair": "K",
    "spfh": "kg kg-1",
    "swdown": "W m-2",
    "lwdown": "W m-2",
    "wind_u": "m s-1",
    "wind_v": "m s-1",
    "psurf": "Pa",
}
LSM_VARIABLES = ("noah", "lsm2")
CHUNK_CELLS = 1024  # cells per chunk of a written input dataset
# significant bits the daily series of ingested and blocked-world inputs keep on disk (float32
# has 24): values within 1.2e-4 of themselves (0.04 K, 12 Pa, 4e-5 m3/m3), which zstd then packs
# tighter: a twin world's inputs take 22 rather than 34 bytes per cell-day, real forcing and SMAP
# 18 rather than 25 (bench/ingest_bytes.py)
KEEP_BITS = 12


def make_input_dataset(
    time,
    rows,
    cols,
    forcing: dict[str, np.ndarray],
    static: dict[str, np.ndarray],
    target: np.ndarray | None = None,
    lsm: dict[str, np.ndarray] | None = None,
    attrs: dict | None = None,
    grid: Grid = DEFAULT,
) -> xr.Dataset:
    """Assemble an input dataset from (time, cell) arrays keyed by variable name; rows and cols
    are cells of `grid`, which the dataset records."""
    time = pd.DatetimeIndex(time)
    rows = np.asarray(rows, np.int64)
    cols = np.asarray(cols, np.int64)
    n_time, n_cell = len(time), len(rows)
    names = list(forcing)
    forcing_arr = np.stack([np.asarray(forcing[n], np.float32) for n in names], axis=-1)
    _check_shape("forcing", forcing_arr.shape[:2], (n_time, n_cell))
    static_names = list(static)
    static_arr = np.stack([np.asarray(static[n], np.float32) for n in static_names], axis=-1)
    _check_shape("static", static_arr.shape[:1], (n_cell,))
    if target is None:
        target = np.full((n_time, n_cell), np.nan, np.float32)
    _check_shape("target", np.shape(target), (n_time, n_cell))
    data_vars = {
        "forcing": (("time", "cell", "variable"), forcing_arr),
        "static": (("cell", "static_variable"), static_arr),
        "target": (("time", "cell"), np.asarray(target, np.float32), {"units": "m3 m-3"}),
    }
    for name, values in (lsm or {}).items():
        _check_shape(name, np.shape(values), (n_time, n_cell))
        data_vars[name] = (("time", "cell"), np.asarray(values, np.float32), {"units": "m3 m-3"})
    return xr.Dataset(
        data_vars,
        input_coords(time, rows, cols, names, static_names, grid),
        attrs={"grid": grid.attr, **(attrs or {})},
    )


def input_coords(time, rows, cols, variables, static_variables, grid: Grid = DEFAULT) -> dict:
    """The coordinates of every input dataset: its cells' (cell_coords), and the names of the
    forcing and static variables."""
    return {
        **cell_coords(time, rows, cols, grid),
        "variable": np.array(variables, dtype=object),
        "static_variable": np.array(static_variables, dtype=object),
    }


def cell_coords(time, rows, cols, grid: Grid = DEFAULT) -> dict:
    """Days, and cells with their EASE2 row/col (on `grid`) and lat/lon: what every per-cell
    dataset of a region carries (the inputs, the twin world's truth)."""
    lat, lon = grid.rowcol_to_latlon(rows, cols)
    return {
        "time": time,
        "cell": np.arange(len(rows)),
        "row": ("cell", rows),
        "col": ("cell", cols),
        "lat": ("cell", lat),
        "lon": ("cell", lon),
    }


def _check_shape(name: str, got, want) -> None:
    if tuple(got) != tuple(want):
        raise InputError(f"{name} has shape {tuple(got)}, expected {tuple(want)}")


def write_input(ds: xr.Dataset, path: str | Path) -> None:
    """Write an input dataset as Zarr, chunked a year by up to CHUNK_CELLS cells, so that the
    extension reads a block's cells without decoding the rest of the region."""
    chunks = {"time": min(366, ds.sizes["time"]), "cell": min(CHUNK_CELLS, ds.sizes["cell"])}
    encoding = {
        name: {"chunks": tuple(chunks.get(d, ds.sizes[d]) for d in ds[name].dims)}
        for name in ds.data_vars
    }
    with sole_writer(path):
        ds.to_zarr(str(path), mode="w", encoding=encoding, consolidated=True, zarr_format=3)


def rounded() -> dict:
    """The encoding of a daily input series stored to KEEP_BITS significant bits (numcodecs'
    BitRound, before the store's compressor)."""
    return {"filters": [BitRound(keepbits=KEEP_BITS)]}


def unwritten(shape, dtype=np.float32, chunks="auto", fill=np.nan):
    """A lazy array of `fill`: the template of a variable whose metadata a `compute=False` write
    lays down. dask is imported here, on use: at module level it cost every worker, server and
    command ~0.3 s of start-up (with the scipy it pulls in), and only these templates need it."""
    import dask.array

    return dask.array.full(shape, fill, dtype=dtype, chunks=chunks)


@contextmanager
def sole_writer(path: str | Path) -> Iterator[None]:
    """Hold a local input dataset for one writer, or fail at once with a clear message: two
    ingests writing into one store would overwrite each other's days and metadata. The lock is
    the system's (filelock's flock on `<path>.lock` beside the store), so it goes with its
    process, even a killed one."""
    if "://" in str(path):
        yield
        return
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    try:
        with FileLock(f"{path}.lock", timeout=0):
            yield
    except Timeout:
        raise InputError(
            f"another process is writing to {path}; run one ingest into a dataset at a time"
        ) from None


def open_input(path: str | Path) -> xr.Dataset:
    """Open an input dataset, checking it has the variables training and inference need."""
    if not Path(path).exists() and "://" not in str(path):
        raise InputError(f"input dataset not found: {path}")
    try:
        ds = xr.open_zarr(str(path), consolidated=None)
    except Exception as exc:
        raise InputError(f"cannot open input dataset {path}: {exc}") from exc
    missing = [v for v in ("forcing", "static", "target") if v not in ds]
    if missing:
        raise InputError(f"{path} is not an input dataset: missing {', '.join(missing)}")
    return ds


def select_period(ds: xr.Dataset, start, end) -> xr.Dataset:
    """The days start..end (inclusive), or a clear error if the data does not cover them."""
    start, end = pd.Timestamp(start), pd.Timestamp(end)
    if end < start:
        raise InputError(f"period end {end.date()} is before start {start.date()}")
    first, last = pd.Timestamp(ds.time.values[0]), pd.Timestamp(ds.time.values[-1])
    if start < first or end > last:
        raise OutOfRangeError(
            f"period {start.date()}..{end.date()} is outside the data "
            f"({first.date()}..{last.date()})"
        )
    return ds.sel(time=slice(start, end))


def daily_index(start, end) -> pd.DatetimeIndex:
    """Every day from start to end inclusive."""
    return pd.date_range(pd.Timestamp(start), pd.Timestamp(end), freq="D")

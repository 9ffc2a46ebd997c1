"""The product cube: the one module that knows the Zarr layout, chunking and encodings.

A cube is a Zarr store with dims (time, y, x) over the bounding box of a region's EASE2 cells:
    lstm, smap, noah, lsm2 (time, y, x)   m3/m3, stored as int16 scaled by 1e-4, NaN off-region
    mask (y, x)                            True on the region's cells
    coords: time, y, x (cell centres, m), lat/lon (y, x), spatial_ref (the CRS as CF and GDAL
            read it, as rioxarray writes it)
It is written in blocks: one spatial chunk (CHUNK_Y x CHUNK_X cells) by one time chunk. Blocks are
chunk-aligned, so two writers never touch the same chunk, and a finished block leaves a marker
under `_blocks/` so a job can resume where it stopped. A wide cube (`_is_wide`: CONUS at 36 or 9
km) stores each block as one shard of 8 x 8-cell columns, so a cell's record is read narrowly
(`_layout`), and adds a map layout (`maps/`: shards of days of 128 x 128 cells, and overviews)
for day fields.

A cube grows in place (`grow`, then the touched blocks, then `publish`). Time chunks are always
CHUNK_TIME days long, whatever the cube's length, so a grown cube is chunked, and stored, byte for
byte as a cube written at once over the whole period. Readers see the shapes recorded in the
consolidated metadata: growing arrays changes them only in each array's own metadata, and
`publish` writes the time axis, then the consolidated metadata, then `_generation.json` (the
number the service polls), so a reader never sees a half-grown cube.
"""

import asyncio
import ctypes
import functools
import json
import multiprocessing
import os
import shutil
import threading
import warnings
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import cachetools
import fsspec
import google_crc32c
import numcodecs.zstd
import numpy as np
import pandas as pd
import pyproj
import xarray as xr
import zarr
from zarr.abc.store import RangeByteRequest, SuffixByteRequest

from model import grid
from model.dataset import unwritten
from model.errors import DamagedStore, InputError, OutOfRangeError
from model.settings import get_settings

# zarr notes every file beside the hierarchy (block markers, job record, generation: all named
# "_...") whenever it lists a store's members; they are the cube's bookkeeping, not a fault.
warnings.filterwarnings("ignore", "Object at _", category=UserWarning)

PRODUCTS = ("smap", "lstm", "nowcast", "noah", "lsm2", "lstm_spread", "nowcast_spread")
UNITS = "m3 m-3"
SCALE = 1e-4
FILL = -32768
CHUNK_TIME = 1461
CHUNK_Y = 32
CHUNK_X = 32
MARKERS = "_blocks"
MAPS = "maps"
MAP_SIDE = 128
SERIES_SIDE = 8
MULTISCALES = "multiscales"
PERCENTILE = "_percentile"  # a ranked product's percentiles: <product>_percentile
MAX_UINT_64 = 2**64 - 1  # a shard index's offset and length of an absent inner chunk
OBSERVED = ("smap",)  # products whose observed period each generation records
MAPS_FROM_MB = 16
GRID_MAPPING = "spatial_ref"
JOB_INFO = "_job.json"
GENERATION = "_generation.json"
EPOCH = np.datetime64("1970-01-01", "D")
TIME_ENCODING = {
    "units": "days since 1970-01-01",
    "calendar": "proleptic_gregorian",
    "dtype": "int32",
    "chunks": (CHUNK_TIME,),
}
DESCRIPTIONS = {
    "smap": "SMAP L3 surface soil moisture as observed (0-5 cm)",
    "lstm": "LSTM-extended SMAP surface soil moisture",
    "nowcast": "LSTM nowcast fed the latest SMAP retrieval at a latency (Fang & Shen 2020)",
    "noah": "Noah land-surface model, 0-10 cm",
    "lsm2": "second land-surface model, 0-10 cm",
    "lstm_spread": "standard deviation of the LSTM ensemble's members about lstm, their mean",
    "nowcast_spread": "standard deviation of the nowcast ensemble's members about their mean",
}


@dataclass(frozen=True)
class Block:
    """One unit of work and of storage: a chunk-aligned window of the cube."""

    index: int
    time: slice
    y: slice
    x: slice

    @property
    def name(self) -> str:
        return f"t{self.time.start}-y{self.y.start}-x{self.x.start}"


def region_window(rows, cols) -> tuple[int, int, int, int]:
    """(row0, row1, col0, col1), the half-open grid window that bounds the cells."""
    rows, cols = np.asarray(rows), np.asarray(cols)
    if rows.size == 0:
        raise InputError("the region has no cells")
    return int(rows.min()), int(rows.max()) + 1, int(cols.min()), int(cols.max()) + 1


def template(
    time, rows, cols, products=("lstm",), attrs: dict | None = None, on: grid.Grid = grid.DEFAULT
) -> xr.Dataset:
    """The empty cube (all NaN) for a set of cells of the grid `on` and days, with coordinates,
    CRS and the grid recorded."""
    unknown = set(products) - set(PRODUCTS)
    if unknown:
        raise InputError(f"unknown product(s) {sorted(unknown)}; known: {', '.join(PRODUCTS)}")
    row0, row1, col0, col1 = region_window(rows, cols)
    time = pd.DatetimeIndex(time)
    y, x = on.row_to_y(np.arange(row0, row1)), on.col_to_x(np.arange(col0, col1))
    rr, cc = np.meshgrid(np.arange(row0, row1), np.arange(col0, col1), indexing="ij")
    lat, lon = on.rowcol_to_latlon(rr, cc)
    mask = np.zeros(rr.shape, bool)
    mask[np.asarray(rows) - row0, np.asarray(cols) - col0] = True
    shape = (len(time), row1 - row0, col1 - col0)
    data_vars = {
        p: (
            ("time", "y", "x"),
            unwritten(shape, chunks=_chunks(shape)),
            {"units": UNITS, "long_name": DESCRIPTIONS[p]},
        )
        for p in products
    }
    data_vars["mask"] = (("y", "x"), mask, {"long_name": "cell belongs to the region"})
    ds = xr.Dataset(
        data_vars,
        coords={
            "time": time,
            "y": ("y", y, {"units": "m", "standard_name": "projection_y_coordinate"}),
            "x": ("x", x, {"units": "m", "standard_name": "projection_x_coordinate"}),
            "lat": (("y", "x"), lat.astype(np.float32), {"units": "degrees_north"}),
            "lon": (("y", "x"), lon.astype(np.float32), {"units": "degrees_east"}),
        },
        attrs={
            "grid": on.attr,
            "row0": row0,
            "col0": col0,
            **(attrs or {}),
        },
    )
    ds = ds.assign_coords({GRID_MAPPING: xr.Variable((), 0, _grid_mapping_attributes())})
    for name in ds.data_vars:
        ds[name].encoding["grid_mapping"] = GRID_MAPPING
    return ds


def _grid_mapping_attributes() -> dict:
    """The CRS attributes rioxarray's write_crs stores (CF grid mapping, then GDAL's WKT 1 as
    crs_wkt and spatial_ref; the CF names read from that WKT, as rasterio hands it to pyproj),
    without importing rioxarray (rasterio, GDAL, boto3: ~0.2 s of every extension)."""
    wkt = pyproj.CRS.from_epsg(grid.EPSG).to_wkt("WKT1_GDAL")
    return {**pyproj.CRS.from_wkt(wkt).to_cf(), "crs_wkt": wkt, "spatial_ref": wkt}


def _chunks(shape) -> tuple[int, int, int]:
    """Fixed whatever the cube's length: growing it then leaves its chunk grid unchanged."""
    return CHUNK_TIME, CHUNK_Y, CHUNK_X


def _layout(shape, wide: bool) -> dict:
    """Chunks of a product (or climatology) array. A wide cube's are shards of a block's
    cells, each of columns of SERIES_SIDE x SERIES_SIDE cells: its day fields come from the map
    layout, so the time layout serves series, and a whole record of a cell then decodes 12
    columns of 1461 x 8 x 8 (2.2 MB), not 12 chunks of 1461 x 32 x 32 (36 MB). A block is
    still one shard, written whole by one writer."""
    if not wide:
        return {"chunks": _chunks(shape)}
    return {"chunks": (shape[0], SERIES_SIDE, SERIES_SIDE), "shards": shape}


def _is_wide(mask: np.ndarray) -> bool:
    """Whether a day read from the time layout would decode more than MAPS_FROM_MB (the region
    spans over five 32 x 32 chunks of 1461 days): such a cube gets a map layout for its days
    and a series layout for its cells. CONUS at 36 km spans 18 (55 MB a day, and 45 years of
    it outgrow a 512 MB cache), at 9 km ~200 (~600 MB a day); the tests' and the demo's
    regions span one to four, and do without."""
    chunk_bytes = CHUNK_TIME * CHUNK_Y * CHUNK_X * np.dtype(np.int16).itemsize
    return int(_occupied(mask).sum()) * chunk_bytes > MAPS_FROM_MB * 2**20


def _encoding(ds: xr.Dataset) -> dict:
    enc = {}
    wide = _is_wide(np.asarray(ds["mask"].values, bool))
    for name in ds.data_vars:
        if name in PRODUCTS:
            enc[name] = {
                "dtype": "int16",
                "scale_factor": np.float32(SCALE),
                "add_offset": np.float32(0.0),
                "_FillValue": FILL,
                "fill_value": FILL,
                **_layout(_chunks(ds[name].shape), wide),
                "grid_mapping": GRID_MAPPING,
            }
    enc["time"] = TIME_ENCODING
    return enc


def create(store: str | Path, cube: xr.Dataset, storage_options: dict | None = None) -> None:
    """Write the cube's metadata, coordinates and mask; product chunks stay unwritten (read as
    NaN): they are dask arrays, which compute=False leaves alone, where numpy ones are written."""
    cube.to_zarr(
        str(store),
        mode="w",
        compute=False,
        encoding=_encoding(cube),
        zarr_format=3,
        consolidated=True,
        storage_options=store_options(store, storage_options),
    )
    fs = _fs(store, storage_options)
    if fs.exists(_marker_dir(store)):
        fs.rm(_marker_dir(store), recursive=True)
    if fs.exists(_job_info_path(store)):
        fs.rm(_job_info_path(store))


def write_job_info(store: str | Path, info: dict, storage_options: dict | None = None) -> None:
    """Keep what made the cube (a job's request and fingerprint) beside it, outside the Zarr
    hierarchy, so a resubmitted job can tell its own half-written cube from another's."""
    _fs(store, storage_options).pipe(_job_info_path(store), json.dumps(info).encode())


def read_job_info(store: str | Path, storage_options: dict | None = None) -> dict | None:
    """What write_job_info kept, or None (no cube, or one written without a job)."""
    try:
        return json.loads(_fs(store, storage_options).cat_file(_job_info_path(store)))
    except FileNotFoundError:
        return None


def _job_info_path(store) -> str:
    return f"{str(store).rstrip('/')}/{JOB_INFO}"


def stored_layout(store: str | Path, storage_options: dict | None = None) -> xr.Dataset | None:
    """The published cube at `store` (lazy, as readers see it), or None where there is none."""
    fs = _fs(store, storage_options)
    if not fs.exists(f"{str(store).rstrip('/')}/zarr.json"):
        return None
    return xr.open_zarr(
        str(store), consolidated=True, storage_options=store_options(store, storage_options)
    )


def check_growable(stored: xr.Dataset, store) -> None:
    """A cube grows only if it is one, chunked in time as this version chunks every cube."""
    held = products(stored)
    if "time" not in stored.dims or not held:
        raise InputError(f"{store} exists and is not a product cube; write a new --out")
    chunk = stored[held[0]].encoding.get("chunks", (CHUNK_TIME,))[0]
    if chunk != CHUNK_TIME:
        raise InputError(
            f"cube {store} has {chunk}-day time chunks (written by an earlier version), not "
            f"{CHUNK_TIME}; it cannot grow in place: write a new --out"
        )


def grow(
    store: str | Path, cube: xr.Dataset, days_before: int, storage_options: dict | None = None
) -> list[Block]:
    """Make room for a longer period: enlarge the product arrays (their own metadata only; the
    consolidated metadata, what readers see, keeps the published shapes) and forget the markers
    of the blocks whose time chunk the new days touch. Those blocks, to be computed again."""
    group = zarr.open_group(_zarr_store(store, storage_options, False), use_consolidated=False)
    for name in products(cube):
        group[name].resize((cube.sizes["time"], *group[name].shape[1:]))
    touched = [b for b in blocks(cube) if b.time.stop > days_before]
    fs = _fs(store, storage_options)
    for block in touched:
        marker = f"{_marker_dir(store)}/{block.name}"
        if fs.exists(marker):
            fs.rm(marker)
    return touched


def publish(
    store: str | Path, time, storage_options: dict | None = None, processes: int = 1
) -> int:
    """Make written days visible, in the order that keeps readers consistent: the map layout
    of the days written since the last generation (its products on up to `processes`
    processes), the time axis, the consolidated metadata, then the generation. Idempotent: a
    cube already published over these days keeps its generation. The generation now current."""
    days = (pd.DatetimeIndex(time).values.astype("datetime64[D]") - EPOCH).astype(np.int32)
    current = generation(store, storage_options)
    if current["days"] == len(days):
        return current["generation"]
    if needs_maps(store, storage_options):
        write_maps(store, current["days"] or 0, len(days), storage_options, processes)
    zstore = _zarr_store(store, storage_options, False)
    root = zarr.open_group(zstore, use_consolidated=False)
    observed = _observed(root, days, current)
    axis = root["time"]
    if axis.shape != days.shape:
        axis.resize(days.shape)
    axis[:] = days
    zarr.consolidate_metadata(zstore)
    end = str(pd.Timestamp(time[-1]).date())
    return _next_generation(store, current["generation"], len(days), end, observed, storage_options)


def _observed(root: zarr.Group, days: np.ndarray, current: dict) -> dict:
    """{product: {start, end} or None} of the days (numbers since EPOCH) with any value of
    the OBSERVED products, for the generation's record: the last record's start carried, the
    time chunks of the days published since scanned (every chunk where the last generation
    has no record), so a server reads the period instead of scanning the cube at start."""
    known = current.get("observed")
    since = current["days"] if known is not None else 0
    occupied = _occupied(np.asarray(root["mask"][...], bool))
    out = {}
    for name in [p for p in OBSERVED if p in root]:
        held = (known or {}).get(name)
        found = scan_observed(root[name], occupied, len(days), since // CHUNK_TIME)
        if found is None:
            out[name] = held
            continue
        start, end = (str(EPOCH + int(days[k])) for k in found)
        out[name] = {"start": held["start"] if held else start, "end": end}
    return out


def scan_observed(
    array: zarr.Array, occupied: np.ndarray, n_days: int, from_chunk: int = 0
) -> tuple[int, int] | None:
    """Indices of the first and last of the first n_days with any value of a (time, y, x)
    array, in its time chunks from `from_chunk` on, None if none: chunks are scanned from
    each end until one holds a value."""
    step = array.chunks[0]
    cells = [(int(by), int(bx)) for by, bx in np.argwhere(occupied)]

    def days_with_values(k: int) -> np.ndarray:
        seen = np.zeros(min(step, n_days - k * step), bool)
        for by, bx in cells:
            codes = array.get_block_selection((k, by, bx))[: seen.size]
            seen |= (codes != FILL).any(axis=(1, 2))
        return np.nonzero(seen)[0] + k * step

    chunks = range(from_chunk, -(-n_days // step))
    first = next((found for k in chunks if (found := days_with_values(k)).size), None)
    if first is None:
        return None
    last = next(found for k in reversed(chunks) if (found := days_with_values(k)).size)
    return int(first[0]), int(last[-1])


def needs_maps(store: str | Path, storage_options: dict | None = None) -> bool:
    """Whether the cube is wide enough for a map layout (`_is_wide`)."""
    root = zarr.open_group(_zarr_store(store, storage_options), mode="r", use_consolidated=False)
    return _is_wide(np.asarray(root["mask"][...], bool))


def write_maps(
    store: str | Path,
    days_before: int,
    n_days: int,
    storage_options: dict | None = None,
    processes: int = 1,
) -> None:
    """Copy the products' days from the time chunk holding day `days_before` on into the map
    layout (group `maps`): chunks of one day by MAP_SIDE x MAP_SIDE cells, so a tile decodes
    tens of kB where the time layout makes it decode a 1461-day chunk per 32 x 32 cells;
    sharded one time chunk by MAP_SIDE x MAP_SIDE cells per file. Beside it, its overviews
    (`overview_factors`: the same layout coarsened 2, 4, ... times), from the same reads.
    Products are independent: with `processes` > 1 they are written on that many processes
    (zarr spends most of a shard's write encoding its 1461 inner chunks one by one, in Python).
    """
    root = zarr.open_group(_zarr_store(store, storage_options, False), use_consolidated=False)
    maps = root.require_group(MAPS)
    factors = overview_factors(root["mask"].shape)
    maps.attrs[MULTISCALES] = _multiscales(factors, grid.of(dict(root.attrs)))
    for f in factors:
        maps.require_group(str(f))
    names = [p for p in PRODUCTS if p in root]
    write = functools.partial(
        _write_product_maps, str(store), days_before, n_days, storage_options=storage_options
    )
    if processes <= 1:
        for name in names:
            write(name)
        return
    spawn = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(min(processes, len(names)), mp_context=spawn) as pool:
        list(pool.map(write, names))


def _write_product_maps(
    store: str, days_before: int, n_days: int, name: str, storage_options=None
) -> None:
    """One product's map layout and overviews (`write_levels`, averaged), all from the time
    layout, so a grown cube's maps are byte for byte those of one written at once."""
    root = zarr.open_group(_zarr_store(store, storage_options, False), use_consolidated=False)
    maps, source = root[MAPS], root[name]
    levels = {
        f: _map_array(maps if f == 1 else maps[str(f)], name, source, f, n_days)
        for f in (1, *overview_factors(source.shape[1:]))
    }
    write_levels(source, levels, days_before, coarsen)


def write_levels(source: zarr.Array, levels: dict, days_before: int, shrink) -> None:
    """Copy a time-layout array from the time chunk holding day `days_before` on into its map
    layout's levels (factor: array; 1 the full level), each coarser level made by
    `shrink(codes, factor)`. A strip of MAP_SIDE rows is copied at a time (a time chunk of CONUS
    at 9 km: ~240 MB), and a coarser level's rows are held until they fill a row of its
    shards, so every shard is written whole, once."""
    n_days, n_y = levels[1].shape[0], source.shape[1]
    factors = [f for f in levels if f > 1]
    for t0 in range(days_before // CHUNK_TIME * CHUNK_TIME, n_days, CHUNK_TIME):
        times = slice(t0, min(t0 + CHUNK_TIME, n_days))
        held = {f: [] for f in factors}
        for y0 in range(0, n_y, MAP_SIDE):
            strip = source[times, y0 : y0 + MAP_SIDE, :]
            write_shards(levels[1], t0 // CHUNK_TIME, y0 // MAP_SIDE, strip)
            for f in factors:
                held[f].append(shrink(strip, f))
                if y0 + MAP_SIDE >= n_y or (y0 + MAP_SIDE) % (MAP_SIDE * f) == 0:
                    rows = np.concatenate(held[f], axis=1)
                    write_shards(levels[f], t0 // CHUNK_TIME, y0 // (MAP_SIDE * f), rows)
                    held[f] = []


def write_percentile_maps(
    store: str | Path,
    days_before: int,
    storage_options: dict | None = None,
    group: str | None = None,
) -> None:
    """The map layout of a wide cube's percentiles (group `<climatology>/maps`), from the time
    chunk holding day `days_before` on: a percentile tile then decodes tens of kB, not a day of
    every block's columns (~600 MB for CONUS at 9 km). Its overviews `sample` a cell, where the
    products' average: the mean of percentiles is not a percentile. Written where the
    climatology is published and where growth ranks new days; none for a narrow cube."""
    if not needs_maps(store, storage_options):
        return
    where, group = _zarr_store(store, storage_options, False), group or CLIMATOLOGY
    root = zarr.open_group(where, mode="r", use_consolidated=False)
    clim = zarr.open_group(where, path=group, mode="r+", use_consolidated=False)
    maps = clim.require_group(MAPS)
    factors = overview_factors(root["mask"].shape)
    maps.attrs[MULTISCALES] = _multiscales(factors, grid.of(dict(root.attrs)), "nearest")
    for name in [n for n in clim.array_keys() if n.endswith(PERCENTILE)]:
        source = clim[name]
        levels = {
            f: _map_array(maps.require_group(str(f)) if f > 1 else maps, name, source, f)
            for f in (1, *factors)
        }
        write_levels(source, levels, days_before, sample)
    zarr.consolidate_metadata(where, group)


def write_shards(array: zarr.Array, k: int, row: int, codes: np.ndarray) -> None:
    """Write int16 codes (days, rows, every x) as the whole shards of row `row` of time chunk k
    of a map-layout array: every inner chunk within the array encoded (none skipped, as
    write_empty_chunks would) with the array's own codecs and laid out as zarr's sharding
    codec lays them out (inner chunks in order, their offsets and lengths, the index's
    crc32c), the same bytes as `array[...] = codes` writes (tested). zarr-python spends 1-3 ms
    of Python per inner chunk, and CONUS at 9 km has ~1.3 million of them."""
    step, side = array.shards[0], array.chunks[1]
    days = min(step, array.shape[0] - k * step)  # past the array's end: no inner chunk
    zstd = numcodecs.zstd.Zstd(**_inner_zstd(array))
    store, prototype = array.store_path.store, zarr.core.buffer.default_buffer_prototype()
    for bx in range(-(-array.shape[2] // side)):
        shard = np.full((days, side, side), FILL, np.int16)
        part = codes[:days, :, bx * side : (bx + 1) * side]
        shard[:, : part.shape[1], : part.shape[2]] = part
        encoded = [zstd.encode(np.ascontiguousarray(day, "<i2")) for day in shard]
        lengths = np.array([len(e) for e in encoded], np.uint64)
        index = np.full((step, 2), MAX_UINT_64, np.uint64)
        index[:days] = np.stack([np.cumsum(lengths) - lengths, lengths], axis=1)
        index = index.astype("<u8").tobytes()
        crc = np.uint32(google_crc32c.value(index)).astype("<u4").tobytes()
        key = f"{array.path}/{array.metadata.encode_chunk_key((k, row, bx))}"
        data = prototype.buffer.from_bytes(b"".join(encoded) + index + crc)
        zarr.core.sync.sync(store.set(key, data))


def _inner_zstd(array: zarr.Array) -> dict:
    """The zstd settings of a sharded array's inner chunks; ValueError for another codec chain
    than the one write_shards encodes and _ShardReads decodes (bytes little-endian, zstd;
    index bytes, crc32c, at the end)."""
    sharding = array.metadata.to_dict()["codecs"][0]["configuration"]
    inner = [c["name"] for c in sharding["codecs"]]
    index = [c["name"] for c in sharding["index_codecs"]]
    if (inner, index, sharding["index_location"]) != (
        ["bytes", "zstd"],
        ["bytes", "crc32c"],
        "end",
    ):
        raise ValueError(f"{array.path}: codecs {inner}, index {index}: not the cube's own")
    return sharding["codecs"][1]["configuration"]


def _map_array(
    group: zarr.Group, name: str, source: zarr.Array, factor: int, n_days: int | None = None
):
    """The map layout's array of a product at one level, created or resized to n_days (the
    source's by default), that
    writes every shard, even one with no value (smap before its launch): absent means damage.
    (An array keeps the write_empty_chunks it was opened with; zarr.config set around the
    writes does not reach it.)"""
    n_days = source.shape[0] if n_days is None else n_days
    shape = (n_days, -(-source.shape[1] // factor), -(-source.shape[2] // factor))
    if name not in group:
        group.create_array(
            name,
            shape=shape,
            chunks=(1, MAP_SIDE, MAP_SIDE),
            shards=(CHUNK_TIME, MAP_SIDE, MAP_SIDE),
            dtype="int16",
            fill_value=FILL,
            dimension_names=("time", "y", "x"),
            attributes=dict(source.attrs),
        )
    array = group[name]
    if array.shape != shape:
        array.resize(shape)
    return array.with_config({"write_empty_chunks": True})


def overview_factors(shape_yx: tuple[int, int]) -> list[int]:
    """The map layout's coarsening factors (2, 4, ...), until a day fits one MAP_SIDE chunk:
    CONUS at 9 km (282 x 627 cells) gets 2, 4 and 8 (36 x 79 cells), at 36 km 2."""
    factors, f = [], 1
    while max(shape_yx) > MAP_SIDE * f and f < MAP_SIDE:
        f *= 2
        factors.append(f)
    return factors


def _multiscales(factors: list[int], on: grid.Grid, resampling: str = "average") -> dict:
    """GeoZarr-style multiscales of a map layout: its levels, finest first, each a group
    (`path` under `maps`) of the same arrays coarsened `factor` times, and how."""
    return {
        "resampling_method": resampling,
        "levels": [
            {"path": "." if f == 1 else str(f), "factor": f, "cell_size_m": on.cell_size * f}
            for f in (1, *factors)
        ],
    }


def coarsen(codes: np.ndarray, factor: int) -> np.ndarray:
    """int16 codes (..., y, x) coarsened `factor` times in y and x: each cell the mean of the
    valid codes (not FILL) of the factor x factor cells it covers, rounded half to even, FILL
    where none is; the edges padded with FILL."""
    return _day_by_day(_coarsen_day, codes, factor)


def _day_by_day(shrink, codes: np.ndarray, factor: int) -> np.ndarray:
    """`shrink(day blocks (n_y, factor, n_x, factor), factor)` over codes (..., y, x), a day
    at a time, so the temporaries stay a day's size; the edges padded with FILL."""
    *lead, n_y, n_x = codes.shape
    ny, nx = -(-n_y // factor), -(-n_x // factor)
    padded = np.full((ny * factor, nx * factor), FILL, np.int16)
    days = []
    for day in codes.reshape(-1, n_y, n_x):
        padded[:n_y, :n_x] = day
        days.append(shrink(padded.reshape(ny, factor, nx, factor), factor))
    return np.stack(days).reshape(*lead, ny, nx)


def _coarsen_day(blocks: np.ndarray, factor: int) -> np.ndarray:
    valid = blocks != FILL
    total = np.where(valid, blocks, 0).sum(axis=(1, 3), dtype=np.int64)
    count = valid.sum(axis=(1, 3))
    mean = np.rint(total / np.maximum(count, 1))
    return np.where(count > 0, mean, FILL).astype(np.int16)


def sample(codes: np.ndarray, factor: int) -> np.ndarray:
    """int16 codes (..., y, x) coarsened `factor` times in y and x by sampling: each cell takes
    the valid code (not FILL) nearest the centre of the factor x factor cells it covers (ties
    in row-major order), FILL where none is; the edges padded with FILL. For percentiles, whose
    mean is not a percentile: a coarse cell shows one real cell's rank, as a nearest-neighbour
    tile of the full level would."""
    return _day_by_day(_sample_day, codes, factor)


def _sample_day(blocks: np.ndarray, factor: int) -> np.ndarray:
    n_y, n_x = blocks.shape[0], blocks.shape[2]
    cells = blocks.transpose(0, 2, 1, 3).reshape(n_y, n_x, factor * factor)
    ordered = cells[:, :, _centre_first(factor)]
    first = (ordered != FILL).argmax(axis=2)
    return np.take_along_axis(ordered, first[:, :, None], axis=2)[:, :, 0]


@functools.cache
def _centre_first(factor: int) -> np.ndarray:
    """Offsets of a factor x factor block's cells (row-major), nearest its centre first."""
    y, x = np.divmod(np.arange(factor * factor), factor)
    centre = (factor - 1) / 2
    return np.lexsort((np.arange(factor * factor), (y - centre) ** 2 + (x - centre) ** 2))


def map_levels(group: zarr.Group) -> dict[int, zarr.Group]:
    """The groups of a cube's map layout by coarsening factor (1: the full layout), as its
    multiscales attribute lists them; empty for a cube without one."""
    maps = group.get(MAPS)
    if maps is None:
        return {}
    levels = maps.attrs.get(MULTISCALES, {"levels": [{"path": ".", "factor": 1}]})["levels"]
    return {
        level["factor"]: maps if level["path"] == "." else maps[level["path"]]
        for level in levels
        if level["path"] == "." or level["path"] in maps
    }


def republish(store: str | Path, storage_options: dict | None = None) -> int:
    """A new generation over the same days, for a change that is not growth (a recomputed
    climatology), so that servers reopen the cube and caches revalidate. The generation now
    current; 0 for a cube never published."""
    current = generation(store, storage_options)
    if not current["generation"]:
        return 0
    observed = current.get("observed")
    if observed is None:  # published before generations recorded it
        root = zarr.open_group(_zarr_store(store, storage_options), mode="r")
        observed = _observed(root, root["time"][...], current)
    return _next_generation(
        store, current["generation"], current["days"], current["end"], observed, storage_options
    )


def _next_generation(
    store, number: int, days: int, end: str, observed: dict, storage_options=None
) -> int:
    record = {
        "generation": number + 1,
        "days": days,
        "end": end,
        "published": pd.Timestamp.now(tz="UTC").isoformat(timespec="seconds"),
        "observed": observed,
    }
    _write_atomic(store, GENERATION, json.dumps(record).encode(), storage_options)
    return record["generation"]


def generation(store: str | Path, storage_options: dict | None = None) -> dict:
    """{generation, days, end, published, observed} of a cube (observed: `_observed`'s record,
    absent from a generation published before it was kept): 0 and None for one never
    published (a cube written before generations, or still being created)."""
    try:
        raw = _fs(store, storage_options).cat_file(f"{str(store).rstrip('/')}/{GENERATION}")
        return json.loads(raw)
    except (FileNotFoundError, ValueError):
        return {"generation": 0, "days": None, "end": None, "published": None}


def _write_atomic(store, key: str, data: bytes, storage_options=None) -> None:
    """Whole-file write: a rename on a local store, one PUT on an object store."""
    path = f"{str(store).rstrip('/')}/{key}"
    if "://" in str(store):
        _fs(store, storage_options).pipe(path, data)
        return
    partial = Path(f"{path}.{os.getpid()}.partial")
    partial.write_bytes(data)
    partial.replace(path)


def blocks(cube: xr.Dataset) -> list[Block]:
    """Every chunk-aligned block of the cube holding at least one region cell, in a fixed order."""
    mask = cube["mask"].values
    n_time, n_y, n_x = cube.sizes["time"], cube.sizes["y"], cube.sizes["x"]
    out = []
    for t0 in range(0, n_time, CHUNK_TIME):
        for y0 in range(0, n_y, CHUNK_Y):
            for x0 in range(0, n_x, CHUNK_X):
                ys, xs = slice(y0, min(y0 + CHUNK_Y, n_y)), slice(x0, min(x0 + CHUNK_X, n_x))
                if mask[ys, xs].any():
                    out.append(Block(len(out), slice(t0, min(t0 + CHUNK_TIME, n_time)), ys, xs))
    return out


def write_block(
    store: str | Path,
    block: Block,
    values: dict[str, np.ndarray],
    storage_options: dict | None = None,
) -> None:
    """Write (time, y, x) float arrays of one block into its own region, then mark it done."""
    part = xr.Dataset(
        {p: (("time", "y", "x"), np.asarray(v, np.float32)) for p, v in values.items()}
    )
    _write_region(store, block, part, storage_options)
    fs = _fs(store, storage_options)
    fs.makedirs(_marker_dir(store), exist_ok=True)
    fs.pipe(f"{_marker_dir(store)}/{block.name}", b"done")


def _write_region(store, block: Block, part: xr.Dataset, storage_options=None) -> None:
    """Through each array's own metadata (not the consolidated copy, which a growing cube
    keeps at its published shapes). Every chunk is written, even one with no value (smap
    before its launch): an absent chunk then always means damage."""
    part.to_zarr(
        str(store),
        mode="r+",
        consolidated=False,
        region={"time": block.time, "y": block.y, "x": block.x},
        storage_options=store_options(store, storage_options),
        write_empty_chunks=True,
    )


def blocks_done(store: str | Path, storage_options: dict | None = None) -> set[str]:
    """Names of the blocks whose writes have completed, as the store holds them now: an object
    store's listing cache (kept per process by fsspec) would hide markers another process
    removed, and a worker would skip a block it must write again."""
    fs = _fs(store, storage_options)
    fs.invalidate_cache(_marker_dir(store))
    if not exists_markers(store, storage_options):
        return set()
    return {Path(p).name for p in fs.ls(_marker_dir(store), detail=False)}


def exists_markers(store, storage_options=None) -> bool:
    return _fs(store, storage_options).exists(_marker_dir(store))


def _marker_dir(store) -> str:
    return f"{str(store).rstrip('/')}/{MARKERS}"


def store_options(store: str | Path, storage_options: dict | None = None) -> dict | None:
    """The fsspec options to reach a store: those given, else the settings' for a URL
    (SMAPX_STORAGE_OPTIONS, e.g. an S3 endpoint and keys); a local path takes none. Every function
    here applies it, so callers (service, workers, exports) pass no options of their own."""
    if storage_options is not None:
        return storage_options
    return get_settings().storage_options if "://" in str(store) else None


def _fs(store, storage_options=None) -> fsspec.AbstractFileSystem:
    fs, _ = fsspec.core.url_to_fs(str(store), **(store_options(store, storage_options) or {}))
    return fs


def open_cube(store: str | Path, storage_options: dict | None = None) -> xr.Dataset:
    """Open a cube lazily; products decode to float32 m3/m3 with NaN where missing; reading
    a region chunk the store lost raises DamagedStore (model.errors). Its CRS is in `spatial_ref`
    as rioxarray writes it: a reader that imports rioxarray gets the `.rio` accessor (imported here
    it cost every process that opens a cube ~0.5 s: rasterio, boto3, dask)."""
    if "://" not in str(store) and not Path(store).exists():
        raise InputError(f"cube not found: {store}")
    try:
        ds = xr.open_zarr(
            strict_store(store, storage_options), consolidated=None, decode_coords="all"
        )
    except Exception as exc:
        reason = " ".join(f"{type(exc).__name__}: {exc}".split())[:200]
        raise InputError(f"cannot open cube {store}: {reason}") from exc
    ds = ds.assign({p: ds[p].astype(np.float32) for p in products(ds)})
    ds.encoding["source"] = str(store)  # as xarray records a store opened by its path
    return with_climatology(ds, store, storage_options)


def describe(store: str | Path, storage_options: dict | None = None) -> dict:
    """Products, days and region cells of a written cube, from its metadata and mask alone."""
    group = zarr.open_group(_zarr_store(store, storage_options), mode="r")
    return {
        "products": [p for p in PRODUCTS if p in group],
        "days": group["time"].shape[0],
        "cells": int(np.count_nonzero(group["mask"][...])),
    }


def products(cube: xr.Dataset) -> list[str]:
    """The product variables a cube holds, in canonical order."""
    return [p for p in PRODUCTS if p in cube]


def locate(cube: xr.Dataset, lat: float, lon: float) -> tuple[int, int]:
    """(iy, ix) of the cube cell holding a point; OutOfRangeError if not a region cell."""
    iy, ix = locate_points(cube, [lat], [lon])
    return int(iy[0]), int(ix[0])


def locate_points(cube: xr.Dataset, lats, lons) -> tuple[np.ndarray, np.ndarray]:
    """(iy, ix) arrays of the cube cells holding many points, in one projection (10,000 points:
    5 ms, against 1.2 s one by one); OutOfRangeError naming the first point outside the region."""
    lats, lons = np.asarray(lats, float), np.asarray(lons, float)
    row, col = grid.of(cube.attrs).latlon_to_rowcol(lats, lons)
    iy, ix = row - int(cube.attrs["row0"]), col - int(cube.attrs["col0"])
    inside = (row >= 0) & (iy >= 0) & (iy < cube.sizes["y"]) & (ix >= 0) & (ix < cube.sizes["x"])
    mask = cube["mask"].values
    inside[inside] = mask[iy[inside], ix[inside]]
    if not inside.all():
        k = int(np.argmin(inside))
        where = extent(cube)
        raise OutOfRangeError(
            f"point ({lats[k]:g}, {lons[k]:g}) is not in the cube's region "
            f"({describe_extent(where)})",
            where,
        )
    return iy, ix


def extent(cube: xr.Dataset) -> dict:
    """Lon/lat bounds (of the cells' centres, to 1e-4 degree, ~10 m) and period of a cube."""
    mask = cube["mask"].values
    lat, lon = cube["lat"].values[mask], cube["lon"].values[mask]
    return {
        "west": round(float(lon.min()), 4),
        "south": round(float(lat.min()), 4),
        "east": round(float(lon.max()), 4),
        "north": round(float(lat.max()), 4),
        "start": str(pd.Timestamp(cube.time.values[0]).date()),
        "end": str(pd.Timestamp(cube.time.values[-1]).date()),
    }


def describe_extent(where: dict) -> str:
    """An extent in one line, as a person reads it."""
    return (
        f"lat {where['south']:g}..{where['north']:g}, lon {where['west']:g}..{where['east']:g}, "
        f"{where['start']}..{where['end']}"
    )


def time_index(cube: xr.Dataset, start, end) -> slice:
    """Index slice of the days start..end, or OutOfRangeError outside the cube's period."""
    times = pd.DatetimeIndex(cube.time.values)
    start, end = pd.Timestamp(start), pd.Timestamp(end)
    if start > times[-1] or end < times[0]:
        raise OutOfRangeError(
            f"period {start.date()}..{end.date()} is outside the cube "
            f"({times[0].date()}..{times[-1].date()})"
        )
    return slice(int(times.searchsorted(start)), int(times.searchsorted(end, side="right")))


def verify(store: str | Path, storage_options: dict | None = None) -> None:
    """InputError, in one line, unless a cube is whole: its mask present, every block's marker
    written, every product's chunk of every block present, and, for a cube whose products fit
    in SMAPX_CACHE_MB, every chunk readable (a larger one is not read whole at start: a chunk
    found unreadable later is answered as damage, DamagedStore). A missing chunk would
    otherwise read as 'no data' and a corrupt one fail deep inside a request."""
    ds = open_cube(store, storage_options)
    if "mask" not in ds or not ds["mask"].values.any():
        raise InputError(f"cube {store} has no mask (or an empty one): damaged, or not a cube")
    every = blocks(ds)
    missing = sorted({b.name for b in every} - blocks_done(store, storage_options))
    if missing:
        raise InputError(
            f"cube {store} is incomplete: {len(missing)} of {len(every)} blocks unwritten "
            f"(first {missing[0]}); finish it with smapx extend"
        )
    group = zarr.open_group(_zarr_store(store, storage_options), mode="r")
    expected = _expected_chunks(group)
    if climatology_info(store, storage_options) is not None:
        clim = _climatology_group(store, storage_options)
        expected |= _expected_percentile_maps(clim, ds["mask"].values, ds.sizes["time"])
    arrays = {key.split("/c/")[0] for key in expected}
    absent = sorted(expected - _stored_keys(store, arrays, storage_options))
    if absent:
        raise InputError(
            f"cube {store}: {len(absent)} chunk(s) missing (first {absent[0]}); the store is "
            "damaged, rewrite it with smapx extend"
        )
    if sum(group[p].nbytes for p in products(ds)) > get_settings().cache_mb * 2**20:
        return
    for p in products(ds):
        for block in every:
            try:
                group[p][block.time, block.y, block.x]
            except Exception as exc:
                raise InputError(
                    f"cube {store}: {p} block {block.name} unreadable "
                    f"({type(exc).__name__}: {str(exc)[:120]})"
                ) from None


def _stored_keys(store, names, storage_options=None) -> set[str]:
    """Keys of the chunks the store holds for the named arrays."""
    fs, root = _fs(store, storage_options), str(store).rstrip("/")
    base = fs._strip_protocol(root).rstrip("/")
    keys = set()
    for name in names:
        keys.update(path[len(base) + 1 :] for path in fs.find(f"{root}/{name}/c"))
    return keys


class MemoryCube:
    """A read-only copy of a cube's products held in memory as the stored int16, laid out
    (y, x, time) so a point's whole series is one contiguous slice: the baseline that a small
    cube can afford (SMAPX_SERVE_IN_MEMORY). LazyCube answers the same reads from the store."""

    def __init__(self, store: str | Path, storage_options: dict | None = None):
        self.dataset = _served_dataset(store, storage_options)
        group = _open_strict(store, storage_options)
        self.raw = {
            p: np.ascontiguousarray(np.asarray(group[p][...], np.int16).transpose(1, 2, 0))
            for p in products(self.dataset)
        }
        self.mask = self.dataset["mask"].values
        self.times = pd.DatetimeIndex(self.dataset.time.values)
        self.row0, self.col0 = int(self.dataset.attrs["row0"]), int(self.dataset.attrs["col0"])
        self.grid = grid.of(self.dataset.attrs)
        self._levels = {
            f: [p for p in self.raw if p in level and level[p].shape[0] == len(self.times)]
            for f, level in map_levels(group).items()
        }
        stored = read_climatology(store, storage_options)
        self.climatology_info = stored and stored["info"]
        self._percentile_levels = {
            f: list(held)
            for f, held in (
                _percentile_levels(_climatology_group(store, storage_options)) if stored else {}
            ).items()
        }
        self._percentiles, self._means = {}, {}
        for p, codes in (stored or {}).get("percentiles", {}).items():
            padded = np.full((*codes.shape[:2], len(self.times)), FILL, np.int16)
            padded[:, :, : min(len(self.times), codes.shape[2])] = codes[:, :, : len(self.times)]
            self._percentiles[p] = padded
        for p, means in (stored or {}).get("means", {}).items():
            self._means[p] = _mean_codes(means)

    def series(self, product: str, iy: int, ix: int, times: slice) -> np.ndarray:
        """Raw int16 values of one cell over a slice of days (FILL where missing)."""
        return self.raw[product][iy, ix, times]

    def day(self, product: str, t: int) -> np.ndarray:
        """Raw int16 (y, x) field of one day."""
        return self.raw[product][:, :, t]

    def overview_factor(self, product: str, cells_per_pixel: float) -> int:
        """As LazyCube's: the levels the store publishes."""
        return _overview_factor(self._levels, product, cells_per_pixel)

    def overview_day(self, product: str, t: int, factor: int) -> np.ndarray:
        """As LazyCube's, coarsened here from the day held in memory."""
        return coarsen(self.day(product, t), factor)

    def percentiles(self, product: str, iy: int, ix: int, times: slice) -> np.ndarray:
        """Percentile codes (0.01 points) of one cell over a slice of days, FILL unranked."""
        return self._percentiles[product][iy, ix, times]

    def percentile_overview_factor(self, product: str, cells_per_pixel: float) -> int:
        """As LazyCube's: the levels the store publishes."""
        return _overview_factor(self._percentile_levels, product, cells_per_pixel)

    def percentile_day(self, product: str, t: int, factor: int = 1) -> np.ndarray:
        """As LazyCube's, sampled here from the day held in memory."""
        day = self._percentiles[product][:, :, t]
        return day if factor == 1 else sample(day, factor)

    def mean_codes(self, product: str, iy: int, ix: int, doy: np.ndarray) -> np.ndarray:
        """Climatological mean codes (int32, 1e-4 m3/m3, FILL unknown) of a cell on days of year."""
        return self._means[product][iy, ix, doy]

    def mean_codes_day(self, product: str, doy: int) -> np.ndarray:
        return self._means[product][:, :, doy]

    def observed_days(self, product: str) -> tuple[int, int] | None:
        """Indices of the first and last day with any value of a product, None if none."""
        days = np.nonzero((self.raw[product] != FILL).any(axis=(0, 1)))[0]
        return (int(days[0]), int(days[-1])) if days.size else None


class ChunkCache:
    """Decoded chunks of every cube a process reads, least recently used out first, bounded in
    bytes (SMAPX_CACHE_MB): what the service holds of its cubes' data, whatever their size. Keys
    carry the generation, so a reloaded cube never reads its predecessor's chunks, and those age
    out under the same bound."""

    def __init__(self, max_bytes: int):
        self._chunks = cachetools.LRUCache(maxsize=max_bytes, getsizeof=lambda a: a.nbytes)
        self._lock = threading.Lock()

    def find(self, key) -> np.ndarray | None:
        with self._lock:
            return self._chunks.get(key)

    def find_many(self, keys: list) -> list[np.ndarray | None]:
        """find for many keys under one hold of the lock (a whole record: 12 chunks)."""
        with self._lock:
            return [self._chunks.get(key) for key in keys]

    def keep(self, key, found: np.ndarray) -> np.ndarray:
        found.flags.writeable = False
        if found.nbytes <= self._chunks.maxsize:
            with self._lock:
                self._chunks[key] = found
        return found

    @property
    def bytes(self) -> int:
        """Bytes held now."""
        return int(self._chunks.currsize)

    @property
    def max_bytes(self) -> int:
        return int(self._chunks.maxsize)


@functools.lru_cache
def chunk_cache() -> ChunkCache:
    """The process's one chunk cache, sized from the settings at first use."""
    return ChunkCache(get_settings().cache_mb * 2**20)


class _ChunkedArray:
    """One stored (time-like, y, x) array read chunk by chunk (inner chunk where sharded)
    through the chunk cache; `decode` turns a chunk as stored into what is kept (e.g. float
    means into int32 codes). The chunks a read lacks are fetched together; those of a sharded
    array in this module's codec chain straight from their byte ranges (`_ShardReads`)."""

    def __init__(self, array: zarr.Array, key: tuple, decode=None, cells_first: bool = False):
        """`cells_first`: chunks are kept as (y, x, time), each cell's days contiguous, for an
        array read mostly by series: a warm 45-year record then gathers 12 runs of memory
        instead of 16,802 values a cache line apart (~30 against ~180 microseconds)."""
        self.array, self.key, self.decode = array, key, decode
        self.cells_first = cells_first
        self.shape, self.chunks = array.shape, array.chunks  # inner chunks where sharded
        self.outer = array.shards or array.chunks
        self.shard_reads = _ShardReads.of(array, key)

    def read(self, coords: list[tuple[int, int, int]]) -> list[np.ndarray]:
        """Chunks at chunk coordinates, clipped at the array's edges, from the cache or read."""
        cache = chunk_cache()
        found = dict(zip(coords, cache.find_many([(*self.key, c) for c in coords]), strict=True))
        missing = [c for c, chunk in found.items() if chunk is None]
        if not missing:
            return list(found.values())
        if self.shard_reads is not None:
            raws = self.shard_reads.chunks(missing)
        else:
            raws = [self.array[self._window(c)] for c in missing]
        for c, raw in zip(missing, raws, strict=True):
            kept = raw if self.decode is None else self.decode(raw)
            if self.cells_first:
                kept = np.ascontiguousarray(kept.transpose(1, 2, 0))
            found[c] = cache.keep((*self.key, c), kept)
        return [found[c] for c in coords]

    def _window(self, coords: tuple[int, int, int]) -> tuple[slice, ...]:
        return tuple(slice(k * n, (k + 1) * n) for k, n in zip(coords, self.chunks, strict=True))

    def series(self, iy: int, ix: int, first: int, stop: int) -> np.ndarray:
        """Values of one cell over indices first..stop of the leading axis."""
        step, cy, cx = self.chunks
        ks = range(first // step, -(-stop // step))
        chunks = self.read([(k, iy // cy, ix // cx) for k in ks])
        cell = (iy % cy, ix % cx)
        parts = [
            (chunk[cell] if self.cells_first else chunk[:, cell[0], cell[1]])[
                max(first - k * step, 0) : stop - k * step
            ]
            for k, chunk in zip(ks, chunks, strict=True)
        ]
        return np.concatenate(parts) if parts else np.empty(0, self.array.dtype)

    def plane(self, t: int, occupied: np.ndarray, fill) -> np.ndarray:
        """The (y, x) field at index t of the leading axis; shards (chunks where unsharded)
        without a region cell (`occupied` False) are not read and hold `fill`."""
        step, cy, cx = self.chunks
        ry, rx = self.outer[1] // cy, self.outer[2] // cx
        ny, nx = -(-self.shape[1] // cy), -(-self.shape[2] // cx)
        coords = [
            (t // step, iy, ix)
            for by, bx in np.argwhere(occupied)
            for iy in range(by * ry, min((by + 1) * ry, ny))
            for ix in range(bx * rx, min((bx + 1) * rx, nx))
        ]
        out = None
        for (_, iy, ix), chunk in zip(coords, self.read(coords), strict=True):
            part = chunk[:, :, t % step] if self.cells_first else chunk[t % step]
            if out is None:
                out = np.full(self.shape[1:], fill, part.dtype)
            out[iy * cy : iy * cy + part.shape[0], ix * cx : ix * cx + part.shape[1]] = part
        return out


class _ShardReads:
    """Inner chunks of a sharded array read from their byte ranges: each shard's index read
    once (and kept in the chunk cache, 260 bytes), then every chunk a read lacks fetched at once
    and decoded here. zarr-python reads an inner chunk in ~1.2 ms, the index again each time; a
    whole-record series of 12 chunks takes ~4 ms this way against ~15 ms (CONUS 9 km, in
    process). Only the codec chain this module writes (bytes, zstd; index bytes, crc32c, at
    the end): `of` answers None for any other."""

    def __init__(self, array: zarr.Array, key: tuple, zstd: numcodecs.zstd.Zstd):
        self.array, self.key, self.zstd = array, key, zstd
        self.store = array.store_path.store
        self.dtype = np.dtype(array.dtype).newbyteorder("<")
        inner, outer = array.chunks, array.shards
        self.per_shard = tuple(o // i for o, i in zip(outer, inner, strict=True))
        self.index_bytes = int(np.prod(self.per_shard)) * 16 + 4

    @classmethod
    def of(cls, array: zarr.Array, key: tuple) -> "_ShardReads | None":
        if array.shards is None:
            return None
        try:
            return cls(array, key, numcodecs.zstd.Zstd(**_inner_zstd(array)))
        except ValueError:
            return None

    def chunks(self, coords: list[tuple[int, int, int]]) -> list[np.ndarray]:
        """Decoded inner chunks at chunk coordinates, clipped at the array's edges."""
        if not coords:
            return []
        shard_of = {
            c: tuple(k // n for k, n in zip(c, self.per_shard, strict=True)) for c in coords
        }
        indexes = self._indexes(set(shard_of.values()))
        ranges = []
        for c in coords:
            within = tuple(k % n for k, n in zip(c, self.per_shard, strict=True))
            offset, length = indexes[shard_of[c]][np.ravel_multi_index(within, self.per_shard)]
            absent = offset == MAX_UINT_64
            ranges.append(
                None
                if absent
                else (shard_of[c], RangeByteRequest(int(offset), int(offset + length)))
            )
        blobs = self._fetch(ranges)
        return [self._decoded(c, blob) for c, blob in zip(coords, blobs, strict=True)]

    def _indexes(self, shards: set[tuple]) -> dict[tuple, np.ndarray]:
        cache = chunk_cache()
        found = {s: cache.find((*self.key, "index", s)) for s in shards}
        missing = [s for s, index in found.items() if index is None]
        request = SuffixByteRequest(self.index_bytes)
        for shard, blob in zip(missing, self._fetch([(s, request) for s in missing]), strict=True):
            found[shard] = cache.keep((*self.key, "index", shard), self._index(shard, blob))
        return found

    def _index(self, shard: tuple, blob: bytes | None) -> np.ndarray:
        """A shard's (offset, length) per inner chunk; all absent for an absent shard (the
        strict store has raised already where the shard must be there)."""
        if blob is None:
            return np.full((int(np.prod(self.per_shard)), 2), MAX_UINT_64, np.uint64)
        index, crc = blob[:-4], blob[-4:]
        if np.uint32(google_crc32c.value(index)).astype("<u4").tobytes() != crc:
            raise DamagedStore(
                f"cube {self.key[0]}: shard {self._key(shard)} fails its index checksum; the "
                "store is damaged, rewrite it with smapx extend",
                self.key[0],
            )
        return np.frombuffer(index, "<u8").reshape(-1, 2)

    def _key(self, shard: tuple) -> str:
        return f"{self.array.path}/{self.array.metadata.encode_chunk_key(shard)}"

    def _fetch(self, ranges: list) -> list[bytes | None]:
        prototype = zarr.core.buffer.default_buffer_prototype()

        async def one(found):
            if found is None:
                return None
            buffer = await self.store.get(self._key(found[0]), prototype, found[1])
            return None if buffer is None else buffer.to_bytes()

        async def every():
            return await asyncio.gather(*(one(r) for r in ranges))

        return zarr.core.sync.sync(every())

    def _decoded(self, coords: tuple, blob: bytes | None) -> np.ndarray:
        inner = self.array.chunks
        if blob is None:
            full = np.full(inner, self.array.fill_value, self.dtype)
        else:
            full = np.frombuffer(self.zstd.decode(blob), self.dtype).reshape(inner)
        edges = (n - k * c for n, k, c in zip(self.array.shape, coords, inner, strict=True))
        return full[tuple(slice(0, e) for e in edges)].astype(self.array.dtype, copy=False)


class LazyCube:
    """A cube read from its store on demand, through the bounded chunk cache: it holds the
    metadata, the mask and coordinates, and nothing of the products. The same reads as
    MemoryCube, the same answers."""

    def __init__(
        self, store: str | Path, storage_options: dict | None = None, use_maps: bool = True
    ):
        """`use_maps` False reads day fields from the time layout even where the cube has a
        map layout (to compare the two)."""
        self.dataset = _served_dataset(store, storage_options)
        self.mask = self.dataset["mask"].values
        self.times = pd.DatetimeIndex(self.dataset.time.values)
        self.row0, self.col0 = int(self.dataset.attrs["row0"]), int(self.dataset.attrs["col0"])
        self.grid = grid.of(self.dataset.attrs)
        where = (str(store), generation(store, storage_options)["generation"])
        group = _open_strict(store, storage_options)
        self._products = {
            p: _ChunkedArray(group[p], (*where, p), cells_first=True)
            for p in products(self.dataset)
        }
        self.occupied = _occupied(self.mask)
        self._maps = {
            f: {
                p: _ChunkedArray(level[p], (*where, MAPS, f, p))
                for p in self._products
                if p in level and level[p].shape[0] == len(self.times)
            }
            for f, level in (map_levels(group) if use_maps else {}).items()
        }
        self.map_occupied = {
            f: _occupied(_occupied(self.mask, f, f), MAP_SIDE, MAP_SIDE) for f in self._maps
        }
        self.climatology_info = climatology_info(store, storage_options)
        self._percentiles, self._means, self._percentile_maps = {}, {}, {}
        if self.climatology_info is not None:
            clim = _strict_climatology(store, storage_options, self.mask, len(self.times))
            for f, held in (_percentile_levels(clim) if use_maps else {}).items():
                self._percentile_maps[f] = {
                    p: _ChunkedArray(array, (*where, CLIMATOLOGY, MAPS, f, p))
                    for p, array in held.items()
                }
            for p in self.climatology_info["products"]:
                name = f"{p}{PERCENTILE}"
                self._percentiles[p] = _ChunkedArray(clim[name], (*where, name), cells_first=True)
                name = f"{p}_window_mean"
                self._means[p] = _ChunkedArray(clim[name], (*where, name), _mean_codes, True)

    def series(self, product: str, iy: int, ix: int, times: slice) -> np.ndarray:
        """Raw int16 values of one cell over a slice of days (FILL where missing)."""
        return self._products[product].series(iy, ix, times.start, times.stop)

    def day(self, product: str, t: int) -> np.ndarray:
        """Raw int16 (y, x) field of one day, from the map layout where the cube has one."""
        if product in self._maps.get(1, {}):
            return self._maps[1][product].plane(t, self.map_occupied[1], FILL)
        return self._products[product].plane(t, self.occupied, FILL)

    def overview_factor(self, product: str, cells_per_pixel: float) -> int:
        """The coarsest level of the map layout holding the product that still has a cell per
        pixel of a tile whose pixels are `cells_per_pixel` cells apart; 1: the full level."""
        return _overview_factor(self._maps, product, cells_per_pixel)

    def overview_day(self, product: str, t: int, factor: int) -> np.ndarray:
        """Raw int16 field of one day at a level of the map layout (`coarsen`'s cells)."""
        if factor == 1:
            return self.day(product, t)
        return self._maps[factor][product].plane(t, self.map_occupied[factor], FILL)

    def percentiles(self, product: str, iy: int, ix: int, times: slice) -> np.ndarray:
        """Percentile codes (0.01 points) of one cell over a slice of days, FILL unranked."""
        stored = self._percentiles[product]
        ranked = stored.series(iy, ix, times.start, min(times.stop, stored.shape[0]))
        out = np.full(times.stop - times.start, FILL, np.int16)
        out[: ranked.size] = ranked
        return out

    def percentile_overview_factor(self, product: str, cells_per_pixel: float) -> int:
        """As overview_factor, of the percentiles' map layout."""
        return _overview_factor(self._percentile_maps, product, cells_per_pixel)

    def percentile_day(self, product: str, t: int, factor: int = 1) -> np.ndarray:
        """Percentile codes of day t, at a level of their map layout (`sample`'s cells)."""
        stored = self._percentiles[product]
        if t >= stored.shape[0]:
            return np.full(_level_shape(self.mask.shape, factor), FILL, np.int16)
        if product in self._percentile_maps.get(factor, {}):
            occupied = _occupied(_occupied(self.mask, factor, factor), MAP_SIDE, MAP_SIDE)
            return self._percentile_maps[factor][product].plane(t, occupied, FILL)
        return sample(stored.plane(t, self.occupied, FILL), factor)

    def mean_codes(self, product: str, iy: int, ix: int, doy: np.ndarray) -> np.ndarray:
        """Climatological mean codes (int32, 1e-4 m3/m3, FILL unknown) of a cell on days of year."""
        return self._means[product].series(iy, ix, 0, DAYS_OF_YEAR)[doy]

    def mean_codes_day(self, product: str, doy: int) -> np.ndarray:
        return self._means[product].plane(doy, self.occupied, FILL)

    def observed_days(self, product: str) -> tuple[int, int] | None:
        """Indices of the first and last day with any value of a product, None if none: time
        chunks are scanned from each end, outside the cache, until one holds a value."""
        return scan_observed(self._products[product].array, self.occupied, len(self.times))


def _percentile_levels(clim: zarr.Group) -> dict[int, dict[str, zarr.Array]]:
    """The percentiles' map layout by level (factor: {product: array}), of the products whose
    array there spans their percentiles' days (one a crash left short is not read)."""
    return {
        f: {
            name.removesuffix(PERCENTILE): level[name]
            for name in level.array_keys()
            if level[name].shape[0] == clim[name].shape[0]
        }
        for f, level in map_levels(clim).items()
    }


def _level_shape(shape_yx: tuple[int, int], factor: int) -> tuple[int, int]:
    return -(-shape_yx[0] // factor), -(-shape_yx[1] // factor)


def _overview_factor(levels: dict, product: str, cells_per_pixel: float) -> int:
    """The largest factor of `levels` (factor: products held) holding the product that is
    at most cells_per_pixel; 1 without one."""
    fitting = [f for f, held in levels.items() if product in held and f <= cells_per_pixel]
    return max(fitting, default=1)


def _occupied(mask: np.ndarray, cy: int = CHUNK_Y, cx: int = CHUNK_X) -> np.ndarray:
    """(y chunks, x chunks) of cy x cx cells: True where a chunk holds a region cell."""
    ny, nx = -(-mask.shape[0] // cy), -(-mask.shape[1] // cx)
    padded = np.zeros((ny * cy, nx * cx), bool)
    padded[: mask.shape[0], : mask.shape[1]] = mask
    return padded.reshape(ny, cy, nx, cx).any(axis=(1, 3))


def _mean_codes(means: np.ndarray) -> np.ndarray:
    """Window means (m3/m3, NaN unknown) as int32 codes of 1e-4 m3/m3, FILL unknown."""
    return np.where(np.isnan(means), FILL, np.rint(means / np.float32(SCALE))).astype(np.int32)


def _served_dataset(store, storage_options=None) -> xr.Dataset:
    """The cube lazily, with what every request reads (mask, lat, lon) in memory."""
    lazy = open_cube(store, storage_options)
    return lazy.assign(mask=lazy["mask"].load()).assign_coords(
        lat=lazy["lat"].load(), lon=lazy["lon"].load()
    )


class _StrictStore(zarr.storage.WrapperStore):
    """A store on which a chunk the cube must hold (a product's chunk of a block with region
    cells) raises DamagedStore where it is absent, instead of reading as never written, i.e.
    as missing values. Every block writes every product's chunk (write_empty_chunks), so an
    absent one is damage, not an empty period."""

    def __init__(self, store, expected: frozenset = frozenset(), where: str = ""):
        super().__init__(store)
        self.expected, self.where = expected, where

    def _with_store(self, store):
        return type(self)(store, self.expected, self.where)

    async def get(self, key, prototype, byte_range=None):
        found = await super().get(key, prototype, byte_range)
        if found is None and key in self.expected:
            raise DamagedStore(
                f"cube {self.where}: chunk {key} is missing; the store is damaged, "
                "rewrite it with smapx extend",
                self.where,
            )
        return found


def _expected_chunks(group: zarr.Group) -> frozenset:
    """Keys of the chunks a published cube must hold: each product's chunks of its region
    blocks, and its map layout's shards over region cells at every level, where it has one."""
    mask = np.asarray(group["mask"][...], bool)
    n_time = group["time"].shape[0]
    arrays = [(p, group[p], _occupied(mask)) for p in PRODUCTS if p in group]
    for f, level in map_levels(group).items():
        occupied = _occupied(_occupied(mask, f, f), MAP_SIDE, MAP_SIDE)
        arrays += [
            (level[p].path, level[p], occupied)
            for p in PRODUCTS
            if p in level and level[p].shape[0] == n_time
        ]
    keys = set()
    for path, array, occupied in arrays:
        for k in range(-(-n_time // CHUNK_TIME)):
            for by, bx in np.argwhere(occupied):
                keys.add(f"{path}/{array.metadata.encode_chunk_key((k, int(by), int(bx)))}")
    return frozenset(keys)


def _expected_percentile_maps(clim: zarr.Group, mask: np.ndarray, n_time: int) -> frozenset:
    """Keys of the shards the climatology's percentile map layout must hold over the cube's
    `n_time` published days, at every level: write_percentile_maps writes every shard of each
    time chunk it covers, so an absent one over region cells is damage, not days left unranked."""
    keys = set()
    for f, level in map_levels(clim).items():
        occupied = np.argwhere(_occupied(_occupied(mask, f, f), MAP_SIDE, MAP_SIDE))
        for array in level.array_values():
            for k in range(-(-min(array.shape[0], n_time) // CHUNK_TIME)):
                keys.update(
                    f"{array.path}/{array.metadata.encode_chunk_key((k, int(by), int(bx)))}"
                    for by, bx in occupied
                )
    return frozenset(keys)


def _strict_climatology(store, storage_options, mask: np.ndarray, n_time: int) -> zarr.Group:
    """The climatology group on a store where a percentile-map shard it must hold raises
    DamagedStore if absent, instead of reading as percentiles never ranked."""
    clim = _climatology_group(store, storage_options)
    expected = _expected_percentile_maps(clim, mask, n_time)
    strict = _StrictStore(_zarr_store(store, storage_options), expected, str(store))
    return zarr.open_group(strict, path=CLIMATOLOGY, mode="r")


def _open_strict(store, storage_options=None) -> zarr.Group:
    """The cube's root group, as published, on a store that refuses to read an absent chunk as
    missing values."""
    plain = _zarr_store(store, storage_options)
    expected = _expected_chunks(zarr.open_group(plain, mode="r"))
    return zarr.open_group(_StrictStore(plain, expected, str(store)), mode="r")


def strict_store(store: str | Path, storage_options: dict | None = None) -> zarr.storage.StoreLike:
    """The zarr store of a published cube on which an absent region chunk raises DamagedStore."""
    return _open_strict(store, storage_options).store


def decode(raw: np.ndarray) -> np.ndarray:
    """Stored int16 to float32 m3/m3, NaN where missing."""
    values = raw.astype(np.float32) * np.float32(SCALE)
    values[raw == FILL] = np.nan
    return values


def read_key(store: str | Path, key: str, storage_options: dict | None = None) -> bytes | None:
    """The bytes of one key of the store (metadata or a chunk), None where absent; lets the
    service expose the store read-only over HTTP without knowing its layout."""
    parts = key.split("/")
    if any(p in ("", ".", "..") for p in parts) or parts[0] in (MARKERS, JOB_INFO, GENERATION):
        return None
    fs = _fs(store, storage_options)
    path = f"{str(store).rstrip('/')}/{key}"
    try:
        return fs.cat_file(path) if fs.isfile(path) else None
    except FileNotFoundError:
        return None


def _zarr_store(store, storage_options=None, read_only: bool = True):
    if "://" in str(store):
        return zarr.storage.FsspecStore.from_url(
            str(store), storage_options=store_options(store, storage_options), read_only=read_only
        )
    return zarr.storage.LocalStore(str(store), read_only=read_only)


# Climatology layout. A cube's climatology lives in its `climatology` group, beside the products:
#     <p>_percentile (time, y, x)        percentile of each day's value among the base period's
#                                        values of the cell near that day of year; int16 in units
#                                        of 0.01 percentile point, FILL where unknown
#     <p>_window_mean (dayofyear, y, x)  mean of those base values, float32 m3/m3
#     time                               the days it covers: the cube's first days (growing the
#                                        cube adds days the climatology has yet to rank)
# `xarray.open_zarr(store, group="climatology")` reads it; open_cube merges it into the products.
# A climatology is computed into the group `_climatology_staged`, a window group of cells at a
# time (each leaving a marker under `_climatology_windows/`, beside the plan it follows), and
# swapped in for the served one once every window is written (`publish_climatology`).
CLIMATOLOGY = "climatology"
CLIMATOLOGY_STAGED = "_climatology_staged"
CLIMATOLOGY_WINDOWS = "_climatology_windows"
CLIMATOLOGY_PLAN = "plan.json"
CLIMATOLOGY_BASE = "climatology_base"  # attributes open_cube gives a cube with its climatology
CLIMATOLOGY_FUSED_WEIGHT = "climatology_fused_weight"
PERCENTILE_SCALE = 0.01
DAYS_OF_YEAR = 365


def create_climatology(
    store: str | Path,
    time,
    shape_yx: tuple[int, int],
    products: list[str],
    attrs: dict,
    storage_options: dict | None = None,
    group: str = CLIMATOLOGY,
) -> None:
    """Write an empty climatology group (replacing any) for `products` over the days `time`;
    `group`: CLIMATOLOGY_STAGED for one to publish when complete. Chunked as the cube's products
    (`_layout`), so a wide cube's percentiles of a cell are read as narrowly as its values."""
    shape = (len(time), *shape_yx)
    wide = needs_maps(store, storage_options)
    data_vars = {}
    for p in products:
        data_vars[f"{p}{PERCENTILE}"] = (
            ("time", "y", "x"),
            unwritten(shape, chunks=_chunks(shape)),
            {"units": "percent", "long_name": f"percentile of {p} in its climatology"},
        )
        data_vars[f"{p}_window_mean"] = (
            ("dayofyear", "y", "x"),
            unwritten((DAYS_OF_YEAR, *shape_yx), chunks=(DAYS_OF_YEAR, *_chunks(shape)[1:])),
            {"units": UNITS, "long_name": f"climatological mean of {p}"},
        )
    ds = xr.Dataset(
        data_vars,
        coords={"time": pd.DatetimeIndex(time), "dayofyear": np.arange(1, DAYS_OF_YEAR + 1)},
        attrs=attrs,
    )
    encoding = {
        f"{p}{PERCENTILE}": {
            "dtype": "int16",
            "scale_factor": np.float32(PERCENTILE_SCALE),
            "add_offset": np.float32(0.0),
            "_FillValue": FILL,
            "fill_value": FILL,
            **_layout(_chunks(shape), wide),
        }
        for p in products
    }
    means = _layout((DAYS_OF_YEAR, CHUNK_Y, CHUNK_X), wide)
    encoding |= {f"{p}_window_mean": means for p in products}
    encoding["time"] = TIME_ENCODING
    ds.to_zarr(
        str(store),
        group=group,
        mode="w",
        compute=False,
        encoding=encoding,
        zarr_format=3,
        consolidated=False,  # the root's lists the climatology once published, not staged
        storage_options=store_options(store, storage_options),
    )
    written = _climatology_group(store, storage_options, mode="r+", path=group)
    zarr.consolidate_metadata(written.store, group)


def read_codes(
    store: str | Path,
    product: str,
    ys: slice,
    xs: slice,
    storage_options: dict | None = None,
    times: slice = slice(None),
) -> np.ndarray:
    """Stored int16 codes (time, y, x) of a product over a window of cells and the days
    `times` (default every day written, published or not: the arrays' own metadata, not the
    consolidated copy)."""
    group = zarr.open_group(_zarr_store(store, storage_options), mode="r", use_consolidated=False)
    return np.asarray(group[product][times, ys, xs], np.int16)


def write_climatology_block(
    store: str | Path,
    ys: slice,
    xs: slice,
    times: slice,
    percentiles: dict[str, np.ndarray],
    means: dict[str, np.ndarray] | None = None,
    storage_options: dict | None = None,
    into: str = CLIMATOLOGY,
) -> None:
    """Write int16 percentile codes (time, y, x) of the days `times`, and the window means
    (dayofyear, y, x), of a chunk-aligned window of cells, into the group `into`."""
    group = _climatology_group(store, storage_options, mode="r+", path=into)
    for p, codes in percentiles.items():
        group[f"{p}{PERCENTILE}"][times, ys, xs] = np.asarray(codes, np.int16)
    for p, mean in (means or {}).items():
        group[f"{p}_window_mean"][:, ys, xs] = np.asarray(mean, np.float32)


def grow_climatology(store: str | Path, time, storage_options: dict | None = None) -> None:
    """Lengthen the climatology's time axis to `time` (the cube's days), new days unknown."""
    group = _climatology_group(store, storage_options, mode="r+")
    for name in climatology_info(store, storage_options)["products"]:
        array = group[f"{name}{PERCENTILE}"]
        array.resize((len(time), *array.shape[1:]))
    days = (pd.DatetimeIndex(time) - pd.Timestamp("1970-01-01")).days.values.astype(np.int32)
    days_array = group["time"]
    days_array.resize((len(days),))
    days_array[:] = days
    zarr.consolidate_metadata(group.store, CLIMATOLOGY)


def climatology_info(store: str | Path, storage_options: dict | None = None) -> dict | None:
    """The climatology's attributes (base period, products, ...) and its days, or None."""
    return climatology_info_of(store, CLIMATOLOGY, storage_options)


def read_climatology(store: str | Path, storage_options: dict | None = None) -> dict | None:
    """Everything the service needs in memory: per product, the percentile codes laid out
    (y, x, time) and the window means (y, x, dayofyear) in m3/m3; None without a climatology."""
    info = climatology_info(store, storage_options)
    if info is None:
        return None
    group = _climatology_group(store, storage_options)
    return {
        "info": info,
        "percentiles": {
            p: np.ascontiguousarray(
                np.asarray(group[f"{p}{PERCENTILE}"][...], np.int16).transpose(1, 2, 0)
            )
            for p in info["products"]
        },
        "means": {
            p: np.ascontiguousarray(
                np.asarray(group[f"{p}_window_mean"][...], np.float32).transpose(1, 2, 0)
            )
            for p in info["products"]
        },
    }


def open_climatology(store: str | Path, storage_options: dict | None = None) -> xr.Dataset | None:
    """The climatology lazily, percentiles decoded to percent (NaN where unknown), or None."""
    if climatology_info(store, storage_options) is None:
        return None
    return xr.open_zarr(
        f"{str(store).rstrip('/')}/{CLIMATOLOGY}",
        consolidated=None,
        storage_options=store_options(store, storage_options),
    )


def with_climatology(
    ds: xr.Dataset, store: str | Path, storage_options: dict | None = None
) -> xr.Dataset:
    """The cube with its climatology's variables beside the products (days not yet ranked
    NaN), or unchanged without one."""
    clim = open_climatology(store, storage_options)
    if clim is None:
        return ds
    clim = clim.reindex(time=ds.time.values).assign_coords(time=ds.time)
    return (
        ds.assign({name: clim[name] for name in clim.data_vars})
        .assign_coords(dayofyear=clim.dayofyear)
        .assign_attrs(
            {
                CLIMATOLOGY_BASE: f"{clim.attrs['base_start']}/{clim.attrs['base_end']}",
                CLIMATOLOGY_FUSED_WEIGHT: clim.attrs["fused_weight"],
            }
        )
    )


def _climatology_group(
    store, storage_options=None, mode: str = "r", path: str = CLIMATOLOGY
) -> zarr.Group:
    """The group opened by its own path: the root's consolidated metadata predates it."""
    where = _zarr_store(store, storage_options, read_only=mode == "r")
    try:
        if mode == "r":
            return zarr.open_group(where, path=path, mode="r")
        return zarr.open_group(where, path=path, mode="r+", use_consolidated=False)
    except (FileNotFoundError, zarr.errors.GroupNotFoundError):
        raise FileNotFoundError(f"{store} has no {path}") from None


def staged_plan(store: str | Path, storage_options: dict | None = None) -> dict | None:
    """The plan the staged climatology follows (as stage_climatology wrote it), or None."""
    raw = read_key(store, f"{CLIMATOLOGY_WINDOWS}/{CLIMATOLOGY_PLAN}", storage_options)
    if raw is None or climatology_info_of(store, CLIMATOLOGY_STAGED, storage_options) is None:
        return None
    return json.loads(raw)


def stage_climatology(
    store: str | Path,
    time,
    shape_yx: tuple[int, int],
    plan: dict,
    storage_options: dict | None = None,
) -> None:
    """An empty staged climatology for `plan` (its `attrs` and `products`), its window markers
    cleared, the plan recorded last (so a plan on record means its group is there)."""
    fs = _fs(store, storage_options)
    windows = f"{str(store).rstrip('/')}/{CLIMATOLOGY_WINDOWS}"
    if fs.exists(windows):
        fs.rm(windows, recursive=True)
    create_climatology(
        store, time, shape_yx, plan["products"], plan["attrs"], storage_options, CLIMATOLOGY_STAGED
    )
    fs.makedirs(windows, exist_ok=True)
    _write_atomic(
        store,
        f"{CLIMATOLOGY_WINDOWS}/{CLIMATOLOGY_PLAN}",
        json.dumps(plan).encode(),
        storage_options,
    )


def climatology_info_of(
    store: str | Path, group: str, storage_options: dict | None = None
) -> dict | None:
    """climatology_info of the served (CLIMATOLOGY) or the staged group."""
    try:
        opened = _climatology_group(store, storage_options, path=group)
    except FileNotFoundError:
        return None
    return {**dict(opened.attrs), "days": opened["time"].shape[0]}


def climatology_windows_done(store: str | Path, storage_options: dict | None = None) -> set[str]:
    """Names of the staged climatology's window groups written so far."""
    fs = _fs(store, storage_options)
    windows = f"{str(store).rstrip('/')}/{CLIMATOLOGY_WINDOWS}"
    fs.invalidate_cache(windows)
    if not fs.exists(windows):
        return set()
    return {Path(p).name for p in fs.ls(windows, detail=False)} - {CLIMATOLOGY_PLAN}


def mark_climatology_window(store: str | Path, name: str, storage_options=None) -> None:
    _fs(store, storage_options).pipe(
        f"{str(store).rstrip('/')}/{CLIMATOLOGY_WINDOWS}/{name}", b"done"
    )


def publish_climatology(store: str | Path, storage_options: dict | None = None) -> bool:
    """Swap the complete staged climatology in for the served one, in one step on a local store
    (readers see the old group or the new, never a mix), list it in the root's consolidated
    metadata, then drop the markers; a wide cube's percentiles get their map layout on the way
    (`write_percentile_maps`, by the process that claimed the group). True if this call
    published it; False when another process already had (of processes finishing the last
    windows together, one publishes). An object store has no rename: the group is copied."""
    root = str(store).rstrip("/")
    staged, served = f"{root}/{CLIMATOLOGY_STAGED}", f"{root}/{CLIMATOLOGY}"
    if "://" in root:
        fs = _fs(store, storage_options)
        if not fs.exists(staged):
            return False
        write_percentile_maps(store, 0, storage_options, CLIMATOLOGY_STAGED)
        if fs.exists(served):
            fs.rm(served, recursive=True)
        fs.copy(staged, served, recursive=True)
        fs.rm(staged, recursive=True)
    else:
        claimed = f"{root}/{CLIMATOLOGY_STAGED}.{os.getpid()}.{threading.get_ident()}"
        try:
            os.rename(staged, claimed)
        except FileNotFoundError:
            return False
        write_percentile_maps(store, 0, storage_options, claimed.rsplit("/", 1)[1])
        _exchange_or_replace(claimed, served)
    zarr.consolidate_metadata(_zarr_store(store, storage_options, False))
    _fs(store, storage_options).rm(f"{root}/{CLIMATOLOGY_WINDOWS}", recursive=True)
    return True


def _exchange_or_replace(new: str, served: str) -> None:
    """Put the folder `new` at `served`: atomically exchanged with the one there where Linux's
    renameat2 can (the old one then deleted), else the old one moved aside first."""
    if os.path.exists(served) and _renameat2_exchange(new, served):
        shutil.rmtree(new)
        return
    if os.path.exists(served):
        aside = f"{new}.old"
        os.rename(served, aside)
        os.rename(new, served)
        shutil.rmtree(aside)
    else:
        os.rename(new, served)


def _renameat2_exchange(a: str, b: str) -> bool:
    """Exchange two paths in one system call (Linux >= 3.15); False where it cannot."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        call = libc.renameat2
    except (OSError, AttributeError):
        return False
    at_cwd, exchange = -100, 2  # AT_FDCWD, RENAME_EXCHANGE
    return call(at_cwd, os.fsencode(a), at_cwd, os.fsencode(b), exchange) == 0

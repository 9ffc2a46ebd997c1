"""Subsets of a product cube (a bbox or a list of points, a period, products) written as files.

Bulk jobs and the service's direct downloads both come through here, so a subset downloaded at
once and one produced by a job are the same bytes. `fused` is computed on request from lstm and
noah (model.product.fusion): with the request's weight, else the per-cell weights when
configured, else 0.5; every product is read through its kind (model.product.kinds).
"""

import math
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from datetime import date
from pathlib import Path
from typing import Annotated

import numpy as np
import xarray as xr
from pydantic import BaseModel, ConfigDict, Field, Strict, model_validator

from model import grid
from model.errors import InputError, OutOfRangeError, validated
from model.product import cube as cubes
from model.product import fusion, kinds
from model.product.formats import FORMATS, FormatName
from model.settings import get_settings

Number = Annotated[float, Strict()]  # a JSON number: `true` is no weight, nor a coordinate
BLOCK_CELL_DAYS = 50_000  # read (and, in CSV, written) between two progress reports: ~1 s
Progress = Callable[[float, str], None]


class ExportRequest(BaseModel):
    """What a subset is: where (bbox or points), when, which products, in which format."""

    model_config = ConfigDict(
        extra="forbid",
        allow_inf_nan=False,
        json_schema_extra={
            "examples": [
                {
                    "products": ["lstm", "fused"],
                    "start": "2016-01-01",
                    "end": "2016-12-31",
                    "bbox": [-100.0, 35.0, -95.0, 40.0],
                    "format": "netcdf",
                },
                {
                    "products": ["lstm", "noah"],
                    "start": "2016-04-01",
                    "end": "2016-06-30",
                    "points": [[38.5, -97.5], [36.6, -97.5]],
                    "format": "csv",
                    "weight": 0.6,
                },
            ]
        },
    )

    products: list[str] = Field(
        min_length=1,
        description="Any of smap, lstm, noah, lsm2, fused, lstm_spread, and with a climatology "
        "<product>_percentile, <product>_anomaly.",
    )
    start: date
    end: date
    bbox: list[Number] | None = Field(
        None, min_length=4, max_length=4, description="[west, south, east, north] in degrees."
    )
    points: list[tuple[Number, Number]] | None = Field(
        None, min_length=1, description="[[lat, lon], ...]"
    )
    format: FormatName = "netcdf"
    weight: Number | None = Field(
        None, ge=0.0, le=1.0, description="Weight of lstm in fused; default per-cell or 0.5."
    )

    @model_validator(mode="after")
    def _check(self):
        if (self.bbox is None) == (self.points is None):
            raise ValueError("give exactly one of bbox or points")
        if self.end < self.start:
            raise ValueError(f"end {self.end} is before start {self.start}")
        if self.bbox is not None and (self.bbox[0] > self.bbox[2] or self.bbox[1] > self.bbox[3]):
            raise ValueError(
                "bbox must be [west, south, east, north] with west <= east, south <= north"
            )
        bad = [p for p in self.points or [] if not (-90 <= p[0] <= 90 and -180 <= p[1] <= 180)]
        if bad:
            raise ValueError(f"points must be [lat, lon] in degrees; not {bad[0]}")
        if not FORMATS[self.format].points and self.points is not None:
            raise ValueError(f"{self.format} needs a bbox, not points")
        unknown = [p for p in self.products if not kinds.is_known(p)]
        if unknown:
            raise ValueError(f"unknown product(s) {unknown}; known: {', '.join(kinds.known())}")
        return self


def parse_request(request: dict | ExportRequest) -> ExportRequest:
    """The validated request; InputError naming the offending field otherwise."""
    return validated(ExportRequest, request)


def check_products(cube: xr.Dataset, products: list[str]) -> None:
    """InputError if the cube cannot offer a product (fused needs lstm and noah, a derived
    product a climatology)."""
    stored, ranked = cubes.products(cube), kinds.ranked_in(cube)
    for p in products:
        why = kinds.lacking(p, stored, ranked)
        if why:
            raise InputError(
                f"product {p!r} {why}; available: {', '.join(available_products(cube))}"
            )


def available_products(cube: xr.Dataset) -> list[str]:
    return kinds.offered_by(cube)


def weight_map(cube: xr.Dataset, weight: float | None) -> np.ndarray:
    """(y, x) lstm weights for fused: the given one, the per-cell estimates, or the default."""
    shape = (cube.sizes["y"], cube.sizes["x"])
    if weight is not None:
        return np.full(shape, fusion.check_weight(weight), np.float64)
    path = get_settings().weights_path
    if path is None:
        return np.full(shape, fusion.DEFAULT_WEIGHT, np.float64)
    table = fusion.read_weights(
        path, grid.of(cube.attrs), f"cube {cube.encoding.get('source', '')}".strip()
    )
    return fusion.weight_grid(table, int(cube.attrs["row0"]), int(cube.attrs["col0"]), shape)


def bbox_window(cube: xr.Dataset, bbox) -> tuple[slice, slice, np.ndarray]:
    """(y slice, x slice, mask) of the region cells whose centres lie in the bbox."""
    west, south, east, north = bbox
    lat, lon = cube["lat"].values, cube["lon"].values
    inside = cube["mask"].values & (lon >= west) & (lon <= east) & (lat >= south) & (lat <= north)
    if not inside.any():
        where = cubes.extent(cube)
        box = ",".join(f"{v:g}" for v in bbox)
        raise OutOfRangeError(
            f"bbox: {box} holds no cell of the cube ({cubes.describe_extent(where)})", where
        )
    iy, ix = np.nonzero(inside)
    ys, xs = slice(int(iy.min()), int(iy.max()) + 1), slice(int(ix.min()), int(ix.max()) + 1)
    return ys, xs, inside[ys, xs]


def period_index(cube: xr.Dataset, start: date, end: date) -> slice:
    """Index slice of the days start..end clipped to the cube, or OutOfRangeError when they do
    not meet; in whole days, so any date a request can hold (year 1 to 9999) is compared."""
    days = cube["time"].values.astype("datetime64[D]")
    first, last = np.datetime64(start, "D"), np.datetime64(end, "D")
    if first > days[-1] or last < days[0]:
        raise OutOfRangeError(f"period {start}..{end} is outside the cube ({days[0]}..{days[-1]})")
    return slice(int(days.searchsorted(first)), int(days.searchsorted(last, side="right")))


def subset(cube: xr.Dataset, request: dict | ExportRequest) -> xr.Dataset:
    """The requested subset, lazily: (time, y, x) for a bbox, (time, point) for points."""
    req = parse_request(request)
    check_products(cube, req.products)
    times = period_index(cube, req.start, req.end)
    weights = xr.DataArray(weight_map(cube, req.weight), dims=("y", "x"))
    if req.bbox is not None:
        ys, xs, inside = bbox_window(cube, req.bbox)
        window = cube.isel(y=ys, x=xs)
        weights = weights.isel(y=ys, x=xs)
        keep = xr.DataArray(inside, dims=("y", "x"))
    else:
        rows, cols = cubes.locate_points(cube, *point_columns(req.points))
        iy, ix = xr.DataArray(rows, dims="point"), xr.DataArray(cols, dims="point")
        window = cube.isel(y=iy, x=ix)
        weights = weights.isel(y=iy, x=ix)
        keep = None
    out = {}
    for p in req.products:
        value = kinds.kind_of(p).block(window, p, weights, times)
        out[p] = value if keep is None else value.where(keep)
    ds = xr.Dataset(out, attrs={**cube.attrs, "request": req.model_dump_json()})
    if keep is not None:
        ds = ds.assign_coords(mask=keep).assign_attrs(
            row0=int(cube.attrs["row0"]) + ys.start, col0=int(cube.attrs["col0"]) + xs.start
        )
    if req.points is not None:
        ds = ds.assign_coords(
            request_lat=("point", [p[0] for p in req.points]),
            request_lon=("point", [p[1] for p in req.points]),
            row=("point", iy.values + int(cube.attrs["row0"])),
            col=("point", ix.values + int(cube.attrs["col0"])),
        )
    return ds


def point_columns(points: list) -> tuple[np.ndarray, np.ndarray]:
    """Latitudes and longitudes of `[lat, lon]` points. One array pass: `zip(*points)` over
    50,000 points is a single ~85 ms call that holds the interpreter lock, and with it the
    server's event loop, while a job is checked on a worker thread."""
    lat_lon = np.asarray(points, dtype=float).reshape(-1, 2)
    return lat_lon[:, 0], lat_lon[:, 1]


def estimate(cube: xr.Dataset, request: dict | ExportRequest) -> dict:
    """Values and approximate bytes of a request's files, before anything is read: a CSV's
    bytes count its date and location columns on every row, not only its values."""
    req = parse_request(request)
    check_products(cube, req.products)
    times = period_index(cube, req.start, req.end)
    if req.bbox is not None:
        ys, xs, inside = bbox_window(cube, req.bbox)
        cells, rows = (ys.stop - ys.start) * (xs.stop - xs.start), int(inside.sum())
    else:
        cubes.locate_points(cube, *point_columns(req.points))
        cells = rows = len(req.points)
    days = times.stop - times.start
    values = days * cells * len(req.products)
    fmt = FORMATS[req.format]
    if fmt.row_bytes is None:
        size = values * fmt.bytes_per_value
    else:  # a table: a row per region cell (or point) and day, its location on every row
        per_row = fmt.row_bytes[req.points is not None] + len(req.products) * fmt.bytes_per_value
        size = days * rows * per_row
    return {
        "days": days,
        "cells": cells,
        "products": len(req.products),
        "values": values,
        "bytes": size,
    }


def export_subset(
    cube_path: str, request: dict, out_dir: Path, progress: Progress | None = None
) -> list[Path]:
    """Write the subset a request names into out_dir and return the files written. Files are
    written in a private folder and moved into out_dir once whole, so a crash or a second run
    never leaves a partial file under a result's name. The subset is read, and a CSV written,
    a block of about BLOCK_CELL_DAYS cell-days at a time, with a progress report between two
    blocks; `progress` may raise there to stop the work (a cancelled job stops within a block)."""
    progress = progress or (lambda percent, stage: None)
    req = parse_request(request)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    for stale in out_dir.glob(".partial-*"):
        shutil.rmtree(stale, ignore_errors=True)
    partial = Path(tempfile.mkdtemp(prefix=".partial-", dir=out_dir))
    fmt = FORMATS[req.format]
    try:
        progress(0.0, "reading")
        ds = subset(cubes.open_cube(cube_path), req)
        if fmt.write_blocks is not None:
            blocks = read_blocks(ds, progress, "writing", 0.0, 95.0)
            written = fmt.write_blocks(ds, blocks, partial)
        else:
            loaded = gather(ds, read_blocks(ds, progress, "reading", 0.0, 50.0))
            progress(50.0, "writing")
            written = fmt.write(loaded, partial)
        files = [out_dir / f.name for f in written]
        progress(95.0, "saving")
        for f in files:
            os.replace(partial / f.name, f)
    finally:
        shutil.rmtree(partial, ignore_errors=True)
    progress(100.0, "done")
    return files


def block_dim(ds: xr.Dataset) -> str:
    """The dimension a subset is read along in blocks: its points, or its rows of cells (the
    order of a CSV's rows either way)."""
    return "point" if "point" in ds.dims else "y"


def read_blocks(
    ds: xr.Dataset, progress: Progress, stage: str, start: float, span: float
) -> Iterator[tuple[slice, xr.Dataset]]:
    """(slice along block_dim, the block loaded) in order, reporting progress before each."""
    dim = block_dim(ds)
    size = ds.sizes[dim]
    per_step = max(1, math.prod(n for d, n in ds.sizes.items() if d != dim))
    step = max(1, BLOCK_CELL_DAYS // per_step)
    for first in range(0, size, step):
        progress(start + span * first / size, stage)
        part = slice(first, min(first + step, size))
        yield part, ds.isel({dim: part}).load()


def gather(ds: xr.Dataset, blocks: Iterator[tuple[slice, xr.Dataset]]) -> xr.Dataset:
    """The whole subset in memory, filled block by block (each product's array allocated once)."""
    dim = block_dim(ds)
    arrays = {name: np.empty(v.shape, np.float32) for name, v in ds.data_vars.items()}
    for part, block in blocks:
        for name, values in arrays.items():
            where = tuple(part if d == dim else slice(None) for d in ds[name].dims)
            values[where] = block[name].values
    return ds.copy(data=arrays).load()

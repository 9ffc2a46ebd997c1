"""The formats subsets are written in, registered once: the request model, the size estimate,
the bulk jobs and the direct download all read FORMATS (as xpublish registers its formats)."""

import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
import xarray as xr


def write_zarr(ds: xr.Dataset, out_dir: Path) -> list[Path]:
    """A zipped Zarr store (keys at the archive root, so zarr's ZipStore opens it)."""
    store = out_dir / "subset.zarr"
    _clean(ds).to_zarr(store, mode="w", zarr_format=3, consolidated=True)
    archive = shutil.make_archive(str(store), "zip", root_dir=store)
    shutil.rmtree(store)
    return [Path(archive)]


def write_netcdf(ds: xr.Dataset, out_dir: Path) -> list[Path]:
    path = out_dir / "subset.nc"
    ds = _clean(ds)
    encoding = {p: {"zlib": True, "complevel": 4, "dtype": "float32"} for p in ds.data_vars}
    ds.to_netcdf(path, engine="h5netcdf", encoding=encoding)
    return [path]


def write_csv(ds: xr.Dataset, out_dir: Path) -> list[Path]:
    """One row per (cell or point, day): location columns, then one column per product."""
    whole = slice(0, ds.sizes["point" if "point" in ds.dims else "y"])
    return write_csv_blocks(ds, [(whole, ds)], out_dir)


def write_csv_blocks(ds: xr.Dataset, blocks, out_dir: Path) -> list[Path]:
    """write_csv's file from (slice, loaded block) pairs of points or rows of cells in order,
    appended one after another: the rows of a block are all the subset holds in memory."""
    path = out_dir / "subset.csv"
    with path.open("w", newline="") as out:
        for i, (part, block) in enumerate(blocks):
            if "point" in block.dims:
                block = block.assign_coords(point=np.arange(part.start, part.stop))
            else:
                block = block.assign_attrs(row0=int(ds.attrs["row0"]) + part.start)
            to_table(block).to_csv(
                out, index=False, header=i == 0, float_format="%.4f", date_format="%Y-%m-%d"
            )
    return [path]


def to_table(ds: xr.Dataset) -> pd.DataFrame:
    products = list(ds.data_vars)
    if "point" in ds.dims:
        frame = ds[products].to_dataframe().reset_index()
        cols = ["time", "point", "request_lat", "request_lon", "row", "col", "lat", "lon"]
    else:
        iy, ix = np.nonzero(ds["mask"].values)
        stacked = ds[products].isel(
            y=xr.DataArray(iy, dims="cell"), x=xr.DataArray(ix, dims="cell")
        )
        frame = stacked.to_dataframe().reset_index()
        frame["row"] = frame["cell"].map(dict(enumerate(iy + int(ds.attrs["row0"]))))
        frame["col"] = frame["cell"].map(dict(enumerate(ix + int(ds.attrs["col0"]))))
        cols = ["time", "row", "col", "lat", "lon"]
    frame = frame.sort_values([c for c in ("point", "cell", "time") if c in frame]).reset_index(
        drop=True
    )
    return frame[[c for c in cols if c in frame] + products]


def write_geotiff(ds: xr.Dataset, out_dir: Path) -> list[Path]:
    """One GeoTIFF per product, one band per day (band descriptions are the dates)."""
    import rioxarray  # noqa: F401  (the .rio accessor; on use, as only this format needs it)

    files = []
    dates = [str(pd.Timestamp(t).date()) for t in ds.time.values]
    for p in ds.data_vars:
        path = out_dir / f"{p}.tif"
        da = ds[p].drop_vars(["lat", "lon"], errors="ignore").rename(time="band")
        da = da.assign_coords(band=np.arange(1, len(dates) + 1)).rio.write_nodata(np.nan)
        da.attrs["long_name"] = dates
        da.rio.to_raster(path, compress="deflate", dtype="float32")
        files.append(path)
    return files


def _clean(ds: xr.Dataset) -> xr.Dataset:
    """Encodings inherited from the int16 cube would re-quantize; subsets are plain float32."""
    for v in ds.variables.values():
        v.encoding = {}
    return ds


@dataclass(frozen=True)
class Format:
    """An output format: its writer, its media type, the bytes a value takes and, in a table,
    a row's date and location columns (a bbox's cell, a point), for the size estimate before a
    job runs, whether
    it holds a list of points (not only a bbox), whether it is offered for download at once
    (/v1/subset) or by bulk jobs only, and, where it can be written a block at a time, the
    writer that takes (slice, loaded block) pairs in order."""

    write: Callable[[xr.Dataset, Path], list[Path]]
    media_type: str
    bytes_per_value: int
    row_bytes: tuple[int, int] | None = None
    points: bool = True
    direct: bool = True
    write_blocks: Callable | None = None


FORMATS = {
    "zarr": Format(write_zarr, "application/zip", 4),
    "netcdf": Format(write_netcdf, "application/x-netcdf", 4),
    "csv": Format(write_csv, "text/csv", 7, (38, 60), write_blocks=write_csv_blocks),
    "geotiff": Format(write_geotiff, "image/tiff", 4, points=False, direct=False),
}
FormatName = Literal[tuple(FORMATS)]
DirectFormat = Literal[tuple(name for name, f in FORMATS.items() if f.direct)]

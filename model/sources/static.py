"""Static land attributes (sand, clay, NDVI, elevation, land cover, ...) from any GeoTIFF.

The raster is reprojected straight onto the input dataset's EASE2 cells (on its grid) by GDAL
(through rioxarray): `average` weights each source pixel by the part of it inside a cell, `mode`
takes the most common class, for categorical maps such as land cover.
"""

from pathlib import Path

import numpy as np
import rioxarray
from affine import Affine
from rasterio.enums import Resampling
from rasterio.errors import RasterioError

from model import grid
from model.errors import InputError


def read_static(
    path: Path, rows, cols, categorical: bool = False, on: grid.Grid = grid.DEFAULT
) -> np.ndarray:
    """One float32 value per cell of the grid `on` (NaN where the raster has no data there)."""
    if not path.is_file():
        raise InputError(f"raster not found: {path}")
    try:
        raster = rioxarray.open_rasterio(path, masked=True)
    except (RasterioError, OSError) as exc:
        raise InputError(f"cannot read {path.name} as a GeoTIFF: {exc}") from exc
    if raster.sizes.get("band", 1) != 1:
        raise InputError(f"{path.name} has {raster.sizes['band']} bands; give a single-band raster")
    if raster.rio.crs is None:
        raise InputError(f"{path.name} has no coordinate reference system")
    rows, cols = np.asarray(rows), np.asarray(cols)
    row0, col0 = int(rows.min()), int(cols.min())
    shape = (int(rows.max()) - row0 + 1, int(cols.max()) - col0 + 1)
    transform = Affine(
        on.cell_size,
        0.0,
        grid.X_MIN + col0 * on.cell_size,
        0.0,
        -on.cell_size,
        grid.Y_MAX - row0 * on.cell_size,
    )
    try:
        source = raster.squeeze("band", drop=True).astype(np.float32).rio.write_nodata(np.nan)
        cells = source.rio.reproject(
            f"EPSG:{grid.EPSG}",
            shape=shape,
            transform=transform,
            nodata=np.nan,
            resampling=Resampling.mode if categorical else Resampling.average,
        )
    except (RasterioError, OSError) as exc:
        raise InputError(f"cannot reproject {path.name}: {exc}") from exc
    return cells.values[rows - row0, cols - col0].astype(np.float32)

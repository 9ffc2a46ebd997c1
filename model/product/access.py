"""For xarray users: pick a point of a cube by latitude and longitude.

The cube's dims are the EASE-Grid 2.0 metres `x`/`y`; its `lat`/`lon` are 2-D, so
`ds.sel(lat=.., lon=.., method="nearest")` cannot work. Importing this module adds a `smapx`
accessor to every xarray Dataset:

    from model.product.access import open_cube
    cell = open_cube("http://localhost:8000/v1/zarr/extended").smapx.point(38.5, -97.5)
    cell.lstm.sel(time="2016")                      # float32 m3/m3, NaN where missing

Without smapx, the same cell is `ds.sel(x=x, y=y, method="nearest")` with
`x, y = pyproj.Transformer.from_crs(4326, 6933, always_xy=True).transform(lon, lat)`.
"""

import xarray as xr

from model.product import cube as cubes
from model.product.cube import open_cube

__all__ = ["CubeAccessor", "open_cube"]


@xr.register_dataset_accessor("smapx")
class CubeAccessor:
    """`ds.smapx.point(lat, lon)`: the cell of a cube that holds a point."""

    def __init__(self, dataset: xr.Dataset):
        self._dataset = dataset

    def point(self, lat: float, lon: float) -> xr.Dataset:
        """The daily series of the region cell holding (lat, lon), with its lat/lon/x/y as
        scalar coordinates; OutOfRangeError (with the cube's extent) outside the region."""
        iy, ix = cubes.locate(self._dataset, lat, lon)
        return self._dataset.isel(y=iy, x=ix)

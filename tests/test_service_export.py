"""model.product.export, the code behind bulk jobs and subset downloads: every format holds the
cube's values, fused is the weighted mean, progress is reported, bad requests are one-line
errors."""

import numpy as np
import pandas as pd
import pytest
import rioxarray
import xarray as xr
import zarr

from model.errors import InputError, OutOfRangeError
from model.product import cube as cubes
from model.product.export import estimate, export_subset
from tests.served import POINT, build_cube

BBOX = [-104.0, 28.5, -102.5, 30.0]
BASE = {"products": ["lstm", "fused"], "start": "2015-01-01", "end": "2015-01-10", "bbox": BBOX}


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    path = tmp_path_factory.mktemp("export") / "extended.zarr"
    build_cube(path)
    return path


@pytest.fixture(scope="module")
def local(store):
    return cubes.open_cube(store).load()


def window(local, ds):
    """The part of the cube a bbox subset covers, by its row0/col0."""
    y0, x0 = ds.attrs["row0"] - local.attrs["row0"], ds.attrs["col0"] - local.attrs["col0"]
    return local.isel(
        time=slice(365, 375), y=slice(y0, y0 + ds.sizes["y"]), x=slice(x0, x0 + ds.sizes["x"])
    )


def test_geotiff_bands_are_days_with_the_cube_values(store, local, tmp_path):
    stages = []
    files = export_subset(
        str(store),
        {**BASE, "format": "geotiff"},
        tmp_path,
        progress=lambda percent, stage: stages.append((percent, stage)),
    )
    assert [f.name for f in files] == ["lstm.tif", "fused.tif"]
    assert stages[0] == (0.0, "reading") and stages[-1] == (100.0, "done")
    tif = rioxarray.open_rasterio(files[0], mask_and_scale=True)
    assert tif.rio.crs.to_epsg() == 6933 and tif.sizes["band"] == 10
    assert tif.attrs["long_name"][0] == "2015-01-01"
    ref = local["lstm"].sel(time=slice("2015-01-01", "2015-01-10"), x=tif.x, y=tif.y)
    inside = ~np.isnan(tif.values)
    assert inside.sum() > 100
    np.testing.assert_array_equal(tif.values[inside], ref.values[inside])


def test_zarr_and_netcdf_agree_and_fused_is_the_weighted_mean(store, local, tmp_path):
    (zipped,) = export_subset(str(store), {**BASE, "format": "zarr", "weight": 0.7}, tmp_path / "z")
    (netcdf,) = export_subset(
        str(store), {**BASE, "format": "netcdf", "weight": 0.7}, tmp_path / "n"
    )
    a = xr.open_zarr(zarr.storage.ZipStore(zipped, mode="r")).load()
    b = xr.open_dataset(netcdf, engine="h5netcdf").load()
    np.testing.assert_array_equal(a["lstm"].values, b["lstm"].values)
    part = window(local, a)
    keep = a["mask"].values
    np.testing.assert_array_equal(a["lstm"].values[:, keep], part["lstm"].values[:, keep])
    np.testing.assert_allclose(
        a["fused"].values[:, keep],
        (0.7 * part["lstm"] + 0.3 * part["noah"]).values[:, keep],
        atol=1e-6,
    )
    assert np.isnan(a["lstm"].values[:, ~keep]).all()


def test_points_csv_rows(store, local, tmp_path):
    request = {
        "products": ["smap", "noah"],
        "start": "2015-01-01",
        "end": "2015-01-10",
        "points": [list(POINT), [29.9, -104.0]],
        "format": "csv",
    }
    (path,) = export_subset(str(store), request, tmp_path)
    table = pd.read_csv(path)
    assert list(table.columns) == [
        "time",
        "point",
        "request_lat",
        "request_lon",
        "row",
        "col",
        "lat",
        "lon",
        "smap",
        "noah",
    ]
    assert len(table) == 20
    iy, ix = cubes.locate(local, *POINT)
    first = table[table["point"] == 0]
    np.testing.assert_allclose(first["noah"], local["noah"].values[365:375, iy, ix], atol=5e-5)
    assert first["smap"].isna().sum() == 7
    assert estimate(local, request)["values"] == 40


@pytest.mark.parametrize(
    ("change", "error", "needle"),
    [
        ({"products": ["nope"]}, InputError, "unknown product"),
        ({"end": "2014-12-01"}, InputError, "before start"),
        ({"bbox": [0, 0, 1, 1]}, OutOfRangeError, "no cell"),
        ({"start": "2030-01-01", "end": "2030-02-01"}, OutOfRangeError, "outside"),
        ({"format": "shapefile"}, InputError, "format"),
        ({"points": [[29, -103]]}, InputError, "exactly one of bbox or points"),
        ({"weight": 1.5}, InputError, "weight"),
    ],
)
def test_bad_requests_are_user_errors(store, tmp_path, change, error, needle):
    with pytest.raises(error, match=needle):
        export_subset(str(store), {**BASE, "format": "csv", **change}, tmp_path)

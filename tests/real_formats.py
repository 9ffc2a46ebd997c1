"""Small files in the exact structure of the real products, written by the tests: SMAP L3
granules (HDF5), NLDAS-2 hourly forcing and soil moisture (NetCDF), GeoTIFF rasters."""

from pathlib import Path

import h5py
import netCDF4
import numpy as np
import pandas as pd
import rasterio
from rasterio.transform import from_origin

from model import grid
from model.sources import nldas

BOX = (-100.0, 38.0, -99.0, 39.0)  # a handful of EASE2 cells in Kansas
J2000 = pd.Timestamp("2000-01-01T11:58:55.816")


# ------------------------------------------------------------------ SMAP L3 SPL3SMP(_E) writer


def write_granule(
    folder: Path,
    day: str,
    am: dict | None = None,
    pm: dict | None = None,
    crid: str = "R18290",
    shape=None,
    drop: str | None = None,
    on: grid.Grid = grid.M36,
) -> Path:
    """An SPL3SMP granule, or at 9 km (`on`) an SPL3SMP_E one; am/pm map (row, col) -> (soil
    moisture, retrieval_qual_flag) on that grid."""
    enhanced = on == grid.M09
    prefix = "SMAP_L3_SM_P_E" if enhanced else "SMAP_L3_SM_P"
    path = folder / f"{prefix}_{pd.Timestamp(day):%Y%m%d}_{crid}_001.h5"
    with h5py.File(path, "w") as h5:
        meta = h5.create_group("Metadata/DatasetIdentification")
        meta.attrs["shortName"] = np.bytes_("SPL3SMP_E" if enhanced else "SPL3SMP")
        meta.attrs["VersionID"] = np.bytes_("009")
        for group_name, suffix, cells, hour in (
            ("Soil_Moisture_Retrieval_Data_AM", "", am, 6),
            ("Soil_Moisture_Retrieval_Data_PM", "_pm", pm, 18),
        ):
            _write_pass(
                h5.create_group(group_name),
                suffix,
                cells or {},
                shape or (on.n_rows, on.n_cols),
                pd.Timestamp(day) + pd.Timedelta(hours=hour),
                drop,
                on,
            )
    return path


def _write_pass(group, suffix, cells, shape, when, drop, on) -> None:
    sm = np.full(shape, -9999.0, np.float32)
    flag = np.full(shape, 65534, np.uint16)
    rows = np.full(shape, 65534, np.uint16)
    cols = np.full(shape, 65534, np.uint16)
    seconds = np.full(shape, -9999.0, np.float64)
    for (r, c), (value, quality) in cells.items():
        sm[r, c], flag[r, c], rows[r, c], cols[r, c] = value, quality, r, c
        seconds[r, c] = (when - J2000).total_seconds()
    lat, lon = on.rowcol_to_latlon(*np.nonzero(sm != -9999.0))
    latitude = np.full(shape, -9999.0, np.float32)
    longitude = np.full(shape, -9999.0, np.float32)
    latitude[sm != -9999.0], longitude[sm != -9999.0] = lat, lon
    datasets = {
        "soil_moisture": (
            sm,
            {
                "units": "cm**3/cm**3",
                "valid_min": np.float32(0.02),
                "valid_max": np.float32(0.5),
                "_FillValue": np.float32(-9999.0),
                "long_name": "Representative soil moisture measurement",
            },
        ),
        "retrieval_qual_flag": (
            flag,
            {
                "_FillValue": np.uint16(65534),
                "valid_min": np.uint16(0),
                "valid_max": np.uint16(65533),
            },
        ),
        "EASE_row_index": (
            rows,
            {
                "_FillValue": np.uint16(65534),
                "valid_min": np.uint16(0),
                "valid_max": np.uint16(on.n_rows - 1),
            },
        ),
        "EASE_column_index": (
            cols,
            {
                "_FillValue": np.uint16(65534),
                "valid_min": np.uint16(0),
                "valid_max": np.uint16(on.n_cols - 1),
            },
        ),
        "tb_time_seconds": (seconds, {"units": "seconds", "_FillValue": -9999.0}),
        "latitude": (latitude, {"units": "degrees_north", "_FillValue": np.float32(-9999.0)}),
        "longitude": (longitude, {"units": "degrees_east", "_FillValue": np.float32(-9999.0)}),
    }
    for name, (values, attrs) in datasets.items():
        if drop == name:
            continue
        ds = group.create_dataset(
            f"{name}{suffix}",
            data=values,
            chunks={(406, 964): (58, 964), (1624, 3856): (203, 964)}.get(values.shape, True),
            compression="gzip",
            compression_opts=1,
        )
        for key, value in attrs.items():
            ds.attrs[key] = value


# ------------------------------------------------------------------ NLDAS-2 writers


def write_hourly(
    folder: Path,
    product: str,
    when,
    fields: dict,
    grib_names: bool = False,
    lat=nldas.LAT,
    lon=nldas.LON,
    units: dict | None = None,
) -> Path:
    """An NLDAS-2 hourly NetCDF file (NLDAS_<product>0125_H.AYYYYMMDD.HHMM.020.nc) with dims
    time/lat/lon and 9.999e20 fills; fields map variable name -> (lat, lon) array or scalar."""
    when = pd.Timestamp(when)
    suffix = "002.grb.SUB.nc4" if grib_names else "020.nc"
    path = folder / f"NLDAS_{product}0125_H.A{when:%Y%m%d}.{when:%H%M}.{suffix}"
    with netCDF4.Dataset(path, "w", format="NETCDF4") as nc:
        nc.createDimension("time", None)
        nc.createDimension("lat", len(lat))
        nc.createDimension("lon", len(lon))
        nc.createDimension("bnds", 2)
        time = nc.createVariable("time", "f8", ("time",))
        time.units = f"hours since {when:%Y-%m-%d %H}:00:00"
        time.calendar = "standard"
        time[:] = [0.0]
        bnds = nc.createVariable("time_bnds", "f8", ("time", "bnds"))
        bnds[:] = [[0.0, 1.0]]
        for name, values, axis in (("lat", lat, "Y"), ("lon", lon, "X")):
            var = nc.createVariable(name, "f4", (name,))
            var.units = "degrees_north" if name == "lat" else "degrees_east"
            var.standard_name = "latitude" if name == "lat" else "longitude"
            var.axis = axis
            var[:] = values
        for name, values in fields.items():
            var = nc.createVariable(
                name,
                "f4",
                ("time", "lat", "lon"),
                fill_value=np.float32(9.999e20),
                zlib=True,
                complevel=1,
            )
            var.missing_value = np.float32(9.999e20)
            var.units = (units or {}).get(
                name, "kg m-2" if name.lower().startswith(("soilm", "rainf", "apcp")) else "1"
            )
            var[0] = np.broadcast_to(np.asarray(values, np.float32), (len(lat), len(lon)))
        nc.missing_value = np.float32(9.999e20)
        nc.shortname = f"NLDAS_{product}0125_H"
        nc.title = f"NLDAS {product} Hourly 0.125 x 0.125 degree"
    return path


def forcing_fields(hour: int, grib_names: bool = False, **override) -> dict:
    """Uniform forcing of one hour: Tair = 270 + hour, Rainf = 0.1 * hour, the rest constant."""
    values = {
        "tair": 270.0 + hour,
        "precip": 0.1 * hour,
        "spfh": 0.008,
        "swdown": 200.0,
        "lwdown": 300.0,
        "wind_u": 2.0,
        "wind_v": -1.0,
        "psurf": 95000.0,
        **override,
    }
    column = 1 if grib_names else 0
    return {nldas.FORCING_NAMES[name][column]: value for name, value in values.items()}


def write_day_of_forcing(folder: Path, day: str, hours=range(24), **override) -> None:
    for hour in hours:
        write_hourly(
            folder,
            "FORA",
            pd.Timestamp(day) + pd.Timedelta(hours=hour),
            forcing_fields(hour, **override),
        )


def write_geotiff(
    path: Path,
    values: np.ndarray,
    west: float,
    north: float,
    step: float,
    dtype="float32",
    nodata=-9999.0,
) -> Path:
    with rasterio.open(
        path,
        "w",
        driver="GTiff",
        height=values.shape[0],
        width=values.shape[1],
        count=1,
        dtype=dtype,
        crs="EPSG:4326",
        nodata=nodata,
        transform=from_origin(west, north, step, step),
    ) as tif:
        tif.write(values.astype(dtype), 1)
    return path


def box_cells(on: grid.Grid = grid.M36):
    rows, cols = on.bbox_cells(*BOX)
    return list(zip(rows.tolist(), cols.tolist()))


# ------------------------------------------------------------------ SMAP


DAYS = pd.date_range("2015-04-01", periods=150)


BBOX = ",".join(str(v) for v in BOX)


def write_products(root: Path) -> Path:
    """150 days of one-hour forcing and Noah files, a SMAP granule every fifth day whose soil
    moisture follows the rain and the cell's sand fraction, and a sand GeoTIFF."""
    rows, cols = grid.bbox_cells(*BOX)
    _, lon = grid.rowcol_to_latlon(rows, cols)
    rng = np.random.default_rng(3)
    rain = rng.gamma(0.3, 2.0, len(DAYS))
    wetness = pd.Series(rain).ewm(alpha=0.2).mean().to_numpy()
    sand = 20.0 + 40.0 * (lon - lon.min()) / (np.ptp(lon) or 1.0)
    for folder in ("smap", "fora", "noah"):
        (root / folder).mkdir()
    for i, day in enumerate(DAYS):
        noon = day + pd.Timedelta(hours=12)
        write_hourly(
            root / "fora",
            "FORA",
            noon,
            forcing_fields(12, precip=rain[i], tair=285 + 8 * np.sin(i / 9)),
        )
        write_hourly(
            root / "noah",
            "NOAH",
            noon,
            {"SoilM_0_10cm": 15 + 10 * wetness[i], "SoilM_10_40cm": 70.0},
        )
        if i % 5 == 0:
            sm = 0.1 + 0.1 * wetness[i] + 0.002 * (60 - sand)
            write_granule(
                root / "smap",
                str(day.date()),
                am={(r, c): (v, 0) for r, c, v in zip(rows, cols, sm)},
            )
    west, north, step = -100.5, 39.5, 0.02
    lons = west + step * (np.arange(100) + 0.5)
    sand_map = np.interp(lons, [lon.min(), lon.max()], [20.0, 60.0])[None, :].repeat(100, 0)
    write_geotiff(root / "sand.tif", sand_map, west, north, step)
    return root

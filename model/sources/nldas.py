"""Readers for NLDAS-2 hourly files (GES DISC NetCDF) on the 0.125 degree grid, 464 x 224 cells,
lower-left cell centre (-124.9375, 25.0625).

File names: `NLDAS_<PRODUCT>0125_H.AYYYYMMDD.HHMM.<version>.<...>.nc4|nc`, PRODUCT = FORA (forcing),
NOAH, MOS or VIC (land-surface models). The hour in the name is the start of the hour the file
covers.
Forcing variables carry the NetCDF names (Tair, Qair, ...) or, in older subset files, the GRIB
names (TMP, SPFH, ...). Soil moisture layers are `SoilM_<top>_<bottom>cm` in kg m-2.
"""

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

from model.errors import InputError

N_LAT, N_LON = 224, 464
LAT = 25.0625 + 0.125 * np.arange(N_LAT)
LON = -124.9375 + 0.125 * np.arange(N_LON)
HOURLY_FILE = re.compile(r"^NLDAS_([A-Z]+)0125_H\.A(\d{8})\.(\d{4})(\..*)?\.nc4?$")

# canonical forcing name -> (NetCDF name, GRIB name)
FORCING_NAMES = {
    "precip": ("Rainf", "APCP"),
    "tair": ("Tair", "TMP"),
    "spfh": ("Qair", "SPFH"),
    "swdown": ("SWdown", "DSWRF"),
    "lwdown": ("LWdown", "DLWRF"),
    "wind_u": ("Wind_E", "UGRD"),
    "wind_v": ("Wind_N", "VGRD"),
    "psurf": ("PSurf", "PRES"),
}
SOIL_LAYER = re.compile(r"^soilm_(\d+)[_-](\d+)cm$", re.IGNORECASE)
SURFACE_LAYER = (0, 10)
WATER_DENSITY = 1000.0


@dataclass(frozen=True)
class HourlyFile:
    path: Path
    product: str
    time: pd.Timestamp

    @property
    def day(self) -> pd.Timestamp:
        return self.time.normalize()


def find_hourly(
    folder: Path, products: tuple[str, ...]
) -> tuple[list[HourlyFile], list[tuple[Path, str]]]:
    """The hourly files of the given products in a folder (recursively), sorted by time, and the
    files passed over with the reason."""
    if not folder.is_dir():
        raise InputError(f"NLDAS folder not found: {folder}")
    found, passed_over = {}, []
    for path in sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix in (".nc", ".nc4")):
        match = HOURLY_FILE.match(path.name)
        if match is None:
            passed_over.append((path, "name is not NLDAS_<PRODUCT>0125_H.AYYYYMMDD.HHMM.*.nc4"))
            continue
        product = match.group(1)
        if product not in products:
            passed_over.append((path, f"product {product}, not {'/'.join(products)}"))
            continue
        try:
            time = pd.Timestamp(f"{match.group(2)}T{match.group(3)}")
        except ValueError:
            passed_over.append((path, "the date or hour in the name is not a valid time"))
            continue
        if time in found:
            passed_over.append((path, f"same hour as {found[time].path.name}"))
            continue
        found[time] = HourlyFile(path, product, time)
    return [found[t] for t in sorted(found)], passed_over


def read_forcing(path: Path) -> dict[str, np.ndarray]:
    """The eight forcing fields (lat, lon) of one hourly file, keyed by canonical name."""
    with _open(path) as ds:
        fields = {}
        for name, candidates in FORCING_NAMES.items():
            present = next((c for c in candidates if c in ds.variables), None)
            if present is None:
                raise InputError(f"lacks forcing variable {' / '.join(candidates)}")
            fields[name] = _field(ds, present)
    return fields


def read_soil_moisture(path: Path) -> dict[tuple[int, int], np.ndarray]:
    """Volumetric soil moisture (m3/m3) of each layer in one hourly LSM file, keyed by
    (top, bottom) depth in cm. The 0-10 cm layer is required."""
    with _open(path) as ds:
        layers = {}
        for name in ds.variables:
            match = SOIL_LAYER.match(str(name))
            if match is None:
                continue
            top, bottom = int(match.group(1)), int(match.group(2))
            layers[(top, bottom)] = _volumetric(
                _field(ds, name), ds[name].attrs.get("units", ""), bottom - top
            )
    if SURFACE_LAYER not in layers:
        raise InputError("lacks variable SoilM_0_10cm")
    return layers


def _volumetric(values: np.ndarray, units: str, thickness_cm: int) -> np.ndarray:
    """kg m-2 of water in a layer -> m3 m-3, by the layer's thickness (0-10 cm: divide by 100)."""
    if "kg" not in units and units:
        return values
    return values / (WATER_DENSITY * thickness_cm / 100.0)


def _open(path: Path) -> xr.Dataset:
    try:
        ds = xr.open_dataset(path, decode_times=False, cache=False)
    except (OSError, ValueError, RuntimeError) as exc:
        raise InputError(f"not a readable NetCDF file (truncated or corrupt): {exc}") from exc
    try:
        _check_grid(ds)
    except InputError:
        ds.close()
        raise
    return ds


def _check_grid(ds: xr.Dataset) -> None:
    if "lat" not in ds.variables or "lon" not in ds.variables:
        raise InputError("no lat/lon coordinates")
    lat, lon = ds["lat"].values, ds["lon"].values
    if (
        lat.shape != (N_LAT,)
        or lon.shape != (N_LON,)
        or not (np.allclose(lat, LAT, atol=1e-4) and np.allclose(lon, LON, atol=1e-4))
    ):
        raise InputError(
            f"not on the NLDAS 0.125 degree grid ({N_LON} x {N_LAT} cells from "
            f"{LON[0]}, {LAT[0]}): lat {lat.min():.4f}..{lat.max():.4f} "
            f"({lat.size}), lon {lon.min():.4f}..{lon.max():.4f} ({lon.size})"
        )


def _field(ds: xr.Dataset, name) -> np.ndarray:
    """One (lat, lon) float32 field, NaN where filled; a leading time axis of 1 is dropped."""
    var = ds[name]
    if var.dims[-2:] != ("lat", "lon") or var.size != N_LAT * N_LON:
        raise InputError(
            f"variable {name} has dims {var.dims} {var.shape}, not (time, lat, lon) with one hour"
        )
    try:
        values = var.values.reshape(N_LAT, N_LON).astype(np.float32)
    except (OSError, RuntimeError, ValueError) as exc:
        raise InputError(f"cannot read {name} (truncated or corrupt): {exc}") from exc
    values[np.abs(values) > 1e19] = np.nan
    return values


class DailyMean:
    """Running per-pixel mean of hourly fields for one day; hours missing at a pixel are left out
    of that pixel's mean. Precipitation (hourly accumulations, kg m-2) thus becomes the daily
    mean rate in kg m-2 h-1, the unit of the hydroDL database."""

    def __init__(self, names: list):
        self.names = list(names)
        self.total = np.zeros((len(self.names), N_LAT, N_LON), np.float64)
        self.count = np.zeros((len(self.names), N_LAT, N_LON), np.int32)
        self.hours = 0

    def add(self, fields: dict) -> None:
        missing = [n for n in self.names if n not in fields]
        if missing:
            raise InputError(f"lacks {missing} that earlier hours of the day had")
        stack = np.stack([fields[n] for n in self.names])
        valid = np.isfinite(stack)
        self.total += np.where(valid, stack, 0.0)
        self.count += valid
        self.hours += 1

    def mean(self) -> np.ndarray:
        """(variable, lat, lon) daily means, NaN where no hour had a value."""
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(self.count > 0, self.total / self.count, np.nan)

"""Reader for the hydroDL CSV database (the format the paper's authors publish CONUS data in).

DIR/crd.csv            lat,lon per pixel (cell centres), no header
DIR/const/NAME.csv     one value per pixel
DIR/YYYY/timeStr.csv   the days of the year folder, 1 April .. 31 March
DIR/YYYY/VAR.csv       rows = pixels, columns = days, -9999 = missing
"""

from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

from model import grid
from model.dataset import make_input_dataset
from model.errors import InputError

MISSING = -9999.0
FORCING_NAMES = {
    "APCP_FORA": "precip",
    "TMP_2_FORA": "tair",
    "SPFH_2_FORA": "spfh",
    "DSWRF_FORA": "swdown",
    "DLWRF_FORA": "lwdown",
    "UGRD_10_FORA": "wind_u",
    "VGRD_10_FORA": "wind_v",
    "PRES_FORA": "psurf",
}
TARGET_NAME = "SMAP_AM"
NOAH_NAME = "SOILM_0-10_NOAH"


def read_hydrodl(root: str | Path) -> xr.Dataset:
    """Read a hydroDL database folder into an input dataset."""
    root = Path(root)
    if not root.is_dir():
        raise InputError(f"hydroDL folder not found: {root}")
    lat, lon = _read_crd(root / "crd.csv")
    n_pixel = len(lat)
    rows, cols = grid.latlon_to_rowcol(lat, lon)
    if (rows < 0).any():
        raise InputError(f"crd.csv has {int((rows < 0).sum())} points outside the EASE2 grid")
    years = sorted(p for p in root.iterdir() if p.is_dir() and p.name.isdigit())
    if not years:
        raise InputError(f"no year folders (e.g. 2015/) in {root}")
    forcing_names = _common_forcing(years)
    days, target, noah = [], [], []
    forcing = {FORCING_NAMES[n]: [] for n in forcing_names}
    for year in years:
        time = _read_days(year)
        days.append(time)
        for fname in forcing_names:
            forcing[FORCING_NAMES[fname]].append(
                _read_matrix(year / f"{fname}.csv", n_pixel, len(time))
            )
        target.append(_read_optional(year / f"{TARGET_NAME}.csv", n_pixel, len(time)))
        noah.append(_read_optional(year / f"{NOAH_NAME}.csv", n_pixel, len(time), scale=0.01))
    time = days[0].append(days[1:])
    if not time.is_monotonic_increasing or time.has_duplicates:
        raise InputError(f"year folders in {root} overlap or are out of order")
    lsm = {"noah": np.concatenate(noah)} if any(np.isfinite(n).any() for n in noah) else None
    return make_input_dataset(
        time,
        rows,
        cols,
        forcing={name: np.concatenate(parts) for name, parts in forcing.items()},
        static=_read_const(root / "const", n_pixel),
        target=np.concatenate(target),
        lsm=lsm,
        attrs={"source": f"hydroDL CSV database {root.resolve()}"},
    )


def _read_crd(path: Path):
    if not path.is_file():
        raise InputError(f"missing {path}: the hydroDL database needs lat,lon per pixel")
    crd = _read_csv(path)
    if crd.ndim != 2 or crd.shape[1] != 2:
        raise InputError(f"{path} must have two columns (lat,lon), found shape {crd.shape}")
    return crd[:, 0], crd[:, 1]


def _common_forcing(years: list[Path]) -> list[str]:
    names = [n for n in FORCING_NAMES if all((y / f"{n}.csv").is_file() for y in years)]
    if not names:
        raise InputError("no forcing variable (e.g. APCP_FORA.csv) is present in every year folder")
    return names


def _read_days(year: Path) -> pd.DatetimeIndex:
    path = year / "timeStr.csv"
    if not path.is_file():
        raise InputError(f"missing {path}: each year folder lists its days")
    return pd.DatetimeIndex(pd.to_datetime(path.read_text().split(), format="%Y-%m-%d"))


def _read_csv(path: Path) -> np.ndarray:
    try:
        values = pd.read_csv(path, header=None, dtype=np.float64).to_numpy(copy=True)
    except (ValueError, pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise InputError(f"cannot parse {path}: {str(exc).splitlines()[0]}") from exc
    return values


def _read_matrix(path: Path, n_pixel: int, n_day: int, scale: float = 1.0) -> np.ndarray:
    """A (day, pixel) float32 array from a pixels x days CSV, NaN where -9999."""
    values = _read_csv(path)
    if values.shape != (n_pixel, n_day):
        raise InputError(
            f"{path} has {values.shape[0]} rows x {values.shape[1]} columns, "
            f"expected {n_pixel} pixels x {n_day} days"
        )
    values[values == MISSING] = np.nan
    return (values.T * scale).astype(np.float32)


def _read_optional(path: Path, n_pixel: int, n_day: int, scale: float = 1.0) -> np.ndarray:
    if path.is_file():
        return _read_matrix(path, n_pixel, n_day, scale)
    return np.full((n_day, n_pixel), np.nan, np.float32)


def _read_const(folder: Path, n_pixel: int) -> dict[str, np.ndarray]:
    if not folder.is_dir():
        raise InputError(f"missing {folder}: static attributes, one CSV per attribute")
    static = {}
    for path in sorted(folder.glob("*.csv")):
        values = _read_csv(path).ravel().copy()
        if values.size != n_pixel:
            raise InputError(f"{path} has {values.size} values, expected {n_pixel} pixels")
        values[values == MISSING] = np.nan
        static[path.stem.lower()] = values.astype(np.float32)
    if not static:
        raise InputError(f"no attribute CSVs in {folder}")
    return static

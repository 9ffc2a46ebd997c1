"""Reader for SMAP L3 radiometer daily granules: SPL3SMP (`SMAP_L3_SM_P_YYYYMMDD_R*_*.h5`) on the
EASE2 36 km global grid (406 x 964 arrays) and the enhanced SPL3SMP_E
(`SMAP_L3_SM_P_E_YYYYMMDD_R*_*.h5`) on the 9 km one (1624 x 3856), alike in every other respect.

Each granule holds two arrays on its grid, one per overpass:
    Soil_Moisture_Retrieval_Data_AM/soil_moisture, retrieval_qual_flag, EASE_row_index, ...
    Soil_Moisture_Retrieval_Data_PM/soil_moisture_pm, retrieval_qual_flag_pm, ...  (names end _pm)
soil_moisture is float32 m3/m3 with _FillValue -9999 and valid range 0.02-0.5. Bit 0 of
retrieval_qual_flag clear means "retrieval recommended"; a flag of exactly 8 marks a retrieval the
hydroDL authors also kept, so the user may allow it.
"""

import re
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path

import h5py
import numpy as np
import pandas as pd

from model import grid
from model.errors import InputError

PRODUCTS = {grid.M36: "SMAP_L3_SM_P", grid.M09: "SMAP_L3_SM_P_E"}  # file name prefix per grid
GROUPS = {
    "am": ("Soil_Moisture_Retrieval_Data_AM", ""),
    "pm": ("Soil_Moisture_Retrieval_Data_PM", "_pm"),
}
FILL = -9999.0
VALID_RANGE = (0.02, 0.5)


class Overpass(str, Enum):
    """Which overpass to read: 6 am descending, 6 pm ascending, or the mean of both."""

    am = "am"
    pm = "pm"
    both = "both"

    @property
    def groups(self) -> list[str]:
        return ["am", "pm"] if self is Overpass.both else [self.value]


class Quality(str, Enum):
    """Which retrievals to keep, by retrieval_qual_flag."""

    recommended = "recommended"
    relaxed = "relaxed"
    any = "any"

    @property
    def flags(self) -> frozenset[int] | None:
        """Accepted flag values; None keeps every retrieval inside the valid range."""
        return {Quality.recommended: frozenset({0}), Quality.relaxed: frozenset({0, 8})}.get(self)


@dataclass(frozen=True)
class Granule:
    path: Path
    day: pd.Timestamp
    version: tuple[int, int]


@dataclass
class GranuleCounts:
    """Retrievals found in one granule and why some were dropped."""

    kept: int = 0
    rejected_flag: int = 0
    out_of_range: int = 0
    passes: dict = field(default_factory=dict)


def granule_prefix(on: grid.Grid) -> str:
    """The file name prefix of the SMAP L3 product posted on a grid."""
    if on not in PRODUCTS:
        raise InputError(
            f"no SMAP L3 product is posted on the {on.km} km grid; "
            f"known: {', '.join(g.name for g in PRODUCTS)}"
        )
    return PRODUCTS[on]


def find_granules(
    folder: Path, on: grid.Grid = grid.DEFAULT
) -> tuple[list[Granule], list[tuple[Path, str]]]:
    """The granules of a folder of the product on grid `on`, one per day (the highest
    CRID/version wins), sorted by day, and the files passed over with the reason."""
    if not folder.is_dir():
        raise InputError(f"SMAP granule folder not found: {folder}")
    prefix = granule_prefix(on)
    pattern = re.compile(rf"^{prefix}_(\d{{8}})_R(\d+)_(\d+)\.h5$")
    by_day: dict[pd.Timestamp, Granule] = {}
    passed_over = []
    for path in sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix == ".h5"):
        match = pattern.match(path.name)
        if match is None:
            passed_over.append((path, f"name is not {prefix}_YYYYMMDD_R*_*.h5"))
            continue
        try:
            day = pd.Timestamp(match.group(1))
        except ValueError:
            passed_over.append((path, "the date in the name is not a valid day"))
            continue
        granule = Granule(path, day, (int(match.group(2)), int(match.group(3))))
        older = by_day.get(day)
        if older is not None:
            old, new = sorted([older, granule], key=lambda g: g.version)
            passed_over.append((old.path, f"superseded by {new.path.name}"))
            granule = new
        by_day[day] = granule
    return [by_day[d] for d in sorted(by_day)], passed_over


def read_granule(
    path: Path, overpass: Overpass, quality: Quality, on: grid.Grid = grid.DEFAULT
) -> tuple[np.ndarray, GranuleCounts]:
    """The float32 soil moisture of one granule on grid `on` ((406, 964) at 36 km), NaN where
    missing or filtered."""
    counts = GranuleCounts()
    try:
        with h5py.File(path, "r") as h5:
            grids = [_read_pass(h5, name, quality, counts, on) for name in overpass.groups]
    except OSError as exc:
        raise InputError(f"not a readable HDF5 file (truncated or corrupt): {exc}") from exc
    if len(grids) == 1:
        values = grids[0]
    else:
        with np.errstate(invalid="ignore"):
            values = np.nanmean(np.stack(grids), axis=0)
    counts.kept = int(np.isfinite(values).sum())
    return values.astype(np.float32), counts


def _read_pass(
    h5: h5py.File, name: str, quality: Quality, counts: GranuleCounts, on: grid.Grid
) -> np.ndarray:
    group_name, suffix = GROUPS[name]
    if group_name not in h5:
        raise InputError(f"no group {group_name}")
    group = h5[group_name]
    sm_ds = _dataset(group, f"soil_moisture{suffix}")
    sm = sm_ds[()].astype(np.float32)
    if sm.shape != (on.n_rows, on.n_cols):
        raise InputError(
            f"{group_name}/soil_moisture{suffix} is {sm.shape}, not the {on.km} km global "
            f"grid ({on.n_rows}, {on.n_cols})"
        )
    flag = _dataset(group, f"retrieval_qual_flag{suffix}")[()]
    if flag.shape != sm.shape:
        raise InputError(
            f"{group_name}/retrieval_qual_flag{suffix} is {flag.shape}, not {sm.shape}"
        )
    retrieved = np.isfinite(sm) & (sm != _attr(sm_ds, "_FillValue", FILL))
    _check_indices(group, suffix, retrieved, on)
    low, high = _attr(sm_ds, "valid_min", VALID_RANGE[0]), _attr(sm_ds, "valid_max", VALID_RANGE[1])
    in_range = retrieved & (sm >= low) & (sm <= high)
    keep = in_range if quality.flags is None else in_range & np.isin(flag, list(quality.flags))
    counts.out_of_range += int((retrieved & ~in_range).sum())
    counts.rejected_flag += int((in_range & ~keep).sum())
    counts.passes[name] = int(keep.sum())
    return np.where(keep, sm, np.nan)


def _dataset(group: h5py.Group, name: str) -> h5py.Dataset:
    if name not in group:
        raise InputError(f"{group.name} lacks dataset {name}")
    return group[name]


def _attr(dataset: h5py.Dataset, name: str, default: float) -> float:
    value = dataset.attrs.get(name)
    return default if value is None else float(np.ravel(value)[0])


def _check_indices(group: h5py.Group, suffix: str, retrieved: np.ndarray, on: grid.Grid) -> None:
    """The EASE row/column indices of retrieved cells must match their array position."""
    rows, cols = np.nonzero(retrieved)
    for name, expected in ((f"EASE_row_index{suffix}", rows), (f"EASE_column_index{suffix}", cols)):
        if name not in group:
            continue
        index = group[name][()]
        if index.shape != retrieved.shape or (index[rows, cols] != expected).any():
            raise InputError(
                f"{group.name}/{name} disagrees with the array layout: "
                f"not the EASE2 {on.km} km global grid"
            )

"""The cubes a server serves, each loaded once into memory with what every request reuses."""

from dataclasses import dataclass, field
from pathlib import PurePosixPath

import numpy as np
import xarray as xr

from model import grid
from model.errors import InputError, OutOfRangeError
from model.product import cube as cubes
from model.product import export
from service.problems import OutsideCube


@dataclass(eq=False)
class ServedCube:
    """One product cube, decoded-on-demand from memory, plus its per-cell fusion weights."""

    name: str
    path: str  # a local path or an fsspec URL
    memory: cubes.MemoryCube
    weights: np.ndarray
    dates_json: str = field(init=False)
    dates_csv: np.ndarray = field(init=False)
    day_numbers: dict[str, int] = field(init=False)
    day_values: np.ndarray = field(init=False)
    extent: dict = field(init=False)
    dates: list[str] = field(init=False)
    products: list[str] = field(init=False)
    smap_period: dict | None = field(init=False)

    def __post_init__(self):
        self.dates = [str(d.date()) for d in self.memory.times]
        self.dates_json = ",".join(f'"{d}"' for d in self.dates)
        self.dates_csv = np.array([f"{d}," for d in self.dates], dtype=object)
        self.day_numbers = {d: t for t, d in enumerate(self.dates)}
        self.day_values = self.memory.times.values.astype("datetime64[D]")
        self.extent = cubes.extent(self.dataset)
        self.products = export.available_products(self.dataset)
        self.smap_period = smap_period(self.memory)

    @property
    def dataset(self) -> xr.Dataset:
        return self.memory.dataset

    def check_products(self, names: list[str]) -> list[str]:
        if not names:
            raise InputError("products: give at least one product")
        unknown = [p for p in names if p not in self.products]
        if unknown:
            raise InputError(
                f"products: {unknown} not available in cube {self.name!r}; "
                f"available: {', '.join(self.products)}"
            )
        return names

    def locate(self, lat: float, lon: float) -> tuple[int, int]:
        try:
            return cubes.locate(self.dataset, lat, lon)
        except OutOfRangeError as exc:
            raise OutsideCube(str(exc), self.extent) from None

    def period(self, start, end) -> slice:
        """Index slice of the days start..end, clipped to the cube (InputError if inverted,
        OutOfRangeError if disjoint); a search in a day array, as model.product.cube.time_index
        does, without building an index per request."""
        if start is not None and end is not None and end < start:
            raise InputError(f"end: {end} is before start {start}")
        first = (
            0 if start is None else int(np.searchsorted(self.day_values, np.datetime64(start, "D")))
        )
        stop = (
            len(self.dates)
            if end is None
            else int(np.searchsorted(self.day_values, np.datetime64(end, "D"), side="right"))
        )
        if first >= stop:
            raise OutsideCube(
                f"period {start or '...'}..{end or '...'} is outside the cube "
                f"({self.dates[0]}..{self.dates[-1]})",
                self.extent,
            )
        return slice(first, stop)

    def day_index(self, day) -> int:
        if day is None:
            return len(self.dates) - 1
        t = self.day_numbers.get(str(day))
        if t is None:
            raise OutsideCube(
                f"date {day} is outside the cube ({self.dates[0]}..{self.dates[-1]})", self.extent
            )
        return t

    def cell(self, iy: int, ix: int) -> dict:
        row, col = iy + self.memory.row0, ix + self.memory.col0
        lat, lon = grid.rowcol_to_latlon(row, col)
        return {
            "row": row,
            "col": col,
            "lat": round(float(lat), 5),
            "lon": round(float(lon), 5),
            "iy": iy,
            "ix": ix,
            "weight": round(float(self.weights[iy, ix]), 4),
        }

    def describe(self) -> dict:
        ds = self.dataset
        return {
            "name": self.name,
            "extent": self.extent,
            "grid": {
                "name": "EASE-Grid 2.0 global 36 km",
                "epsg": grid.EPSG,
                "cell_size_m": grid.CELL_SIZE,
                "row0": self.memory.row0,
                "col0": self.memory.col0,
                "rows": ds.sizes["y"],
                "cols": ds.sizes["x"],
                "cells": int(self.memory.mask.sum()),
            },
            "days": ds.sizes["time"],
            "products": {
                p: {"units": cubes.UNITS, "description": describe_product(p)} for p in self.products
            },
            "smap_period": self.smap_period,
        }


def describe_product(name: str) -> str:
    if name == export.FUSED:
        return "w * lstm + (1 - w) * noah, w = 0.5 or the per-cell estimate; `weight` overrides"
    return cubes.DESCRIPTIONS[name]


def smap_period(memory: cubes.MemoryCube) -> dict | None:
    """First and last day with any SMAP observation (the web map shades it)."""
    if "smap" not in memory.raw:
        return None
    any_obs = (memory.raw["smap"] != cubes.FILL).any(axis=(0, 1))
    days = np.nonzero(any_obs)[0]
    if days.size == 0:
        return None
    return {"start": str(memory.times[days[0]].date()), "end": str(memory.times[days[-1]].date())}


def cube_name(path: str) -> str:
    """A cube's name in URLs: its store's last path component, less .zarr."""
    return PurePosixPath(str(path).rstrip("/")).name.removesuffix(".zarr")


class Catalog:
    """Served cubes by name; the first is the default."""

    def __init__(self, paths: list[str]):
        if not paths:
            raise InputError("no cube to serve: give --cube PATH (or set SMAPX_CUBES)")
        self.cubes: dict[str, ServedCube] = {}
        for path in paths:
            cubes.verify(path)
            memory = cubes.MemoryCube(path)
            name = cube_name(path)
            if name in self.cubes:
                raise InputError(f"two cubes are named {name!r}; rename one of {paths}")
            self.cubes[name] = ServedCube(
                name, path, memory, export.weight_map(memory.dataset, None)
            )

    @property
    def default(self) -> str:
        return next(iter(self.cubes))

    def get(self, name: str | None) -> ServedCube:
        name = name or self.default
        if name not in self.cubes:
            raise OutOfRangeError(f"cube {name!r} is not served; served: {', '.join(self.cubes)}")
        return self.cubes[name]

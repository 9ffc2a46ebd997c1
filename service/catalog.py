"""The cubes a server serves, each loaded into memory with what every request reuses.

A served cube is immutable: when its store publishes a new generation (a grown or rewritten
cube), `Catalog.refresh` loads the new one beside it and swaps the reference. A request takes
its cube once, so it sees one generation from start to end, and the old copy is freed when its
last request is done.
"""

import logging
from dataclasses import dataclass, field
from email.utils import format_datetime
from pathlib import PurePosixPath

import numpy as np
import pandas as pd
import xarray as xr

from model import grid
from model.errors import InputError, OutOfRangeError
from model.product import cube as cubes
from model.product import export
from service import products as derived

logger = logging.getLogger(__name__)


@dataclass(eq=False)
class ServedCube:
    """One product cube, decoded-on-demand from memory, plus its per-cell fusion weights."""

    name: str
    path: str  # a local path or an fsspec URL
    memory: cubes.MemoryCube
    weights: np.ndarray
    generation: dict = field(default_factory=dict)  # model.product.cube.generation's record
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
            raise OutOfRangeError(str(exc), self.extent) from None

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
            raise OutOfRangeError(
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
            raise OutOfRangeError(
                f"date {day} is outside the cube ({self.dates[0]}..{self.dates[-1]})", self.extent
            )
        return t

    def cell(self, iy: int, ix: int) -> dict:
        row, col = iy + self.memory.row0, ix + self.memory.col0
        lat, lon = self.memory.grid.rowcol_to_latlon(row, col)
        return {
            "row": row,
            "col": col,
            "lat": round(float(lat), 5),
            "lon": round(float(lon), 5),
            "iy": iy,
            "ix": ix,
            "weight": round(float(self.weights[iy, ix]), 4),
        }

    @property
    def last_modified(self) -> str | None:
        """The HTTP date the served generation was published, if the cube records it."""
        published = self.generation.get("published")
        return (
            format_datetime(pd.Timestamp(published).to_pydatetime(), usegmt=True)
            if published
            else None
        )

    def describe(self) -> dict:
        ds = self.dataset
        return {
            "name": self.name,
            "generation": self.generation.get("generation", 0),
            "extent": self.extent,
            "grid": {
                "name": self.memory.grid.title,
                "epsg": grid.EPSG,
                "cell_size_m": self.memory.grid.cell_size,
                "row0": self.memory.row0,
                "col0": self.memory.col0,
                "rows": ds.sizes["y"],
                "cols": ds.sizes["x"],
                "cells": int(self.memory.mask.sum()),
            },
            "days": ds.sizes["time"],
            "products": {
                p: {"units": derived.units(p), "description": describe_product(p)}
                for p in self.products
            },
            "smap_period": self.smap_period,
        }


def describe_product(name: str) -> str:
    if name == export.FUSED:
        return "w * lstm + (1 - w) * noah, w = 0.5 or the per-cell estimate; `weight` overrides"
    if derived.is_derived(name):
        return derived.describe(name)
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


def load_cube(name: str, path: str) -> ServedCube:
    """A cube's published generation, read into memory. The generation is read first: a cube
    published again meanwhile is loaded at its newer state and loaded once more later, never
    served under a newer number than its data."""
    generation = cubes.generation(path)
    cubes.verify(path)
    memory = cubes.MemoryCube(path)
    return ServedCube(name, path, memory, export.weight_map(memory.dataset, None), generation)


class Catalog:
    """Served cubes by name; the first is the default."""

    def __init__(self, paths: list[str]):
        if not paths:
            raise InputError("no cube to serve: give --cube PATH (or set SMAPX_CUBES)")
        self.cubes: dict[str, ServedCube] = {}
        for path in paths:
            name = cube_name(path)
            if name in self.cubes:
                raise InputError(f"two cubes are named {name!r}; rename one of {paths}")
            self.cubes[name] = load_cube(name, path)

    def refresh(self) -> list[str]:
        """Swap in every cube whose store published a new generation; the names swapped. A cube
        that fails to load (being rewritten, say) keeps being served as it was, and is tried
        again at the next refresh."""
        swapped = []
        for name, served in list(self.cubes.items()):
            if cubes.generation(served.path)["generation"] == served.generation.get("generation"):
                continue
            try:
                fresh = load_cube(name, served.path)
            except Exception as exc:
                logger.warning("cube %s: keeping generation %s: %s", name, served.generation, exc)
                continue
            self.cubes[name] = fresh
            swapped.append(name)
            logger.info("cube %s: now generation %s", name, fresh.generation)
        return swapped

    @property
    def default(self) -> str:
        return next(iter(self.cubes))

    def get(self, name: str | None) -> ServedCube:
        name = name or self.default
        if name not in self.cubes:
            raise OutOfRangeError(f"cube: {name!r} is not served; served: {', '.join(self.cubes)}")
        return self.cubes[name]

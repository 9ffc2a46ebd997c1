"""The cubes a server serves: each one's metadata, mask and coordinates, and a reader of its
products (model.product.cube.LazyCube, through the process's bounded chunk cache; or the whole
cube in memory with SMAPX_SERVE_IN_MEMORY).

A served cube is immutable: when its store publishes a new generation (a grown or rewritten
cube), `Catalog.refresh` opens the new one beside it, reading its metadata only, and swaps the
reference. A request takes its cube once, so it sees one generation from start to end; the
old generation's chunks age out of the cache under the same bound.
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
from model.product import export, kinds, ranking
from model.settings import get_settings

logger = logging.getLogger(__name__)


@dataclass(eq=False)
class ServedCube:
    """One product cube, read on demand, plus its per-cell fusion weights."""

    name: str
    path: str  # a local path or an fsspec URL
    reader: cubes.LazyCube | cubes.MemoryCube
    weights: np.ndarray
    generation: dict = field(default_factory=dict)  # model.product.cube.generation's record
    dates_json: str = field(init=False)
    dates_csv: np.ndarray = field(init=False)
    day_numbers: dict[str, int] = field(init=False)
    day_values: np.ndarray = field(init=False)
    day_of_year: np.ndarray = field(init=False)  # of each day, as the climatology counts them
    extent: dict = field(init=False)
    dates: list[str] = field(init=False)
    products: list[str] = field(init=False)
    smap_period: dict | None = field(init=False)
    damage: str | None = field(default=None, init=False)  # what a read found broken, if any

    def __post_init__(self):
        self.day_values = self.reader.times.values.astype("datetime64[D]")
        self.dates = self.day_values.astype(str).tolist()
        self.dates_json = ",".join(f'"{d}"' for d in self.dates)
        self.dates_csv = np.array([f"{d}," for d in self.dates], dtype=object)
        self.day_numbers = {d: t for t, d in enumerate(self.dates)}
        self.day_of_year = ranking.day_of_year(self.reader.times)
        self.extent = cubes.extent(self.dataset)
        self.products = export.available_products(self.dataset)
        self.smap_period = smap_period(self.reader, self.generation)

    @property
    def dataset(self) -> xr.Dataset:
        return self.reader.dataset

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
        row, col = iy + self.reader.row0, ix + self.reader.col0
        lat, lon = self.reader.grid.rowcol_to_latlon(row, col)
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
                "name": self.reader.grid.title,
                "epsg": grid.EPSG,
                "cell_size_m": self.reader.grid.cell_size,
                "row0": self.reader.row0,
                "col0": self.reader.col0,
                "rows": ds.sizes["y"],
                "cols": ds.sizes["x"],
                "cells": int(self.reader.mask.sum()),
            },
            "days": ds.sizes["time"],
            "products": {p: kinds.describe(p) for p in self.products},
            "smap_period": self.smap_period,
        }


def smap_period(reader: cubes.LazyCube | cubes.MemoryCube, generation: dict) -> dict | None:
    """First and last day with any SMAP observation (the web map shades it), as the cube's
    generation records it; scanned from the cube's chunks only for a cube published before
    generations recorded it (CONUS at 9 km: ~1,800 chunks decoded, tens of seconds)."""
    if "smap" not in cubes.products(reader.dataset):
        return None
    if "observed" in generation:
        return generation["observed"].get("smap")
    days = reader.observed_days("smap")
    if days is None:
        return None
    return {"start": str(reader.times[days[0]].date()), "end": str(reader.times[days[1]].date())}


def cube_name(path: str) -> str:
    """A cube's name in URLs: its store's last path component, less .zarr."""
    return PurePosixPath(str(path).rstrip("/")).name.removesuffix(".zarr")


def load_cube(name: str, path: str) -> ServedCube:
    """A cube's published generation, opened for reading. The generation is read first: a cube
    published again meanwhile is opened at its newer state and once more later, never served
    under a newer number than its data."""
    generation = cubes.generation(path)
    cubes.verify(path)
    reader = cubes.MemoryCube(path) if get_settings().serve_in_memory else cubes.LazyCube(path)
    return ServedCube(name, path, reader, export.weight_map(reader.dataset, None), generation)


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

    def record_damage(self, store: str, message: str) -> None:
        """Remember that a read of `store` found it damaged: the health check fails until a
        new generation opens whole."""
        for served in self.cubes.values():
            if served.path == store:
                served.damage = message
                logger.error("cube %s is damaged: %s", served.name, message)

    def damage(self) -> dict[str, str]:
        """What is damaged, by cube name."""
        return {name: c.damage for name, c in self.cubes.items() if c.damage}

    @property
    def default(self) -> str:
        return next(iter(self.cubes))

    def get(self, name: str | None) -> ServedCube:
        name = name or self.default
        if name not in self.cubes:
            raise OutOfRangeError(f"cube: {name!r} is not served; served: {', '.join(self.cubes)}")
        return self.cubes[name]

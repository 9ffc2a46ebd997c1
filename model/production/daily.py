"""The daily chain of a living product: ingest the files that arrived in the configured folders,
then grow every cube (projection and nowcast) to the last day with forcing.

It is safe to run again at any time: the files already ingested are listed in a state file
beside the input dataset (`<input>.daily.json`, by name, size and modification time), so a run
with nothing new ingests nothing and finds every cube already at its end (no block computed);
after missed days, one run ingests all their files and grows the cubes by all of them. One
run at a time per input dataset (a lock beside it)."""

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from filelock import FileLock, Timeout

from model.dataset import open_input
from model.errors import InputError
from model.production.extend import extend
from model.sources import HOURLY_SOURCES, ingest, nldas, smap
from model.training import checkpoint

SOURCES = ("smap", "forcing", "noah", "lsm2")


@dataclass
class DailyPlan:
    """What the daily chain keeps up to date."""

    input: Path
    start: str  # first day of every cube
    folders: dict[str, Path] = field(default_factory=dict)  # source (SOURCES) -> folder
    cubes: list[tuple[Path, str]] = field(default_factory=list)  # (checkpoint, cube store)
    min_hours: int = 18  # readable hours an NLDAS day needs to be written

    def __post_init__(self):
        unknown = set(self.folders) - set(SOURCES)
        if unknown:
            raise InputError(f"unknown source(s) {sorted(unknown)}; known: {', '.join(SOURCES)}")


Grow = Callable[[Path, str, pd.Timestamp], dict]  # (checkpoint, cube, end) -> what it did


def run_daily(
    plan: DailyPlan, stage: Callable[[str], None] = lambda _: None, grow: Grow | None = None
) -> dict:
    """Ingest what is new, grow the cubes (in this process, or with `grow`: on the pool); a
    summary: per source the days ingested, per cube its end and what growing it did."""
    with _one_run(plan.input):
        state = _read_state(plan.input)
        ingested = {}
        for source, folder in plan.folders.items():
            stage(f"ingesting {source}")
            fresh = _new_files(source, Path(folder), state.get(source, {}), plan.input)
            if fresh:
                days = sorted({day for _, day in fresh})
                _ingest(source, Path(folder), plan, days[0], days[-1])
                ingested[source] = [str(days[0].date()), str(days[-1].date()), len(days)]
            state[source] = {**state.get(source, {}), **{_key(p): _stamp(p) for p, _ in fresh}}
            _write_state(plan.input, state)
        grown = {}
        if plan.cubes:
            end = last_forcing_day(plan.input)
            grow = grow or _grow_here(plan)
            for model, cube in plan.cubes:
                stage(f"growing {cube}")
                grown[str(cube)] = {"end": str(end.date()), **grow(model, cube, end)}
    return {"ingested": ingested, "cubes": grown}


def _grow_here(plan: DailyPlan) -> Grow:
    inputs = open_input(plan.input)

    def grow(model: Path, cube: str, end: pd.Timestamp) -> dict:
        ckpt = checkpoint.load(model)
        return {"blocks": extend(ckpt, inputs, plan.start, end, cube, progress=False)}

    return grow


def last_forcing_day(path: Path, window: int = 366) -> pd.Timestamp:
    """The last day on which some cell has every forcing variable: the cubes' end. Only the
    last `window` days are read (the whole record of CONUS is gigabytes)."""
    forcing = open_input(path)["forcing"].isel(time=slice(-window, None))
    complete = np.isfinite(forcing.values).all(axis=2).any(axis=1)
    if not complete.any():
        raise InputError(f"{path} has no day with complete forcing in its last {window} days")
    return pd.Timestamp(forcing.time.values[np.flatnonzero(complete)[-1]])


def _new_files(
    source: str, folder: Path, seen: dict, input_path: Path
) -> list[tuple[Path, pd.Timestamp]]:
    """(file, day) of the source's files not ingested yet (or changed since); SMAP's of the
    product on the input dataset's grid."""
    if source == "smap":
        on = ingest.dataset_grid(input_path)
        found = [(g.path, g.day) for g in smap.find_granules(folder, on)[0]]
    else:
        products = HOURLY_SOURCES[source].products
        found = [(f.path, f.day) for f in nldas.find_hourly(folder, products)[0]]
    return [(path, day) for path, day in found if seen.get(_key(path)) != _stamp(path)]


def _ingest(source: str, folder: Path, plan: DailyPlan, first, last) -> None:
    if source == "smap":
        ingest.ingest_smap(folder, plan.input, start=first, end=last, progress=False)
    else:
        ingest.ingest_nldas(
            folder, plan.input, source, None, first, last, plan.min_hours, progress=False
        )


def _key(path: Path) -> str:
    return path.name


def _stamp(path: Path) -> list[int]:
    stat = path.stat()
    return [stat.st_size, stat.st_mtime_ns]


def _state_path(input_path: Path) -> Path:
    return Path(f"{input_path}.daily.json")


def _read_state(input_path: Path) -> dict:
    try:
        return json.loads(_state_path(input_path).read_text())
    except FileNotFoundError:
        return {}


def _write_state(input_path: Path, state: dict) -> None:
    partial = _state_path(input_path).with_suffix(".partial")
    partial.write_text(json.dumps(state))
    partial.replace(_state_path(input_path))


@contextmanager
def _one_run(input_path: Path) -> Iterator[None]:
    """One daily run per input dataset: filelock's lock beside it, released with its process."""
    Path(input_path).parent.mkdir(parents=True, exist_ok=True)
    try:
        lock = FileLock(f"{input_path}.daily.lock", timeout=0)
        lock.acquire()
    except Timeout:
        raise InputError(f"a daily run on {input_path} is in progress") from None
    try:
        yield
    finally:
        lock.release()

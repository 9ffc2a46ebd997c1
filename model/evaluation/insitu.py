"""In situ soil moisture stations: ISMN archives, the twin world's stations, a plain station CSV.

Every source becomes the same `Stations` object: one row of metadata per sensor (a probe at one
depth of one station) and a table of daily mean values (time x sensor, m3/m3). Sub-daily values are
averaged to days that hold at least `min_count` accepted samples, so a day seen for one hour does
not pass as a daily mean. Problems with one station or one file are collected, not raised, so
one broken file never stops the evaluation of the others.
"""

import contextlib
import io
import logging
import re
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from model.errors import InputError

KEEP_FLAGS = ("G",)
MIN_COUNT = 12
SENSOR_COLUMNS = ("station", "network", "kind", "lat", "lon", "depth_from", "depth_to", "depth_m")
CSV_COLUMNS = ("station", "lat", "lon", "depth", "time", "value")
ISMN_LOGGERS = ("ismn", "ismn_meta_collector")


@dataclass
class Stations:
    """Sensors (index: sensor id) with their daily values (index: day, columns: sensor ids).

    `kind` is "dense" or "sparse" where the source says so (the twin world), "" where the
    evaluation must decide from how many stations share a grid cell.
    """

    sensors: pd.DataFrame
    values: pd.DataFrame
    problems: list[dict] = field(default_factory=list)

    def problem(self, station: str, message: str) -> None:
        self.problems.append({"station": station, "problem": message})


@dataclass(frozen=True)
class StationSource:
    """A kind of station data the evaluation reads, recognised by the shape of its path."""

    name: str
    recognises: Callable[[Path], bool]
    read: Callable[[Path, tuple, int], Stations]


def _is_world(path: Path) -> bool:
    return path.is_dir() and any((p / "sensors.csv").exists() for p in (path, path / "stations"))


# Tried in order; the last one takes what the others do not recognise.
STATION_SOURCES = (
    StationSource("twin world", _is_world, lambda path, flags, count: read_world(path)),
    StationSource(
        "station CSV",
        lambda path: path.suffix.lower() == ".csv",
        lambda path, flags, count: read_csv(path, min_count=count),
    ),
    StationSource(
        "ISMN archive",
        lambda path: True,
        lambda path, flags, count: read_ismn(path, keep_flags=flags, min_count=count),
    ),
)


def read_stations(path: str | Path, keep_flags=KEEP_FLAGS, min_count: int = MIN_COUNT) -> Stations:
    """Any registered station source (STATION_SOURCES), recognised by its shape: a folder with
    sensors.csv (the twin world), a .csv file (plain station CSV), or else an ISMN archive (zip
    or unpacked folder)."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"stations not found: {path}")
    source = next(s for s in STATION_SOURCES if s.recognises(path))
    return source.read(path, tuple(keep_flags), min_count)


def daily_means(series: pd.Series, min_count: int = MIN_COUNT) -> pd.Series:
    """Daily means of a timestamped series, keeping days with at least `min_count` samples.

    The threshold is capped at the series' own samples per day (from its median time step), so
    daily data pass with one value a day while hourly data need `min_count` hours."""
    series = series.dropna().sort_index()
    if series.empty:
        return series.astype(np.float32)
    steps = np.diff(series.index.values).astype("timedelta64[s]").astype(np.int64)
    per_day = max(1, round(86400 / np.median(steps))) if steps.size else 1
    days = series.groupby(series.index.floor("D")).agg(["mean", "count"])
    kept = days.loc[days["count"] >= min(min_count, per_day), "mean"]
    kept.index.name = "time"
    return kept.astype(np.float32)


def flags_ok(flags: pd.Series, keep_flags) -> np.ndarray:
    """True where every flag of a value (ISMN joins several with commas) is one we keep."""
    keep = set(keep_flags)
    return (
        flags.fillna("")
        .astype(str)
        .map(lambda f: bool(f) and set(f.split(",")) <= keep)
        .to_numpy(bool)
    )


def _assemble(rows: list[dict], series: dict[str, pd.Series], problems: list[dict]) -> Stations:
    sensors = pd.DataFrame(rows, columns=["sensor", *SENSOR_COLUMNS]).set_index("sensor")
    values = (
        pd.DataFrame(series, columns=sensors.index)
        if series
        else pd.DataFrame(columns=sensors.index, dtype=np.float32)
    )
    values.index = pd.DatetimeIndex(values.index, name="time")
    return Stations(sensors, values.sort_index().astype(np.float32), problems)


def sensor_id(network: str, station: str, depth_from: float, depth_to: float, instrument="") -> str:
    name = f"{network}/{station}/{depth_from:.3f}-{depth_to:.3f}"
    return f"{name}/{instrument}" if instrument else name


# ---- ISMN archives -------------------------------------------------------------------------


def read_ismn(path: str | Path, keep_flags=KEEP_FLAGS, min_count: int = MIN_COUNT) -> Stations:
    """An ISMN archive (either layout, zip or folder) read through the `ismn` package.

    The package indexes the archive into a metadata folder; that goes to a temporary directory so
    a read-only archive stays untouched. Files the package rejects are reported from its log."""
    from ismn.interface import ISMN_Interface

    rows, series, problems = [], {}, []
    with tempfile.TemporaryDirectory(prefix="smapx-ismn-") as tmp, _quiet_ismn():
        try:
            archive = ISMN_Interface(str(path), meta_path=Path(tmp) / "meta", temp_root=tmp)
        except Exception as exc:
            hint = "no ISMN data files in it" if "No objects to concatenate" in str(exc) else exc
            raise InputError(
                f"cannot read {path} as an ISMN archive: {hint}; stations are an ISMN "
                "archive (zip or folder), a station CSV or a twin world's "
                "stations folder"
            ) from exc
        problems += _rejected_files(Path(tmp) / "meta")
        for idx, meta in archive.metadata.iterrows():
            if meta[("variable", "val")] != "soil_moisture":
                continue
            network, station = str(meta[("network", "val")]), str(meta[("station", "val")])
            depth_from = float(meta[("variable", "depth_from")])
            depth_to = float(meta[("variable", "depth_to")])
            instrument = str(meta[("instrument", "val")])
            sid = sensor_id(network, station, depth_from, depth_to, instrument)
            try:
                data = archive.read_ts(idx)
            except Exception as exc:  # noqa: BLE001  one bad file: that station's problem
                problems.append(
                    {
                        "station": f"{network}/{station}",
                        "problem": f"cannot read sensor {sid}: {exc}",
                    }
                )
                continue
            good = flags_ok(data["soil_moisture_flag"], keep_flags)
            daily = daily_means(data["soil_moisture"][good], min_count)
            if daily.empty:
                found = sorted(set(",".join(data["soil_moisture_flag"].astype(str)).split(",")))
                problems.append(
                    {
                        "station": f"{network}/{station}",
                        "problem": f"no daily values with flags {'/'.join(keep_flags)} "
                        f"(flags present: {', '.join(found)}; accept more flags to use them)",
                    }
                )
            rows.append(
                {
                    "sensor": sid,
                    "station": f"{network}/{station}",
                    "network": network,
                    "kind": "",
                    "lat": float(meta[("latitude", "val")]),
                    "lon": float(meta[("longitude", "val")]),
                    "depth_from": depth_from,
                    "depth_to": depth_to,
                    "depth_m": (depth_from + depth_to) / 2,
                }
            )
            series[sid] = daily
    return _assemble(rows, series, problems)


@contextlib.contextmanager
def _quiet_ismn():
    """Keep the ismn package's prints, progress bars and log records off the user's terminal;
    its own log file (read by `_rejected_files`) is still written."""
    loggers = [logging.getLogger(name) for name in ISMN_LOGGERS]
    saved = [(lg.propagate, lg.level) for lg in loggers]
    for lg in loggers:
        lg.propagate = False
        lg.setLevel(logging.WARNING if lg.name == "ismn" else lg.level)
    try:
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            yield
    finally:
        for lg, (propagate, level) in zip(loggers, saved):
            lg.propagate, lg.level = propagate, level


def _rejected_files(meta_dir: Path) -> list[dict]:
    """Files the ismn package skipped as malformed, from the log it writes while indexing."""
    problems = []
    for log in meta_dir.glob("*.log"):
        for match in re.finditer(
            r"Error loading ismn file (.+?\.stm)", log.read_text(errors="replace")
        ):
            file = Path(match.group(1))
            problems.append(
                {
                    "station": "/".join(file.parts[:2]),
                    "problem": f"malformed file {file.name} skipped",
                }
            )
    return problems


# ---- plain station CSV ---------------------------------------------------------------------


def read_csv(path: str | Path, min_count: int = MIN_COUNT) -> Stations:
    """A long CSV: station, lat, lon, depth (m), time, value (m3/m3); optional network, kind.

    A station with unusable coordinates or depth is reported and skipped; unparsable values
    are dropped."""
    try:
        table = pd.read_csv(path)
    except (OSError, pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read station CSV {path}: {exc}") from exc
    missing = set(CSV_COLUMNS) - set(table.columns)
    if missing:
        raise InputError(
            f"station CSV {path} lacks column(s) {sorted(missing)}; "
            f"expected {', '.join(CSV_COLUMNS)}"
        )
    table["time"] = pd.to_datetime(table["time"], errors="coerce", format="mixed")
    for column in ("lat", "lon", "depth", "value"):
        table[column] = pd.to_numeric(table[column], errors="coerce")
    rows, series, problems = [], {}, []
    for (station, depth), group in table.groupby(["station", "depth"], sort=True, dropna=False):
        lat, lon = group["lat"].iloc[0], group["lon"].iloc[0]
        if not (np.isfinite(lat) and np.isfinite(lon) and -90 <= lat <= 90 and -180 <= lon <= 180):
            problems.append({"station": str(station), "problem": f"bad coordinates ({lat}, {lon})"})
            continue
        if not (np.isfinite(depth) and depth >= 0):
            problems.append({"station": str(station), "problem": f"bad depth {depth}"})
            continue
        network = str(group["network"].iloc[0]) if "network" in group else "csv"
        sid = sensor_id(network, str(station), depth, depth)
        values = group.set_index("time")["value"]
        series[sid] = daily_means(values[values.index.notna()], min_count)
        rows.append(
            {
                "sensor": sid,
                "station": str(station),
                "network": network,
                "kind": str(group["kind"].iloc[0]) if "kind" in group else "",
                "lat": float(lat),
                "lon": float(lon),
                "depth_from": float(depth),
                "depth_to": float(depth),
                "depth_m": float(depth),
            }
        )
    return _assemble(rows, series, problems)


def write_csv(stations: Stations, path: str | Path) -> None:
    """The plain CSV form of any stations (daily values), readable by `read_csv`."""
    long = stations.values.rename_axis(columns="sensor").stack().rename("value").reset_index()
    meta = stations.sensors.reset_index()
    table = long.merge(meta, on="sensor")
    table = table.rename(columns={"depth_m": "depth"})
    table[["station", "network", "kind", "lat", "lon", "depth", "time", "value"]].to_csv(
        path, index=False
    )


# ---- the twin world's stations -------------------------------------------------------------


def read_world(folder: str | Path) -> Stations:
    """The twin world's stations (sensors.csv + daily values), via model.world."""
    from model.world import read_world_stations

    sensors, values = _world_tables(read_world_stations(folder))
    rows = [
        {
            "sensor": str(s),
            "station": str(m["station"]),
            "network": str(m["network"]),
            "kind": str(m["network"]),
            "lat": float(m["lat"]),
            "lon": float(m["lon"]),
            "depth_from": float(m["depth_m"]),
            "depth_to": float(m["depth_m"]),
            "depth_m": float(m["depth_m"]),
        }
        for s, m in sensors.iterrows()
    ]
    series = {str(s): values[s].dropna().astype(np.float32) for s in sensors.index}
    return _assemble(rows, series, [])


def _world_tables(world) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(sensors indexed by sensor id, daily values time x sensor) from what model.world returns."""
    sensors, values = world
    sensors = sensors.set_index("sensor") if "sensor" in sensors.columns else sensors
    if hasattr(values, "to_pandas"):
        values = values.transpose("time", ...).to_pandas()
    values.columns = values.columns.astype(sensors.index.dtype)
    return sensors, values

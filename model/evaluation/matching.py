"""Probes matched to the cube: each sensor to the cell holding it, a dense network's sensors in one
cell averaged into one site (sparse stations stay apart), the products' series at every site."""

import logging

import numpy as np
import pandas as pd
import xarray as xr

from model.errors import InputError, OutOfRangeError
from model.evaluation.insitu import Stations
from model.evaluation.scores import WEIGHTED
from model.product import cube as cubes
from model.product import fusion
from model.product.kinds import estimates

log = logging.getLogger(__name__)

SURFACE_MAX_DEPTH = 0.10
ROOTZONE_MAX_DEPTH = 1.0


def match_sites(cube: xr.Dataset, stations: Stations, dense_min_stations: int = 2):
    """(sites table, obs (time, site), problems): sensors located in the cube and grouped.

    A site is either one station's sensors at one depth (sparse) or all sensors of a dense network
    in one cell at one depth, averaged day by day."""
    values = stations.values.reindex(pd.DatetimeIndex(cube.time.values))
    sensors, problems = locate_sensors(cube, stations, values)
    for p in problems:
        log.warning("%s: %s", p["station"], p["problem"])
    if sensors.empty:
        kinds = pd.Series([p["problem"].split(" (")[0] for p in problems]).value_counts()
        reasons = "; ".join(f"{n} x {reason}" for reason, n in kinds.head(3).items())
        raise InputError(
            f"none of the {len(stations.sensors)} sensors can be evaluated against "
            f"this cube: {reasons or 'no sensors in the stations'}"
        )
    sensors = shallowest_surface_probes(sensors)
    stations_per_cell = sensors.groupby(["iy", "ix"])["station"].transform("nunique")
    derived = np.where(stations_per_cell >= dense_min_stations, "dense", "sparse")
    sensors["kind"] = np.where(sensors["kind"].isin(["dense", "sparse"]), sensors["kind"], derived)
    sensors["group"] = np.where(
        sensors["kind"] == "dense",
        "cell " + sensors["iy"].astype(str) + "," + sensors["ix"].astype(str),
        sensors["station"],
    )
    sites, obs = group_sites(cube, sensors, values)
    return sites, obs, problems


def locate_sensors(cube: xr.Dataset, stations: Stations, values: pd.DataFrame):
    """(sensors the cube can serve, with their cell and layer; problems with the others)."""
    time = values.index
    problems = list(stations.problems)
    rows = []
    for sensor, meta in stations.sensors.iterrows():
        try:
            iy, ix = cubes.locate(cube, meta["lat"], meta["lon"])
        except OutOfRangeError:
            problems.append(
                {
                    "station": meta["station"],
                    "problem": f"outside the cube's region ({meta['lat']:.4f}, {meta['lon']:.4f})",
                }
            )
            continue
        depth = float(meta["depth_m"])
        if not 0 <= depth <= ROOTZONE_MAX_DEPTH:
            problems.append(
                {
                    "station": meta["station"],
                    "problem": f"depth {depth:.2f} m is beyond what the cube can serve "
                    f"(surface <= {SURFACE_MAX_DEPTH} m, root zone <= {ROOTZONE_MAX_DEPTH} m)",
                }
            )
            continue
        if sensor not in values or values[sensor].count() == 0:
            if sensor in stations.values and stations.values[sensor].count():
                problems.append(
                    {
                        "station": meta["station"],
                        "problem": "no values within the cube's period "
                        f"{time[0].date()}..{time[-1].date()}",
                    }
                )
            continue
        layer = "surface" if depth <= SURFACE_MAX_DEPTH else "rootzone"
        rows.append(
            {
                "sensor": sensor,
                "station": meta["station"],
                "kind": meta["kind"],
                "lat": meta["lat"],
                "lon": meta["lon"],
                "iy": iy,
                "ix": ix,
                "layer": layer,
                "depth_m": depth,
                "depth_key": 0.0 if layer == "surface" else round(depth, 2),
            }
        )
    return pd.DataFrame(rows), problems


def shallowest_surface_probes(sensors: pd.DataFrame) -> pd.DataFrame:
    """Of a station's probes within the surface layer, only the shallowest: SMAP senses ~5 cm, so
    a 10 cm probe stands for the surface only where the station has nothing shallower."""
    surface = sensors["layer"] == "surface"
    shallowest = sensors[surface].groupby("station")["depth_m"].transform("min")
    keep = ~surface | (sensors["depth_m"] == shallowest.reindex(sensors.index))
    return sensors[keep].reset_index(drop=True)


def group_sites(cube: xr.Dataset, sensors: pd.DataFrame, values: pd.DataFrame):
    """(sites table, daily mean of each site's sensors (time, site))."""
    sites, obs = [], []
    for (kind, group, layer, _), members in sensors.groupby(
        ["kind", "group", "layer", "depth_key"], sort=True
    ):
        first = members.iloc[0]
        depth, low, high = (
            members["depth_m"].mean(),
            members["depth_m"].min(),
            members["depth_m"].max(),
        )
        span = f"{low:.2f}-{high:.2f} m" if high > low else f"{depth:.2f} m"
        sites.append(
            {
                "site": f"{group} {layer} {span}",
                "kind": kind,
                "layer": layer,
                "depth_m": depth,
                "lat": members["lat"].mean(),
                "lon": members["lon"].mean(),
                "iy": int(first["iy"]),
                "ix": int(first["ix"]),
                "row": int(first["iy"]) + int(cube.attrs["row0"]),
                "col": int(first["ix"]) + int(cube.attrs["col0"]),
                "n_sensors": len(members),
                "stations": ";".join(sorted(set(members["station"]))),
            }
        )
        obs.append(np.nanmean(values[members["sensor"]].to_numpy(np.float64), axis=1))
    return pd.DataFrame(sites), np.stack(obs, axis=1)


def cell_series(cube: xr.Dataset, iy, ix) -> dict[str, np.ndarray]:
    """(time, point) float arrays of every cube product at the given cells, read in one pass."""
    points = {
        "y": xr.DataArray(np.asarray(iy), dims="point"),
        "x": xr.DataArray(np.asarray(ix), dims="point"),
    }
    names = estimates(cube)
    loaded = cube[names].isel(points).load()
    return {p: loaded[p].transpose("time", "point").values.astype(np.float64) for p in names}


def with_fusions(series: dict[str, np.ndarray], weight=None) -> dict[str, np.ndarray]:
    """Add the fused products the paper compares: (LSTM+Noah)/2, (Noah+LSM2)/2 and, given
    per-site weights, the weighted LSTM-Noah fusion."""
    out = dict(series)
    if "lstm" in series and "noah" in series:
        out["lstm+noah"] = fusion.fuse(series["lstm"], series["noah"]).astype(np.float64)
        if weight is not None:
            out[WEIGHTED] = fusion.fuse(series["lstm"], series["noah"], weight).astype(np.float64)
    if "noah" in series and "lsm2" in series:
        out["noah+lsm2"] = fusion.fuse(series["noah"], series["lsm2"]).astype(np.float64)
    return out

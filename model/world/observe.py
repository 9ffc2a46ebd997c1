"""What the twin world lets one observe: SMAP-like retrievals and in situ stations.

SMAP-like: the 0-5 cm truth plus a persistent per-cell bias and white noise, on the days the
orbit passes (gaps of 2-3 days, shared by neighbouring columns as a swath would), never on frozen
or snow-covered days, never over dense vegetation in the green season, with a few random
retrieval failures, and only from the launch date on.

Stations: probes at fixed depths whose reading is the cell truth at that depth, stretched and
shifted by a persistent representativeness error (a point is not a 36 km cell), plus a slowly
varying local anomaly and sensor noise. Dense networks put several stations into the same few
cells; sparse networks one station per cell, spread over the region. Records start at different
dates and have multi-week gaps; probes down to 20 cm read nothing on frozen or snow-covered days,
as quality control flags such readings in real networks.
"""

import numpy as np
import pandas as pd
import xarray as xr

from model import grid
from model.world.weather import FieldSampler

STATION_RANGE = (0.01, 0.6)
# SMAP's revisit pattern repeats across the swath in bands of this width (three 36 km columns)
REVISIT_BAND_M = 3 * grid.M36.cell_size
FROZEN_PROBE_DEPTH_M = 0.2


def smap_like(
    surface,
    frozen,
    vegetation_masked,
    cols,
    time,
    config,
    rng: np.random.Generator,
    on: grid.Grid = grid.DEFAULT,
):
    """(target (day, cell) with NaN where not retrieved, per-cell bias); `cols` on grid `on`."""
    n_day, n_cell = surface.shape
    bias = (config.smap_bias + config.smap_bias_spread * rng.standard_normal(n_cell)).astype(
        np.float32
    )
    gaps = np.asarray(config.revisit, int)
    cycle = int(gaps.sum())
    passes = np.cumsum(np.concatenate([[0], gaps[:-1]]))
    phase = (np.asarray(cols) // round(REVISIT_BAND_M / on.cell_size)) % cycle
    overpass = np.isin((np.arange(n_day)[:, None] + phase[None, :]) % cycle, passes)
    launched = (time >= pd.Timestamp(config.smap_start))[:, None]
    retrieved = rng.random((n_day, n_cell)) >= config.retrieval_failure
    observed = overpass & launched & retrieved & ~frozen & ~vegetation_masked
    noise = config.smap_noise * rng.standard_normal((n_day, n_cell), np.float32)
    values = np.maximum(surface + bias + noise, 0.0)
    return np.where(observed, values, np.nan).astype(np.float32), bias


def _spread_cells(candidates: np.ndarray, lat, lon, n: int, rng) -> np.ndarray:
    """Farthest-point choice of n cells among candidates: stations spread over the region."""
    n = min(n, len(candidates))
    if n == 0:
        return candidates[:0]
    x, y = grid.lonlat_to_xy(lon[candidates], lat[candidates])
    chosen = [int(rng.integers(len(candidates)))]
    dist = np.hypot(x - x[chosen[0]], y - y[chosen[0]])
    for _ in range(n - 1):
        nxt = int(np.argmax(dist))
        chosen.append(nxt)
        dist = np.minimum(dist, np.hypot(x - x[nxt], y - y[nxt]))
    return candidates[chosen]


def station_sites(rows, cols, lat, lon, config, rng, on: grid.Grid = grid.DEFAULT) -> pd.DataFrame:
    """One row per station: name, network, cell index, lat/lon of a random point in the cell
    (of grid `on`)."""
    cells = np.arange(len(rows))
    dense_cells = _spread_cells(cells, lat, lon, config.dense_networks, rng)
    sparse_pool = np.setdiff1d(cells, dense_cells)
    sparse_cells = _spread_cells(
        rng.permutation(sparse_pool), lat, lon, config.sparse_stations, rng
    )
    sites = [
        (f"D{k + 1}-{j + 1:02d}", "dense", c)
        for k, c in enumerate(dense_cells)
        for j in range(config.dense_stations)
    ]
    sites += [(f"S{k + 1:03d}", "sparse", c) for k, c in enumerate(sparse_cells)]
    table = pd.DataFrame(sites, columns=["station", "network", "cell"])
    cell = table["cell"].to_numpy()
    x = on.col_to_x(cols[cell]) + (rng.random(len(cell)) - 0.5) * on.cell_size
    y = on.row_to_y(rows[cell]) + (rng.random(len(cell)) - 0.5) * on.cell_size
    table["lon"], table["lat"] = grid.xy_to_lonlat(x, y)
    table["row"], table["col"] = rows[cell], cols[cell]
    return table


def station_records(
    sites: pd.DataFrame, truth: np.ndarray, frozen: np.ndarray, depths_m, config, rng
):
    """(sensors table, values (day, sensor)) from the cell truth (day, cell, depth) and the
    frozen/snow flag (day, cell)."""
    n_day = truth.shape[0]
    tables, columns = [], []
    for site in sites.itertuples():
        station_offset = config.representativeness * rng.standard_normal()
        scale = np.exp(0.15 * rng.standard_normal())
        start = int(rng.integers(0, max(1, int(0.3 * n_day))))
        station_gaps = _gaps(n_day, rng)
        for d, depth in enumerate(depths_m):
            cell_series = truth[:, site.cell, d].astype(np.float64)
            mean = cell_series.mean()
            offset = station_offset + 0.5 * config.representativeness * rng.standard_normal()
            local = (
                0.5
                * config.representativeness
                * FieldSampler._ar1(rng.standard_normal((n_day, 1)), 0.97)[:, 0]
            )
            noise = config.station_noise * rng.standard_normal(n_day)
            value = np.clip(
                mean + scale * (cell_series - mean) + offset + local + noise, *STATION_RANGE
            )
            missing = station_gaps | _gaps(n_day, rng, episodes=0.5)
            missing[:start] = True
            if depth <= FROZEN_PROBE_DEPTH_M:
                missing |= frozen[:, site.cell]
            columns.append(np.where(missing, np.nan, value).astype(np.float32))
            tables.append(
                {
                    "sensor": f"{site.station}_{round(depth * 100):03d}cm",
                    "station": site.station,
                    "network": site.network,
                    "lat": site.lat,
                    "lon": site.lon,
                    "depth_m": depth,
                    "row": site.row,
                    "col": site.col,
                }
            )
    return pd.DataFrame(tables), np.stack(columns, axis=1)


def _gaps(n_day: int, rng, episodes: float = 1.5) -> np.ndarray:
    """Record gaps: a Poisson number of episodes per decade, 10-200 days each."""
    missing = np.zeros(n_day, bool)
    for _ in range(rng.poisson(episodes * n_day / 3652.5)):
        first = int(rng.integers(n_day))
        missing[first : first + int(rng.integers(10, 200))] = True
    return missing


def stations_dataarray(sensors: pd.DataFrame, values: np.ndarray, time) -> xr.DataArray:
    return xr.DataArray(
        values,
        dims=("time", "sensor"),
        coords={"time": time, "sensor": sensors["sensor"].to_numpy()},
        name="value",
        attrs={"units": "m3 m-3", "long_name": "in situ soil moisture"},
    )

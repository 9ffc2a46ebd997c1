"""Stochastic daily weather and static land attributes of the twin world.

Every random field is a latent Gaussian with AR(1) memory in time and two parts in space, both
smooth: a regional part, interpolated from a coarse lon/lat lattice so that fronts, storms and
heat waves span several hundred km, and a mesoscale part (convective cells, soil and vegetation
patches) with a correlation length of about 100 km, so that neighbouring 36 km cells differ as
they do in real soil-moisture maps instead of drawing independent noise. Climatology (wet east /
dry west, winter-wet Pacific coast, summer-wet plains, colder north and mountains) sets the
thresholds and scales. Everything is vectorised over cells and days (scipy.signal.lfilter runs
the AR(1) recursions, a sparse matrix the mesoscale interpolation).
"""

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import sparse
from scipy.signal import lfilter
from scipy.spatial import cKDTree
from scipy.special import ndtr, ndtri

KELVIN = 273.15
STEFAN_BOLTZMANN = 5.670e-8
SOLAR_CONSTANT = 1367.0
LATTICE_STEP_DEG = 4.0
# Kernel width of the mesoscale part: its correlation falls to 1/e at 2 x 50 km = 100 km, the
# scale of convective storm clusters and of soil-texture patches at the 36 km grid.
MESO_KERNEL_KM = 50.0
KM_PER_DEG = 111.2
DENSE_NDVI = 0.52  # about where vegetation water content blocks an L-band retrieval


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


class FieldSampler:
    """Draws spatially and temporally correlated unit-variance Gaussian fields over the cells.

    The random numbers belong to lattice nodes around the world's cells (`frame`, lat and lon
    of all of them; the cells themselves by default), not to the cells: samplers over any part
    of the world, started from the same generator state, draw the same numbers, so the world can
    be generated block by block and each block's fields are the whole world's there."""

    def __init__(self, rng: np.random.Generator, lat: np.ndarray, lon: np.ndarray, frame=None):
        self.rng = rng
        nodes_lon, nodes_lat = np.meshgrid(
            np.arange(-127.0, -63.0, LATTICE_STEP_DEG), np.arange(22.0, 52.0, LATTICE_STEP_DEG)
        )
        dist2 = ((lon[:, None] - nodes_lon.ravel()) * np.cos(np.radians(38.0))) ** 2 + (
            lat[:, None] - nodes_lat.ravel()
        ) ** 2
        weights = np.exp(-dist2 / (2 * LATTICE_STEP_DEG**2))
        self.weights = (weights / np.sqrt((weights**2).sum(1, keepdims=True))).T.astype(np.float32)
        self.meso = mesoscale_weights(lat, lon, MESO_KERNEL_KM, frame)
        self.n_cell = len(lat)

    def static(self, local: float = 0.3) -> np.ndarray:
        """A (cell,) field: regional pattern plus `local` share of mesoscale variation."""
        regional = self.rng.standard_normal(self.weights.shape[0]).astype(np.float32) @ self.weights
        meso = self.meso.T @ self.rng.standard_normal(self.meso.shape[0])
        return np.sqrt(1 - local**2) * regional + local * meso

    def daily(self, n_day: int, memory: float, local: float) -> np.ndarray:
        """A (day, cell) float32 field with lag-1 autocorrelation `memory`; `local` is the
        share of mesoscale (storm-sized) variation."""
        regional = self._ar1(self.rng.standard_normal((n_day, self.weights.shape[0])), memory)
        field = (regional.astype(np.float32) @ self.weights) * np.float32(np.sqrt(1 - local**2))
        meso_noise = self._ar1(
            self.rng.standard_normal((n_day, self.meso.shape[0]), np.float32), memory
        )
        field += np.float32(local) * np.asarray(self.meso.T @ meso_noise.T).T
        return field

    @staticmethod
    def _ar1(noise: np.ndarray, memory: float, axis: int = 0) -> np.ndarray:
        """AR(1) in time along `axis` (contiguous is fastest), stationary from the first step."""
        out = lfilter(
            np.array([np.sqrt(1 - memory**2)], noise.dtype),
            np.array([1.0, -memory], noise.dtype),
            noise,
            axis=axis,
        )
        np.moveaxis(out, axis, 0)[0] = np.moveaxis(noise, axis, 0)[0]
        return out.astype(np.float32, copy=False)


def _km(lat, lon) -> tuple[np.ndarray, np.ndarray]:
    return np.asarray(lon) * np.cos(np.radians(38.0)) * KM_PER_DEG, np.asarray(lat) * KM_PER_DEG


def mesoscale_weights(
    lat: np.ndarray, lon: np.ndarray, kernel_km: float, frame=None
) -> sparse.csr_matrix:
    """(node, cell) Gaussian weights from a lattice of spacing `kernel_km` around the cells of
    the frame (lat, lon of the whole world; the cells by default), normalised so that every
    cell's field has unit variance; sparse, cut at 3 kernel widths. The nodes are those near a
    frame cell, whichever cells the weights are for."""
    x, y = _km(lat, lon)
    frame_x, frame_y = _km(*frame) if frame is not None else (x, y)
    reach = 3 * kernel_km
    node_x, node_y = np.meshgrid(
        np.arange(frame_x.min() - reach, frame_x.max() + reach + kernel_km, kernel_km),
        np.arange(frame_y.min() - reach, frame_y.max() + reach + kernel_km, kernel_km),
    )
    nodes = np.column_stack([node_x.ravel(), node_y.ravel()])
    tree = cKDTree(nodes)
    near = tree.query_ball_point(np.column_stack([x, y]), reach)
    cells = np.repeat(np.arange(len(x)), [len(n) for n in near])
    node_index = np.concatenate(near).astype(int)
    dist2 = (nodes[node_index, 0] - x[cells]) ** 2 + (nodes[node_index, 1] - y[cells]) ** 2
    weight = np.exp(-dist2 / (2 * kernel_km**2))
    weight /= np.sqrt(np.bincount(cells, weight**2))[cells]
    if frame is None:
        used = np.unique(node_index)
    else:
        frame_near = tree.query_ball_point(np.column_stack([frame_x, frame_y]), reach)
        used = np.unique(np.concatenate(frame_near).astype(int))
    return sparse.csr_matrix(
        (weight.astype(np.float32), (np.searchsorted(used, node_index), cells)),
        shape=(len(used), len(x)),
    )


@dataclass
class Climate:
    """Per-cell climatology that the weather generator draws around."""

    precip_mean: np.ndarray  # mm/day, annual mean
    precip_season_cos: np.ndarray  # seasonal amplitude components (fraction of the mean)
    precip_season_sin: np.ndarray
    tair_mean: np.ndarray  # K
    tair_amplitude: np.ndarray  # K
    humidity: np.ndarray  # relative humidity, climatological


def elevation_m(lat: np.ndarray, lon: np.ndarray, sampler: FieldSampler) -> np.ndarray:
    """A plausible terrain: Rockies, Sierra-Cascades, Great Basin plateau, Appalachians."""
    rockies = 2300 * np.exp(-(((lon + 107.5) / 4.0) ** 2)) * _sigmoid((lat - 31.0) / 1.5)
    sierra = 1500 * np.exp(-(((lon + 120.5) / 1.6) ** 2)) * _sigmoid((lat - 35.0) / 1.0)
    basin = 1400 * np.exp(-(((lon + 114.5) / 4.5) ** 2)) * _sigmoid((lat - 34.0) / 2.0)
    plains = 1200 * _sigmoid(-(lon + 99.0) / 3.0)
    appalachians = 700 * np.exp(-(((lon + 81.0 + 0.8 * (lat - 38.0)) / 2.0) ** 2))
    coast = 60 * _sigmoid((lon + 100) / 5)
    terrain = np.maximum(rockies, sierra) + np.maximum(basin, plains * 0.85) + appalachians + coast
    return np.clip(terrain * (1 + 0.15 * sampler.static(0.5)), 2.0, 3800.0).astype(np.float32)


def climate(lat: np.ndarray, lon: np.ndarray, elevation: np.ndarray) -> Climate:
    """Wet east / dry west, a wet Gulf coast and Pacific Northwest, wetter mountains."""
    elev_km = elevation / 1000.0
    east = _sigmoid((lon + 96.0) / 4.5)
    gulf = np.exp(-(((lat - 30.5) / 3.0) ** 2)) * _sigmoid((lon + 97.0) / 2.0)
    pacific_nw = np.exp(-(((lon + 123.5) / 1.8) ** 2)) * _sigmoid((lat - 40.0) / 1.5)
    precip_mean = 0.45 + 3.0 * east + 1.0 * gulf + 3.5 * pacific_nw + 0.3 * elev_km
    # Seasonality as a vector sum: winter-wet Pacific coast, summer-wet plains, monsoon southwest.
    coast = _sigmoid(-(lon + 117.5) / 1.5)
    plains = np.exp(-(((lon + 100.0) / 6.0) ** 2))
    monsoon = np.exp(-(((lon + 109.0) / 3.5) ** 2)) * _sigmoid((36.5 - lat) / 1.0)
    terms = [(0.85 * coast, 15), (0.55 * plains, 170), (0.6 * monsoon, 215), (0.12 * east, 200)]
    season_cos = sum(a * np.cos(2 * np.pi * peak / 365.25) for a, peak in terms)
    season_sin = sum(a * np.sin(2 * np.pi * peak / 365.25) for a, peak in terms)
    interior = np.exp(-(((lon + 98.0) / 14.0) ** 2))
    tair_mean = KELVIN + 25.5 - 0.72 * (lat - 25.0) - 4.5 * elev_km + 2.0 * coast
    tair_amplitude = 5.0 + 0.42 * (lat - 25.0) + 4.0 * interior - 4.0 * coast
    humidity = 0.33 + 0.38 * east + 0.08 * gulf + 0.2 * pacific_nw + 0.1 * coast
    return Climate(
        *(
            np.asarray(a, np.float32)
            for a in (precip_mean, season_cos, season_sin, tair_mean, tair_amplitude, humidity)
        )
    )


def static_attributes(climate_: Climate, elevation: np.ndarray, sampler: FieldSampler) -> dict:
    """Soil texture (%), bulk density, field capacity, NDVI, elevation, a dense-vegetation flag."""
    sand = np.clip(45 + 17 * sampler.static(0.45) - 4 * (climate_.precip_mean - 2.0), 8, 92)
    clay = np.clip((100 - sand) * (0.35 + 0.12 * sampler.static(0.45)), 3, 60)
    silt = 100 - sand - clay
    porosity, field_capacity = porosity_and_field_capacity(sand, clay, silt)
    wetness = climate_.precip_mean / (climate_.precip_mean + 2.0)
    cold = _sigmoid((climate_.tair_mean - KELVIN - 6.0) / 3.0)
    ndvi = np.clip(
        0.06 + 0.68 * wetness * (0.6 + 0.4 * cold) + 0.05 * sampler.static(0.4), 0.04, 0.85
    )
    dense = (ndvi >= DENSE_NDVI).astype(np.float32)
    return {
        name: np.asarray(v, np.float32)
        for name, v in {
            "sand": sand,
            "clay": clay,
            "silt": silt,
            "bulk": 2.65 * (1 - porosity),
            "capa": 100 * field_capacity,
            "ndvi": ndvi,
            "elevation": elevation,
            "flag_vegdense": dense,
        }.items()
    }


def porosity_and_field_capacity(sand, clay, silt):
    """Linear pedotransfer functions (after Cosby et al. 1984 and Saxton & Rawls 2006)."""
    porosity = 0.50 - 0.0015 * sand + 0.0005 * clay
    field_capacity = 0.09 + 0.0035 * clay + 0.0015 * silt
    return porosity, field_capacity


def toa_insolation(lat: np.ndarray, day_of_year: np.ndarray) -> np.ndarray:
    """Daily mean top-of-atmosphere shortwave (W m-2), (day, cell)."""
    phi = np.radians(lat)[None, :]
    angle = 2 * np.pi * day_of_year[:, None] / 365.0
    decl = 0.409 * np.sin(angle - 1.39)
    sunset = np.arccos(np.clip(-np.tan(phi) * np.tan(decl), -1, 1))
    distance = 1 + 0.033 * np.cos(angle)
    return (
        SOLAR_CONSTANT
        / np.pi
        * distance
        * (sunset * np.sin(phi) * np.sin(decl) + np.cos(phi) * np.cos(decl) * np.sin(sunset))
    )


def saturation_vapour_pressure_hpa(tair_k):
    return 6.112 * np.exp(17.67 * (tair_k - KELVIN) / (tair_k - 29.65))


def weather(
    time: pd.DatetimeIndex, lat, climate_: Climate, elevation, sampler: FieldSampler
) -> dict:
    """Daily forcing (day, cell) with the canonical names and units of model.dataset."""
    n_day = len(time)
    doy = time.day_of_year.values.astype(np.float32)
    angle = (2 * np.pi * doy / 365.25)[:, None]
    season = (
        1 + climate_.precip_season_cos * np.cos(angle) + climate_.precip_season_sin * np.sin(angle)
    )
    precip_clim = climate_.precip_mean * np.clip(season, 0.08, None)
    p_wet = np.clip(0.07 + 0.11 * precip_clim, 0.06, 0.6)
    wet_latent = sampler.daily(n_day, memory=0.55, local=0.45)
    wet = wet_latent > ndtri(1 - p_wet)
    amount_u = ndtr(sampler.daily(n_day, memory=0.2, local=0.6))
    precip_mm = np.where(wet, -np.log1p(-np.clip(amount_u, 0, 0.9995)) * precip_clim / p_wet, 0.0)
    del amount_u
    cloud = ndtr(0.75 * wet_latent + 0.66 * sampler.daily(n_day, memory=0.5, local=0.4))
    del wet_latent

    seasonal_t = climate_.tair_amplitude * np.cos(angle - 2 * np.pi * 200 / 365.25)
    t_spread = (2.0 + 0.11 * (lat - 25.0)).astype(np.float32)
    tair = (
        climate_.tair_mean
        + seasonal_t
        + t_spread * sampler.daily(n_day, 0.75, 0.35)
        - 2.5 * (cloud - 0.5)
    )
    lat_values, lat_index = np.unique(lat, return_inverse=True)
    insolation = toa_insolation(lat_values, np.arange(1, 367, dtype=np.float32)).astype(np.float32)
    swdown = (
        insolation[time.day_of_year.values - 1][:, lat_index]
        * (0.76 + 0.02 * elevation / 1000)
        * (1 - 0.62 * cloud)
    )
    humidity = np.clip(
        climate_.humidity + 0.3 * (cloud - 0.5) + 0.05 * sampler.daily(n_day, 0.5, 0.5), 0.06, 0.98
    )
    psurf = 101325.0 * np.exp(-elevation / 8400.0) + 700.0 * sampler.daily(n_day, 0.8, 0.2)
    vapour_hpa = humidity * saturation_vapour_pressure_hpa(tair)
    spfh = 0.622 * vapour_hpa / (psurf / 100.0 - 0.378 * vapour_hpa)
    clear_emissivity = 1.24 * (vapour_hpa / tair) ** (1 / 7)
    emissivity = np.clip(clear_emissivity + (1 - clear_emissivity) * 0.85 * cloud, 0, 1)
    lwdown = emissivity * STEFAN_BOLTZMANN * tair**4
    wind_u = 2.2 + 0.6 * elevation / 1000 + 2.4 * sampler.daily(n_day, 0.6, 0.4)
    wind_v = 0.3 + 2.4 * sampler.daily(n_day, 0.6, 0.4)
    forcing = {
        "precip": precip_mm / 24.0,
        "tair": tair,
        "spfh": spfh,
        "swdown": swdown,
        "lwdown": lwdown,
        "wind_u": wind_u,
        "wind_v": wind_v,
        "psurf": psurf,
    }
    return {name: np.asarray(v, np.float32) for name, v in forcing.items()}

"""The layered soil-water model of the twin world: one structure, three parameter sets.

"Truth" and the two wrong land-surface models (Noah-like and a second LSM) are the same daily
bucket cascade; the wrong ones differ as real LSMs do: other layering, biased pedotransfer
(porosity, field capacity), drainage, evapotranspiration and runoff coefficients, no frozen-soil
effect. Per day and cell (all water in mm, so the balance closes exactly):

    snow:        snowfall below ~1 C piles up as SWE; degree-day melt
    infiltration rain + melt, minus saturation-excess runoff (wetter top layer sheds more) and
                 infiltration-excess runoff above the texture's capacity (tiny when frozen);
                 what infiltrates fills layers from the top, overflow becomes runoff
    ET           Priestley-Taylor potential ET from net radiation and temperature, split into
                 bare-soil evaporation from the top layer and transpiration by root share,
                 both limited by soil moisture stress; vegetation greens with warmth
    drainage     gravity drainage above field capacity to the layer below, out of the bottom
    diffusion    redistribution between neighbouring layers (capillary rise after drying)
"""

from dataclasses import dataclass

import numpy as np

from model.world.weather import KELVIN, STEFAN_BOLTZMANN, porosity_and_field_capacity

W_M2_TO_MM_DAY = 86400.0 / 2.45e6
PSYCHROMETRIC_KPA_K = 0.066
FROZEN_BELOW_K = KELVIN - 0.5


@dataclass(frozen=True)
class SoilModelSpec:
    """Structure and parameter biases of one soil-water model (six layers, thickness in mm)."""

    name: str
    layers_mm: tuple[float, float, float, float, float, float]
    porosity_scale: float = 1.0
    field_capacity_shift: float = 0.0
    drainage_scale: float = 1.0
    et_alpha: float = 1.26
    runoff_exponent_scale: float = 1.0
    root_efold_mm: float = 250.0
    melt_factor: float = 3.0
    frozen_soil: bool = True
    diffusivity: float = 0.06
    seasonal_vegetation: bool = True

    @property
    def bounds_mm(self) -> np.ndarray:
        return np.concatenate([[0.0], np.cumsum(self.layers_mm)])


TRUTH = SoilModelSpec("truth", (50.0, 50.0, 100.0, 200.0, 300.0, 600.0))
# Noah's 0-10, 10-40, 40-100, 100-200 cm, its second and fourth layers split in two.
NOAH_LIKE = SoilModelSpec(
    "noah",
    (100.0, 100.0, 200.0, 600.0, 500.0, 500.0),
    porosity_scale=1.04,
    field_capacity_shift=0.025,
    drainage_scale=0.5,
    et_alpha=1.05,
    runoff_exponent_scale=1.5,
    root_efold_mm=500.0,
    melt_factor=2.0,
    frozen_soil=False,
    diffusivity=0.12,
    seasonal_vegetation=False,
)
SECOND_LSM = SoilModelSpec(
    "lsm2",
    (20.0, 80.0, 100.0, 200.0, 300.0, 300.0),
    porosity_scale=1.1,
    field_capacity_shift=0.06,
    drainage_scale=0.35,
    et_alpha=1.45,
    runoff_exponent_scale=0.7,
    root_efold_mm=150.0,
    melt_factor=4.5,
    frozen_soil=True,
    diffusivity=0.03,
)
STATIC_GREENNESS = 0.6


def _parameters(spec: SoilModelSpec, static: dict, hidden: dict | None) -> dict[str, np.ndarray]:
    """Per-cell parameters of one model: pedotransfer of the static attributes, biased by the
    spec, times the hidden per-cell log-multipliers (truth only: no attribute reveals them)."""
    mult = {k: np.exp(v) for k, v in (hidden or {}).items()}
    sand, clay, silt = (static[k].astype(np.float64) for k in ("sand", "clay", "silt"))
    ones = np.ones_like(sand)
    porosity, field_capacity = porosity_and_field_capacity(sand, clay, silt)
    porosity = np.clip(porosity * spec.porosity_scale * mult.get("porosity", ones), 0.3, 0.6)
    wilting = 0.02 + 0.0035 * clay
    mid = 0.5 * (spec.bounds_mm[1:] + spec.bounds_mm[:-1])
    roots = np.exp(-mid / spec.root_efold_mm) * np.asarray(spec.layers_mm) * (mid < 1000)
    return {
        "dz": np.outer(spec.layers_mm, ones),
        "roots": np.outer(roots / roots.sum(), ones),
        "porosity": porosity,
        "wilting": wilting,
        "residual": 0.01 + 0.001 * clay,
        "field_capacity": np.clip(
            field_capacity + spec.field_capacity_shift, wilting + 0.03, porosity - 0.04
        ),
        "drainage_rate": np.clip(
            spec.drainage_scale * mult.get("drainage", ones) * (0.1 + 0.55 * sand / 100), 0.01, 0.9
        ),
        "slow_drainage": 0.002 * spec.drainage_scale * ones,
        "et_alpha": spec.et_alpha * mult.get("et", ones),
        "infiltration_capacity": 20.0 + 800.0 * (sand / 100) ** 2,
        "runoff_exponent": spec.runoff_exponent_scale
        * mult.get("runoff", ones)
        * (2.0 + 3.0 * clay / 100),
        "vegetation": np.clip(1.3 * static["ndvi"].astype(np.float64), 0.03, 0.95),
        "melt_factor": spec.melt_factor * ones,
        "frozen_soil": spec.frozen_soil * ones > 0,
        "seasonal_vegetation": spec.seasonal_vegetation * ones > 0,
        "diffusivity": spec.diffusivity * ones,
    }


def equilibrium_et(tair, swdown, lwdown) -> np.ndarray:
    """Priestley-Taylor potential ET over alpha (mm/day) from net radiation and temperature;
    forcing only, so it is computed for all days at once."""
    celsius = tair - KELVIN
    es_kpa = 0.6108 * np.exp(17.27 * celsius / (celsius + 237.3))
    slope = 4098.0 * es_kpa / (celsius + 237.3) ** 2
    net_radiation = 0.8 * swdown + lwdown - 0.97 * STEFAN_BOLTZMANN * tair**4
    return slope / (slope + PSYCHROMETRIC_KPA_K) * np.maximum(net_radiation, 0.0) * W_M2_TO_MM_DAY


class SoilModels:
    """Several soil-water models over all cells, stacked along the cell axis so that one numpy
    call advances all of them: model k owns columns [k*n_cell, (k+1)*n_cell)."""

    def __init__(
        self,
        specs,
        static: dict[str, np.ndarray],
        first_tair: np.ndarray,
        hidden: dict[str, dict] | None = None,
    ):
        self.specs = list(specs)
        self.n_cell = len(first_tair)
        per_model = [_parameters(s, static, (hidden or {}).get(s.name)) for s in self.specs]
        for key in per_model[0]:
            setattr(self, key, np.concatenate([p[key] for p in per_model], axis=-1))
        self.theta = np.broadcast_to(self.field_capacity, self.dz.shape).copy()
        dz_a, dz_b = self.dz[:-1], self.dz[1:]
        self.conductance = self.diffusivity * 2 * dz_a * dz_b / (dz_a + dz_b)
        self.swe = np.zeros_like(self.porosity)
        self.tsoil = np.tile(first_tair.astype(np.float64), len(self.specs))
        self.tveg = self.tsoil.copy()

    def part(self, name: str, values: np.ndarray) -> np.ndarray:
        """The columns of one model in a stacked (..., cell) array."""
        k = [s.name for s in self.specs].index(name)
        return values[..., k * self.n_cell : (k + 1) * self.n_cell]

    def storage(self) -> np.ndarray:
        """Water held in each column (soil + snow), mm."""
        return (self.theta * self.dz).sum(0) + self.swe

    def step(self, precip_mm, tair, equilibrium_et) -> dict[str, np.ndarray]:
        """Advance one day with (cell,) forcing; returns the day's fluxes (mm) and states."""
        n = len(self.specs)
        precip_mm, tair, equilibrium_et = (
            np.tile(np.asarray(v, np.float64), n) for v in (precip_mm, tair, equilibrium_et)
        )
        snowfall = precip_mm * np.minimum(np.maximum((KELVIN + 1.0 - tair) / 2.0, 0.0), 1.0)
        self.swe += snowfall
        melt = np.minimum(self.swe, self.melt_factor * np.maximum(tair - KELVIN, 0.0))
        self.swe -= melt
        snow_cover = self.swe / (self.swe + 10.0)
        self.tsoil += (tair - self.tsoil) / (3.0 + self.swe / 4.0)
        self.tveg += (tair - self.tveg) / 20.0
        frozen = self.tsoil < FROZEN_BELOW_K
        greenness = np.where(
            self.seasonal_vegetation,
            1.0 / (1.0 + np.exp(-(self.tveg - (KELVIN + 8.0)) / 2.5)),
            STATIC_GREENNESS,
        )
        runoff = self._infiltrate(precip_mm - snowfall + melt, frozen)
        et = self._evapotranspire(equilibrium_et, snow_cover, frozen, greenness)
        drainage = self._drain()
        self._diffuse()
        return {
            "et": et,
            "runoff": runoff,
            "drainage": drainage,
            "frozen": frozen,
            "greenness": greenness,
        }

    def _infiltrate(self, water, frozen):
        saturation = np.maximum(
            (self.theta[0] - self.residual) / (self.porosity - self.residual), 0.0
        )
        runoff = water * saturation**self.runoff_exponent
        capacity = self.infiltration_capacity * np.where(frozen & self.frozen_soil, 0.05, 1.0)
        runoff += np.maximum(water - runoff - capacity, 0.0)
        left = water - runoff
        for i in range(len(self.dz)):
            take = np.minimum(left, (self.porosity - self.theta[i]) * self.dz[i])
            self.theta[i] += take / self.dz[i]
            left -= take
        return runoff + left

    def _evapotranspire(self, equilibrium_et, snow_cover, frozen, greenness):
        pet = self.et_alpha * equilibrium_et * (1.0 - snow_cover) * np.where(frozen, 0.3, 1.0)
        cover = self.vegetation * (0.25 + 0.75 * greenness)
        top_water = self.theta[0] - self.residual
        stress = np.minimum(np.maximum(top_water / (self.field_capacity - self.residual), 0.0), 1.0)
        evaporation = np.maximum(
            np.minimum((1 - cover) * pet * stress, 0.95 * top_water * self.dz[0]), 0.0
        )
        self.theta[0] -= evaporation / self.dz[0]
        available = np.maximum(self.theta - self.wilting, 0.0)
        stress = np.minimum(available / (0.7 * (self.field_capacity - self.wilting)), 1.0)
        transpiration = np.minimum(cover * pet * self.roots * stress, available * self.dz)
        self.theta -= transpiration / self.dz
        return evaporation + transpiration.sum(0)

    def _drain(self):
        for i in range(len(self.dz) - 1):
            room = (self.porosity - self.theta[i + 1]) * self.dz[i + 1]
            excess = np.maximum(self.theta[i] - self.field_capacity, 0.0) * self.dz[i]
            flow = np.minimum(self.drainage_rate * excess, room)
            self.theta[i] -= flow / self.dz[i]
            self.theta[i + 1] += flow / self.dz[i + 1]
        bottom = self.theta[-1]
        out = (
            self.drainage_rate * np.maximum(bottom - self.field_capacity, 0.0)
            + self.slow_drainage * np.maximum(bottom - self.wilting, 0.0)
        ) * self.dz[-1]
        self.theta[-1] -= out / self.dz[-1]
        return out

    def _diffuse(self):
        flux = self.conductance * (self.theta[:-1] - self.theta[1:])
        self.theta[:-1] -= flux / self.dz[:-1]
        self.theta[1:] += flux / self.dz[1:]


def depth_weights(spec: SoilModelSpec, layers: list[tuple[float, float]], points_mm: list[float]):
    """A (n_out, n_layer) matrix: layer means over [top, bottom] mm, then values at point depths
    interpolated between layer mid-points (constant beyond the first and last)."""
    bounds = spec.bounds_mm
    rows = []
    for top, bottom in layers:
        overlap = np.clip(np.minimum(bounds[1:], bottom) - np.maximum(bounds[:-1], top), 0, None)
        rows.append(overlap / overlap.sum())
    mid = 0.5 * (bounds[1:] + bounds[:-1])
    for depth in points_mm:
        rows.append(np.array([np.interp(depth, mid, unit) for unit in np.eye(len(mid))]))
    return np.array(rows)

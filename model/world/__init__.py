"""The synthetic twin world: weather, land, a soil-water truth, two wrong LSMs, SMAP-like
retrievals and in situ stations over CONUS land cells, deterministic from a seed.

Because truth is known everywhere, every claim of the science (LSTM skill against SMAP, skill
against truth, loss of skill at depth, the value of fusing LSTM with Noah at stations) can be
tested in it. `write_world(world, DIR)` lays it out as

    DIR/input.zarr          the input dataset of model.dataset (forcing, static, SMAP-like target,
                            noah, lsm2); what `smapx train` and `smapx extend` read
    DIR/truth.zarr          truth(time, cell, depth) and the truth model's water budget
    DIR/stations/sensors.csv, DIR/stations/values.nc    in situ probes (read_world_stations)
"""

from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr
from tqdm import tqdm

from model import grid
from model.dataset import cell_coords, daily_index, make_input_dataset, write_input
from model.errors import InputError
from model.world.observe import smap_like, station_records, station_sites, stations_dataarray
from model.world.region import conus_cells
from model.world.soil import NOAH_LIKE, SECOND_LSM, TRUTH, SoilModels, depth_weights, equilibrium_et
from model.world.weather import (
    Climate,
    FieldSampler,
    climate,
    elevation_m,
    static_attributes,
    weather,
)

LSM_LAYER_MM = (0.0, 100.0)
SURFACE_LAYER_MM = (0.0, 50.0)
DENSE_VEGETATION_GREENNESS = 0.5
SNOW_COVERED_MM = 5.0  # SWE above which the ground counts as snow covered (no retrieval)
TRUTH_POINT_DEPTHS_M = (0.05, 0.10, 0.20, 0.50, 1.00)
# Log-spread of truth parameters that static attributes do not reveal (the LSMs miss them).
HIDDEN_SPREAD = {"porosity": 0.08, "drainage": 0.4, "et": 0.12, "runoff": 0.35}


@dataclass
class WorldConfig:
    """Everything that defines a twin world; the same config always gives the same world."""

    seed: int = 42
    start: str = "2000-01-01"
    end: str = "2020-12-31"
    stride: int = 3
    bbox: tuple[float, float, float, float] | None = None
    smap_start: str = "2015-04-01"
    smap_noise: float = 0.02
    smap_bias: float = -0.01
    smap_bias_spread: float = 0.01
    revisit: tuple[int, ...] = (2, 3)
    retrieval_failure: float = 0.03
    dense_networks: int = 4
    dense_stations: int = 6
    sparse_stations: int = 40
    station_depths_m: tuple[float, ...] = (0.05, 0.10, 0.20, 0.50, 1.00)
    representativeness: float = 0.03
    station_noise: float = 0.005
    spinup_days: int = 365
    grid: str = grid.DEFAULT.name  # the EASE2 grid of its cells: 36km, 9km, 3km or 1km

    def days(self) -> pd.DatetimeIndex:
        """The world's days, or a clear error for a malformed or reversed period."""
        try:
            start, end = pd.Timestamp(self.start), pd.Timestamp(self.end)
            pd.Timestamp(self.smap_start)
        except ValueError as exc:
            raise InputError(f"bad date in world period {self.start}..{self.end}: {exc}") from exc
        if end < start:
            raise InputError(f"world end {self.end} is before its start {self.start}")
        return daily_index(start, end)

    def validate(self) -> None:
        """Fail with one clear line on settings the generator cannot honour."""
        if self.smap_noise < 0 or self.smap_bias_spread < 0:
            raise InputError("smap_noise and smap_bias_spread must be >= 0")
        grid.named(self.grid)
        if not self.revisit or min(self.revisit) < 1:
            raise InputError(f"revisit gaps must be positive days, got {self.revisit}")
        unknown = set(self.station_depths_m) - set(TRUTH_POINT_DEPTHS_M)
        if unknown:
            raise InputError(
                f"station depths must be among {TRUTH_POINT_DEPTHS_M} m, got {sorted(unknown)}"
            )


@dataclass
class World:
    """A twin world in memory."""

    config: WorldConfig
    inputs: xr.Dataset
    truth: xr.Dataset
    sensors: pd.DataFrame
    stations: xr.DataArray = field(repr=False)


@dataclass
class Plan:
    """What a world's blocks share: its days and cells, their land (one value per cell, cheap
    for the whole world) and the seeds of its random streams."""

    config: WorldConfig
    on: grid.Grid
    time: pd.DatetimeIndex
    rows: np.ndarray
    cols: np.ndarray
    lat: np.ndarray
    lon: np.ndarray
    elevation: np.ndarray
    climate: Climate
    static: dict
    hidden: dict
    weather_seed: np.random.SeedSequence
    smap_seed: np.random.SeedSequence
    station_seed: np.random.SeedSequence

    @property
    def n_cell(self) -> int:
        return len(self.rows)


def plan_world(config: WorldConfig) -> Plan:
    """The world's cells and land, and its seeds: land, weather, SMAP-like, stations."""
    config.validate()
    time = config.days()
    on = grid.named(config.grid)
    rows, cols = conus_cells(config.stride, config.bbox, on)
    lat, lon = on.rowcol_to_latlon(rows, cols)
    land_seed, weather_seed, smap_seed, station_seed = np.random.SeedSequence(config.seed).spawn(4)
    land = FieldSampler(np.random.default_rng(land_seed), lat, lon)
    elevation = elevation_m(lat, lon, land)
    climate_ = climate(lat, lon, elevation)
    static = static_attributes(climate_, elevation, land)
    hidden = {name: spread * land.static(0.6) for name, spread in HIDDEN_SPREAD.items()}
    return Plan(
        config, on, time, rows, cols, lat, lon, elevation, climate_, static, hidden,
        weather_seed, smap_seed, station_seed,
    )  # fmt: skip


def build_world(config: WorldConfig, progress: bool = False) -> World:
    """Generate the world: weather and land, then the daily soil-water loop, then observations."""
    plan = plan_world(config)
    inputs, truth, frozen = world_block(
        plan, slice(0, plan.n_cell), np.random.default_rng(plan.smap_seed), progress, whole=True
    )
    station_rng = np.random.default_rng(plan.station_seed)
    sites = station_sites(plan.rows, plan.cols, plan.lat, plan.lon, config, station_rng, plan.on)
    depths = list(config.station_depths_m)
    sensors, values = station_records(
        sites, truth["truth"].sel(depth=depths).values, frozen, depths, config, station_rng
    )
    return World(config, inputs, truth, sensors, stations_dataarray(sensors, values, plan.time))


def world_block(
    plan: Plan, cells: slice, smap_rng, progress: bool = False, whole: bool = False
) -> tuple[xr.Dataset, xr.Dataset, np.ndarray]:
    """(inputs, truth, frozen (day, cell)) of a block of the world's cells. Its weather is the
    whole world's there (the samplers draw per lattice node, from the weather seed), its
    soil-water loop runs per cell; only the SMAP-like noise comes from the block's `smap_rng`."""
    config, time, on = plan.config, plan.time, plan.on
    lat, lon, rows, cols = plan.lat[cells], plan.lon[cells], plan.rows[cells], plan.cols[cells]
    frame = None if whole else (plan.lat, plan.lon)
    sampler = FieldSampler(np.random.default_rng(plan.weather_seed), lat, lon, frame)
    climate_ = Climate(*(getattr(plan.climate, f.name)[cells] for f in fields(Climate)))
    forcing = weather(time, lat, climate_, plan.elevation[cells], sampler)
    static = {name: values[cells] for name, values in plan.static.items()}
    hidden = {name: values[cells] for name, values in plan.hidden.items()}
    sims = simulate(forcing, static, hidden, config.spinup_days, progress)
    truth = _truth_dataset(sims, static, time, rows, cols, config, on)
    vegetation_masked = (static["flag_vegdense"][None, :] > 0) & (
        sims["greenness"] > DENSE_VEGETATION_GREENNESS
    )
    truth["vegetation_masked"] = (("time", "cell"), vegetation_masked)
    target, bias = smap_like(
        sims["truth"][..., 0], sims["frozen"], vegetation_masked, cols, time, config, smap_rng, on
    )
    truth["smap_bias"] = ("cell", bias, {"units": "m3 m-3"})
    inputs = make_input_dataset(
        time,
        rows,
        cols,
        forcing,
        static,
        target,
        lsm={"noah": sims["noah"], "lsm2": sims["lsm2"]},
        attrs={
            "source": "smapx twin world",
            **_attrs(config),
            "description": (
                "Synthetic twin world. forcing drives a layered soil-water truth; "
                "target is SMAP-like (0-5 cm truth + bias + noise, revisit gaps, "
                "frozen/dense-vegetation masks, from smap_start); noah and lsm2 "
                "are 0-10 cm simulations of the same forcing by wrong models."
            ),
        },
        grid=on,
    )
    return inputs, truth, sims["frozen"]


def simulate(
    forcing: dict, static: dict, hidden: dict, spinup_days: int, progress: bool = False
) -> dict:
    """Run truth (with its hidden parameters) and the two wrong models over every day;
    (day, cell[, depth]) float32 outputs."""
    n_day, n_cell = forcing["tair"].shape
    models = SoilModels(
        (TRUTH, NOAH_LIKE, SECOND_LSM), static, forcing["tair"][0], {"truth": hidden}
    )
    profile_map = depth_weights(
        TRUTH, [SURFACE_LAYER_MM], [1000.0 * d for d in TRUTH_POINT_DEPTHS_M]
    )
    truth_0_10_map = depth_weights(TRUTH, [LSM_LAYER_MM], [])[0]
    lsm_maps = {
        spec.name: depth_weights(spec, [LSM_LAYER_MM], [])[0] for spec in (NOAH_LIKE, SECOND_LSM)
    }
    energy = equilibrium_et(forcing["tair"], forcing["swdown"], forcing["lwdown"])

    def day(t):
        return forcing["precip"][t].astype(np.float64) * 24.0, forcing["tair"][t], energy[t]

    for t in tqdm(range(min(spinup_days, n_day)), desc="spin-up", unit="day", disable=not progress):
        models.step(*day(t))
    out = {
        name: np.empty((n_day, n_cell), np.float32)
        for name in (
            "truth_0_10",
            "noah",
            "lsm2",
            "et",
            "runoff",
            "drainage",
            "storage",
            "swe",
            "greenness",
        )
    }
    out["truth"] = np.empty((n_day, n_cell, profile_map.shape[0]), np.float32)
    out["frozen"] = np.empty((n_day, n_cell), bool)
    out["storage_start"] = models.part("truth", models.storage()).astype(np.float32)
    for t in tqdm(range(n_day), desc="world", unit="day", disable=not progress):
        flux = {k: models.part("truth", v) for k, v in models.step(*day(t)).items()}
        for name, weights in lsm_maps.items():
            out[name][t] = weights @ models.part(name, models.theta)
        theta = models.part("truth", models.theta)
        out["truth"][t] = (profile_map @ theta).T
        out["truth_0_10"][t] = truth_0_10_map @ theta
        for name in ("et", "runoff", "drainage", "greenness"):
            out[name][t] = flux[name]
        swe = models.part("truth", models.swe)
        out["frozen"][t] = flux["frozen"] | (swe > SNOW_COVERED_MM)
        out["storage"][t] = models.part("truth", models.storage())
        out["swe"][t] = swe
    out["precip"] = forcing["precip"] * np.float32(24.0)
    out["params"] = {
        k: models.part("truth", getattr(models, k)).astype(np.float32)
        for k in ("porosity", "field_capacity", "wilting", "residual")
    }
    return out


def _truth_dataset(sims, static, time, rows, cols, config, on: grid.Grid) -> xr.Dataset:
    depth = np.array((0.025,) + TRUTH_POINT_DEPTHS_M)
    labels = ["0-5 cm"] + [f"{round(d * 100)} cm" for d in TRUTH_POINT_DEPTHS_M]
    mm = {"units": "mm day-1"}
    data = {
        "truth": (
            ("time", "cell", "depth"),
            sims["truth"],
            {"units": "m3 m-3", "long_name": "true soil moisture"},
        ),
        "truth_0_10": (("time", "cell"), sims["truth_0_10"], {"units": "m3 m-3"}),
        "precip": (("time", "cell"), sims["precip"], mm),
        "et": (("time", "cell"), sims["et"], mm),
        "runoff": (("time", "cell"), sims["runoff"], mm),
        "drainage": (("time", "cell"), sims["drainage"], mm),
        "storage": (
            ("time", "cell"),
            sims["storage"],
            {"units": "mm", "long_name": "soil water + SWE at day end"},
        ),
        "storage_start": ("cell", sims["storage_start"], {"units": "mm"}),
        "swe": (("time", "cell"), sims["swe"], {"units": "mm"}),
        "frozen": (("time", "cell"), sims["frozen"], {"long_name": "soil frozen or snow covered"}),
        "greenness": (("time", "cell"), sims["greenness"]),
        **{k: ("cell", v, {"units": "m3 m-3"}) for k, v in sims["params"].items()},
        "flag_vegdense": ("cell", static["flag_vegdense"]),
    }
    coords = {
        **cell_coords(time, rows, cols, on),
        "depth": ("depth", depth, {"units": "m"}),
        "depth_label": ("depth", np.array(labels, dtype=object)),
    }
    return xr.Dataset(
        data,
        coords,
        attrs={
            "grid": on.attr,
            "source": "smapx twin world",
            **_attrs(config),
            "description": (
                "Truth of the twin world. truth(depth=0.025) is the 0-5 cm layer mean SMAP "
                "senses; the other depths are point values the stations probe. truth_0_10 "
                "compares with noah/lsm2. Water budget per day: precip = et + runoff + drainage + "
                "(storage - storage of the day before)."
            ),
        },
    )


def _attrs(config: WorldConfig) -> dict:
    return {
        f"world_{k}": (list(v) if isinstance(v, tuple) else ("" if v is None else v))
        for k, v in asdict(config).items()
    }


def write_world(world: World, out_dir: str | Path) -> Path:
    """Write input.zarr, truth.zarr and stations/ under out_dir."""
    out = Path(out_dir)
    (out / "stations").mkdir(parents=True, exist_ok=True)
    write_input(world.inputs, out / "input.zarr")
    chunks = {"time": min(366, world.truth.sizes["time"])}
    encoding = {
        name: {"chunks": tuple(chunks.get(d, world.truth.sizes[d]) for d in var.dims)}
        for name, var in world.truth.data_vars.items()
    }
    world.truth.to_zarr(
        str(out / "truth.zarr"), mode="w", encoding=encoding, consolidated=True, zarr_format=3
    )
    world.sensors.to_csv(out / "stations" / "sensors.csv", index=False)
    world.stations.to_netcdf(out / "stations" / "values.nc")
    return out


def read_world_stations(folder: str | Path) -> tuple[pd.DataFrame, xr.DataArray]:
    """(sensors table, value(time, sensor) m3/m3) from a world folder or its stations/ folder."""
    folder = Path(folder)
    if (folder / "stations").is_dir():
        folder = folder / "stations"
    sensors_path, values_path = folder / "sensors.csv", folder / "values.nc"
    if not sensors_path.is_file() or not values_path.is_file():
        raise InputError(f"no twin-world stations in {folder} (need sensors.csv and values.nc)")
    sensors = pd.read_csv(sensors_path)
    with xr.open_dataarray(values_path) as values:
        return sensors, values.load()


def open_truth(folder: str | Path) -> xr.Dataset:
    """The truth dataset of a written world."""
    path = Path(folder) / "truth.zarr"
    if not path.exists():
        raise InputError(f"no twin-world truth at {path}")
    return xr.open_zarr(str(path), consolidated=None)


def summary(world: World) -> str:
    """One line: cells, days, SMAP-like observations, stations."""
    time = world.inputs.time.values
    n_obs = int(world.inputs["target"].notnull().sum())
    stations = world.sensors.drop_duplicates("station")["network"].value_counts()
    return (
        f"{world.inputs.sizes['cell']} cells, {len(time)} days ({str(time[0])[:10]}.."
        f"{str(time[-1])[:10]}), {n_obs} SMAP-like observations, "
        f"{stations.get('dense', 0)} dense + "
        f"{stations.get('sparse', 0)} sparse stations ({len(world.sensors)} sensors)"
    )

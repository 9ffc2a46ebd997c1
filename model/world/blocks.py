"""A twin world too big for memory (a 9 km CONUS of decades), written block by block.

The world's land is planned whole (one value per cell), then its cells are generated in blocks
of `block_cells`: each block's weather is the whole world's there (model.world.weather's
samplers draw per lattice node), its soil-water loop runs per cell, and its inputs and truth go
straight into their own region of input.zarr and truth.zarr, chunked a year by one block. Memory
holds one block's days and cells, whatever the region's size. The inputs are stored rounded to
model.dataset.KEEP_BITS significant bits and compressed. Only the SMAP-like noise is drawn
per block (each from its own seed), and the stations are gathered from the blocks their cells
lie in: a world written in blocks is the world built whole but for that noise (and the inputs'
rounding).
"""

from pathlib import Path

import numpy as np
import xarray as xr
from tqdm import tqdm

from model import grid
from model.dataset import cell_coords, input_coords, rounded, sole_writer, unwritten
from model.world import Plan, plan_world, world_block
from model.world.observe import station_records, station_sites, stations_dataarray
from model.world.region import conus_cells

BLOCK_CELLS = 1024
CHUNK_DAYS = 366
ROUNDED = ("forcing", "target", "noah", "lsm2")
IN_MEMORY_CELL_DAYS = 100_000_000  # a 36 km world up to this size is built whole, as it always was


def in_blocks(config) -> bool:
    """Whether `smapx world` writes the world in blocks: on a finer grid than 36 km, or past
    IN_MEMORY_CELL_DAYS (~12 GB of arrays in memory)."""
    on = grid.named(config.grid)
    cells = len(conus_cells(config.stride, config.bbox, on)[0])
    return on != grid.DEFAULT or cells * len(config.days()) > IN_MEMORY_CELL_DAYS


def write_world_blocks(
    config, out_dir: str | Path, block_cells: int = BLOCK_CELLS, progress: bool = False
) -> str:
    """Generate and write the world of `config` under out_dir as write_world lays it out; the
    summary line of model.world.summary."""
    out = Path(out_dir)
    (out / "stations").mkdir(parents=True, exist_ok=True)
    plan = plan_world(config)
    station_rng = np.random.default_rng(plan.station_seed)
    sites = station_sites(plan.rows, plan.cols, plan.lat, plan.lon, config, station_rng, plan.on)
    depths = list(config.station_depths_m)
    station_cells = np.unique(sites["cell"].to_numpy())
    probed = np.empty((len(plan.time), len(station_cells), len(depths)), np.float32)
    frozen_probed = np.empty((len(plan.time), len(station_cells)), bool)
    starts = range(0, plan.n_cell, block_cells)
    seeds = plan.smap_seed.spawn(len(starts))
    observations = 0
    with sole_writer(out / "input.zarr"):
        for k, first in enumerate(tqdm(starts, desc="world blocks", disable=not progress)):
            cells = slice(first, min(first + block_cells, plan.n_cell))
            inputs, truth, frozen = world_block(plan, cells, np.random.default_rng(seeds[k]))
            if k == 0:
                _create(
                    out / "input.zarr", inputs, plan, block_cells, input_coords_of(plan, inputs)
                )
                _create(out / "truth.zarr", truth, plan, block_cells, truth_coords_of(plan, truth))
            _write_region(out / "input.zarr", inputs, cells)
            _write_region(out / "truth.zarr", truth, cells)
            here = (station_cells >= cells.start) & (station_cells < cells.stop)
            local = station_cells[here] - cells.start
            probed[:, here] = truth["truth"].sel(depth=depths).values[:, local]
            frozen_probed[:, here] = frozen[:, local]
            observations += int(inputs["target"].notnull().sum())
    compact = sites.assign(cell=np.searchsorted(station_cells, sites["cell"].to_numpy()))
    sensors, values = station_records(compact, probed, frozen_probed, depths, config, station_rng)
    sensors.to_csv(out / "stations" / "sensors.csv", index=False)
    stations_dataarray(sensors, values, plan.time).to_netcdf(out / "stations" / "values.nc")
    stations = sensors.drop_duplicates("station")["network"].value_counts()
    return (
        f"{plan.n_cell} cells, {len(plan.time)} days ({plan.time[0].date()}.."
        f"{plan.time[-1].date()}), {observations} SMAP-like observations, "
        f"{stations.get('dense', 0)} dense + {stations.get('sparse', 0)} sparse stations "
        f"({len(sensors)} sensors)"
    )


def input_coords_of(plan: Plan, block: xr.Dataset) -> dict:
    return input_coords(
        plan.time,
        plan.rows,
        plan.cols,
        block["variable"].values,
        block["static_variable"].values,
        plan.on,
    )


def truth_coords_of(plan: Plan, block: xr.Dataset) -> dict:
    return {
        **cell_coords(plan.time, plan.rows, plan.cols, plan.on),
        "depth": block["depth"].variable,
        "depth_label": block["depth_label"].variable,
    }


def _create(store: Path, block: xr.Dataset, plan: Plan, block_cells: int, coords: dict) -> None:
    """The store of the whole world with the block's variables, unwritten (read as NaN)."""
    sizes = {**block.sizes, "cell": plan.n_cell}
    chunks = {"time": min(CHUNK_DAYS, sizes["time"]), "cell": min(block_cells, plan.n_cell)}
    data = {
        name: (
            var.dims,
            unwritten(tuple(sizes[d] for d in var.dims), var.dtype, fill=0),
            var.attrs,
        )
        for name, var in block.data_vars.items()
    }
    template = xr.Dataset(data, coords, attrs=block.attrs)
    encoding = {
        name: {
            "chunks": tuple(chunks.get(d, sizes[d]) for d in var.dims),
            **(rounded() if name in ROUNDED else {}),
        }
        for name, var in block.data_vars.items()
    }
    template.to_zarr(
        str(store), mode="w", compute=False, encoding=encoding, consolidated=True, zarr_format=3
    )


def _write_region(store: Path, block: xr.Dataset, cells: slice) -> None:
    part = block.drop_vars([n for n in block.variables if "cell" not in block[n].dims])
    part.to_zarr(str(store), mode="r+", region={"cell": cells}, consolidated=False)


def store_bytes(folder: Path) -> int:
    """Bytes on disk of a store (every file under it)."""
    return sum(p.stat().st_size for p in Path(folder).rglob("*") if p.is_file())


def bytes_per_cell_day(store: Path, cells: int, days: int) -> float:
    """What a store costs on disk per cell and day of its world."""
    return store_bytes(store) / (cells * days)

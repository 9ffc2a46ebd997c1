"""Extension: run a checkpoint over every cell and day of a period and write the product cube.

The work is split into the cube's blocks (model.cube.blocks). Each block is computed by
`compute_block` alone, from the input dataset, so a block computed in this process and one
computed by a worker elsewhere are the same bytes.
"""

from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr
from tqdm import tqdm

from model import cube as cubes
from model.checkpoint import Checkpoint
from model.dataset import LSM_VARIABLES, select_period
from model.inference import predict

WARMUP_DAYS = 365


def plan(ckpt: Checkpoint, inputs: xr.Dataset, start, end) -> xr.Dataset:
    """The empty cube for an extension request, after checking the request against the inputs."""
    ckpt.normalizer.check(inputs)
    period = select_period(inputs, start, end)
    products = ["lstm", "smap"] + [p for p in LSM_VARIABLES if p in inputs]
    attrs = {"model": str(ckpt.config.get("path", "")), "warmup_days": WARMUP_DAYS,
             "training_period": f"{ckpt.config.get('start')}..{ckpt.config.get('end')}"}
    return cubes.template(period.time.values, inputs.row.values, inputs.col.values, products, attrs)


def spinup_indices(start: int, stop: int, warmup: int) -> np.ndarray:
    """Input-day indices to run for output days start..stop: `warmup` days before start, or, near
    the beginning of the record, the first days of the record repeated as a cyclic spin-up
    (cycled again when the record up to stop is shorter than the spin-up)."""
    if start >= warmup:
        return np.arange(start - warmup, stop)
    return np.concatenate([np.arange(0, warmup - start) % stop, np.arange(0, stop)])


def compute_block(ckpt: Checkpoint, inputs: xr.Dataset, cube: xr.Dataset, block: cubes.Block,
                  warmup: int = WARMUP_DAYS) -> dict[str, np.ndarray]:
    """The (time, y, x) arrays of every product for one block of the cube."""
    mask = cube["mask"].values[block.y, block.x]
    row0, col0 = int(cube.attrs["row0"]) + block.y.start, int(cube.attrs["col0"]) + block.x.start
    iy, ix = np.nonzero(mask)
    key = pd.MultiIndex.from_arrays([inputs.row.values, inputs.col.values])
    cells = key.get_indexer(pd.MultiIndex.from_arrays([iy + row0, ix + col0]))
    block_days = pd.DatetimeIndex(cube.time.values[block.time])
    first = int(pd.DatetimeIndex(inputs.time.values).get_loc(block_days[0]))
    days = spinup_indices(first, first + len(block_days), warmup)
    sub = inputs.isel(cell=cells, time=days)
    lstm = predict(ckpt, ckpt.normalizer.inputs(sub), warmup=len(days) - len(block_days))
    shape = (len(block_days), *mask.shape)
    values = {"lstm": _scatter(lstm.T, iy, ix, shape)}
    observed = inputs.isel(cell=cells, time=slice(first, first + len(block_days)))
    for product, source in [("smap", "target"), *[(p, p) for p in LSM_VARIABLES]]:
        if product in cube:
            values[product] = _scatter(observed[source].values, iy, ix, shape)
    return values


def _scatter(values: np.ndarray, iy, ix, shape) -> np.ndarray:
    out = np.full(shape, np.nan, np.float32)
    out[:, iy, ix] = values
    return out


def extend(ckpt: Checkpoint, inputs: xr.Dataset, start, end, out: str | Path,
           storage_options: dict | None = None, progress: bool = True) -> xr.Dataset:
    """Extend over start..end in this process and write the cube to `out`."""
    template = plan(ckpt, inputs, start, end)
    cubes.create(out, template, storage_options)
    inputs = inputs.load()
    for block in tqdm(cubes.blocks(template), desc="extend", unit="block", disable=not progress):
        cubes.write_block(out, block, compute_block(ckpt, inputs, template, block), storage_options)
    return cubes.open_cube(out, storage_options)

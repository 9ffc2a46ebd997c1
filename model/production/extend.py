"""Extension: run a checkpoint over every cell and day of a period and write the product cube.

The work is split into the cube's blocks (model.product.cube.blocks). A block's bytes depend on
its own cells and time chunk alone: a worker computes one block (`compute_block`), the in-process
extension runs the blocks of a time chunk together (`compute_blocks`), and both write the same
cube. An extension into an existing cube of the same checkpoint, inputs and start grows it
(`begin`): only the time chunks the new days touch are computed, so the grown cube is the one a
single extension over the whole period writes. The inputs are never loaded whole: each batch of
blocks reads its own cells over its own days (and their spin-up) from the store, chunk by chunk,
so a process's memory is bounded by a batch whatever the region's size.
"""

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr
from tqdm import tqdm

from model import grid
from model.dataset import LSM_VARIABLES, select_period
from model.engine.inference import predict_with_spread
from model.errors import InputError
from model.product import climatology
from model.product import cube as cubes
from model.training.checkpoint import Checkpoint

WARMUP_DAYS = 365
# cells run through the network at once: their inputs over a time chunk and its spin-up
# (1,826 days x 19 inputs) take ~280 MB
BATCH_CELLS = 2048
OBSERVED = {"smap": "target", **{p: p for p in LSM_VARIABLES}}  # cube products copied from inputs


def plan(ckpt: Checkpoint, inputs: xr.Dataset, start, end) -> xr.Dataset:
    """The empty cube for an extension request, after checking the request against the inputs."""
    ckpt.normalizer.check(inputs)
    on = grid.of(inputs.attrs)
    grid.check_same(ckpt.grid, "the checkpoint", on, "the input dataset")
    period = select_period(inputs, start, end)
    product = model_product(ckpt)
    products = [product, f"{product}_spread", "smap"] + [p for p in LSM_VARIABLES if p in inputs]
    attrs = {
        "model": (
            f"LSTM, {ckpt.config.get('hidden')} hidden units, {len(ckpt.state_dicts)} member(s), "
            f"{ckpt.validation.get('epochs', '?')} epochs, trained on SMAP "
            f"{ckpt.config.get('training_days')}"
        ),
        "warmup_days": WARMUP_DAYS,
        "training_period": f"{ckpt.config.get('start')}..{ckpt.config.get('end')}",
        "model_digest": ckpt.digest(),
        "input_digest": input_digest(inputs),
    }
    return cubes.template(
        period.time.values, inputs.row.values, inputs.col.values, products, attrs, on
    )


def model_product(ckpt: Checkpoint) -> str:
    """The cube product a checkpoint writes: `nowcast` for a nowcast model, else `lstm`."""
    return "nowcast" if ckpt.is_nowcast else "lstm"


def input_digest(inputs: xr.Dataset) -> str:
    """What identifies an input dataset as it grows day by day: its cells, variables, static
    attributes and first day (of forcing and SMAP), not its length."""
    digest = hashlib.sha256()
    first = inputs[["forcing", "target"]].isel(time=0)
    arrays = [inputs["row"], inputs["col"], inputs["static"], first["forcing"], first["target"]]
    for values, dtype in zip(arrays, (np.int64, np.int64, np.float32, np.float32, np.float32)):
        digest.update(np.nan_to_num(np.asarray(values, dtype), nan=-9999.0).tobytes())
    names = [str(v) for v in inputs["variable"].values]
    names += [str(v) for v in inputs["static_variable"].values]
    digest.update(json.dumps([names, pd.Timestamp(inputs.time.values[0]).isoformat()]).encode())
    return digest.hexdigest()


def begin(
    template: xr.Dataset, out: str | Path, storage_options: dict | None = None
) -> list[cubes.Block]:
    """Ready `out` for the planned cube and return the blocks left to compute: all of a new
    cube; the time chunks a later end touches in a cube of the same checkpoint, inputs and
    start; those a stopped run left unwritten; none for a cube that already holds the request.
    Anything else is refused before a byte is written."""
    stored = cubes.stored_layout(out, storage_options)
    if stored is None:
        cubes.create(out, template, storage_options)
        return cubes.blocks(template)
    cubes.check_growable(stored, out)
    _check_same_source(stored, template, out)
    before, after = stored.sizes["time"], template.sizes["time"]
    if after < before:
        raise InputError(
            f"cube {out} already extends to {cubes.extent(stored)['end']}, past the requested "
            f"end {pd.Timestamp(template.time.values[-1]).date()}; a cube only grows"
        )
    if after > before:
        cubes.grow(out, template, before, storage_options)
    done = cubes.blocks_done(out, storage_options)
    return [b for b in cubes.blocks(template) if b.name not in done]


def _check_same_source(stored: xr.Dataset, template: xr.Dataset, out) -> None:
    """Refuse to mix: a cube grows only with its own checkpoint, inputs, start and products."""
    mismatch = [
        what
        for what, same in (
            ("checkpoint", stored.attrs.get("model_digest") == template.attrs["model_digest"]),
            ("input dataset", stored.attrs.get("input_digest") == template.attrs["input_digest"]),
            ("start", stored.time.values[0] == template.time.values[0]),
            ("products", set(cubes.products(stored)) == set(cubes.products(template))),
        )
        if not same
    ]
    if mismatch:
        raise InputError(
            f"cube {out} was made with another {' and '.join(mismatch)}; extend it with the "
            f"checkpoint, input dataset and --start that made it, or write a new --out"
        )


def spinup_indices(start: int, stop: int, warmup: int) -> np.ndarray:
    """Input-day indices to run for output days start..stop: `warmup` days before start, or, near
    the beginning of the record, the first days of the record repeated as a cyclic spin-up
    (cycled again when the record up to stop is shorter than the spin-up)."""
    if start >= warmup:
        return np.arange(start - warmup, stop)
    return np.concatenate([np.arange(0, warmup - start) % stop, np.arange(0, stop)])


def compute_block(
    ckpt: Checkpoint,
    inputs: xr.Dataset,
    cube: xr.Dataset,
    block: cubes.Block,
    warmup: int = WARMUP_DAYS,
) -> dict[str, np.ndarray]:
    """The (time, y, x) arrays of every product for one block of the cube."""
    return next(compute_blocks(ckpt, inputs, cube, [block], warmup))[1]


def compute_blocks(
    ckpt: Checkpoint,
    inputs: xr.Dataset,
    cube: xr.Dataset,
    blocks: list[cubes.Block],
    warmup: int = WARMUP_DAYS,
) -> Iterator[tuple[cubes.Block, dict[str, np.ndarray]]]:
    """(block, arrays) for each block, as compute_block gives them one by one (the same bytes):
    the cells of blocks that share a time chunk run through the network together, up to
    BATCH_CELLS, so that the engine's per-call set-up and padding are paid once, not per block."""
    grid_cells = pd.MultiIndex.from_arrays([inputs.row.values, inputs.col.values])
    input_days = pd.DatetimeIndex(inputs.time.values)
    copied = {product: source for product, source in OBSERVED.items() if product in cube}
    for batch in _batches(cube, blocks):
        where = [_block_cells(grid_cells, cube, block) for block in batch]
        cells = np.concatenate([c for _, _, c in where])
        block_days = pd.DatetimeIndex(cube.time.values[batch[0].time])
        first = int(input_days.get_loc(block_days[0]))
        days = spinup_indices(first, first + len(block_days), warmup)
        part, held, day0 = read_cells(ckpt, inputs, cells, days)
        x = ckpt.normalizer.inputs(part, held, days - day0)
        lstm, spread = predict_with_spread(
            ckpt, x, warmup=len(days) - len(block_days), groups=[len(c) for _, _, c in where]
        )
        observed = part[list(copied.values())].isel(
            cell=held, time=slice(first - day0, first - day0 + len(block_days))
        )
        sources = {
            model_product(ckpt): lstm.T,
            f"{model_product(ckpt)}_spread": spread.T,
            **{product: observed[source].values for product, source in copied.items()},
        }
        offset = 0
        for block, (iy, ix, block_cells) in zip(batch, where, strict=True):
            part = slice(offset, offset + len(block_cells))
            shape = (len(block_days), block.y.stop - block.y.start, block.x.stop - block.x.start)
            yield block, {p: _scatter(v[:, part], iy, ix, shape) for p, v in sources.items()}
            offset = part.stop


def read_cells(
    ckpt: Checkpoint, inputs: xr.Dataset, cells: np.ndarray, days: np.ndarray
) -> tuple[xr.Dataset, np.ndarray, int]:
    """The inputs of `cells` over the days `days` spans (and a nowcast's look-back before them),
    read into memory chunk by chunk: all a batch needs, never the rest of the dataset. Returns
    them, the cells' indices in them and the index of their first day among the inputs' days
    (the days a nowcast's look-back would reach before the record's start are not read, as they
    do not exist)."""
    margin = ckpt.normalizer.observation_latency + ckpt.normalizer.observation_lookback
    day0 = max(int(days.min()) - margin, 0)
    held = np.unique(cells)
    part = inputs.isel(cell=held, time=slice(day0, int(days.max()) + 1)).load()
    return part, np.searchsorted(held, cells), day0


def _block_cells(grid_cells: pd.MultiIndex, cube: xr.Dataset, block: cubes.Block):
    """(iy, ix) of a block's region cells within the block, and their indices in the inputs,
    whose (row, col) are grid_cells."""
    iy, ix = np.nonzero(cube["mask"].values[block.y, block.x])
    row0, col0 = int(cube.attrs["row0"]) + block.y.start, int(cube.attrs["col0"]) + block.x.start
    return iy, ix, grid_cells.get_indexer(pd.MultiIndex.from_arrays([iy + row0, ix + col0]))


def _batches(cube: xr.Dataset, blocks: list[cubes.Block]) -> Iterator[list[cubes.Block]]:
    """Consecutive blocks of one time chunk, at most BATCH_CELLS region cells together (a block
    larger than that alone)."""
    mask = cube["mask"].values
    batch, n_cells = [], 0
    for block in blocks:
        size = int(mask[block.y, block.x].sum())
        if batch and (block.time != batch[0].time or n_cells + size > BATCH_CELLS):
            yield batch
            batch, n_cells = [], 0
        batch.append(block)
        n_cells += size
    if batch:
        yield batch


def _scatter(values: np.ndarray, iy, ix, shape) -> np.ndarray:
    out = np.full(shape, np.nan, np.float32)
    out[:, iy, ix] = values
    return out


def extend(
    ckpt: Checkpoint,
    inputs: xr.Dataset,
    start,
    end,
    out: str | Path,
    storage_options: dict | None = None,
    progress: bool = True,
) -> int:
    """Extend over start..end in this process and write, grow or keep the cube at `out`
    (model.product.cube.open_cube reads it); the number of blocks computed."""
    template = plan(ckpt, inputs, start, end)
    todo = begin(template, out, storage_options)
    with tqdm(total=len(todo), desc="extend", unit="block", disable=not progress) as bar:
        for block, values in compute_blocks(ckpt, inputs, template, todo):
            cubes.write_block(out, block, values, storage_options)
            bar.update()
    climatology.rank_grown(out, template.time.values)
    cubes.publish(out, template.time.values, storage_options)
    return len(todo)

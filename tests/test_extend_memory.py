"""The extension's memory is bounded by a batch of blocks, not by the input dataset: in process
and in a worker, a block reads its own cells and days from the store, chunk by chunk."""

import tracemalloc
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from model.dataset import make_input_dataset, open_input
from model.product import cube as cubes
from model.production import extend as extension
from model.training import checkpoint
from model.training.checkpoint import Checkpoint
from model.training.network import SoilMoistureLSTM
from model.training.normalize import Normalizer
from tests.twins import assert_same_cube
from worker.extension import ExtensionJob, run_block

START, END = "2011-01-01", "2011-12-31"
SIDE, BLOCKS = 12, 4  # 12 x 12 cells in each of 4 x 4 cube blocks: 2,304 cells
CELL_CHUNK = 64


@pytest.fixture(scope="module")
def region(tmp_path_factory) -> dict:
    """An input dataset of 2,304 cells over two years (~67 MB as float32) stored in chunks of a
    year by 64 cells, and an untrained checkpoint."""
    folder = tmp_path_factory.mktemp("memory")
    rng = np.random.default_rng(11)
    offsets = np.arange(BLOCKS) * cubes.CHUNK_Y
    by, iy, bx, ix = np.meshgrid(offsets, np.arange(SIDE), offsets, np.arange(SIDE), indexing="ij")
    rows, cols = (100 + by + iy).ravel(), (200 + bx + ix).ravel()  # row by row, as regions are
    time = pd.date_range("2010-01-01", "2011-12-31", freq="D")
    shape = (len(time), len(rows))

    def field(offset, scale):
        return (offset + scale * rng.standard_normal(shape)).astype(np.float32)

    names = ("precip", "tair", "spfh", "swdown", "lwdown", "wind_u", "wind_v", "psurf")
    forcing = {n: field(1.0 + i, 0.1) for i, n in enumerate(names)}
    static = {"clay": rng.uniform(0.1, 0.5, len(rows)), "sand": rng.uniform(0.2, 0.7, len(rows))}
    truth = field(0.25, 0.03)
    target = np.where(rng.random(shape) < 0.4, truth, np.nan).astype(np.float32)
    ds = make_input_dataset(time, rows, cols, forcing, static, target, {"noah": truth})
    inputs = folder / "inputs.zarr"
    chunks = {"time": 366, "cell": CELL_CHUNK}
    encoding = {n: {"chunks": tuple(chunks.get(d, ds.sizes[d]) for d in ds[n].dims)} for n in ds}
    ds.to_zarr(inputs, mode="w", encoding=encoding, consolidated=True, zarr_format=3)
    torch.manual_seed(2)
    normalizer = Normalizer.fit(ds)
    net = SoilMoistureLSTM(normalizer.n_inputs, 16, 0.5)
    config = {"hidden": 16, "dropout": 0.5, "start": "2010-01-01", "end": "2011-12-31"}
    model = folder / "model"
    checkpoint.save(model, Checkpoint(config, normalizer, [net.state_dict()]))
    return {"inputs": inputs, "model": model, "whole": ds.nbytes, "folder": folder}


def peak_bytes(run) -> int:
    """The most bytes Python and numpy held at once while `run` ran, beyond what they held
    before."""
    tracemalloc.start()
    try:
        run()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_in_process_extension_reads_a_batch_not_the_dataset(region, monkeypatch):
    """With a batch of one block (144 cells), the peak stays under half the ~67 MB
    that loading the inputs would take, and the cube is the one a single batch of all blocks
    writes. (Without a map layout: publishing one copies strips of 128 rows of the cube, its own
    bound, which this region's whole width of products already exceeds.)"""
    monkeypatch.setattr(cubes, "MAPS_FROM_MB", 1024)
    ckpt = checkpoint.load(region["model"])
    whole = region["folder"] / "whole.zarr"
    extension.extend(ckpt, open_input(region["inputs"]), START, END, whole, progress=False)
    monkeypatch.setattr(extension, "BATCH_CELLS", SIDE * SIDE)
    out = region["folder"] / "bounded.zarr"
    peak = peak_bytes(
        lambda: extension.extend(
            ckpt, open_input(region["inputs"]), START, END, out, progress=False
        )
    )
    assert region["whole"] > 60e6
    assert peak < region["whole"] / 2, f"peak {peak / 1e6:.1f} MB"
    assert_same_cube(out, whole)


def test_a_worker_block_reads_its_cells_not_the_dataset(region, tmp_path):
    """A worker's block (144 cells of 2,304) holds under half the inputs at its peak."""
    request = {
        "model": str(region["model"]),
        "input": str(region["inputs"]),
        "start": START,
        "end": END,
        "out": str(tmp_path / "cube.zarr"),
    }
    job = ExtensionJob.checked(request)
    blocks, _ = job.prepare()
    assert len(blocks) == BLOCKS * BLOCKS
    peak = peak_bytes(lambda: run_block(job.request, 5))
    assert peak < region["whole"] / 2, f"peak {peak / 1e6:.1f} MB"
    assert cubes.blocks_done(job.out) == {blocks[5].name}
    assert Path(job.out).exists()

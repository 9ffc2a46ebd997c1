"""A twin world and checkpoint for the worker pool's tests, the extension requests they submit,
and a store's files by key."""

from pathlib import Path

import numpy as np
import pandas as pd
import torch

from model.dataset import make_input_dataset, write_input
from model.product import cube as cubes
from model.training import checkpoint
from model.training.checkpoint import Checkpoint
from model.training.network import SoilMoistureLSTM
from model.training.normalize import Normalizer
from model.training.reference import probe_references

CLUSTERS = [(100, 200), (100, 240), (140, 200), (140, 250)]  # four 32x32 spatial blocks
START, END = "2011-01-01", "2015-06-30"  # 1642 days: two time blocks of the cube


def make_world(folder: Path, hidden: int = 64) -> tuple[Path, Path]:
    """A small input dataset (smooth random forcing, SMAP with gaps, Noah) and an untrained
    checkpoint; eight cube blocks (four spatial x two in time)."""
    rng = np.random.default_rng(7)
    rows = np.concatenate([r + np.repeat(np.arange(3), 4) for r, _ in CLUSTERS])
    cols = np.concatenate([c + np.tile(np.arange(4), 3) for _, c in CLUSTERS])
    time_index = pd.date_range("2010-01-01", "2015-12-31", freq="D")
    n_t, n_c = len(time_index), len(rows)
    season = np.sin(2 * np.pi * time_index.day_of_year.values / 365.25)[:, None]

    def smooth(scale, offset):
        noise = np.cumsum(rng.standard_normal((n_t, n_c)), axis=0) * 0.05
        return (offset + scale * (season + noise)).astype(np.float32)

    forcing = {
        "precip": np.clip(smooth(0.3, 0.1), 0, None),
        "tair": smooth(10, 285),
        "spfh": smooth(0.003, 0.008),
        "swdown": smooth(80, 200),
        "lwdown": smooth(30, 320),
        "wind_u": smooth(1, 0),
        "wind_v": smooth(1, 0),
        "psurf": smooth(500, 95000),
    }
    static = {"clay": rng.uniform(0.1, 0.5, n_c), "sand": rng.uniform(0.2, 0.7, n_c)}
    truth = np.clip(smooth(0.08, 0.25), 0.02, 0.5)
    target = np.where(rng.random((n_t, n_c)) < 0.4, truth, np.nan).astype(np.float32)
    ds = make_input_dataset(time_index, rows, cols, forcing, static, target, {"noah": truth * 0.9})
    inputs_path, model_path = folder / "inputs.zarr", folder / "model"
    write_input(ds, inputs_path)
    torch.manual_seed(3)
    normalizer = Normalizer.fit(ds.sel(time=slice("2013-01-01", "2014-12-31")))
    net = SoilMoistureLSTM(normalizer.n_inputs, hidden, 0.5)
    config = {"hidden": hidden, "dropout": 0.5, "start": "2013-01-01", "end": "2014-12-31"}
    ckpt = Checkpoint(config, normalizer, [net.state_dict()], probe=normalizer.inputs(ds)[:8, :100])
    ckpt.probe_reference = probe_references(ckpt, ckpt.probe)
    checkpoint.save(model_path, ckpt)
    return inputs_path, model_path


def local_files(root: Path) -> dict[str, bytes]:
    import fsspec

    return store_files(fsspec.filesystem("file"), str(root))


def request_for(world, out) -> dict:
    return {
        "model": str(world["model"]),
        "input": str(world["inputs"]),
        "start": START,
        "end": END,
        "out": str(out),
    }


def store_files(fs, root: str) -> dict[str, bytes]:
    """Every Zarr object of a cube (metadata and chunks) by key; job bookkeeping left out."""
    root = root.rstrip("/")
    out = {}
    for path in fs.find(root):
        key = path[len(root) + 1 :]
        if not key.startswith((cubes.MARKERS, cubes.JOB_INFO, cubes.GENERATION)):
            out[key] = fs.cat_file(path)
    return out

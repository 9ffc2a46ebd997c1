"""Extension throughput of the worker pool: the same job with 1 and with 2 worker processes.

Both pools are warm (each on a private Redis, workers answering and having run the job once,
untimed, before the clock starts), with torch threads = cores / workers, so both use the whole
machine. The in-process `smapx extend` path is timed too, as the baseline a pool has to beat.
Runs are repeated (--repeats, the two pools interleaved) and the best of each counts, as the
machine may be shared. Prints cell-days/s of each and, last, `workers2_vs_workers1=<ratio>`.

    python bench/extend.py [--cells-per-block 96] [--hidden 256] [--repeats 3]
"""

import argparse
import os
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from model.dataset import FORCING_VARIABLES, make_input_dataset, open_input, write_input
from model.production.extend import extend
from model.training import checkpoint
from model.training.checkpoint import Checkpoint
from model.training.network import SoilMoistureLSTM
from model.training.normalize import Normalizer

START, END = "2001-01-01", "2004-12-31"
BLOCK_ORIGINS = [(96 + 32 * i, 160 + 32 * j) for i in range(2) for j in range(4)]  # 8 blocks


def make_job(folder: Path, cells_per_block: int, hidden: int) -> dict:
    """An input dataset over eight cube blocks and an untrained checkpoint of the real size."""
    rng = np.random.default_rng(0)
    side = int(np.ceil(np.sqrt(cells_per_block)))
    offsets = [(k // side, k % side) for k in range(cells_per_block)]
    rows = np.array([r + dr for r, _ in BLOCK_ORIGINS for dr, _ in offsets])
    cols = np.array([c + dc for _, c in BLOCK_ORIGINS for _, dc in offsets])
    time_index = pd.date_range("2000-01-01", END, freq="D")
    shape = (len(time_index), len(rows))
    forcing = {
        name: np.cumsum(rng.standard_normal(shape), axis=0).astype(np.float32) * 0.1
        for name in FORCING_VARIABLES
    }
    forcing["precip"] = np.abs(forcing["precip"])
    static = {"clay": rng.uniform(0, 1, len(rows)), "sand": rng.uniform(0, 1, len(rows))}
    target = np.where(rng.random(shape) < 0.3, rng.uniform(0.05, 0.45, shape), np.nan)
    ds = make_input_dataset(time_index, rows, cols, forcing, static, target)
    write_input(ds, folder / "inputs.zarr")
    torch.manual_seed(0)
    normalizer = Normalizer.fit(ds)
    net = SoilMoistureLSTM(normalizer.n_inputs, hidden, 0.5)
    checkpoint.save(
        folder / "model",
        Checkpoint({"hidden": hidden, "dropout": 0.5}, normalizer, [net.state_dict()]),
    )
    return {
        "model": str(folder / "model"),
        "input": str(folder / "inputs.zarr"),
        "start": START,
        "end": END,
    }


def cell_days(request: dict) -> int:
    ds = open_input(request["input"])
    days = len(pd.date_range(request["start"], request["end"], freq="D"))
    return ds.sizes["cell"] * days


def in_process(request: dict, folder: Path, repeats: int) -> float:
    """Best seconds of the in-process extension with all cores."""
    torch.set_num_threads(os.cpu_count() or 1)
    ckpt, inputs = checkpoint.load(request["model"]), open_input(request["input"])
    times = []
    for k in range(repeats):
        start = time.perf_counter()
        extend(
            ckpt,
            inputs,
            request["start"],
            request["end"],
            folder / f"in_process{k}.zarr",
            progress=False,
        )
        times.append(time.perf_counter() - start)
    return min(times)


@contextmanager
def pools(sizes) -> Iterator[dict[int, str]]:
    """A warm pool per size, each on its own private Redis: {size: redis url}."""
    from worker.pool import default_threads, local_workers, pointing_at, private_redis

    with ExitStack() as stack:
        urls = {}
        for size in sizes:
            urls[size] = stack.enter_context(private_redis())
            with pointing_at(urls[size]):
                stack.enter_context(local_workers(size, default_threads(size)))
        yield urls


def run_job(request: dict, url: str, out: Path) -> float:
    """Seconds from submission to the last block written, on the pool behind `url`."""
    from worker.pool import pointing_at
    from worker.submit import follow, submit_extend

    with pointing_at(url):
        start = time.perf_counter()
        follow(submit_extend({**request, "out": str(out)}), progress=False)
        return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cells-per-block", type=int, default=96)
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=3, help="runs of each; the best counts")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="smapx-bench-") as tmp:
        folder = Path(tmp)
        request = make_job(folder, args.cells_per_block, args.hidden)
        size = cell_days(request)
        print(
            f"job: {size} cell-days (8 blocks of {args.cells_per_block} cells, {START}..{END}), "
            f"hidden {args.hidden}, {os.cpu_count()} cores"
        )
        rates = {}
        rates["in_process"] = size / in_process(request, folder, args.repeats)
        seconds = {1: [], 2: []}
        with pools(seconds) as urls:
            for workers, url in urls.items():  # untimed: workers load the model and inputs
                run_job(request, url, folder / f"warmup{workers}.zarr")
            for k in range(args.repeats):  # interleaved, so drifting load hits both alike
                for workers, url in urls.items():
                    seconds[workers].append(run_job(request, url, folder / f"w{workers}-{k}.zarr"))
        for workers, runs in seconds.items():
            rates[f"workers{workers}"] = size / min(runs)
        for name, rate in rates.items():
            print(f"{name:>10}: {rate:12.0f} cell-days/s")
        print(f"workers1_vs_in_process={rates['workers1'] / rates['in_process']:.2f}")
        print(f"workers2_vs_workers1={rates['workers2'] / rates['workers1']:.2f}")


if __name__ == "__main__":
    main()

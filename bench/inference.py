"""Inference throughput: the engine (model.engine) against the plain float32 torch.nn.LSTM network
on the same block of inputs, measured in one run.

    python bench/inference.py [--cells 4096] [--days 365] [--threads 0]
                              [--model CHECKPOINT [--input INPUT_ZARR]]

Without --model the network is the real size with random weights (19 inputs as conus412's 7
forcing + 12 static attributes, hidden 256) and SMAP-like target scaling (std 0.124 m3/m3).
The reference is the float32 torch.nn.LSTM network in batches of CPU_CELL_BLOCK cells, where it
runs fastest (the whole block as one batch is timed too, for comparison); each side is timed
--repeat times, interleaved, and its best time counts. The last line is
`speedup_vs_nn_lstm=<x> max_abs_err=<m3/m3>`: throughput ratio, and the largest difference of the
final soil moisture from the float32 reference. With --input the block is the
real record of an input store (every cell, every day, normalised by the checkpoint), which is
where a trained network's error matters; random inputs take a trained network far outside its
training range.
"""

import argparse
import time

import numpy as np
import torch

from model.dataset import open_input
from model.engine import CPU_CELL_BLOCK, KERNELS, Engine, kernel, reference
from model.training import checkpoint
from model.training.checkpoint import Checkpoint
from model.training.network import SoilMoistureLSTM
from model.training.normalize import Normalizer

N_FORCING, N_STATIC, HIDDEN = 7, 12, 256


def random_checkpoint(seed: int = 0) -> Checkpoint:
    normalizer = Normalizer(
        [f"f{i}" for i in range(N_FORCING)],
        [f"s{i}" for i in range(N_STATIC)],
        [0.0] * N_FORCING,
        [1.0] * N_FORCING,
        [0.0] * N_STATIC,
        [1.0] * N_STATIC,
        0.204,
        0.124,
    )
    torch.manual_seed(seed)
    state = SoilMoistureLSTM(normalizer.n_inputs, HIDDEN).state_dict()
    return Checkpoint({"hidden": HIDDEN, "dropout": 0.5}, normalizer, [state])


def block_inputs(normalizer: Normalizer, cells: int, days: int) -> np.ndarray:
    """Normalised inputs: daily forcing, static attributes constant in time per cell."""
    x = np.random.default_rng(1).standard_normal((cells, days, normalizer.n_inputs), np.float32)
    n_forcing = len(normalizer.forcing_names)
    x[:, :, n_forcing:] = x[:, :1, n_forcing:]
    return x


def flops_per_cell_day(n_inputs: int, hidden: int) -> int:
    """Multiply-adds x 2 of the input layer, both LSTM matrix products and the head."""
    return 2 * (n_inputs * hidden + 2 * hidden * 4 * hidden + hidden)


def timed(run) -> tuple[np.ndarray, float]:
    start = time.perf_counter()
    result = run()
    return result, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cells", type=int, default=4096)
    parser.add_argument("--days", type=int, default=365)
    parser.add_argument("--threads", type=int, default=0, help="torch threads; 0 = all cores")
    parser.add_argument(
        "--precision", default="auto", help="auto, int8, int16, bf16x3, bfloat16, float32"
    )
    parser.add_argument(
        "--repeat", type=int, default=2, help="timed runs of each side; the best counts"
    )
    parser.add_argument("--model", help="a trained checkpoint instead of random weights")
    parser.add_argument("--input", help="with --model: run over this input store's whole record")
    args = parser.parse_args()
    if args.input and not args.model:
        parser.error("--input needs --model")
    if args.threads:
        torch.set_num_threads(args.threads)
    ckpt = checkpoint.load(args.model) if args.model else random_checkpoint()
    ckpt = ckpt.member(0)
    if args.input:
        x = ckpt.normalizer.inputs(open_input(args.input))
    else:
        x = block_inputs(ckpt.normalizer, args.cells, args.days)
    cells, days = x.shape[:2]
    cell_days = cells * days
    flops = flops_per_cell_day(ckpt.normalizer.n_inputs, ckpt.config["hidden"]) * cell_days
    print(
        f"block: {cells} cells x {days} days, {ckpt.normalizer.n_inputs} inputs, "
        f"hidden {ckpt.config['hidden']}, {torch.get_num_threads()} threads, "
        f"{flops / cell_days / 1e6:.2f} MFLOP per cell-day"
    )

    engine, setup_s = timed(lambda: Engine(ckpt, "auto", args.precision))
    precision = engine.chosen[0]
    where = f" ({kernel(precision)[1].file})" if precision in KERNELS else ""
    print(f"engine: {engine.device} {precision}{where}, set up (build, probe) in {setup_s:.1f} s")
    engine.run(x[:8, :8])
    with torch.inference_mode():
        net = ckpt.networks()[0]
        net(torch.from_numpy(x[:8, :8]))
        _, one_batch_s = timed(lambda: net(torch.from_numpy(x)))

    ref_s = eng_s = float("inf")
    for _ in range(args.repeat):  # interleaved, so that both sides see the same machine
        expected, seconds = timed(lambda: reference(ckpt, x))
        ref_s = min(ref_s, seconds)
        got, seconds = timed(lambda: engine.run(x))
        eng_s = min(eng_s, seconds)
    for name, seconds in [
        ("nn.LSTM, one batch", one_batch_s),
        (f"nn.LSTM, {CPU_CELL_BLOCK}-cell batches", ref_s),
        (f"engine {precision}", eng_s),
    ]:
        print(
            f"{name:>28}: {seconds:7.2f} s  {cell_days / seconds:10.0f} cell-days/s  "
            f"{flops / seconds / 1e9:6.1f} GFLOP/s"
        )
    error = float(np.abs(got - expected).max() * ckpt.normalizer.target_std)
    print(f"speedup_vs_nn_lstm={ref_s / eng_s:.2f} max_abs_err={error:.6f}")


if __name__ == "__main__":
    main()

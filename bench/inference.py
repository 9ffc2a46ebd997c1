"""Inference throughput: the engine (model.engine) against the plain float32 torch.nn.LSTM network
on the same block of inputs, measured in one run.

    python bench/inference.py [--cells 4096] [--days 365] [--threads 0] [--precision auto]
                              [--kernel auto] [--hidden 256] [--model CHECKPOINT [--input I]]

Without --model the network is the real size with random weights (19 inputs as conus412's 7
forcing + 12 static attributes, hidden 256 or --hidden) and SMAP-like target scaling (std 0.124
m3/m3).
The reference is the float32 torch.nn.LSTM network in batches of CPU_CELL_BLOCK cells, where it
runs fastest (the whole block as one batch is timed too, for comparison); each side is timed
--repeat times, interleaved, and its best time counts. The last line is
`speedup_vs_nn_lstm=<x> max_abs_err=<m3/m3>`: throughput ratio, and the largest difference of the
final soil moisture from the float32 reference. With --input the block is the
real record of an input store (every cell, every day, normalised by the checkpoint), which is
where a trained network's error matters; random inputs take a trained network far outside its
training range.

Beside them it prints what runs (kernel, instruction set, precision) and this core's measured
peaks: float32 FMA and 16-bit integer multiply-adds (vpmaddwd + vpaddd) of one core, in the
float32 kernel's vector width (AVX2 on x86-64, NEON on ARM64), and the share of that FMA peak
that nn.LSTM and the engine reach. Peaks and shares count CPU time (multiply-adds per CPU second),
which a busy shared machine disturbs far less than wall time; cpu_speedup is the ratio of CPU
times.
"""

import argparse
import ctypes
import time
from dataclasses import dataclass

import numpy as np
import torch

from model.dataset import open_input
from model.engine import Engine, compute_threads, instruction_set, kernel
from model.training import checkpoint
from model.training.checkpoint import Checkpoint
from model.training.network import SoilMoistureLSTM
from model.training.normalize import Normalizer
from model.training.reference import CPU_CELL_BLOCK, reference

N_FORCING, N_STATIC, HIDDEN = 7, 12, 256


def random_checkpoint(seed: int = 0, hidden: int = HIDDEN) -> Checkpoint:
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
    state = SoilMoistureLSTM(normalizer.n_inputs, hidden).state_dict()
    return Checkpoint({"hidden": hidden, "dropout": 0.5}, normalizer, [state])


def block_inputs(normalizer: Normalizer, cells: int, days: int) -> np.ndarray:
    """Normalised inputs: daily forcing, static attributes constant in time per cell."""
    x = np.random.default_rng(1).standard_normal((cells, days, normalizer.n_inputs), np.float32)
    n_forcing = len(normalizer.forcing_names)
    x[:, :, n_forcing:] = x[:, :1, n_forcing:]
    return x


def flops_per_cell_day(n_inputs: int, hidden: int) -> int:
    """Multiply-adds x 2 of the input layer, both LSTM matrix products and the head."""
    return 2 * (n_inputs * hidden + 2 * hidden * 4 * hidden + hidden)


def core_peaks() -> dict[str, float]:
    """GMAC/s of one core: float32 FMA and (x86-64) 16-bit integer multiply-adds, from the float32
    kernel's peak loops; empty where no float32 kernel runs."""
    found = kernel("float32", "avx2") or kernel("float32", "neon")
    if found is None:
        return {}
    lib, source = found
    loops = {f"float32 FMA ({source.build.instruction_set})": lib.smapx_fma_peak}
    if hasattr(lib, "smapx_int16_peak"):
        loops[f"int16 vpmaddwd ({source.build.instruction_set})"] = lib.smapx_int16_peak
    sink = np.zeros(16, np.float32)
    peaks = {}
    for name, loop in loops.items():
        loop.restype, loop.argtypes = ctypes.c_int64, [ctypes.c_int64, ctypes.c_void_p]
        loop(1_000_000, sink.ctypes.data)  # clocks up
        best = 0.0
        for _ in range(3):
            macs, took = timed(lambda loop=loop: loop(20_000_000, sink.ctypes.data))
            best = max(best, macs / took.cpu / 1e9)
        peaks[name] = best
    return peaks


@dataclass(frozen=True)
class Took:
    wall: float
    cpu: float  # seconds of this process's threads

    def best(self, other: "Took") -> "Took":
        return Took(min(self.wall, other.wall), min(self.cpu, other.cpu))


def timed(run) -> tuple[np.ndarray, Took]:
    wall, cpu = time.perf_counter(), time.process_time()
    result = run()
    return result, Took(time.perf_counter() - wall, time.process_time() - cpu)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cells", type=int, default=4096)
    parser.add_argument("--days", type=int, default=365)
    parser.add_argument("--threads", type=int, default=0, help="torch threads; 0 = all cores")
    parser.add_argument(
        "--precision", default="auto", help="auto, int8, int16, bf16x3, bfloat16, float32"
    )
    parser.add_argument(
        "--kernel", default="auto", help="instruction set: auto, amx, avx512_vnni, avx2, neon"
    )
    parser.add_argument(
        "--repeat", type=int, default=2, help="timed runs of each side; the best counts"
    )
    parser.add_argument(
        "--hidden", type=int, default=HIDDEN, help="hidden units of the random network"
    )
    parser.add_argument("--model", help="a trained checkpoint instead of random weights")
    parser.add_argument("--input", help="with --model: run over this input store's whole record")
    args = parser.parse_args()
    if args.input and not args.model:
        parser.error("--input needs --model")
    if args.threads:
        torch.set_num_threads(args.threads)
    ckpt = checkpoint.load(args.model) if args.model else random_checkpoint(hidden=args.hidden)
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

    engine, setup = timed(lambda: Engine(ckpt, "auto", args.precision, args.kernel))
    path = engine.paths[0]
    print(
        f"engine: {engine.device}, kernel {path.kernel}, instruction set {path.instruction_set}, "
        f"precision {path.precision} (this CPU's kernels: {instruction_set() or 'none'}), "
        f"set up (load, probe) in {setup.wall:.1f} s"
    )
    peaks = core_peaks()
    for name, gmacs in peaks.items():
        print(f"peak of one core, {name}: {gmacs:.1f} GMAC/s")
    engine.run(x[:8, :8])
    with torch.inference_mode():
        net = ckpt.networks()[0]
        net(torch.from_numpy(x[:8, :8]))
        _, one_batch = timed(lambda: net(torch.from_numpy(x)))

    ref = eng = Took(float("inf"), float("inf"))
    for _ in range(args.repeat):  # interleaved, so that both sides see the same machine
        expected, took = timed(lambda: reference(ckpt, x))
        ref = ref.best(took)
        got, took = timed(lambda: engine.run(x))
        eng = eng.best(took)
    fma_peak = next((gmacs for name, gmacs in peaks.items() if name.startswith("float32")), None)
    for name, took, threads in [
        ("nn.LSTM, one batch", one_batch, torch.get_num_threads()),
        (f"nn.LSTM, {CPU_CELL_BLOCK}-cell batches", ref, torch.get_num_threads()),
        (f"engine {path.kernel}", eng, compute_threads()),
    ]:
        gmacs = flops / 2 / took.cpu / 1e9  # per CPU second
        share = f"  {gmacs / fma_peak:5.0%} of the FMA peak" if fma_peak else ""
        print(
            f"{name:>32}: {took.wall:7.2f} s  {cell_days / took.wall:10.0f} cell-days/s  "
            f"{threads} threads  {gmacs:6.1f} GMAC per CPU s{share}"
        )
    error = float(np.abs(got - expected).max() * ckpt.normalizer.target_std)
    print(
        f"kernel={path.kernel} instruction_set={path.instruction_set.replace(' ', '_')} "
        f"precision={path.precision} cpu_speedup={ref.cpu / eng.cpu:.2f}"
    )
    print(f"speedup_vs_nn_lstm={ref.wall / eng.wall:.2f} max_abs_err={error:.6f}")


if __name__ == "__main__":
    main()

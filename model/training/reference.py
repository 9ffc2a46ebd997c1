"""The float32 torch network's own output, the reference every inference kernel is checked
against: over any inputs (`reference`), and per member on a checkpoint's probe
(`probe_references`, saved with the checkpoint so every worker checks the same numbers)."""

from concurrent.futures import ThreadPoolExecutor

import numpy as np

from model.training.checkpoint import Checkpoint

# cells per torch-path batch on CPU: oneDNN's LSTM ran 4,096 cells at 100k cell-days/s and
# batches of 128-1,024 at 185-195k on the 2-core AMX Xeon
CPU_CELL_BLOCK = 512


def reference(ckpt: Checkpoint, x: np.ndarray, warmup: int = 0) -> np.ndarray:
    """Normalised output of the float32 torch.nn.LSTM network itself (the ensemble mean), in
    batches of CPU_CELL_BLOCK cells, where it runs fastest."""
    import torch

    out = np.empty((x.shape[0], x.shape[1] - warmup), np.float32)
    nets = ckpt.networks()
    with torch.inference_mode():
        for i in range(0, x.shape[0], CPU_CELL_BLOCK):
            xt = torch.from_numpy(np.ascontiguousarray(x[i : i + CPU_CELL_BLOCK], np.float32))
            out[i : i + CPU_CELL_BLOCK] = torch.stack([net(xt) for net in nets]).mean(0)[:, warmup:]
    return out


def probe_references(ckpt: Checkpoint, x: np.ndarray) -> np.ndarray:
    """Each member's float32 output (member, cell, day) on the probe, members side by side on one
    torch thread each: a 64-cell batch gains nothing from more threads, and on a busy machine
    OpenMP threads waiting for each other made the probe 5-10x slower."""
    import torch

    singles = [ckpt.member(k) for k in range(len(ckpt.state_dicts))]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with ThreadPoolExecutor(max(1, min(threads, len(singles)))) as pool:
            return np.stack(list(pool.map(lambda single: reference(single, x), singles)))
    finally:
        torch.set_num_threads(threads)

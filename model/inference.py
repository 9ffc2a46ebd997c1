"""Running a trained checkpoint over long sequences of many cells."""

import numpy as np
import torch

from model.checkpoint import Checkpoint

BLOCK_CELLS = 1024


def predict(ckpt: Checkpoint, inputs: np.ndarray, warmup: int = 0) -> np.ndarray:
    """Soil moisture (cell, time - warmup) in m3/m3, the ensemble mean, from normalised inputs
    (cell, time, n_inputs); the first `warmup` days only spin up the state and are dropped."""
    nets = ckpt.networks()
    out = np.empty((inputs.shape[0], inputs.shape[1] - warmup), np.float32)
    with torch.inference_mode():
        for start in range(0, inputs.shape[0], BLOCK_CELLS):
            x = torch.from_numpy(np.ascontiguousarray(inputs[start:start + BLOCK_CELLS]))
            y = torch.stack([net(x) for net in nets]).mean(0)
            out[start:start + BLOCK_CELLS] = y[:, warmup:].numpy()
    return ckpt.normalizer.unscale_target(out)

"""Running a trained checkpoint over long sequences of many cells, on the fast engine
(model.engine): integer and bf16x3 kernels on CPUs with AMX or AVX-512 VNNI, PyTorch
bf16/float32 on GPUs and other CPUs."""

import numpy as np

from model.engine import engine_for
from model.errors import InputError
from model.training.checkpoint import Checkpoint


def predict(
    ckpt: Checkpoint, inputs: np.ndarray, warmup: int = 0, groups: list[int] | None = None
) -> np.ndarray:
    """Soil moisture (cell, time - warmup) in m3/m3, the ensemble mean, from normalised inputs
    (cell, time, n_inputs); the first `warmup` days only spin up the state and are dropped
    (one pass: they are run once, their outputs never computed). `groups`, the sizes of
    consecutive runs of cells (cube blocks), makes each run's values the same bytes as when it
    is predicted alone."""
    inputs = np.asarray(inputs)
    if inputs.ndim != 3 or inputs.shape[2] != ckpt.normalizer.n_inputs:
        raise InputError(
            f"inputs must be (cell, time, {ckpt.normalizer.n_inputs}); got {inputs.shape}"
        )
    if not 0 <= warmup < inputs.shape[1]:
        raise InputError(
            f"warm-up of {warmup} days needs a longer period than {inputs.shape[1]} days"
        )
    if inputs.shape[0] == 0:
        return np.empty((0, inputs.shape[1] - warmup), np.float32)
    return ckpt.normalizer.unscale_target(engine_for(ckpt).run(inputs, warmup, groups))

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
    return predict_with_spread(ckpt, inputs, warmup, groups)[0]


def predict_with_spread(
    ckpt: Checkpoint, inputs: np.ndarray, warmup: int = 0, groups: list[int] | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """(ensemble mean, standard deviation across members), both (cell, time - warmup) in m3/m3,
    as `predict` takes its arguments; the mean is `predict`'s bytes, the spread numpy's
    (population) std of the members' m3/m3 values, zero for a single member."""
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
        empty = np.empty((0, inputs.shape[1] - warmup), np.float32)
        return empty, empty.copy()
    members = engine_for(ckpt).run_members(inputs, warmup, groups)
    mean = members[0] if len(members) == 1 else np.mean(members, axis=0, dtype=np.float32)
    values = [ckpt.normalizer.unscale_target(m) for m in members]
    return ckpt.normalizer.unscale_target(mean), np.std(values, axis=0).astype(np.float32)

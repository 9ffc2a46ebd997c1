"""Training: random (cell, window) minibatches, masked loss on valid SMAP days, a held-back
validation slice at the end of the period, early stopping, fixed seeds, optional seed ensemble.

The first seed trains on the period less its validation slice with early stopping, which picks the
number of epochs and gives the first member (its best state). With `refit` (the default) every
further member trains that many epochs on the whole period, so the last weeks of SMAP are not
wasted; without it they train on the same shortened period and the ensemble mean is scored on the
validation slice. Two members and at most 40 epochs keep the conus412 sample under 15 minutes on
2 CPU cores.
"""

import io
import time as clock
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd
import torch
import xarray as xr
from tqdm import tqdm

from model.dataset import select_period
from model.devices import gpu_available
from model.engine import probe_references
from model.errors import InputError
from model.evaluation import metrics
from model.training.checkpoint import PROBE_CELLS, PROBE_DAYS, Checkpoint
from model.training.network import SoilMoistureLSTM, from_state
from model.training.normalize import Normalizer


@dataclass
class TrainConfig:
    """Everything that defines a training run; saved as the checkpoint's config.json."""

    start: str
    end: str
    validation_days: int = 61
    hidden: int = 256
    dropout: float = 0.5
    window: int = 120
    burn_in: int = 30
    batch_size: int = 64
    iterations_per_epoch: int = 50
    max_epochs: int = 40
    patience: int = 8
    learning_rate: float = 1e-3
    seed: int = 42
    ensemble: int = 2
    refit: bool = True
    device: str = "auto"
    threads: int = 0
    nowcast: bool = False
    latency: int = 1  # days between a SMAP retrieval and the nowcast that may use it


def pick_device(name: str) -> torch.device:
    """'auto' means the GPU when one is present."""
    if name == "auto":
        return torch.device("cuda" if gpu_available() else "cpu")
    return torch.device(name)


def masked_mse(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean squared error over the days where the target is observed."""
    valid = torch.isfinite(target)
    if not valid.any():
        return pred.sum() * 0.0
    return ((pred[valid] - target[valid]) ** 2).mean()


def train(inputs: xr.Dataset, config: TrainConfig, progress: bool = True) -> tuple[Checkpoint, str]:
    """Train on config.start..config.end and return the checkpoint and its training log (CSV)."""
    if config.threads:
        torch.set_num_threads(config.threads)
    period = select_period(inputs, config.start, config.end).load()
    n_days = period.sizes["time"]
    if n_days < config.window + config.validation_days:
        raise InputError(
            f"training period of {n_days} days is shorter than a window "
            f"({config.window}) plus the validation slice ({config.validation_days})"
        )
    if config.nowcast and config.latency < 1:
        raise InputError(
            f"latency: at least 1 day (a nowcast never sees its own day), got {config.latency}"
        )
    split = n_days - config.validation_days
    normalizer = Normalizer.fit(
        period.isel(time=slice(0, split)), config.latency if config.nowcast else 0
    )
    x = normalizer.inputs(period)
    y = normalizer.scale_target(period["target"].values.T)
    device = pick_device(config.device)
    state, log_rows, validation = _fit_member(
        x, y, split, normalizer, config, config.seed, device, progress
    )
    log_rows = [{"member": 0, **r} for r in log_rows]
    epochs = max(validation.pop("best_epoch"), 1)
    states = [state]
    for member in range(1, config.ensemble):
        n_fit = n_days if config.refit else split
        state, rows, _ = _fit_member(
            x, y, n_fit, normalizer, config, config.seed + member, device, progress, epochs=epochs
        )
        states.append(state)
        log_rows += [{"member": member, **r} for r in rows]
    if not config.refit and len(states) > 1:
        validation = _validate(states, x, y, split, normalizer, config, device)
    time = pd.DatetimeIndex(period.time.values)
    validation.update(
        period=f"{time[split].date()}..{time[-1].date()}",
        epochs=epochs,
        refit_on_whole_period=config.refit,
        members=len(states),
    )
    cfg = {
        **asdict(config),
        "kind": "nowcast" if config.nowcast else "projection",
        "n_inputs": normalizer.n_inputs,
        "training_days": f"{time[0].date()}..{time[-1].date()}",
    }
    buf = io.StringIO()
    pd.DataFrame(log_rows).to_csv(buf, index=False)
    ckpt = Checkpoint(cfg, normalizer, states, validation, probe_sample(x))
    ckpt.probe_reference = probe_references(ckpt, ckpt.probe)
    return ckpt, buf.getvalue()


def probe_sample(x: np.ndarray) -> np.ndarray:
    """Real normalised inputs saved with the checkpoint: cells evenly spread over the training set,
    its first PROBE_DAYS days. The inference engine checks reduced precisions on them, so the
    check sees the model's own input range and is the same for every worker."""
    cells = np.unique(np.linspace(0, x.shape[0] - 1, min(PROBE_CELLS, x.shape[0])).astype(int))
    return np.ascontiguousarray(x[cells, :PROBE_DAYS], np.float32)


def _fit_member(x, y, n_train, normalizer, config, seed, device, progress, epochs=None):
    """Train one network on days [0, n_train); validate on the rest if any is left."""
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    net = SoilMoistureLSTM(x.shape[-1], config.hidden, config.dropout).to(device)
    opt = torch.optim.Adam(net.parameters(), lr=config.learning_rate)
    xt = torch.from_numpy(x).to(device)
    yt = torch.from_numpy(y).to(device)
    cells = np.flatnonzero(np.isfinite(y[:, :n_train]).sum(1) > 0)
    validate = epochs is None
    best = {"score": np.inf, "state": None, "epoch": 0, "metrics": {}}
    rows, stale = [], 0
    label = "train" if validate else "refit"
    bar = tqdm(
        range(1, (epochs or config.max_epochs) + 1),
        desc=f"{label} seed {seed}",
        unit="epoch",
        disable=not progress,
    )
    for epoch in bar:
        t0 = clock.perf_counter()
        loss = _epoch(net, opt, xt, yt, cells, n_train, config, rng)
        row = {
            "stage": label,
            "epoch": epoch,
            "train_loss": loss,
            "seconds": clock.perf_counter() - t0,
        }
        if validate:
            val = _validate([net], x, y, n_train, normalizer, config, device)
            row.update(val_rmse=val["median_rmse"], val_r=val["median_r"])
            if val["median_rmse"] < best["score"]:
                best = {
                    "score": val["median_rmse"],
                    "epoch": epoch,
                    "metrics": val,
                    "state": {k: v.detach().cpu().clone() for k, v in net.state_dict().items()},
                }
                stale = 0
            else:
                stale += 1
            bar.set_postfix(loss=f"{loss:.3f}", val_rmse=f"{val['median_rmse']:.4f}")
        rows.append(row)
        if validate and stale >= config.patience:
            break
    if not validate:
        state = {k: v.detach().cpu().clone() for k, v in net.state_dict().items()}
        return state, rows, {}
    return best["state"], rows, {**best["metrics"], "best_epoch": best["epoch"]}


def _epoch(net, opt, xt, yt, cells, n_train, config, rng) -> float:
    net.train()
    window = min(config.window, n_train)
    losses = []
    for _ in range(config.iterations_per_epoch):
        pick = rng.choice(cells, config.batch_size)
        start = rng.integers(0, n_train - window + 1, config.batch_size)
        idx = torch.from_numpy(start[:, None] + np.arange(window)).to(xt.device)
        rows = torch.from_numpy(pick)[:, None].to(xt.device)
        pred = net(xt[rows, idx])
        loss = masked_mse(pred[:, config.burn_in :], yt[rows, idx][:, config.burn_in :])
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return float(np.mean(losses))


def _validate(nets, x, y, n_train, normalizer, config, device) -> dict:
    """Skill of the ensemble mean on the validation days, running each cell warm from day 0."""
    preds = []
    with torch.inference_mode():
        for net in nets:
            if isinstance(net, dict):
                net = from_state(net, config.dropout).to(device)
            net.eval()
            preds.append(net(torch.from_numpy(x).to(device)).cpu().numpy())
    pred = normalizer.unscale_target(np.mean(preds, axis=0)[:, n_train:]).T
    obs = normalizer.unscale_target(y[:, n_train:]).T
    summary = metrics.summarize(metrics.all_metrics(pred, obs), min_pairs=5)
    return {
        "median_rmse": summary["rmse"],
        "median_r": summary["r"],
        "median_bias": summary["bias"],
        "n_cells": summary["n_cells"],
    }

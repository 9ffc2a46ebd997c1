"""Training: random (cell, window) minibatches, masked loss on valid SMAP days, a validation
protocol (model.training.holdout), early stopping, fixed seeds, optional seed ensemble, an
optional wall-clock budget.

The first seed trains on the period less its held-out days with early stopping, which picks the
number of epochs and gives the first member (its best state). With `refit` (the default) every
further member trains that many epochs on the whole period, so no SMAP is wasted; without it they
train on the same split and the ensemble mean is scored on the held-out days. With a budget the
first member stops within its share and a further member starts only if its measured cost fits.
"""

import io
import logging
import time as clock
from collections.abc import Callable
from dataclasses import asdict

import numpy as np
import pandas as pd
import torch
import xarray as xr
from tqdm import tqdm

from model import grid, metrics
from model.dataset import select_period
from model.devices import gpu_available
from model.errors import InputError
from model.training.budget import Budget
from model.training.checkpoint import PROBE_CELLS, PROBE_DAYS, Checkpoint
from model.training.config import TrainConfig
from model.training.holdout import Holdout, every_day, holdout
from model.training.network import SoilMoistureLSTM, from_state
from model.training.normalize import Normalizer
from model.training.reference import probe_references


def pick_device(name: str) -> torch.device:
    """'auto' means the GPU when one is present."""
    if name == "auto":
        return torch.device("cuda" if gpu_available() else "cpu")
    return torch.device(name)


log = logging.getLogger(__name__)

LOSSES = ("mse", "cell_rmse")
SCHEDULES = ("constant", "cosine")


def masked_mse(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean squared error over the days where the target is observed."""
    valid = torch.isfinite(target)
    if not valid.any():
        return pred.sum() * 0.0
    return ((pred[valid] - target[valid]) ** 2).mean()


def masked_cell_rmse(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean over the batch's cells (rows) of each one's RMSE on its observed days: every cell
    weighs the same, however often SMAP saw it, as the per-cell median skill counts them."""
    valid = torch.isfinite(target)
    counts = valid.sum(1)
    has = counts > 0
    if not has.any():
        return pred.sum() * 0.0
    squared = torch.where(valid, pred - torch.nan_to_num(target), torch.zeros_like(pred)) ** 2
    return torch.sqrt(squared.sum(1)[has] / counts[has] + 1e-8).mean()


def check_config(config: TrainConfig) -> None:
    """Clear errors for choices that do not exist, before any work."""
    if config.loss not in LOSSES:
        raise InputError(f"loss: one of {', '.join(LOSSES)}, got {config.loss!r}")
    if config.schedule not in SCHEDULES:
        raise InputError(f"schedule: one of {', '.join(SCHEDULES)}, got {config.schedule!r}")
    if not 0.0 <= config.bagging < 1.0:
        raise InputError(f"bagging: a share of cells in [0, 1), got {config.bagging}")
    if config.burn_in >= config.window:
        raise InputError(
            f"burn_in ({config.burn_in}) must be shorter than window ({config.window})"
        )
    for name in ("validation_cells", "training_cells"):
        if getattr(config, name) < 1:
            raise InputError(f"{name}: at least 1, got {getattr(config, name)}")
    if config.nowcast and config.latency < 1:
        raise InputError(
            f"latency: at least 1 day (a nowcast never sees its own day), got {config.latency}"
        )


def train(
    inputs: xr.Dataset,
    config: TrainConfig,
    progress: bool = True,
    report: Callable[[str, float], None] | None = None,
) -> tuple[Checkpoint, str]:
    """Train on config.start..config.end and return the checkpoint and its training log (CSV).
    `report(stage, fraction)` hears of every epoch (a job's progress)."""
    check_config(config)
    if config.threads:
        torch.set_num_threads(config.threads)
    budget = Budget(config.budget_seconds, config.ensemble)
    period = select_period(inputs, config.start, config.end)
    sample = cell_sample(period.sizes["cell"], config.training_cells, config.seed)
    period = (period if sample is None else period.isel(cell=sample)).load()
    time = pd.DatetimeIndex(period.time.values)
    split = holdout(time, config.validation, config.validation_days, config.gap_days, config.window)
    fitted = xr.DataArray(split.fit, dims="time")
    seen = period.assign(target=period["target"].where(fitted)).isel(time=slice(split.window_end))
    normalizer = Normalizer.fit(seen, config.latency if config.nowcast else 0)
    x = normalizer.inputs(period)
    y = normalizer.scale_target(period["target"].values.T)
    device = pick_device(config.device)
    member = _Member(x, y, normalizer, config, device, progress, budget, report)
    state, log_rows, validation = member.fit(split, 0)
    log_rows = [{"member": 0, **r} for r in log_rows]
    epochs = max(validation.pop("best_epoch"), 1)
    states = [state]
    whole = every_day(len(time))
    for k in range(1, config.ensemble):
        needed = epochs * member.epoch_seconds()
        if not budget.allows(needed):
            log.warning(
                "budget: %d of %d members trained; member %d would need ~%.0f s, %.0f s are left",
                k,
                config.ensemble,
                k + 1,
                needed,
                config.budget_seconds - budget.elapsed(),
            )
            break
        state, rows, _ = member.fit(whole if config.refit else split, k, epochs)
        states.append(state)
        log_rows += [{"member": k, **r} for r in rows]
    if not config.refit and len(states) > 1:
        validation = _validate(
            states, *member.validation_set(), split.scored, normalizer, config, device
        )
    validation.update(
        protocol=split.protocol,
        period=split.description,
        epochs=epochs,
        refit_on_whole_period=config.refit,
        members=len(states),
        training_seconds=round(budget.elapsed(), 1),
    )
    if budget.limited:
        validation["budget_seconds"] = config.budget_seconds
    cfg = {
        **asdict(config),
        "kind": "nowcast" if config.nowcast else "projection",
        "n_inputs": normalizer.n_inputs,
        "training_days": f"{time[0].date()}..{time[-1].date()}",
        **_grid_record(inputs),
    }
    buf = io.StringIO()
    pd.DataFrame(log_rows).to_csv(buf, index=False)
    ckpt = Checkpoint(cfg, normalizer, states, validation, probe_sample(x))
    ckpt.probe_reference = probe_references(ckpt, ckpt.probe)
    return ckpt, buf.getvalue()


def _grid_record(inputs: xr.Dataset) -> dict:
    """The inputs' grid for the checkpoint's config; none for the default grid, so a 36 km
    checkpoint (and its digest) is what it always was."""
    on = grid.of(inputs.attrs)
    return {} if on == grid.DEFAULT else {"grid": on.name}


def describe_validation(v: dict) -> str:
    """One line: the protocol, its skill and what the training cost."""
    line = (
        f"validation ({v.get('protocol', 'tail')}: {v['period']}) median RMSE "
        f"{v['median_rmse']:.4f} m3/m3, median R {v['median_r']:.3f}"
    )
    if "training_seconds" in v:
        line += f"; {v['members']} member(s), {v['epochs']} epochs, {v['training_seconds']:.0f} s"
    if "budget_seconds" in v:
        line += f" of a {v['budget_seconds']:.0f} s budget"
    return line


def probe_sample(x: np.ndarray) -> np.ndarray:
    """Real normalised inputs saved with the checkpoint: cells evenly spread over the training set,
    its first PROBE_DAYS days. The inference engine checks reduced precisions on them, so the
    check sees the model's own input range and is the same for every worker."""
    cells = np.unique(np.linspace(0, x.shape[0] - 1, min(PROBE_CELLS, x.shape[0])).astype(int))
    return np.ascontiguousarray(x[cells, :PROBE_DAYS], np.float32)


class _Member:
    """Trains ensemble members on one period's inputs, measuring what an epoch costs."""

    def __init__(self, x, y, normalizer, config, device, progress, budget, report):
        self.x, self.y, self.normalizer, self.config = x, y, normalizer, config
        self.device, self.progress, self.budget = device, progress, budget
        self.report = report or (lambda stage, fraction: None)
        self.xt = torch.from_numpy(x).to(device)
        self.seconds: list[float] = []
        cells = cell_sample(len(x), config.validation_cells, config.seed)
        self.scored = (x, y) if cells is None else (x[cells], y[cells])

    def validation_set(self) -> tuple[np.ndarray, np.ndarray]:
        """(inputs, targets) of the cells validation scores: all, or a fixed sample of them."""
        return self.scored

    def epoch_seconds(self) -> float:
        """Mean measured time of a training epoch (validation excluded)."""
        return float(np.mean(self.seconds)) if self.seconds else 0.0

    def fit(self, split: Holdout, index: int, epochs: int | None = None):
        """Train member `index` (seed config.seed + index) on the split's fit days; with
        `epochs` None, stop early on its scored days (and within the budget's first share) and
        keep the best state."""
        config = self.config
        seed = config.seed + index
        torch.manual_seed(seed)
        rng = np.random.default_rng(seed)
        net = SoilMoistureLSTM(self.x.shape[-1], config.hidden, config.dropout).to(self.device)
        opt = torch.optim.Adam(net.parameters(), lr=config.learning_rate)
        validate = epochs is None
        n_epochs = epochs or config.max_epochs
        schedule = _schedule(opt, config.schedule, n_epochs)
        y_fit = split.fit_targets(self.y)
        yt = torch.from_numpy(y_fit).to(self.device)
        cells = bagged(
            np.flatnonzero(np.isfinite(y_fit[:, : split.window_end]).sum(1) > 0),
            config.bagging if index else 0.0,
            rng,
        )
        best = {"score": np.inf, "state": None, "epoch": 0, "metrics": {}}
        rows, stale = [], 0
        label = "train" if validate else "refit"
        bar = tqdm(
            range(1, n_epochs + 1),
            desc=f"{label} seed {seed}",
            unit="epoch",
            disable=not self.progress,
        )
        for epoch in bar:
            t0 = clock.perf_counter()
            loss = _epoch(net, opt, self.xt, yt, cells, split.window_end, config, rng)
            schedule.step()
            self.seconds.append(clock.perf_counter() - t0)
            row = {"stage": label, "epoch": epoch, "train_loss": loss, "seconds": self.seconds[-1]}
            if validate:
                val = _validate(
                    [net],
                    *self.validation_set(),
                    split.scored,
                    self.normalizer,
                    config,
                    self.device,
                )
                row.update(val_rmse=val["median_rmse"], val_r=val["median_r"])
                unscored = not np.isfinite(val["median_rmse"])  # too little held-out SMAP
                if unscored or val["median_rmse"] < best["score"]:
                    best = {
                        "score": val["median_rmse"],
                        "epoch": epoch,
                        "metrics": val,
                        "state": _detached(net),
                    }
                    stale = 0
                else:
                    stale += 1
                if unscored and epoch == 1:
                    log.warning(
                        "validation scores no cell (too few SMAP days held out): member %d "
                        "trains every epoch and keeps the last",
                        index,
                    )
                bar.set_postfix(loss=f"{loss:.3f}", val_rmse=f"{val['median_rmse']:.4f}")
            rows.append(row)
            self.report(
                f"{label} member {index + 1}/{config.ensemble}, epoch {epoch}",
                (index + epoch / n_epochs) / config.ensemble,
            )
            spent = clock.perf_counter() - t0
            if validate and (
                stale >= config.patience or not self.budget.first_member_allows(spent)
            ):
                break
        if not validate:
            return _detached(net), rows, {}
        return best["state"], rows, {**best["metrics"], "best_epoch": best["epoch"]}


def cell_sample(n_cells: int, most: int, seed: int) -> np.ndarray | None:
    """None (every cell) up to `most` cells, else `most` of them drawn once for the run, in
    order. Training reads the sample of the inputs (a 9 km CONUS period whole would not fit in
    memory); validation scores a sample of those (running the network over every cell and day
    each epoch would grow with the cell count: 100k 9 km cells x 5 years x 128 units, 90 GB)."""
    if n_cells <= most:
        return None
    return np.sort(np.random.default_rng(seed).choice(n_cells, most, replace=False))


def bagged(cells: np.ndarray, leave_out: float, rng: np.random.Generator) -> np.ndarray:
    """The cells a member trains on: all, or (bagging) a random share 1 - leave_out of them,
    so that members differ by what they saw as well as by their seed."""
    if not leave_out:
        return cells
    keep = max(1, round(len(cells) * (1.0 - leave_out)))
    return np.sort(rng.choice(cells, keep, replace=False))


def _detached(net: torch.nn.Module) -> dict:
    return {k: v.detach().cpu().clone() for k, v in net.state_dict().items()}


def _schedule(opt, name: str, epochs: int):
    """The learning rate per epoch: constant, or cosine-annealed to zero over `epochs`."""
    if name == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(epochs, 1))
    return torch.optim.lr_scheduler.ConstantLR(opt, factor=1.0, total_iters=0)


def _epoch(net, opt, xt, yt, cells, window_end, config, rng) -> float:
    net.train()
    window = min(config.window, window_end)
    criterion = masked_cell_rmse if config.loss == "cell_rmse" else masked_mse
    losses = []
    for _ in range(config.iterations_per_epoch):
        pick = rng.choice(cells, config.batch_size)
        start = rng.integers(0, window_end - window + 1, config.batch_size)
        idx = torch.from_numpy(start[:, None] + np.arange(window)).to(xt.device)
        rows = torch.from_numpy(pick)[:, None].to(xt.device)
        pred = net(xt[rows, idx])
        loss = criterion(pred[:, config.burn_in :], yt[rows, idx][:, config.burn_in :])
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return float(np.mean(losses))


def _validate(nets, x, y, scored, normalizer, config, device) -> dict:
    """Skill of the ensemble mean on the scored days, running each cell warm from day 0."""
    preds = []
    with torch.inference_mode():
        for net in nets:
            if isinstance(net, dict):
                net = from_state(net, config.dropout).to(device)
            net.eval()
            preds.append(net(torch.from_numpy(x).to(device)).cpu().numpy())
    pred = normalizer.unscale_target(np.mean(preds, axis=0)[:, scored]).T
    obs = normalizer.unscale_target(y[:, scored]).T
    summary = metrics.summarize(metrics.all_metrics(pred, obs), min_pairs=5)
    return {
        "median_rmse": summary["rmse"],
        "median_r": summary["r"],
        "median_bias": summary["bias"],
        "n_cells": summary["n_cells"],
    }

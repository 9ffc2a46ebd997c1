"""Validation skill of a nowcast (Fang & Shen 2020) against SMAP, beside the projection it
improves on and the simple data-integration baseline it must beat: the projection plus the last
observed innovation (SMAP minus projection on the day of the latest retrieval known at the
latency) decaying as exp(-age / INNOVATION_DAYS)."""

import numpy as np
import pandas as pd
import xarray as xr

from model import metrics
from model.dataset import select_period
from model.engine.inference import predict
from model.errors import InputError
from model.production.extend import WARMUP_DAYS, spinup_indices
from model.training.checkpoint import Checkpoint
from model.training.normalize import NO_OBSERVATION_AGE

INNOVATION_DAYS = 4.0


def run(ckpt: Checkpoint, inputs: xr.Dataset, first: int, stop: int, warmup: int) -> np.ndarray:
    """(time, cell) m3/m3 of a checkpoint over input days first..stop, warmed up as the cube is."""
    days = spinup_indices(first, stop, warmup)
    x = ckpt.normalizer.inputs(inputs, None, days)
    return predict(ckpt, x, warmup=len(days) - (stop - first)).T


def decaying_innovation(
    projection: np.ndarray, inputs: xr.Dataset, first: int, stop: int, ckpt: Checkpoint
) -> np.ndarray:
    """The baseline over days first..stop: projection + innovation * exp(-age / 4 days), with
    the latest retrieval the nowcast may use (same latency and look-back); the projection alone
    where there is none. `projection` covers the look-back too (it starts at day first -
    latency - look-back, clipped at 0)."""
    normalizer = ckpt.normalizer
    days = np.arange(first, stop)
    observed = normalizer.observed(inputs, None, days)
    value, age = observed[:, :, 0].T, observed[:, :, 1].T
    fresh = age < NO_OBSERVATION_AGE
    age_days = np.rint(age * normalizer.observation_lookback).astype(int)
    smap = normalizer.unscale_target(value)
    offset = first - max(
        first - normalizer.observation_latency - normalizer.observation_lookback, 0
    )
    seen_at = np.clip(np.arange(len(days))[:, None] + offset - age_days, 0, None)
    projected_then = np.take_along_axis(projection, seen_at, axis=0)
    innovation = np.where(fresh, smap - projected_then, 0.0)
    now = projection[offset:]
    return now + innovation * np.exp(-np.where(fresh, age_days, 0) / INNOVATION_DAYS)


def nowcast_skill(
    projection: Checkpoint,
    nowcast: Checkpoint,
    inputs: xr.Dataset,
    start,
    end,
    warmup: int = WARMUP_DAYS,
) -> dict:
    """Median-over-cells RMSE and R against SMAP over start..end of the nowcast, the projection
    and the decaying-innovation baseline."""
    if not nowcast.is_nowcast or projection.is_nowcast:
        raise InputError("give a projection checkpoint and a nowcast checkpoint, in that order")
    inputs = inputs.load()
    select_period(inputs, start, end)
    times = pd.DatetimeIndex(inputs.time.values)
    first, stop = int(times.get_loc(pd.Timestamp(start))), int(times.get_loc(pd.Timestamp(end))) + 1
    normalizer = nowcast.normalizer
    look_first = max(first - normalizer.observation_latency - normalizer.observation_lookback, 0)
    projected = run(projection, inputs, look_first, stop, warmup)
    smap = inputs["target"].values[first:stop]
    estimates = {
        "nowcast": run(nowcast, inputs, first, stop, warmup),
        "projection": projected[first - look_first :],
        "decaying_innovation": decaying_innovation(projected, inputs, first, stop, nowcast),
    }
    out = {"period": f"{times[first].date()}..{times[stop - 1].date()}"}
    for name, values in estimates.items():
        summary = metrics.summarize(metrics.all_metrics(values, smap), min_pairs=5)
        out[name] = {"rmse": summary["rmse"], "r": summary["r"], "n_cells": summary["n_cells"]}
    return out

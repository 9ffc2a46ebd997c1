"""Does a 9 km network resolve the 9 km truth better than a 36 km one? A twin-world experiment.

One 9 km twin world; its 36 km twin is the same world aggregated (each 36 km cell the mean of
its 16 children's forcing and land, its SMAP-like retrieval the mean of the children observed
that day). A network is trained on each (the same configuration and budget, SMAP era to
--train-end), run over the unseen years after it, and scored against the 9 km truth at 0-5 cm:
the 36 km network's value stands for all 16 children of its cell. Prints the median over 9 km
cells of RMSE and R of each, and of the 36 km network against its own 36 km truth (the mean of
the children's) as the scale it was made for.

    python bench/grid_skill.py [--bbox=-100,35.5,-97.5,38] [--budget 60s]
"""

import argparse
import time

import numpy as np
import pandas as pd
import xarray as xr
from scipy import sparse

from model import grid, metrics
from model.dataset import make_input_dataset
from model.engine.inference import predict
from model.training.config import TrainConfig
from model.training.train import train
from model.world import WorldConfig, build_world


def coarsen(inputs: xr.Dataset, truth: np.ndarray):
    """(the 36 km input dataset of the 9 km one, its children's parent index per 9 km cell, the
    36 km truth) over the 36 km cells whose 16 children are all in the region."""
    parent = pd.MultiIndex.from_arrays([inputs.row.values // 4, inputs.col.values // 4])
    counts = pd.Series(1, index=parent).groupby(level=[0, 1]).sum()
    whole = counts[counts == 16].index
    index = whole.get_indexer(parent)  # -1 for children of incomplete parents
    keep = index >= 0

    children = sparse.csr_matrix(
        (np.full(keep.sum(), 1 / 16), (np.flatnonzero(keep), index[keep])),
        shape=(len(index), len(whole)),
    )

    def mean(values: np.ndarray) -> np.ndarray:  # (..., cell) -> (..., parent)
        flat = np.asarray(values, np.float64).reshape(-1, values.shape[-1])
        return np.asarray(flat @ children).reshape(*values.shape[:-1], -1).astype(np.float32)

    target = inputs["target"].values
    seen = np.isfinite(target)
    sums = mean(np.where(seen, target, 0.0)) * 16
    observed = mean(seen.astype(np.float32)) * 16
    with np.errstate(invalid="ignore", divide="ignore"):
        coarse_target = np.where(observed > 0, sums / observed, np.nan)
    forcing = inputs["forcing"].values
    coarse = make_input_dataset(
        inputs.time.values,
        whole.get_level_values(0).to_numpy(),
        whole.get_level_values(1).to_numpy(),
        {str(v): mean(forcing[..., k]) for k, v in enumerate(inputs["variable"].values)},
        {
            str(v): mean(inputs["static"].values[:, k])
            for k, v in enumerate(inputs["static_variable"].values)
        },  # fmt: skip
        coarse_target,
    )
    return coarse, index, mean(truth)


def scores(pred: np.ndarray, obs: np.ndarray) -> dict:
    """Median over cells of RMSE and R, (time, cell) arrays."""
    summary = metrics.summarize(metrics.all_metrics(pred, obs), min_pairs=30)
    return {"rmse": summary["rmse"], "r": summary["r"], "cells": summary["n_cells"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bbox", default="-100,35.5,-97.5,38")
    parser.add_argument("--start", default="2013-01-01")
    parser.add_argument("--end", default="2019-12-31")
    parser.add_argument("--train-end", default="2017-12-31")
    parser.add_argument("--budget", type=float, default=60.0, help="seconds per training")
    args = parser.parse_args()
    t0 = time.perf_counter()
    world = build_world(
        WorldConfig(
            seed=29,
            stride=1,
            bbox=grid.parse_bbox(args.bbox),
            start=args.start,
            end=args.end,
            grid="9km",
        )
    )
    fine = world.inputs
    truth = world.truth["truth"].isel(depth=0).values
    coarse, parent, coarse_truth = coarsen(fine, truth)
    print(
        f"world: {fine.sizes['cell']} cells at 9 km, {coarse.sizes['cell']} at 36 km, "
        f"{fine.sizes['time']} days, {time.perf_counter() - t0:.0f} s"
    )
    config = TrainConfig(
        start="2015-04-01", end=args.train_end, ensemble=1, budget_seconds=args.budget
    )
    days = pd.DatetimeIndex(fine.time.values)
    unseen = days > pd.Timestamp(args.train_end)
    warmup = int(np.argmax(unseen))
    predictions = {}
    for name, inputs in (("9 km", fine), ("36 km", coarse)):
        t0 = time.perf_counter()
        ckpt, _ = train(inputs, config, progress=False)
        x = ckpt.normalizer.inputs(inputs)
        predictions[name] = predict(ckpt, x, warmup=warmup).T  # (unseen day, cell)
        print(f"{name} network: trained and run in {time.perf_counter() - t0:.0f} s")
    children = parent >= 0
    truth_unseen = truth[unseen][:, children]
    fine_scores = scores(predictions["9 km"][:, children], truth_unseen)
    coarse_scores = scores(predictions["36 km"][:, parent[children]], truth_unseen)
    own_scores = scores(predictions["36 km"], coarse_truth[unseen])
    years = f"{days[unseen][0].year}-{days[-1].year}"
    print(f"\nagainst the 9 km truth (0-5 cm) on unseen {years}, median over 9 km cells:")
    print(f"  9 km network : RMSE {fine_scores['rmse']:.4f} m3/m3, R {fine_scores['r']:.3f}")
    print(f"  36 km network: RMSE {coarse_scores['rmse']:.4f} m3/m3, R {coarse_scores['r']:.3f}")
    print(
        f"  (36 km network against its own 36 km truth: RMSE {own_scores['rmse']:.4f}, "
        f"R {own_scores['r']:.3f})"
    )


if __name__ == "__main__":
    main()

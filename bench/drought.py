"""Does extended SMAP rank droughts better than the model it is fused with? A twin-world check.

Builds a twin world (2000-2020 by default), trains the LSTM on its SMAP-like retrievals of
2015-04..2017-03, extends the whole record, computes the cube's climatology (base: the whole
record), and ranks the world's 0-5 cm truth by the same definition (model.product.climatology).
On the cell-days whose truth percentile is 5 or less, it prints the share where each product's
percentile says D2 or worse (<= 10), before SMAP and in the SMAP era, with the share of
cell-days of normal truth (30-70) that a product flags D2 or worse (false alarms).

Flash droughts too: the truth's onsets (model.product.flash: the percentile falls from above 40
to below 20 within 20 days; an event is the first day of a run of onset days) against each
product's onset product: the share of truth events a product flags within ONSET_TOLERANCE days
(hit rate), its median lead in days (positive: the product flags before the truth), and the
share of the product's own events with no truth onset that near (false alarms).

    python bench/drought.py [--out data/drought] [--stride 2] [--max-epochs 10] [--ensemble 1]
                            [--bbox W,S,E,N] [--budget SECONDS]

Under load, `--bbox -100,36,-96,39 --budget 300` keeps it to minutes: a smaller world and
training that stops at its wall-clock budget (the cube and the figures are of that region).
"""

import argparse
import json
import time
from pathlib import Path

import numpy as np
import pandas as pd

from model.dataset import open_input
from model.product import climatology, flash, ranking
from model.product import cube as cubes
from model.production.extend import extend
from model.training import checkpoint
from model.training.train import TrainConfig, train
from model.world import WorldConfig, build_world, open_truth, write_world

BBOX = (-104.0, 33.0, -92.0, 41.0)
TRAIN = ("2015-04-01", "2017-03-31")
SMAP_ERA = "2015-04-01"
DROUGHT, FLAGGED = 500, 1000  # percentile codes (0.01 points): truth <= 5, product <= 10
NORMAL = (3000, 7000)
ONSET_TOLERANCE = 10  # days between a product's onset and the truth's that still match


def build(out: Path, args) -> Path:
    """World, model and cube in `out` (each reused when already there); the cube's path."""
    world_dir, model_dir, cube_path = out / "world", out / "model", out / "extended.zarr"
    if not (world_dir / "input.zarr").exists():
        world = build_world(
            WorldConfig(start=args.start, end=args.end, stride=args.stride, bbox=args.bbox),
            progress=True,
        )
        write_world(world, world_dir)
    inputs = open_input(world_dir / "input.zarr")
    if not (model_dir / "config.json").exists():
        config = TrainConfig(
            start=TRAIN[0],
            end=TRAIN[1],
            max_epochs=args.max_epochs,
            patience=4,
            ensemble=args.ensemble,
            budget_seconds=args.budget,
        )
        ckpt, log = train(inputs, config)
        checkpoint.save(model_dir, ckpt, log)
    if cubes.climatology_info(cube_path) is None:
        extend(checkpoint.load(model_dir), inputs, args.start, args.end, cube_path)
        climatology.compute(cube_path)
    return cube_path


def truth_percentiles(world_dir: Path, cube) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(percentile codes (time, cell) of the 0-5 cm truth on the cube's 1e-4 steps, ranked by
    the cube's definition over the whole record; the cells' iy, ix in the cube)."""
    truth = open_truth(world_dir)["truth"].sel(depth=0.025, method="nearest")
    truth = truth.sel(time=cube.time.values)
    codes = np.rint(truth.values / cubes.SCALE).astype(np.int16)
    doy = ranking.day_of_year(cube.time.values)
    percentiles, _ = ranking.rank(codes, doy, codes, doy)
    iy = truth["row"].values - int(cube.attrs["row0"])
    ix = truth["col"].values - int(cube.attrs["col0"])
    return percentiles, iy, ix


def figures(out: Path, cube_path: Path) -> dict:
    cube = cubes.open_cube(cube_path)
    truth, iy, ix = truth_percentiles(out / "world", cube)
    stored = cubes.read_climatology(cube_path)["percentiles"]
    times = pd.DatetimeIndex(cube.time.values)
    eras = {
        "all": np.ones(len(times), bool),
        "before_smap": times < pd.Timestamp(SMAP_ERA),
        "smap_era": times >= pd.Timestamp(SMAP_ERA),
    }
    known = truth != cubes.FILL
    drought = known & (truth <= DROUGHT)
    normal = known & (truth > NORMAL[0]) & (truth <= NORMAL[1])
    result = {
        "cells": len(iy),
        "days": len(times),
        "drought_cell_days": {e: int(drought[m].sum()) for e, m in eras.items()},
        "detected_d2_or_worse": {},
        "false_alarms_on_normal_truth": {},
    }
    for product in ("lstm", "noah", "fused"):
        pct = stored[product][iy, ix, :].T  # (time, cell)
        flagged = (pct != cubes.FILL) & (pct <= FLAGGED)
        result["detected_d2_or_worse"][product] = {
            e: round(float(flagged[m][drought[m]].mean()), 4) for e, m in eras.items()
        }
        result["false_alarms_on_normal_truth"][product] = {
            e: round(float(flagged[m][normal[m]].mean()), 4) for e, m in eras.items()
        }
    result["flash_drought_onsets"] = onset_figures(truth, stored, iy, ix, times)
    return result


def onset_events(flags: np.ndarray) -> np.ndarray:
    """(time, cell) True on the first day of each run of onset days."""
    on = flags == 1
    return on & ~np.vstack([np.zeros((1, on.shape[1]), bool), on[:-1]])


def onset_figures(truth, stored, iy, ix, times) -> dict:
    """Per product: truth onset events caught within ONSET_TOLERANCE days (hit rate), the
    median lead of the catch (days, positive = earlier than the truth), and false alarms."""
    pad = np.full((flash.ONSET_DAYS, truth.shape[1]), cubes.FILL, np.int16)
    truth_flags = flash.onset(np.vstack([pad, truth]).T).T
    truth_events = onset_events(truth_flags)
    near_truth = _near(truth_flags == 1)
    smap_era = np.asarray(times >= pd.Timestamp(SMAP_ERA))
    figures = {"truth_events": int(truth_events.sum())}
    for product in ("lstm", "noah", "fused"):
        pct = stored[product][iy, ix, :]  # (cell, time)
        flags = flash.onset(np.hstack([pad.T, pct])).T
        events = onset_events(flags)
        caught, leads = [], []
        for t, cell in zip(*np.nonzero(truth_events), strict=True):
            window = np.arange(
                max(t - ONSET_TOLERANCE, 0), min(t + ONSET_TOLERANCE + 1, len(times))
            )
            hit = window[flags[window, cell] == 1]
            caught.append(hit.size > 0)
            if hit.size:
                leads.append(int(t - hit[0]))
        caught = np.array(caught, bool)
        era = smap_era[np.nonzero(truth_events)[0]]
        figures[product] = {
            "events": int(events.sum()),
            "hit_rate": round(float(caught.mean()), 4) if caught.size else None,
            "hit_rate_before_smap": round(float(caught[~era].mean()), 4) if (~era).any() else None,
            "hit_rate_smap_era": round(float(caught[era].mean()), 4) if era.any() else None,
            "median_lead_days": float(np.median(leads)) if leads else None,
            "false_alarms": round(float((events & ~near_truth).sum() / max(events.sum(), 1)), 4),
        }
    return figures


def _near(flags: np.ndarray) -> np.ndarray:
    """(time, cell) True within ONSET_TOLERANCE days of a True of `flags`."""
    near = flags.copy()
    for shift in range(1, ONSET_TOLERANCE + 1):
        near[shift:] |= flags[:-shift]
        near[:-shift] |= flags[shift:]
    return near


def bbox(text: str) -> tuple[float, float, float, float]:
    west, south, east, north = (float(v) for v in text.split(","))
    return west, south, east, north


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("data/drought"))
    parser.add_argument("--stride", type=int, default=2)
    parser.add_argument("--start", default="2000-01-01")
    parser.add_argument("--end", default="2020-12-31")
    parser.add_argument("--max-epochs", type=int, default=10)
    parser.add_argument("--ensemble", type=int, default=1)
    parser.add_argument(
        "--bbox", type=bbox, default=BBOX, help="W,S,E,N degrees: the world's region"
    )
    parser.add_argument(
        "--budget", type=float, default=0.0, help="training's wall clock in seconds (0: none)"
    )
    args = parser.parse_args()
    began = time.perf_counter()
    cube_path = build(args.out, args)
    print(json.dumps(figures(args.out, cube_path)))
    print(f"took {time.perf_counter() - began:.0f} s")


if __name__ == "__main__":
    main()

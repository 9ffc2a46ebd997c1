"""Which training configuration is worth its CPU time, and which validation protocol can tell.

    python bench/skill_search.py --input I --start 2015-04-01 --end 2016-03-31
        [--configs paper,h128,...] [--protocols seasons,tail] [--unseen 2016-04-01:2019-03-31]
        [--truth WORLD_DIR] [--max-epochs N] [--threads N] [--csv OUT.csv]
    python bench/skill_search.py --twin [...]     # builds the twin world itself, truth included

Each configuration (CONFIGS: changes to TrainConfig's defaults) is trained under each protocol
(model.training.holdout) on the training period, one after the other on this machine, and
reports its validation skill, its training time and its inference cost (engine set-up excluded,
microseconds per cell-year over the whole input). With --unseen the final checkpoint is also
scored on those years against the input's SMAP (where the input has it) and, with --truth or
--twin, against the twin world's true 0-5 cm soil moisture. The last lines give, per protocol,
the Spearman rank correlation over configurations between validation RMSE and unseen-year RMSE:
how well the protocol ranks configurations by what matters. Timings need a quiet machine (one
CPU-heavy process at a time); skill figures do not.
"""

import argparse
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr
from scipy.signal import lfilter
from scipy.stats import spearmanr

from model.dataset import open_input, write_input
from model.engine.inference import predict as run_engine
from model.evaluation.skill import period_skill
from model.grid import parse_bbox
from model.training.train import TrainConfig, train
from model.world import WorldConfig, build_world, open_truth, write_world

# The paper's network and schedule; every configuration names what it sets, so the table stays
# reproducible whatever the defaults become. "h128-cosine" is today's default.
PAPER = {"hidden": 256, "learning_rate": 1e-3, "schedule": "constant"}
COSINE = {"learning_rate": 3e-3, "schedule": "cosine"}
CONFIGS = {
    "paper": PAPER,
    "h128": {**PAPER, "hidden": 128},
    "h64": {**PAPER, "hidden": 64},
    "h32": {**PAPER, "hidden": 32},
    "h128-cosine": {**PAPER, **COSINE, "hidden": 128},
    "h128-cosine-3members": {**PAPER, **COSINE, "hidden": 128, "ensemble": 3},
    "h128-cosine-bag30": {**PAPER, **COSINE, "hidden": 128, "bagging": 0.3},
    "h128-cosine-3members-bag30": {**PAPER, **COSINE, "hidden": 128, "ensemble": 3, "bagging": 0.3},
    # "-norefit": every member trains on the validation split and the ensemble is scored, so
    # validation tells ensembles apart (under refit it scores the first member alone).
    "h128-cosine-norefit": {**PAPER, **COSINE, "hidden": 128, "refit": False},
    "h128-cosine-bag30-norefit": {**PAPER, **COSINE, "hidden": 128, "bagging": 0.3, "refit": False},
    "h128-cosine-3members-norefit": {
        **PAPER,
        **COSINE,
        "hidden": 128,
        "ensemble": 3,
        "refit": False,
    },
    "h128-cosine-api": {**PAPER, **COSINE, "hidden": 128},
    "h128-cosine-raw-precip": {**PAPER, **COSINE, "hidden": 128},
    "h64-cosine": {**PAPER, **COSINE, "hidden": 64},
    "h128-cell-rmse": {**PAPER, "hidden": 128, "loss": "cell_rmse"},
    "h128-w240": {**PAPER, "hidden": 128, "window": 240, "burn_in": 60, "batch_size": 32},
    "h128-3members": {**PAPER, "hidden": 128, "ensemble": 3},
    "h128-lr3e-3": {**PAPER, "hidden": 128, "learning_rate": 3e-3},
    "h256-1member": {**PAPER, "ensemble": 1},
}
API_DECAY = 0.9  # per day: half of a storm's weight is left after a week
TWIN = WorldConfig(
    seed=7, stride=2, bbox=parse_bbox("-104,33,-92,41"), start="2014-06-01", end="2019-03-31"
)
TWIN_UNSEEN = "2016-04-01:2019-03-31"


def main() -> None:
    args = parse_args()
    inputs, truth = load(args)
    configs = args.configs.split(",") if args.configs else list(CONFIGS)
    rows = []
    for protocol in args.protocols.split(","):
        for name in configs:
            rows.append(run_one(name, protocol, inputs, truth, args))
            print(format_row(rows[-1]), flush=True)
    table = pd.DataFrame(rows)
    if args.csv:
        table.to_csv(args.csv, index=False)
    print()
    print(table.to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    if args.unseen:
        print_ranking(table)


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--input", type=Path, help="input store (Zarr)")
    p.add_argument("--twin", type=Path, help="build the twin world in this folder (reused)")
    p.add_argument("--start", default="2015-04-01")
    p.add_argument("--end", default="2016-03-31")
    p.add_argument("--configs", help=f"comma-separated, of: {', '.join(CONFIGS)}")
    p.add_argument("--protocols", default="seasons")
    p.add_argument("--unseen", help="START:END scored after training")
    p.add_argument("--truth", type=Path, help="twin-world folder whose truth to score against")
    p.add_argument("--max-epochs", type=int, help="cap every configuration's epochs")
    p.add_argument("--threads", type=int, default=0, help="torch threads; 0: every core")
    p.add_argument("--csv", type=Path)
    args = p.parse_args()
    if bool(args.input) == bool(args.twin):
        p.error("give one of --input or --twin")
    if args.twin and not args.unseen:
        args.unseen = TWIN_UNSEEN
    return args


def load(args) -> tuple[xr.Dataset, xr.DataArray | None]:
    """The input dataset and, in a twin world, the true surface soil moisture (time, cell)."""
    folder = args.twin or args.truth
    if args.twin and not (args.twin / "input.zarr").exists():
        world = build_world(TWIN)
        write_world(world, args.twin)
        write_input(world.inputs, args.twin / "input.zarr")
    inputs = open_input(args.input or args.twin / "input.zarr").load()
    truth = open_truth(folder)["truth"].isel(depth=0).load() if folder else None
    return inputs, truth


def with_antecedent_precip(inputs: xr.Dataset) -> xr.Dataset:
    """The inputs with one more forcing variable: the antecedent precipitation index
    API_t = API_DECAY * API_(t-1) + P_t over the whole record, in precipitation's transform."""
    precip = inputs["forcing"].sel(variable="precip").fillna(0.0).values
    api = lfilter([1.0], [1.0, -API_DECAY], precip, axis=0)
    api = np.log10(np.sqrt(np.clip(api, 0, None)) + 0.1).astype(np.float32)
    extra = xr.DataArray(api[..., None], dims=("time", "cell", "variable"))
    forcing = xr.concat(
        [inputs["forcing"], extra.assign_coords(variable=["antecedent_precip"])], "variable"
    )
    return inputs.drop_vars("forcing").drop_dims("variable").assign(forcing=forcing)


def with_raw_precip(inputs: xr.Dataset) -> xr.Dataset:
    """The inputs with precipitation renamed, so that the normaliser z-scores it untransformed."""
    names = [str(v) for v in inputs["variable"].values]
    return inputs.assign_coords(variable=[n.replace("precip", "rain") for n in names])


# Configurations whose inputs change here, before training and prediction: a derived input the
# product's own inputs do not carry, or precipitation without its transform.
INPUT_CHANGES = {
    "h128-cosine-api": with_antecedent_precip,
    "h128-cosine-raw-precip": with_raw_precip,
}


def run_one(name: str, protocol: str, inputs, truth, args) -> dict:
    if name in INPUT_CHANGES:
        inputs = INPUT_CHANGES[name](inputs)
    config = replace(
        TrainConfig(start=args.start, end=args.end, validation=protocol, threads=args.threads),
        **CONFIGS[name],
    )
    if args.max_epochs:
        config = replace(config, max_epochs=min(config.max_epochs, args.max_epochs))
    t0 = time.perf_counter()
    ckpt, _ = train(inputs, config, progress=False)
    row = {
        "config": name,
        "protocol": protocol,
        "val_rmse": ckpt.validation["median_rmse"],
        "val_r": ckpt.validation["median_r"],
        "epochs": ckpt.validation["epochs"],
        "members": ckpt.validation["members"],
        "train_s": round(time.perf_counter() - t0, 1),
    }
    predicted, row["us_per_cell_year"] = predict(ckpt, inputs)
    if args.unseen:
        start, end = args.unseen.split(":")
        row.update(score(predicted, inputs["target"], start, end, "smap"))
        if truth is not None:
            row.update(score(predicted, truth, start, end, "truth"))
    return row


def predict(ckpt, inputs) -> tuple[xr.DataArray, float]:
    """The checkpoint's soil moisture (time, cell) over the whole input, and its cost (the
    engine set up and probed first, on a few cells)."""
    x = ckpt.normalizer.inputs(inputs)
    run_engine(ckpt, x[:1, :10])
    t0 = time.perf_counter()
    values = run_engine(ckpt, x)
    cost = (time.perf_counter() - t0) / (x.shape[0] * x.shape[1] / 365.25) * 1e6
    return xr.DataArray(values.T, dims=("time", "cell"), coords={"time": inputs.time}), round(
        cost, 1
    )


def score(pred: xr.DataArray, ref: xr.DataArray, start: str, end: str, label: str) -> dict:
    skill = period_skill(pred, ref, start, end)
    return {f"{label}_rmse": skill["rmse"], f"{label}_r": skill["r"]}


def format_row(row: dict) -> str:
    return "  ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items())


def print_ranking(table: pd.DataFrame) -> None:
    """Spearman correlation over configurations of validation RMSE with unseen-year RMSE."""
    for protocol, part in table.groupby("protocol", sort=False):
        for ref in ("smap_rmse", "truth_rmse"):
            if ref in part and part[ref].notna().sum() > 2:
                rho = spearmanr(part["val_rmse"], part[ref]).statistic
                print(f"ranking {protocol}: spearman(val_rmse, {ref}) = {rho:.3f} over {len(part)}")
    if table["protocol"].nunique() > 1:
        print("(each protocol's unseen skill is that of the checkpoint it trained)")


if __name__ == "__main__":
    main()

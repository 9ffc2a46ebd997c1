"""`smapx train`: a checkpoint from an input dataset. Its options are TrainConfig's fields, one
each, so a field added to the config is an option at once; `--config FILE` reads them from YAML
(a checkpoint's `train.yaml` reruns it), options on the command line win."""

import inspect
from dataclasses import MISSING, fields
from pathlib import Path
from typing import Annotated

import typer

from model.errors import InputError
from model.training.config import TrainConfig

commands = typer.Typer()

# what each option means; its default, TrainConfig's, is added to the help
HELP = {
    "start": "First training day, YYYY-MM-DD",
    "end": "Last training day, YYYY-MM-DD",
    "validation": "Held-out SMAP: 'seasons' (blocks in every season, with gaps) or 'tail' "
    "(the last VALIDATION_DAYS)",
    "validation_days": "Days of SMAP held back in all",
    "gap_days": "Days left out between held-out blocks and training days",
    "hidden": "LSTM hidden size",
    "dropout": "Dropout rate",
    "window": "Days of a training window",
    "burn_in": "First days of a window left out of the loss",
    "batch_size": "Windows per minibatch",
    "iterations_per_epoch": "Minibatches per epoch",
    "max_epochs": "Upper bound on epochs (early stopping)",
    "patience": "Epochs without improvement before stopping",
    "learning_rate": "Adam's learning rate",
    "schedule": "Learning rate: constant or cosine",
    "loss": "mse, or cell_rmse (every cell weighs the same)",
    "seed": "Random seed of the first member",
    "ensemble": "Number of seeds to train and average",
    "bagging": "Share of the cells each further seed leaves out of its training",
    "refit": "Further seeds train on the whole period for the first seed's epochs",
    "device": "cpu, cuda or auto",
    "threads": "Torch threads; 0 = settings/all cores",
    "nowcast": "Train a nowcast: the inputs add the latest SMAP known at --latency",
    "latency": "Nowcast: days from a SMAP retrieval to its first use",
    "validation_cells": "Cells an epoch's validation runs (a fixed sample where there are more)",
    "training_cells": "Cells training reads (a fixed sample where there are more)",
}
BUDGET_FIELD = "budget_seconds"  # given as --budget 15m


def config_options() -> list[inspect.Parameter]:
    """One option per TrainConfig field (--budget for its seconds), None unless given, so a
    value from --config is overridden only by an option the command line names."""
    options = []
    for f in fields(TrainConfig):
        if f.name == BUDGET_FIELD:
            continue
        default = None if f.default is MISSING else f.default
        text = HELP.get(f.name, f.name.replace("_", " "))
        text += "" if default is None else f" (default {default})"
        names = [f"--{f.name.replace('_', '-')}/--no-{f.name.replace('_', '-')}"]
        option = (
            typer.Option(*names, help=text) if f.type in (bool, "bool") else typer.Option(help=text)
        )
        kind = {"int": int, "float": float, "str": str, "bool": bool}.get(f.type, f.type)
        options.append(
            inspect.Parameter(
                f.name,
                inspect.Parameter.KEYWORD_ONLY,
                default=None,
                annotation=Annotated[kind | None, option],
            )
        )
    return options


def read_config(path: Path) -> dict:
    """TrainConfig's fields from a YAML file; InputError naming a key it does not know."""
    import yaml

    try:
        values = yaml.safe_load(Path(path).read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise InputError(f"--config: cannot read {path}: {exc}") from None
    if not isinstance(values, dict):
        raise InputError(f"--config: {path} must map option names to values")
    known = {f.name for f in fields(TrainConfig)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise InputError(f"--config: {path}: unknown key(s) {unknown}; known: {sorted(known)}")
    return values


def train(
    input: Path, out: Path, config: Path | None, budget: str | None, queue: bool, **given
) -> None:
    """Train the LSTM on SMAP over a period. VALIDATION_DAYS of its SMAP are held back (by
    default in blocks spread over every season): the first seed stops early on them, and the
    other seeds train that many epochs on the whole period. With --nowcast the model also reads
    the latest SMAP retrieval of a day at or before t - LATENCY (value and age), as in Fang &
    Shen (2020). The config is saved in the checkpoint (config.json, and train.yaml to rerun)."""
    from dataclasses import asdict

    from model.dataset import open_input
    from model.training import checkpoint
    from model.training.budget import parse_duration
    from model.training.train import describe_validation
    from model.training.train import train as run_training

    values = {**(read_config(config) if config else {})}
    values |= {k: v for k, v in given.items() if v is not None}
    if budget:
        values[BUDGET_FIELD] = parse_duration(budget)
    missing = [f"--{k}" for k in ("start", "end") if not values.get(k)]
    if missing:
        raise InputError(f"give {' and '.join(missing)} (as options or in --config)")
    settings = TrainConfig(**values)
    if queue:
        from worker.submit import follow, submit_train

        request = {**asdict(settings), "input": str(input), "out": str(out)}
        job = follow(submit_train(request))
        typer.echo(f"wrote {out}: {describe_validation(job['result']['validation'])}")
        return
    ckpt, log = run_training(open_input(input), settings)
    checkpoint.save(out, ckpt, log)
    typer.echo(f"wrote {out}: {describe_validation(ckpt.validation)}")


def _command_parameters() -> list[inspect.Parameter]:
    keyword = inspect.Parameter.KEYWORD_ONLY
    fixed = {
        "input": Annotated[Path, typer.Option(help="Input dataset (Zarr)")],
        "out": Annotated[Path, typer.Option(help="Checkpoint directory to write")],
    }
    optional = {
        "config": Annotated[
            Path | None,
            typer.Option(help="YAML of TrainConfig's fields (a checkpoint's train.yaml)"),
        ],
        "budget": Annotated[
            str | None,
            typer.Option(
                help="Wall-clock limit such as 15m: the first seed stops early within its "
                "share, and a further seed starts only if its measured cost fits"
            ),
        ],
    }
    queue = Annotated[
        bool, typer.Option("--queue", help="Train on the running worker pool and follow the job")
    ]
    return [
        *(inspect.Parameter(n, keyword, annotation=a) for n, a in fixed.items()),
        *(inspect.Parameter(n, keyword, default=None, annotation=a) for n, a in optional.items()),
        *config_options(),
        inspect.Parameter("queue", keyword, default=False, annotation=queue),
    ]


train.__signature__ = inspect.Signature(_command_parameters())
train.__annotations__ = {p.name: p.annotation for p in train.__signature__.parameters.values()}
commands.command("train")(train)

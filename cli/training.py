"""`smapx train`: a checkpoint from an input dataset."""

from pathlib import Path
from typing import Annotated

import typer

from model.training.config import TrainConfig

commands = typer.Typer()

DEFAULT_TRAINING = TrainConfig(start="", end="")  # the defaults `smapx train` shows


@commands.command()
def train(
    input: Annotated[Path, typer.Option(help="Input dataset (Zarr)")],
    start: Annotated[str, typer.Option(help="First training day, YYYY-MM-DD")],
    end: Annotated[str, typer.Option(help="Last training day, YYYY-MM-DD")],
    out: Annotated[Path, typer.Option(help="Checkpoint directory to write")],
    ensemble: Annotated[
        int, typer.Option(help="Number of seeds to train and average")
    ] = DEFAULT_TRAINING.ensemble,
    bagging: Annotated[
        float,
        typer.Option(help="Share of the cells each further seed leaves out of its training"),
    ] = DEFAULT_TRAINING.bagging,
    max_epochs: Annotated[
        int, typer.Option(help="Upper bound on epochs (early stopping)")
    ] = DEFAULT_TRAINING.max_epochs,
    validation: Annotated[
        str,
        typer.Option(
            help="Held-out SMAP: 'seasons' (blocks in every season, with gaps) or 'tail' "
            "(the last VALIDATION_DAYS)"
        ),
    ] = DEFAULT_TRAINING.validation,
    validation_days: Annotated[
        int, typer.Option(help="Days of SMAP held back in all")
    ] = DEFAULT_TRAINING.validation_days,
    budget: Annotated[
        str | None,
        typer.Option(
            help="Wall-clock limit such as 15m: the first seed stops early within its share, "
            "and a further seed starts only if its measured cost fits"
        ),
    ] = None,
    hidden: Annotated[int, typer.Option(help="LSTM hidden size")] = DEFAULT_TRAINING.hidden,
    window: Annotated[
        int, typer.Option(help="Days of a training window")
    ] = DEFAULT_TRAINING.window,
    burn_in: Annotated[
        int, typer.Option(help="First days of a window left out of the loss")
    ] = DEFAULT_TRAINING.burn_in,
    learning_rate: Annotated[
        float, typer.Option(help="Adam's learning rate")
    ] = DEFAULT_TRAINING.learning_rate,
    schedule: Annotated[
        str, typer.Option(help="Learning rate: constant or cosine")
    ] = DEFAULT_TRAINING.schedule,
    loss: Annotated[
        str, typer.Option(help="mse, or cell_rmse (every cell weighs the same)")
    ] = DEFAULT_TRAINING.loss,
    seed: Annotated[
        int, typer.Option(help="Random seed of the first member")
    ] = DEFAULT_TRAINING.seed,
    device: Annotated[str, typer.Option(help="cpu, cuda or auto")] = "auto",
    threads: Annotated[int, typer.Option(help="Torch threads; 0 = settings/all cores")] = 0,
    nowcast: Annotated[
        bool,
        typer.Option(
            "--nowcast", help="Train a nowcast: the inputs add the latest SMAP known at --latency"
        ),
    ] = False,
    latency: Annotated[
        int, typer.Option(help="Nowcast: days from a SMAP retrieval to its first use")
    ] = 1,
    queue: Annotated[
        bool, typer.Option("--queue", help="Train on the running worker pool and follow the job")
    ] = False,
):
    """Train the LSTM on SMAP over a period. VALIDATION_DAYS of its SMAP are held back (by
    default in blocks spread over every season): the first seed stops early on them, and the
    other seeds train that many epochs on the whole period. With --nowcast the model also reads
    the latest SMAP retrieval of a day at or before t - LATENCY (value and age), as in Fang &
    Shen (2020)."""
    from dataclasses import asdict

    from model.dataset import open_input
    from model.training import checkpoint
    from model.training.budget import parse_duration
    from model.training.train import describe_validation
    from model.training.train import train as run_training

    config = TrainConfig(
        start=start,
        end=end,
        ensemble=ensemble,
        bagging=bagging,
        max_epochs=max_epochs,
        validation=validation,
        validation_days=validation_days,
        hidden=hidden,
        window=window,
        burn_in=burn_in,
        learning_rate=learning_rate,
        schedule=schedule,
        loss=loss,
        seed=seed,
        device=device,
        threads=threads,
        nowcast=nowcast,
        latency=latency,
        budget_seconds=parse_duration(budget) if budget else 0.0,
    )
    if queue:
        from worker.submit import follow, submit_train

        request = {**asdict(config), "input": str(input), "out": str(out)}
        job = follow(submit_train(request))
        typer.echo(f"wrote {out}: {describe_validation(job['result']['validation'])}")
        return
    ckpt, log = run_training(open_input(input), config)
    checkpoint.save(out, ckpt, log)
    typer.echo(f"wrote {out}: {describe_validation(ckpt.validation)}")

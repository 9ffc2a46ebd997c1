"""The `smapx` command line: one entry point for every job. User errors print as one line."""

import json
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from model.errors import SmapxError

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="Extended SMAP soil moisture: ingest, train, extend, evaluate, serve.")
ingest_app = typer.Typer(no_args_is_help=True, help="Read a data source into an input dataset.")
app.add_typer(ingest_app, name="ingest")


def _configure_threads(threads: int) -> None:
    import torch

    from model.settings import get_settings

    threads = threads or get_settings().torch_threads
    if threads:
        torch.set_num_threads(threads)


@ingest_app.command("hydrodl")
def ingest_hydrodl(
    folder: Annotated[Path, typer.Argument(help="hydroDL database: crd.csv, const/, YYYY/ folders")],
    out: Annotated[Path, typer.Option(help="Input dataset to write (Zarr)")],
):
    """Read a hydroDL CSV database (forcing, SMAP, static attributes) into an input dataset."""
    from model.dataset import write_input
    from model.sources.hydrodl import read_hydrodl

    ds = read_hydrodl(folder)
    write_input(ds, out)
    n_obs = int(ds["target"].notnull().sum())
    typer.echo(f"wrote {out}: {ds.sizes['cell']} cells, {ds.sizes['time']} days "
               f"({str(ds.time.values[0])[:10]}..{str(ds.time.values[-1])[:10]}), "
               f"{ds.sizes['variable']} forcing and {ds.sizes['static_variable']} static variables, "
               f"{n_obs} SMAP observations")


@app.command()
def train(
    input: Annotated[Path, typer.Option(help="Input dataset (Zarr)")],
    start: Annotated[str, typer.Option(help="First training day, YYYY-MM-DD")],
    end: Annotated[str, typer.Option(help="Last training day, YYYY-MM-DD")],
    out: Annotated[Path, typer.Option(help="Checkpoint directory to write")],
    ensemble: Annotated[int, typer.Option(help="Number of seeds to train and average")] = 1,
    max_epochs: Annotated[int, typer.Option(help="Upper bound on epochs (early stopping)")] = 60,
    validation_days: Annotated[int, typer.Option(help="Days at the end held back for validation")] = 61,
    hidden: Annotated[int, typer.Option(help="LSTM hidden size")] = 256,
    seed: Annotated[int, typer.Option(help="Random seed of the first member")] = 42,
    device: Annotated[str, typer.Option(help="cpu, cuda or auto")] = "auto",
    threads: Annotated[int, typer.Option(help="Torch threads; 0 = settings/all cores")] = 0,
):
    """Train the LSTM on SMAP over a period. The last VALIDATION_DAYS of it are held back to pick
    the number of epochs (early stopping); the network is then refitted on the whole period."""
    from model import checkpoint
    from model.dataset import open_input
    from model.train import TrainConfig, train as run_training

    _configure_threads(threads)
    config = TrainConfig(start=start, end=end, ensemble=ensemble, max_epochs=max_epochs,
                         validation_days=validation_days, hidden=hidden, seed=seed, device=device)
    ckpt, log = run_training(open_input(input), config)
    checkpoint.save(out, ckpt, log)
    v = ckpt.validation
    typer.echo(f"wrote {out}: validation {v['period']} median RMSE {v['median_rmse']:.4f} m3/m3, "
               f"median R {v['median_r']:.3f}")


@app.command()
def extend(
    model: Annotated[Path, typer.Option(help="Checkpoint directory")],
    input: Annotated[Path, typer.Option(help="Input dataset (Zarr)")],
    start: Annotated[str, typer.Option(help="First day, YYYY-MM-DD")],
    end: Annotated[str, typer.Option(help="Last day, YYYY-MM-DD")],
    out: Annotated[str, typer.Option(help="Product cube to write: a path or an fsspec URL")],
    threads: Annotated[int, typer.Option(help="Torch threads; 0 = settings/all cores")] = 0,
):
    """Run the trained network over every cell and day of a period and write the product cube."""
    from model import checkpoint
    from model.dataset import open_input
    from model.extend import extend as run_extension

    _configure_threads(threads)
    cube = run_extension(checkpoint.load(model), open_input(input), start, end, out)
    typer.echo(f"wrote {out}: {', '.join(v for v in cube.data_vars if v != 'mask')} over "
               f"{cube.sizes['time']} days x {int(cube['mask'].sum())} cells")


def main() -> None:
    """Console entry point: run the CLI, printing user errors as one line with exit code 1."""
    try:
        app(standalone_mode=False)
    except SmapxError as exc:
        typer.echo(f"error: {exc}", err=True)
        sys.exit(1)
    except (typer.Abort, KeyboardInterrupt):
        typer.echo("aborted", err=True)
        sys.exit(130)
    except Exception as exc:
        import click

        if isinstance(exc, click.ClickException):
            exc.show()
            sys.exit(exc.exit_code)
        raise

"""The `smapx` command line: one entry point for every job, its commands in a module per group
(data, training, production, serving, evaluation, operations). User errors print as one line."""

import gc
import sys

import typer

from cli import data, evaluation, operations, production, serving, training
from model.errors import SmapxError

INTERRUPTED = 130  # the exit status of a command stopped by Ctrl-C

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="Extended SMAP soil moisture: ingest, train, extend, evaluate, serve.",
)
for group in (data, training, production, serving, evaluation, operations):
    app.registered_groups += group.commands.registered_groups
    app.registered_commands += group.commands.registered_commands


def main() -> None:
    """Console entry point: run the CLI, printing user errors as one line with exit code 1.
    The objects left at exit are frozen out of the garbage collector: the interpreter's last
    collection would scan every object of numpy, pandas, xarray and dask (~0.2 s of every
    command, a tenth of an extension) to free memory the system takes back anyway."""
    try:
        _run()
    finally:
        gc.freeze()


def _run() -> None:
    try:
        code = app(standalone_mode=False)  # click answers Ctrl-C and typer.Exit with a code
    except SmapxError as exc:
        typer.echo(f"error: {exc}", err=True)
        sys.exit(1)
    except (typer.Abort, KeyboardInterrupt):
        typer.echo("aborted", err=True)
        sys.exit(INTERRUPTED)
    except Exception as exc:
        import click

        if isinstance(exc, click.ClickException):
            exc.show()
            sys.exit(exc.exit_code)
        raise
    if isinstance(code, int) and code:
        if code == INTERRUPTED:
            typer.echo("aborted", err=True)
        sys.exit(code)

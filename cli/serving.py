"""`smapx worker`, `jobs`, `job` and `serve`: the worker pool and the HTTP service."""

from typing import Annotated

import typer

commands = typer.Typer()


@commands.command()
def worker(
    concurrency: Annotated[int, typer.Option(help="Tasks run at once (processes)")] = 1,
    threads: Annotated[
        int, typer.Option(help="Torch threads per task; 0 = cores / concurrency")
    ] = 0,
    loglevel: Annotated[str, typer.Option(help="debug, info, warning, error")] = "info",
    hostname: Annotated[str | None, typer.Option(help="Worker name, e.g. w1@%h")] = None,
):
    """Start a worker of the pool: it takes blocks, exports and training jobs from Redis
    (SMAPX_REDIS_URL) until stopped."""
    from worker.pool import run_worker

    run_worker(concurrency, threads, loglevel, hostname)


@commands.command()
def jobs(
    limit: Annotated[int, typer.Option(help="Most recent jobs to list")] = 20,
    as_json: Annotated[bool, typer.Option("--json", help="Print the records as JSON")] = False,
):
    """List recent jobs with their state and progress."""
    from worker.report import list_jobs_text

    typer.echo(list_jobs_text(limit, as_json))


@commands.command()
def job(
    job_id: Annotated[str, typer.Argument(help="Job id (from smapx jobs)")],
    cancel: Annotated[bool, typer.Option("--cancel", help="Cancel the job")] = False,
    resume: Annotated[
        bool,
        typer.Option(
            "--resume",
            help="Run again what a stopped or stuck job left undone (extensions, exports)",
        ),
    ] = False,
    follow: Annotated[bool, typer.Option("--follow", help="Show progress until it ends")] = False,
):
    """Show one job's record (JSON); cancel, resume or follow it."""
    from worker.report import job_text

    typer.echo(job_text(job_id, cancel=cancel, resume=resume, follow_it=follow))


@commands.command()
def serve(
    cube: Annotated[
        list[str],
        typer.Option(
            help="Product cube to serve: a path or an fsspec URL (repeatable; first = default)"
        ),
    ],
    host: Annotated[str, typer.Option(help="Interface to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port")] = 8000,
    access_log: Annotated[bool, typer.Option(help="Log every request")] = False,
    workers: Annotated[
        int, typer.Option(min=1, help="API processes over the same cubes, each bounded")
    ] = 1,
):
    """Serve the cubes over HTTP: the API under /v1 (docs at /docs) and the web map at /."""
    from service.serve import serve as run_server

    run_server(cube, host, port, access_log, workers)

"""`smapx extend`, `climatology`, `daily` and `nowcast-skill`: the cube made, grown, scored."""

import gc
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer

from model.errors import SmapxError

commands = typer.Typer()


@contextmanager
def _collector_paused() -> Iterator[None]:
    """For imports of the scientific stack where start-up counts (an extension): the garbage
    collector's full passes, triggered as the imported objects pile up, scanned them again and
    again and found nothing (~0.1 s of a 2.5 s extension). They live as long as the process, so
    they are frozen out of later passes too."""
    gc.disable()
    try:
        yield
    finally:
        gc.freeze()
        gc.enable()


def _configure_threads(threads: int) -> None:
    """--threads over SMAPX_TORCH_THREADS for this process: the inference kernels read it, and
    torch where it is first used (model.training.network)."""
    from model.settings import get_settings

    if threads:
        get_settings().torch_threads = threads


def _echo_engine(ckpt) -> None:
    """What ran each ensemble member: kernel, instruction set, precision."""
    from model.engine import engine_for

    for k, path in enumerate(engine_for(ckpt).paths):
        typer.echo(
            f"member {k}: kernel {path.kernel}, instruction set {path.instruction_set}, "
            f"precision {path.precision}"
        )


@commands.command()
def extend(
    model: Annotated[Path, typer.Option(help="Checkpoint directory")],
    input: Annotated[Path, typer.Option(help="Input dataset (Zarr)")],
    start: Annotated[str, typer.Option(help="First day, YYYY-MM-DD")],
    end: Annotated[str, typer.Option(help="Last day, YYYY-MM-DD")],
    out: Annotated[str, typer.Option(help="Product cube to write: a path or an fsspec URL")],
    threads: Annotated[int, typer.Option(help="Torch threads; 0 = settings/all cores")] = 0,
    workers: Annotated[
        int,
        typer.Option(
            help="Run on N local worker processes (with a private Redis if none is configured); "
            "0 = in this process"
        ),
    ] = 0,
    queue: Annotated[
        bool,
        typer.Option(
            "--queue", help="Submit to the running worker pool (SMAPX_REDIS_URL) and follow it"
        ),
    ] = False,
    base: Annotated[
        str | None,
        typer.Option(
            help="Base period A/B of the climatology (percentiles, anomalies) stored with the "
            "cube, e.g. 1991-01-01/2020-12-31; default the cube's whole record"
        ),
    ] = None,
):
    """Run the trained network over every cell and day of a period and write the product cube
    (`lstm`, or `nowcast` for a nowcast model) with its climatology. An existing cube of the same
    model, input and start grows to a later end: only the time chunks the new days touch are
    computed."""
    with _collector_paused():
        from model.dataset import open_input
        from model.product import climatology as climatologies
        from model.production.extend import extend as run_extension
        from model.training import checkpoint

    if workers or queue:
        from worker.submit import run_extend_and_rank

        request = {"model": model, "input": input, "start": start, "end": end, "out": out}
        job, ranked = run_extend_and_rank(request, base, workers=workers, threads=threads)
        _echo_written(job["request"]["out"])
        typer.echo(ranked)
        return
    _configure_threads(threads)
    ckpt = checkpoint.load(model)
    computed = run_extension(ckpt, open_input(input), start, end, out)
    _echo_engine(ckpt)
    if not computed:
        typer.echo(f"{out} already holds {start}..{end}: nothing to do")
        return
    _echo_written(out)
    typer.echo(climatologies.after_extension(out, base))


def _echo_written(out: str) -> None:
    from model.product.cube import describe

    written = describe(out)
    typer.echo(
        f"wrote {out}: {', '.join(written['products'])} over {written['days']} days x "
        f"{written['cells']} cells"
    )


@commands.command()
def climatology(
    cube: Annotated[str, typer.Option(help="Product cube: a path or an fsspec URL")],
    base: Annotated[
        str | None,
        typer.Option(
            help="Base period A/B, e.g. 1991-01-01/2020-12-31: recompute over it. Without it, a "
            "cube that has a climatology gets its added days ranked against the same base; one "
            "without gets one over its whole record"
        ),
    ] = None,
    workers: Annotated[
        int,
        typer.Option(
            help="Rank on N local worker processes, a window group of cells per task (with a "
            "private Redis if none is configured); 0 = in this process"
        ),
    ] = 0,
    queue: Annotated[
        bool,
        typer.Option(
            "--queue", help="Submit to the running worker pool (SMAPX_REDIS_URL) and follow it"
        ),
    ] = False,
    threads: Annotated[int, typer.Option(help="Threads per worker; 0 = the cores shared")] = 0,
):
    """(Re)compute the cube's climatology: each day's percentile and the window means its
    anomalies subtract, for every product but smap and lstm_spread. It is computed beside the
    served one and swapped in once complete; a stopped computation resumes where it stopped.
    A change publishes a new generation of the cube, which servers follow."""
    from model.product import climatology as climatologies

    recompute = None
    if workers or queue:
        from worker.submit import run_climatology

        def recompute(store, base):
            return run_climatology(store, base, workers, threads)

    typer.echo(climatologies.after_extension(cube, base, recompute=recompute))


@commands.command()
def daily(
    input: Annotated[Path, typer.Option(help="Input dataset the new files are ingested into")],
    start: Annotated[str, typer.Option(help="First day of the cubes, YYYY-MM-DD")],
    cube: Annotated[
        list[str],
        typer.Option(help="CHECKPOINT=CUBE to grow (repeatable: a projection, a nowcast...)"),
    ],
    smap_folder: Annotated[
        Path | None, typer.Option("--smap", help="Folder where SMAP L3 granules arrive")
    ] = None,
    forcing_folder: Annotated[
        Path | None, typer.Option("--forcing", help="Folder where NLDAS-2 FORA files arrive")
    ] = None,
    noah_folder: Annotated[
        Path | None, typer.Option("--noah", help="Folder where NLDAS-2 Noah files arrive")
    ] = None,
    min_hours: Annotated[int, typer.Option(help="Readable hours an NLDAS day needs")] = 18,
    threads: Annotated[int, typer.Option(help="Compute threads; 0 = settings/all cores")] = 0,
    queue: Annotated[
        bool, typer.Option("--queue", help="Grow the cubes on the running worker pool")
    ] = False,
):
    """The daily chain, for cron: ingest the files that arrived, grow every cube to the last
    day with forcing, and record the run as a job (`smapx jobs`). Safe to run twice (the second
    run does nothing) and after missed days (one run catches up)."""
    from model.production.daily import DailyPlan, run_daily
    from worker import jobs

    _configure_threads(threads)
    folders = {"smap": smap_folder, "forcing": forcing_folder, "noah": noah_folder}
    plan = DailyPlan(
        input=input,
        start=start,
        folders={k: v for k, v in folders.items() if v is not None},
        cubes=[_model_and_cube(pair) for pair in cube],
        min_hours=min_hours,
    )
    jobs.ensure_reachable()
    request = {
        "input": str(input),
        "start": start,
        "cubes": cube,
        **{k: str(v) for k, v in plan.folders.items()},
    }
    job_id = jobs.create_job("daily", request)
    jobs.start_job(job_id, "starting")
    try:
        summary = run_daily(
            plan,
            stage=lambda text: jobs.update_job(job_id, stage=text),
            grow=_grow_on_pool(input, start) if queue else None,
        )
    except Exception as exc:
        jobs.finish_job(job_id, "failed", error=f"{type(exc).__name__}: {exc}")
        raise
    jobs.finish_job(job_id, "done", percent=100.0, result=summary)
    for source, (first, last, n_days) in summary["ingested"].items():
        typer.echo(f"ingested {source}: {n_days} day(s) {first}..{last}")
    for store, grown in summary["cubes"].items():
        done = f"job {grown['job']}" if "job" in grown else f"{grown['blocks']} block(s) computed"
        typer.echo(f"{store}: ends {grown['end']}, {done}")
    typer.echo(f"job {job_id} done")


def _grow_on_pool(input: Path, start: str):
    """Each cube's growth as an extension job on the running pool, followed to its end."""
    from worker.submit import run_extend

    def grow(model: Path, cube: str, end) -> dict:
        request = {"model": model, "input": input, "start": start, "end": str(end.date())}
        return {"job": run_extend({**request, "out": cube}, progress=False)["id"]}

    return grow


def _model_and_cube(pair: str) -> tuple[Path, str]:
    model, sep, store = pair.partition("=")
    if not sep or not model or not store:
        raise SmapxError(f"--cube: expected CHECKPOINT=CUBE, got {pair!r}")
    return Path(model), store


@commands.command("nowcast-skill")
def nowcast_skill(
    projection: Annotated[Path, typer.Option(help="Projection checkpoint (smapx train)")],
    nowcast: Annotated[Path, typer.Option(help="Nowcast checkpoint (smapx train --nowcast)")],
    input: Annotated[Path, typer.Option(help="Input dataset (Zarr)")],
    start: Annotated[str, typer.Option(help="First day scored, YYYY-MM-DD")],
    end: Annotated[str, typer.Option(help="Last day scored, YYYY-MM-DD")],
    threads: Annotated[int, typer.Option(help="Compute threads; 0 = settings/all cores")] = 0,
):
    """Skill against SMAP (median over cells of RMSE and R) of the nowcast, the projection and
    the baseline projection + last innovation * exp(-age / 4 days), over start..end."""
    from model.dataset import open_input
    from model.production.nowcast import nowcast_skill as score
    from model.training import checkpoint

    _configure_threads(threads)
    skill = score(
        checkpoint.load(projection), checkpoint.load(nowcast), open_input(input), start, end
    )
    typer.echo(f"SMAP days of {skill.pop('period')}:")
    for name, values in skill.items():
        typer.echo(
            f"  {name:20s} RMSE {values['rmse']:.4f} m3/m3  R {values['r']:.3f}  "
            f"({values['n_cells']} cells)"
        )

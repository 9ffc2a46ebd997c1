"""The `smapx` command line: one entry point for every job. User errors print as one line."""

import gc
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer

from model.errors import SmapxError
from model.sources import HOURLY_SOURCES, HourlySource
from model.training.config import TrainConfig

DEFAULT_TRAINING = TrainConfig(start="", end="")  # the defaults `smapx train` shows

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="Extended SMAP soil moisture: ingest, train, extend, evaluate, serve.",
)
ingest_app = typer.Typer(no_args_is_help=True, help="Read a data source into an input dataset.")
app.add_typer(ingest_app, name="ingest")


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


@app.command()
def world(
    out: Annotated[
        Path, typer.Option(help="World folder to write (input.zarr, truth.zarr, stations/)")
    ],
    seed: Annotated[int, typer.Option(help="Random seed: the same seed gives the same world")] = 42,
    start: Annotated[str, typer.Option(help="First day, YYYY-MM-DD")] = "2000-01-01",
    end: Annotated[str, typer.Option(help="Last day, YYYY-MM-DD")] = "2020-12-31",
    stride: Annotated[
        int | None,
        typer.Option(
            help="Keep every K-th grid row and column; 1 = all CONUS cells "
            "[default: 3 on the 36 km grid, 1 on finer grids]"
        ),
    ] = None,
    bbox: Annotated[
        str | None, typer.Option(help="Region as lon/lat west,south,east,north")
    ] = None,
    smap_noise: Annotated[float, typer.Option(help="SMAP-like retrieval noise, m3/m3")] = 0.02,
    grid: Annotated[
        str, typer.Option(help="EASE2 grid of the world's cells: 36km, 9km, 3km or 1km")
    ] = "36km",
):
    """Build the synthetic twin world: weather, a soil-water truth, Noah-like and second-LSM
    simulations, SMAP-like retrievals (from 2015-04-01) and in situ stations."""
    from model.grid import DEFAULT, named, parse_bbox
    from model.world import WorldConfig, build_world, summary, write_world
    from model.world.blocks import in_blocks, write_world_blocks

    on = named(grid)
    config = WorldConfig(
        seed=seed,
        start=start,
        end=end,
        stride=stride or (3 if on == DEFAULT else 1),
        bbox=parse_bbox(bbox) if bbox else None,
        smap_noise=smap_noise,
        grid=on.name,
    )
    if in_blocks(config):
        typer.echo(f"wrote {out}: {write_world_blocks(config, out, progress=True)}")
        return
    built = build_world(config, progress=True)
    write_world(built, out)
    typer.echo(f"wrote {out}: {summary(built)}")


@ingest_app.command("hydrodl")
def ingest_hydrodl(
    folder: Annotated[
        Path, typer.Argument(help="hydroDL database: crd.csv, const/, YYYY/ folders")
    ],
    out: Annotated[Path, typer.Option(help="Input dataset to write (Zarr)")],
):
    """Read a hydroDL CSV database (forcing, SMAP, static attributes) into an input dataset."""
    from model.dataset import write_input
    from model.sources.hydrodl import read_hydrodl

    ds = read_hydrodl(folder)
    write_input(ds, out)
    n_obs = int(ds["target"].notnull().sum())
    typer.echo(
        f"wrote {out}: {ds.sizes['cell']} cells, {ds.sizes['time']} days "
        f"({str(ds.time.values[0])[:10]}..{str(ds.time.values[-1])[:10]}), "
        f"{ds.sizes['variable']} forcing and {ds.sizes['static_variable']} static variables, "
        f"{n_obs} SMAP observations"
    )


RegionBox = Annotated[
    str | None,
    typer.Option(
        help="W,S,E,N in degrees: the cells of a new dataset (an existing one keeps its cells)"
    ),
]
RegionName = Annotated[str | None, typer.Option(help="A named region instead of --bbox: conus")]
FirstDay = Annotated[str | None, typer.Option(help="Read only files from this day, YYYY-MM-DD")]
LastDay = Annotated[str | None, typer.Option(help="Read only files up to this day, YYYY-MM-DD")]
GridName = Annotated[
    str | None,
    typer.Option(
        "--grid",
        help="EASE2 grid of a dataset this creates: 36km (SPL3SMP, the default) or 9km "
        "(SPL3SMP_E); an existing dataset keeps its own",
    ),
]
MinHours = Annotated[
    int, typer.Option(help="Fewest readable hours for a day to be written (e.g. 18 in operations)")
]


def _print_report(report) -> None:
    typer.echo("\n".join(report.lines()))


@ingest_app.command("smap")
def ingest_smap(
    folder: Annotated[
        Path,
        typer.Argument(
            help="Folder of SMAP_L3_SM_P_YYYYMMDD_R*_*.h5 granules (SMAP_L3_SM_P_E_... at 9km)"
        ),
    ],
    out: Annotated[Path, typer.Option(help="Input dataset to create or add to (Zarr)")],
    bbox: RegionBox = None,
    region: RegionName = None,
    overpass: Annotated[str, typer.Option(help="am (6 am descending), pm, or both (mean)")] = "am",
    quality: Annotated[
        str,
        typer.Option(
            help="recommended (retrieval_qual_flag 0), relaxed (0 or 8), any (valid range only)"
        ),
    ] = "recommended",
    start: FirstDay = None,
    end: LastDay = None,
    grid: GridName = None,
):
    """SMAP L3 daily granules -> the SMAP target; creates the dataset with the cells of a region."""
    from model.grid import named
    from model.sources.ingest import ingest_smap as run
    from model.sources.ingest import parse_region
    from model.sources.smap import Overpass, Quality

    _print_report(
        run(
            folder,
            out,
            parse_region(bbox, region),
            _choice(Overpass, overpass),
            _choice(Quality, quality),
            start,
            end,
            on=named(grid) if grid else None,
        )
    )


def _choice(enum, value: str):
    try:
        return enum(value.lower())
    except ValueError:
        raise SmapxError(f"{value!r} is not one of {', '.join(e.value for e in enum)}") from None


def _hourly_command(source: HourlySource) -> None:
    """`smapx ingest <command>` for one registered NLDAS-2 hourly product."""

    def command(
        folder: Annotated[
            Path,
            typer.Argument(
                help=f"Folder of NLDAS_{'/'.join(source.products)}0125_H.*.nc4 hourly files"
            ),
        ],
        out: Annotated[Path, typer.Option(help="Input dataset to add to (Zarr)")],
        bbox: RegionBox = None,
        region: RegionName = None,
        start: FirstDay = None,
        end: LastDay = None,
        min_hours: MinHours = 1,
        grid: GridName = None,
    ):
        from model.grid import named
        from model.sources.ingest import ingest_nldas, parse_region

        box = parse_region(bbox, region)
        on = named(grid) if grid else None
        _print_report(ingest_nldas(folder, out, source.kind, box, start, end, min_hours, on=on))

    command.__doc__ = source.summary
    ingest_app.command(source.command)(command)


for _source in HOURLY_SOURCES.values():
    _hourly_command(_source)


@ingest_app.command("static")
def ingest_static(
    raster: Annotated[Path, typer.Argument(help="Single-band GeoTIFF in any CRS")],
    name: Annotated[str, typer.Option(help="Attribute name, e.g. sand, clay, ndvi, landcover")],
    out: Annotated[Path, typer.Option(help="Input dataset to add to (Zarr)")],
    categorical: Annotated[
        bool,
        typer.Option(
            "--categorical", help="Classes (land cover): the most common class, not the mean"
        ),
    ] = False,
):
    """A static attribute from a GeoTIFF, averaged (or its mode taken) over each cell."""
    from model.sources.ingest import ingest_static as run

    _print_report(run(raster, name, out, categorical))


@app.command()
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


def _echo_engine(ckpt) -> None:
    """What ran each ensemble member: kernel, instruction set, precision."""
    from model.engine import engine_for

    for k, path in enumerate(engine_for(ckpt).paths):
        typer.echo(
            f"member {k}: kernel {path.kernel}, instruction set {path.instruction_set}, "
            f"precision {path.precision}"
        )


@app.command()
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
        from model.product.cube import describe
        from model.product.extend import extend as run_extension
        from model.training import checkpoint

    if workers or queue:
        from worker.submit import run_extend

        request = {"model": model, "input": input, "start": start, "end": end, "out": out}
        job = run_extend(request, workers=workers, threads=threads)
        written = describe(job["request"]["out"])
    else:
        _configure_threads(threads)
        ckpt = checkpoint.load(model)
        computed = run_extension(ckpt, open_input(input), start, end, out)
        _echo_engine(ckpt)
        written = describe(out)
        if not computed:
            typer.echo(f"{out} already holds {start}..{end}: nothing to do")
            return
    typer.echo(
        f"wrote {out}: {', '.join(written['products'])} over {written['days']} days x "
        f"{written['cells']} cells"
    )
    typer.echo(climatologies.after_extension(out, base))


@app.command()
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
):
    """(Re)compute the cube's climatology: each day's percentile and the window means its
    anomalies subtract, for every product but smap and lstm_spread. A change publishes a new
    generation of the cube, which servers follow."""
    from model.product import climatology as climatologies

    typer.echo(climatologies.after_extension(cube, base))


@app.command()
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
    from model.product.daily import DailyPlan, run_daily
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


@app.command("nowcast-skill")
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
    from model.training import checkpoint
    from model.training.nowcast import nowcast_skill as score

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


@app.command()
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


@app.command()
def jobs(
    limit: Annotated[int, typer.Option(help="Most recent jobs to list")] = 20,
    as_json: Annotated[bool, typer.Option("--json", help="Print the records as JSON")] = False,
):
    """List recent jobs with their state and progress."""
    from worker.report import list_jobs_text

    typer.echo(list_jobs_text(limit, as_json))


@app.command()
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


@app.command()
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


@app.command()
def evaluate(
    cube: Annotated[Path, typer.Option(help="Product cube (Zarr)")],
    stations: Annotated[
        Path,
        typer.Option(
            help="ISMN archive (zip or folder), station CSV, or a twin world (W or W/stations)"
        ),
    ],
    out: Annotated[
        Path, typer.Option(help="Report folder to write (index.html, summary.json, ...)")
    ],
    training_period: Annotated[
        str | None,
        typer.Option(
            help="SMAP training window YYYY-MM-DD..YYYY-MM-DD; default: the cube's attribute"
        ),
    ] = None,
    flags: Annotated[str, typer.Option(help="ISMN quality flags to keep, comma-separated")] = "G",
    min_count: Annotated[int, typer.Option(help="Samples a day needs for a daily mean")] = 12,
    tc_days: Annotated[
        float | None,
        typer.Option(
            help="Root-zone filter time (days); default: fitted per site in the training window"
        ),
    ] = None,
    min_pairs: Annotated[int, typer.Option(help="Days a site needs in a period to be scored")] = 30,
):
    """Evaluate a cube against in situ probes: metrics by period, fusion weights, the paper's
    claims, and a report of figures (OUT/index.html)."""
    import logging

    from model.evaluation.evaluate import Options
    from model.evaluation.report import run

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s")
    options = Options(
        training_period=training_period, tc_days=tc_days, min_pairs=min_pairs, progress=True
    )
    result = run(
        cube, stations, out, options, tuple(f.strip() for f in flags.split(",")), min_count
    )
    n = result.summary["n_sites"]
    typer.echo(
        f"wrote {out / 'index.html'}: {n['surface']} surface and {n['rootzone']} root-zone "
        f"sites, {len(result.problems)} problem(s)"
    )
    for name, claim in result.summary["claims"].items():
        verdict = {True: "holds", False: "FAILS", None: "undecided"}[claim["holds"]]
        typer.echo(
            f"  {name}: {verdict}" + (f" ({claim['finding']})" if claim.get("finding") else "")
        )


@app.command()
def demo(
    out: Annotated[
        Path | None,
        typer.Option(
            help="Folder for the world, model, cube and report [default: SMAPX_DATA_DIR/demo]"
        ),
    ] = None,
    bbox: Annotated[
        str, typer.Option(help="World region, west,south,east,north; 'conus' for all")
    ] = "-104,33,-92,41",
    stride: Annotated[int, typer.Option(help="Keep every K-th grid row/column of the region")] = 1,
    workers: Annotated[
        int, typer.Option(help="Worker processes for the extension; 0 = in-process")
    ] = 2,
    max_epochs: Annotated[int, typer.Option(help="Upper bound on training epochs")] = 20,
    port: Annotated[int, typer.Option(help="Port to serve the cube on at the end")] = 8000,
    serve: Annotated[bool, typer.Option(help="Serve the cube and web map at the end")] = True,
    live: Annotated[
        bool,
        typer.Option(
            "--live",
            help="Serve a cube that ends LIVE_DAYS before the world does and grow it a day "
            "every LIVE_SECONDS while serving: the map moves forward",
        ),
    ] = False,
    live_days: Annotated[int, typer.Option(help="Days a --live demo grows")] = 5,
    live_seconds: Annotated[float, typer.Option(help="Seconds between two days of growth")] = 10.0,
):
    """The whole product on the built-in twin world: build it, train, extend 2000-2020, score,
    evaluate against stations, and serve the cube with its web map."""
    from cli.demo import DemoConfig, run
    from model.grid import parse_bbox
    from model.settings import get_settings

    region = parse_bbox(bbox)
    run(
        DemoConfig(
            out=out or get_settings().data_dir / "demo",
            bbox=region,
            stride=stride,
            workers=workers,
            max_epochs=max_epochs,
            port=port,
            serve=serve,
            live_days=live_days if live else 0,
            live_seconds=live_seconds,
        )
    )


@app.command()
def settings(
    markdown: Annotated[
        bool, typer.Option("--markdown", help="The README's table of every setting and default")
    ] = False,
):
    """Every setting with the value this process sees (SMAPX_* environment variables)."""
    from model.settings import Settings, get_settings, markdown_table

    if markdown:
        typer.echo(markdown_table())
        return
    from worker.pool import redis_in_use

    current = get_settings()
    for name in Settings.model_fields:
        value = redis_in_use() if name == "redis_url" else getattr(current, name)
        typer.echo(f"SMAPX_{name.upper()}={'unset' if value is None else value}")


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

"""`smapx demo`: the whole product on the built-in twin world, end to end on one machine:
build the world, train, extend 2000-2020 on a local worker pool, score, evaluate, serve.

Each stage is timed, and leaves a stamp of the settings it ran with in OUT/.stages; a re-run
with the same settings skips the stages already done (after a change, the first stage whose
stamp differs and every stage after it run again). Serving starts one worker on a local Redis,
so that bulk jobs submitted from the map or the API run while the demo serves. One demo runs in a
folder at a time; progress bars are drawn only on a terminal, so a log holds the stages' lines."""

import fcntl
import json
import os
import shutil
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

import pandas as pd
import typer

from model.dataset import open_input
from model.errors import SmapxError
from model.evaluation.skill import at_cells, period_skill
from model.product import climatology
from model.product.cube import DAYS_OF_YEAR, climatology_info, open_cube
from model.settings import get_settings
from model.training import checkpoint
from model.training.train import TrainConfig, describe_validation, train
from model.world import WorldConfig, build_world, open_truth, summary, write_world

TRAIN_START, TRAIN_END = "2015-04-01", "2017-03-31"
UNSEEN_START = "2017-04-01"
SERVING_WORKERS = 1


@dataclass
class DemoConfig:
    """The demo's size: small enough to finish in minutes on 2 cores. The default is every cell
    of the southern Great Plains, so a click anywhere in the region on the map hits a cell."""

    out: Path
    bbox: tuple[float, float, float, float] | None = (-104.0, 33.0, -92.0, 41.0)
    stride: int = 1
    start: str = "2000-01-01"
    end: str = "2020-12-31"
    max_epochs: int = 20
    workers: int = 2
    port: int = 8000
    serve: bool = True
    live_days: int = 0  # the cube ends this many days before the world and grows while served
    live_seconds: float = 10.0  # between two days of growth

    def training(self, threads: int = 0) -> TrainConfig:
        """The demo's training: one member, early stopping after 4 epochs without progress."""
        return TrainConfig(
            start=TRAIN_START,
            end=TRAIN_END,
            max_epochs=self.max_epochs,
            patience=4,
            ensemble=1,
            threads=threads,
        )

    def recipe(self) -> dict:
        """What the products depend on (not where or how fast they are made, nor whether the
        cube grows live), the training's defaults included: a new default network retrains an
        existing demo."""
        apart = ("out", "workers", "port", "serve", "live_days", "live_seconds")
        own = {k: v for k, v in asdict(self).items() if k not in apart}
        return {**own, "training": asdict(self.training())}


class Stages:
    """Runs the demo's stages in order, timing each, skipping those done with the same recipe."""

    def __init__(self, out: Path, recipe: dict):
        self.stamps = out / ".stages"
        self.recipe = json.loads(json.dumps(recipe, default=str))
        self.times: dict[str, float | None] = {}  # None: reused
        self.redo = False

    def run(
        self,
        name: str,
        title: str,
        outputs: list[Path],
        work: Callable[[], None],
        resumes: bool = False,
        complete: Callable[[], bool] = lambda: True,
    ) -> None:
        """Run `work` unless its stamp matches, its outputs exist and are `complete`; outputs
        are removed first unless the work `resumes` them itself (the extension keeps the blocks
        of its own request)."""
        stamp = self.stamps / f"{name}.json"
        stamped = json.loads(stamp.read_text()) if stamp.exists() else None
        done = stamped == self.recipe
        if done and not self.redo and all(p.exists() for p in outputs) and complete():
            say(f"{title}: already built, reused ({', '.join(str(p) for p in outputs)})")
            self.times[name] = None
            return
        # outputs are resumed only from the same inputs: no stage before redone, no other recipe
        keep = resumes and not self.redo and stamped in (None, self.recipe)
        self.redo = True
        stamp.unlink(missing_ok=True)
        for path in [] if keep else outputs:  # earlier or half-written outputs go first
            if path.is_dir():
                shutil.rmtree(path)
            else:
                path.unlink(missing_ok=True)
        say(title)
        began = time.perf_counter()
        work()
        self.times[name] = time.perf_counter() - began
        say(f"    done in {clock(self.times[name])}")
        self.stamps.mkdir(parents=True, exist_ok=True)
        stamp.write_text(json.dumps(self.recipe))

    def report(self) -> None:
        say(
            "stage times: "
            + ", ".join(f"{k} {'reused' if v is None else clock(v)}" for k, v in self.times.items())
        )
        say(f"total: {clock(sum(v for v in self.times.values() if v is not None))}")


@contextmanager
def only_demo_in(out: Path) -> Iterator[None]:
    """Hold the folder for this demo: a second one in it (two writers of one cube, one port)
    stops with one line instead of failing half way."""
    out.mkdir(parents=True, exist_ok=True)
    with open(out / ".lock", "a+") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.seek(0)
            holder = lock.read().strip() or "?"
            raise SmapxError(
                f"another smapx demo (pid {holder}) is running in {out}; stop it, or give this "
                "one another --out"
            ) from None
        lock.truncate(0)
        lock.write(str(os.getpid()))
        lock.flush()
        yield


def run(config: DemoConfig) -> None:
    """Every stage in turn; each says what it wrote and how long it took."""
    with only_demo_in(config.out):
        run_stages(config)


def run_stages(config: DemoConfig) -> None:
    out = config.out
    cube_path, world_dir = out / "extended.zarr", out / "world"
    skill_path, report_dir = out / "skill.json", out / "report"
    os.environ["SMAPX_JOBS_DIR"] = str((out / "jobs").resolve())  # for the workers started here
    get_settings.cache_clear()
    stages = Stages(out, config.recipe())
    make_cube(config, stages)
    stages.run(
        "score",
        "4/6 skill of the extended record",
        [skill_path],
        lambda: skill_path.write_text(json.dumps(score(cube_path, world_dir), indent=2)),
    )
    for name, values in json.loads(skill_path.read_text()).items():
        say(f"    {name}: " + ", ".join(f"{k} {v}" for k, v in values.items()))
    stages.run(
        "evaluate",
        "5/6 evaluating against in situ stations",
        [report_dir],
        lambda: evaluate(cube_path, world_dir, report_dir),
    )
    claims = json.loads((report_dir / "summary.json").read_text())["claims"]
    for name, claim in claims.items():
        say(f"    {name}: " + {True: "holds", False: "fails", None: "undecided"}[claim["holds"]])
    say(f"    report: {report_dir / 'index.html'}")
    stages.report()
    if config.serve:
        serve(cube_path, config)
    say_how_to_serve(cube_path, config)


def make_cube(config: DemoConfig, stages: Stages | None = None) -> Path:
    """The first three stages: the twin world, the trained LSTM and the extended cube with its
    climatology (what the tests serve as the demo's cube); the cube's path."""
    out = config.out
    stages = stages or Stages(out, config.recipe())
    progress = sys.stderr.isatty()
    world_dir, model_dir, cube_path = out / "world", out / "model", out / "extended.zarr"

    def build():
        world = build_world(
            WorldConfig(start=config.start, end=config.end, stride=config.stride, bbox=config.bbox),
            progress=progress,
        )
        write_world(world, world_dir)
        say(f"    {world_dir}: {summary(world)}")

    def fit():
        threads = training_threads()
        say(f"    on {threads} thread(s) of {os.cpu_count()} cores")
        ckpt, log = train(
            open_input(world_dir / "input.zarr"), config.training(threads), progress=progress
        )
        checkpoint.save(model_dir, ckpt, log)
        say(f"    {model_dir}: {describe_validation(ckpt.validation)}")

    stages.run("world", "1/6 building the twin world", [world_dir], build)
    stages.run(
        "train",
        f"2/6 training the LSTM on SMAP-like retrievals {TRAIN_START}..{TRAIN_END}",
        [model_dir],
        fit,
    )
    stages.run(
        "extend",
        f"3/6 extending {config.start}..{live_start(config)} on {config.workers} worker processes",
        [cube_path],
        lambda: build_cube(model_dir, world_dir / "input.zarr", config, cube_path, progress),
        resumes=True,
        complete=lambda: cube_is_built(cube_path, config),
    )
    return cube_path


def training_threads() -> int:
    """SMAPX_TORCH_THREADS when set, else the cores not busy now: torch's default of every core,
    spinning, made epochs 10-20x slower on a loaded machine."""
    configured = get_settings().torch_threads
    if configured:
        return configured
    cores = os.cpu_count() or 1
    return max(1, min(cores, round(cores - busy_cores())))


def busy_cores(seconds: float = 0.5) -> float:
    """Cores busy over the next `seconds` (/proc/stat), else the one-minute load average, which
    lags: a job that ended a minute ago still counts there for most of a core."""
    try:
        first = _cpu_times()
        time.sleep(seconds)
        second = _cpu_times()
    except (OSError, ValueError, IndexError):
        return os.getloadavg()[0]
    total = sum(second) - sum(first)
    idle = (second[3] + second[4]) - (first[3] + first[4])  # idle and iowait
    return (os.cpu_count() or 1) * (1 - idle / total) if total > 0 else 0.0


def _cpu_times() -> list[int]:
    with open("/proc/stat") as stat:
        return [int(v) for v in stat.readline().split()[1:]]


def build_cube(
    model: Path, input_path: Path, config: DemoConfig, cube_path: Path, progress: bool = True
) -> None:
    """The cube as `smapx extend` makes it: extended to the live start, then its climatology
    (so that percentiles and anomalies are served), on local worker processes (with a private
    Redis when none is configured) or in-process."""
    end = live_start(config)
    if config.workers:
        from worker.submit import run_extend_and_rank

        request = {"model": str(model), "input": str(input_path), "start": config.start}
        _, ranked = run_extend_and_rank(
            {**request, "end": end, "out": str(cube_path)},
            workers=config.workers,
            progress=progress,
        )
        say(f"    {ranked}")
        return
    from model.production.extend import extend as extend_here

    inputs = open_input(input_path)
    extend_here(checkpoint.load(model), inputs, config.start, end, cube_path, progress=progress)
    say(f"    {climatology.after_extension(cube_path, progress=progress)}")


def cube_is_built(cube_path: Path, config: DemoConfig) -> bool:
    """The cube reaches the live start (a live demo grows a built one, never cuts it) and has
    its climatology where the record is long enough for one."""
    cube = open_cube(cube_path)
    days = cube.sizes["time"]
    ends = str(cube.time.values[-1])[:10] >= live_start(config)
    return ends and (days < DAYS_OF_YEAR or climatology_info(cube_path) is not None)


def live_start(config: DemoConfig) -> str:
    """The cube's first end: the world's last day, less the days a live demo grows."""
    return str((pd.Timestamp(config.end) - pd.Timedelta(days=config.live_days)).date())


def grow_while_serving(
    model: Path, input_path: Path, config: DemoConfig, cube_path: Path
) -> threading.Thread:
    """Grow the served cube a day every live_seconds from its last day to the world's, in a
    thread beside the server, which follows it (its reload period made shorter than a day's
    step). A cube that already reaches the world's last day is served as it is."""
    from model.production.extend import extend as extend_here

    settings = get_settings()
    settings.reload_seconds = min(settings.reload_seconds, config.live_seconds / 2)
    ckpt, inputs = checkpoint.load(model), open_input(input_path)
    days = pd.date_range(open_cube(cube_path).time.values[-1], config.end)[1:]
    if days.empty:
        say(f"    live: {cube_path} already ends {config.end}, nothing to grow")

    def grow() -> None:
        for day in days:
            time.sleep(config.live_seconds)
            extend_here(ckpt, inputs, config.start, day, cube_path, progress=False)
            say(f"    live: {cube_path} now ends {day.date()}")

    thread = threading.Thread(target=grow, name="live growth", daemon=True)
    thread.start()
    return thread


def score(cube_path: Path, world_dir: Path) -> dict:
    """LSTM against the SMAP-like retrievals in years it never saw, and against the truth."""
    inputs = open_input(world_dir / "input.zarr")
    cube = open_cube(cube_path)
    rows, cols = inputs.row.values, inputs.col.values
    lstm = at_cells(cube, "lstm", rows, cols)
    smap = inputs["target"].rename("smap")
    truth = open_truth(world_dir)["truth"].sel(depth=0.025, method="nearest")
    end = str(cube.time.values[-1])[:10]
    return {
        "lstm_vs_smap_training": period_skill(lstm, smap, TRAIN_START, TRAIN_END),
        "lstm_vs_smap_unseen": period_skill(lstm, smap, UNSEEN_START, end),
        "lstm_vs_truth_training": period_skill(lstm, truth, TRAIN_START, TRAIN_END),
        "lstm_vs_truth_before_smap": period_skill(
            lstm, truth, str(cube.time.values[0])[:10], "2015-03-31"
        ),
        "smap_vs_truth": period_skill(smap, truth, TRAIN_START, end),
    }


def evaluate(cube_path: Path, world_dir: Path, report_dir: Path) -> None:
    from model.evaluation.report import run as write_report

    write_report(cube_path, world_dir, report_dir)


def serve(cube_path: Path, config: DemoConfig) -> None:
    """The cube and web map, with a worker on a local Redis so that bulk jobs run."""
    from service.serve import serve as run_server
    from worker.pool import local_pool

    say(f"6/6 starting {SERVING_WORKERS} worker for bulk jobs")
    with local_pool(SERVING_WORKERS) as redis_url:
        say(f"    jobs on {redis_url}, results in {get_settings().jobs_dir}")
        say_how_to_serve(cube_path, config)
        say(f"serving the web map and API at http://localhost:{config.port} (Ctrl-C stops)")
        if config.live_days:
            out = cube_path.parent
            grow_while_serving(out / "model", out / "world" / "input.zarr", config, cube_path)
        run_server([cube_path], host="127.0.0.1", port=config.port)


def say_how_to_serve(cube_path: Path, config: DemoConfig) -> None:
    bbox = ",".join(f"{v:g}" for v in config.bbox) if config.bbox else "conus"
    say(
        "serve again, with a worker for bulk jobs (reuses what is built):\n"
        f"    smapx demo --out {config.out} --bbox={bbox} --stride {config.stride} "
        f"--max-epochs {config.max_epochs} --port {config.port}\n"
        f"or the cube alone: smapx serve --cube {cube_path} --port {config.port}\n"
        f"then open http://localhost:{config.port}"
    )


def clock(seconds: float) -> str:
    return (
        f"{int(seconds // 60)} min {seconds % 60:04.1f} s" if seconds >= 60 else f"{seconds:.1f} s"
    )


def say(text: str) -> None:
    typer.echo(text)

"""`smapx demo`: the whole product on the built-in twin world, end to end on one machine:
build the world, train, extend 2000-2020 on a local worker pool, score, evaluate, serve."""

import json
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import typer

from model.dataset import open_input
from model.evaluation.skill import at_cells, period_skill
from model.product.cube import open_cube
from model.training import checkpoint
from model.training.train import TrainConfig, train
from model.world import WorldConfig, build_world, open_truth, summary, write_world

TRAIN_START, TRAIN_END = "2015-04-01", "2017-03-31"
UNSEEN_START = "2017-04-01"


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


def run(config: DemoConfig) -> None:
    """Every stage in turn; each says what it wrote."""
    out = config.out
    world_dir = out / "world"
    say("1/6 building the twin world")
    world = build_world(
        WorldConfig(start=config.start, end=config.end, stride=config.stride, bbox=config.bbox),
        progress=True,
    )
    write_world(world, world_dir)
    say(f"    {world_dir}: {summary(world)}")

    say(f"2/6 training the LSTM on SMAP-like retrievals {TRAIN_START}..{TRAIN_END}")
    inputs = open_input(world_dir / "input.zarr")
    ckpt, log = train(
        inputs,
        TrainConfig(
            start=TRAIN_START, end=TRAIN_END, max_epochs=config.max_epochs, patience=4, ensemble=1
        ),
    )
    checkpoint.save(out / "model", ckpt, log)
    v = ckpt.validation
    say(
        f"    {out / 'model'}: validation {v['period']} median RMSE {v['median_rmse']:.4f}, "
        f"R {v['median_r']:.3f}"
    )

    cube_path = out / "extended.zarr"
    cube_end = live_start(config)
    say(f"3/6 extending {config.start}..{cube_end} on {config.workers} worker processes")
    extend(out / "model", world_dir / "input.zarr", config, cube_path, cube_end)

    say("4/6 skill of the extended record")
    skill = score(cube_path, world_dir, inputs)
    (out / "skill.json").write_text(json.dumps(skill, indent=2))
    for name, values in skill.items():
        say(f"    {name}: " + ", ".join(f"{k} {v}" for k, v in values.items()))

    say("5/6 evaluating against in situ stations")
    from model.evaluation.report import run as evaluate

    evaluation = evaluate(cube_path, world_dir, out / "report")
    for name, claim in evaluation.summary["claims"].items():
        verdict = {True: "holds", False: "fails", None: "undecided"}[claim["holds"]]
        say(f"    {name}: {verdict}")
    say(f"    report: {out / 'report' / 'index.html'}")

    if config.serve:
        say(f"6/6 serving {cube_path} at http://localhost:{config.port} (Ctrl-C stops)")
        from service.serve import serve

        if config.live_days:
            grow_while_serving(out / "model", inputs, config, cube_path)

        serve([cube_path], host="127.0.0.1", port=config.port)


def live_start(config: DemoConfig) -> str:
    """The cube's first end: the world's last day, less the days a live demo grows."""
    return str((pd.Timestamp(config.end) - pd.Timedelta(days=config.live_days)).date())


def grow_while_serving(model: Path, inputs, config: DemoConfig, cube_path: Path) -> None:
    """Grow the served cube a day every live_seconds up to the world's last day, in a thread
    beside the server, which follows it (its reload period made shorter than a day's step)."""
    from model.product.extend import extend as extend_here
    from model.settings import get_settings

    settings = get_settings()
    settings.reload_seconds = min(settings.reload_seconds, config.live_seconds / 2)
    ckpt = checkpoint.load(model)

    def grow() -> None:
        for day in pd.date_range(live_start(config), config.end)[1:]:
            time.sleep(config.live_seconds)
            extend_here(ckpt, inputs, config.start, day, cube_path, progress=False)
            say(f"    live: {cube_path} now ends {day.date()}")

    threading.Thread(target=grow, name="live growth", daemon=True).start()


def extend(model: Path, input_path: Path, config: DemoConfig, cube_path: Path, end: str) -> None:
    """On local worker processes (with a private Redis when none is configured), or in-process."""
    if config.workers:
        from worker.submit import run_extend

        run_extend(
            {
                "model": str(model),
                "input": str(input_path),
                "start": config.start,
                "end": end,
                "out": str(cube_path),
            },
            workers=config.workers,
        )
    else:
        from model.product.extend import extend as extend_here

        extend_here(checkpoint.load(model), open_input(input_path), config.start, end, cube_path)


def score(cube_path: Path, world_dir: Path, inputs) -> dict:
    """LSTM against the SMAP-like retrievals in years it never saw, and against the truth."""
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


def say(text: str) -> None:
    typer.echo(text)

"""The CONUS 9 km pipeline, stage by stage, on a measured part of it: the twin world at 9 km
(written in blocks), training, extension on a pool of worker processes (which chains into the
climatology on the same pool, as `smapx extend` does), and the climatology recomputed alone on
the pool. Each stage runs as the `smapx` command an operator types and prints its wall time, the
peak resident memory of every process it started (sampled from /proc), and what it wrote per
cell-day; the pool's jobs (read from their records) give each pool stage's own time without the
workers' start-up, hence cell-days/s per worker; then the whole CONUS 9 km 1980-2025
extrapolated from those rates on 2, 10 and 100 workers.

    python bench/conus9km.py [--bbox=-101,35,-97.5,38] [--start 2013-01-01] [--end 2017-12-31]
                             [--workers 2] [--budget 1m] [--out DIR] [--redis URL]

The default part is a 3.5 x 3 degree box (~1,000 cells) over five years: ~10-20 minutes on 2
loaded cores. The extrapolation is linear in cell-days (every stage works block by block, so
its rate does not depend on the region's size); training is not extrapolated (its cost is set by
its budget, not the region).
"""

import argparse
import os
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime
from pathlib import Path

import pandas as pd

from model import grid
from model.dataset import open_input
from model.product import cube as cubes
from model.world.blocks import store_bytes
from model.world.region import conus_cells

SMAPX = [sys.executable, "-c", "from cli.main import main; main()"]
CONUS_PERIOD = ("1980-01-01", "2025-12-31")
SAMPLE_SECONDS = 0.2


def descendants(root: int) -> list[int]:
    """Every living process below `root` (by /proc's parent links), and root itself."""
    parents = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    found, frontier = [root], [root]
    while frontier:
        frontier = [pid for pid, parent in parents.items() if parent in frontier]
        found += frontier
    return found


def peak_mb(pid: int) -> tuple[float, str] | None:
    """A process's peak resident memory so far (VmHWM, MB) and what it runs, or None if gone."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
        command = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return None
    for line in status.splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024, command
    return None


def role(command: str) -> str:
    if "redis-server" in command:
        return "redis-server"
    if " worker " in command:
        return "worker " + command.split("--hostname ")[-1].split("@")[0].rsplit("-", 1)[-1]
    return "command"


def run_stage(name: str, args: list[str], env: dict) -> dict:
    """Run one smapx command, sampling the peak RSS of it and every process it starts; its wall
    time and {process: peak MB}."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        [*SMAPX, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
    )
    peaks: dict[int, tuple[float, str]] = {}
    done = threading.Event()

    def sample() -> None:
        while not done.wait(SAMPLE_SECONDS):
            for pid in descendants(proc.pid):
                seen = peak_mb(pid)
                if seen and seen[0] >= peaks.get(pid, (0.0, ""))[0]:
                    peaks[pid] = seen

    sampler = threading.Thread(target=sample)
    sampler.start()
    stdout, stderr = proc.communicate()
    seconds = time.perf_counter() - t0
    done.set()
    sampler.join()
    if proc.returncode:
        sys.exit(f"{name} failed:\n{stdout}\n{stderr}")
    by_role: dict[str, float] = {}
    for mb, command in peaks.values():
        key = role(command)
        by_role[key] = max(by_role.get(key, 0.0), mb)
    print(f"  {name}: {seconds:.1f} s; {stdout.strip().splitlines()[-1][:150]}")
    return {"stage": name, "seconds": seconds, "peaks": by_role}


def job_seconds(kind: str, since: float) -> tuple[float, int]:
    """Wall time (first task's start to finish) and blocks of the newest job of `kind` made
    after `since`, from its record."""
    from worker import jobs

    for job in jobs.list_jobs(20, kind=kind):
        if datetime.fromisoformat(job["created"]).timestamp() >= since - 1:
            started = datetime.fromisoformat(job["started"])
            finished = datetime.fromisoformat(job["finished"])
            return (finished - started).total_seconds(), job["blocks_total"]
    raise SystemExit(f"no {kind} job recorded since the stage began")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bbox", default="-101,35,-97.5,38")
    parser.add_argument("--start", default="2013-01-01")
    parser.add_argument("--end", default="2017-12-31")
    parser.add_argument("--train-end", default="2016-12-31", help="last SMAP training day")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--budget", default="1m", help="training wall-clock budget")
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument(
        "--redis", default="redis://127.0.0.1:6379/13", help="where the pool's jobs are recorded"
    )
    args = parser.parse_args()
    out = args.out or Path(tempfile.mkdtemp(prefix="conus9km-"))
    world, model, cube = out / "world", out / "model", out / "cube.zarr"
    env = {**os.environ, "SMAPX_REDIS_URL": args.redis}
    os.environ["SMAPX_REDIS_URL"] = args.redis
    print(f"CONUS 9 km pipeline on {args.bbox}, {args.start}..{args.end}, in {out}")
    world_args = ["world", "--grid", "9km", f"--bbox={args.bbox}", "--start", args.start]
    world_args += ["--end", args.end, "--out", str(world)]
    train_args = ["train", "--input", str(world / "input.zarr"), "--start", "2015-04-01"]
    train_args += ["--end", args.train_end, "--out", str(model), "--budget", args.budget]
    train_args += ["--ensemble", "1"]
    extend_args = ["extend", "--model", str(model), "--input", str(world / "input.zarr")]
    extend_args += ["--start", args.start, "--end", args.end, "--out", str(cube)]
    extend_args += ["--workers", str(args.workers)]
    base = f"{args.start}/{args.end}"
    climatology_args = ["climatology", "--cube", str(cube), "--base", base]
    climatology_args += ["--workers", str(args.workers)]
    stages = [run_stage("world", world_args, env), run_stage("train", train_args, env)]
    began = time.time()
    stages.append(run_stage(f"extend ({args.workers} workers)", extend_args, env))
    extension_job = job_seconds("extend", began)
    chained_job = job_seconds("climatology", began)
    began = time.time()
    stages.append(run_stage(f"climatology ({args.workers} workers)", climatology_args, env))
    climatology_job = job_seconds("climatology", began)

    inputs = open_input(world / "input.zarr")
    cells, days = inputs.sizes["cell"], inputs.sizes["time"]
    cell_days = cells * days
    input_bytes, cube_bytes = store_bytes(world / "input.zarr"), store_bytes(cube)
    climatology_bytes = store_bytes(cube / cubes.CLIMATOLOGY)
    truth_bytes = store_bytes(world / "truth.zarr")
    conus_cells_9km = len(conus_cells(1, None, grid.M09)[0])
    conus_days = len(pd.date_range(*CONUS_PERIOD))
    conus = conus_cells_9km * conus_days
    print(f"\nmeasured part: {cells} cells x {days} days = {cell_days:,} cell-days")
    print(f"{'stage':<26}{'wall s':>8}{'cell-days/s':>13}  peak RSS MB of each process")
    for stage in stages:
        peaks = ", ".join(f"{k} {v:.0f}" for k, v in sorted(stage["peaks"].items()))
        rate = cell_days / stage["seconds"]
        print(f"{stage['stage']:<26}{stage['seconds']:8.1f}{rate:13,.0f}  {peaks}")
    print("\npool jobs (first task's start to the job's end, from their records; 1 s steps):")
    rates = {}
    for name, (seconds, blocks) in {
        "extension": extension_job,
        "climatology chained": chained_job,
        "climatology alone": climatology_job,
    }.items():
        rates[name] = cell_days / max(seconds, 1.0) / args.workers
        print(
            f"  {name:<20} {seconds:6.0f} s, {blocks} tasks: "
            f"{rates[name]:,.0f} cell-days/s per worker"
        )
    print(
        f"\nbytes per cell-day: inputs {input_bytes / cell_days:.1f} (the truth beside them "
        f"{truth_bytes / cell_days:.1f}), cube {cube_bytes / cell_days:.1f} of which its "
        f"climatology {climatology_bytes / cell_days:.1f}"
    )
    print(
        f"CONUS 9 km {CONUS_PERIOD[0]}..{CONUS_PERIOD[1]}: {conus_cells_9km:,} land cells x "
        f"{conus_days:,} days = {conus / 1e9:.2f} G cell-days; cube "
        f"{cube_bytes / cell_days * conus / 1e9:.0f} GB, inputs "
        f"{input_bytes / cell_days * conus / 1e9:.0f} GB at the measured bytes per cell-day"
    )
    print(f"  world: {conus / (cell_days / stages[0]['seconds']) / 3600:,.1f} h on this machine")
    for n in (2, 10, 100):
        extension = conus / (rates["extension"] * n) / 3600
        ranking = conus / (rates["climatology alone"] * n) / 3600
        print(f"  on {n:>3} workers: extension {extension:,.1f} h, climatology {ranking:,.1f} h")
    print(f"cube written: {cubes.describe(cube)}")


if __name__ == "__main__":
    main()

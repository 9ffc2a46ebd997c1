"""The CONUS 9 km pipeline, stage by stage, on a measured part of it: the twin world at 9 km
(written in blocks), training, extension on a pool of worker processes, the climatology. Each
stage runs as the `smapx` command an operator types, under GNU time, and prints its wall time,
cell-days/s, peak resident memory and what it wrote per cell-day; then the whole CONUS 9 km
1980-2025 extrapolated from the measured rates, on this machine's workers and on 10 and 100.

    python bench/conus9km.py [--bbox=-100,36,-98,38] [--start 2012-01-01] [--end 2017-12-31]
                             [--workers 2] [--budget 5m] [--out DIR]

The default part is a 2 x 2 degree box over six years: minutes on 2 cores. The extrapolation is
linear in cell-days (every stage works block by block, so its rate does not depend on the
region's size); training is not extrapolated (its cost is set by its budget, not the region).
"""

import argparse
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

from model import grid
from model.dataset import open_input
from model.product import cube as cubes
from model.world.blocks import store_bytes
from model.world.region import conus_cells

SMAPX = [sys.executable, "-c", "from cli.main import main; main()"]
CONUS_PERIOD = ("1980-01-01", "2025-12-31")


def run_stage(name: str, args: list[str]) -> dict:
    """Run one smapx command under GNU time: its wall time and peak RSS (MB, the largest of the
    command and the processes it waited for)."""
    t0 = time.perf_counter()
    proc = subprocess.run(
        ["/usr/bin/time", "-v", *SMAPX, *args], capture_output=True, text=True, check=False
    )
    seconds = time.perf_counter() - t0
    if proc.returncode:
        sys.exit(f"{name} failed:\n{proc.stdout}\n{proc.stderr}")
    peak_kb = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", proc.stderr).group(1))
    print(f"  {name}: {proc.stdout.strip().splitlines()[-1][:160]}")
    return {"stage": name, "seconds": seconds, "peak_rss_mb": peak_kb / 1024}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bbox", default="-100,36,-98,38")
    parser.add_argument("--start", default="2012-01-01")
    parser.add_argument("--end", default="2017-12-31")
    parser.add_argument("--train-end", default="2016-12-31", help="last SMAP training day")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--budget", default="5m", help="training wall-clock budget")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    out = args.out or Path(tempfile.mkdtemp(prefix="conus9km-"))
    world, model, cube = out / "world", out / "model", out / "cube.zarr"
    print(f"CONUS 9 km pipeline on {args.bbox}, {args.start}..{args.end}, in {out}")
    stages = [
        run_stage(
            "world",
            [
                "world",
                "--grid",
                "9km",
                f"--bbox={args.bbox}",
                "--start",
                args.start,
                "--end",
                args.end,
                "--out",
                str(world),
            ],
        ),  # fmt: skip
        run_stage(
            "train",
            [
                "train",
                "--input",
                str(world / "input.zarr"),
                "--start",
                "2015-04-01",
                "--end",
                args.train_end,
                "--out",
                str(model),
                "--budget",
                args.budget,
                "--ensemble",
                "1",
            ],
        ),  # fmt: skip
        run_stage(
            f"extend ({args.workers} workers)",
            [
                "extend",
                "--model",
                str(model),
                "--input",
                str(world / "input.zarr"),
                "--start",
                args.start,
                "--end",
                args.end,
                "--out",
                str(cube),
                "--workers",
                str(args.workers),
            ],
        ),  # fmt: skip
        run_stage(
            "climatology",
            ["climatology", "--cube", str(cube), "--base", f"{args.start}/{args.end}"],
        ),
    ]
    inputs = open_input(world / "input.zarr")
    cells, days = inputs.sizes["cell"], inputs.sizes["time"]
    cell_days = cells * days
    sizes = {"world": store_bytes(world / "input.zarr"), "extend": store_bytes(cube)}
    truth_bytes = store_bytes(world / "truth.zarr")
    conus_cells_9km = len(conus_cells(1, None, grid.M09)[0])
    conus_days = len(pd.date_range(*CONUS_PERIOD))
    conus = conus_cells_9km * conus_days
    print(f"\nmeasured part: {cells} cells x {days} days = {cell_days:,} cell-days")
    print(
        "bytes per cell-day: world = its input dataset (the truth beside it: "
        f"{truth_bytes / cell_days:.1f}), extend = the cube"
    )
    print(f"{'stage':<22}{'wall s':>9}{'cell-days/s':>14}{'peak RSS MB':>13}{'bytes/cell-day':>16}")
    for stage in stages:
        key = stage["stage"].split()[0]
        rate = cell_days / stage["seconds"]
        stage["rate"] = rate
        written = sizes.get(key)
        per = f"{written / cell_days:16.1f}" if written else f"{'':>16}"
        print(
            f"{stage['stage']:<22}{stage['seconds']:9.1f}{rate:14,.0f}"
            f"{stage['peak_rss_mb']:13.0f}{per}"
        )
    extend_stage = stages[2]
    per_worker = extend_stage["rate"] / args.workers
    print(f"\nextension: {per_worker:,.0f} cell-days/s per worker ({args.workers} workers here)")
    print(
        f"CONUS 9 km {CONUS_PERIOD[0]}..{CONUS_PERIOD[1]}: {conus_cells_9km:,} land cells x "
        f"{conus_days:,} days = {conus / 1e9:.2f} G cell-days; cube "
        f"{sizes['extend'] / cell_days * conus / 1e9:.0f} GB, inputs "
        f"{sizes['world'] / cell_days * conus / 1e9:.0f} GB at the measured bytes per cell-day"
    )
    for stage in (stages[0], stages[3]):
        print(f"  {stage['stage']}: {conus / stage['rate'] / 3600:,.1f} h on this machine")
    for n in (args.workers, 10, 100):
        print(f"  extend on {n} workers: {conus / (per_worker * n) / 3600:,.1f} h")
    print(f"cube written: {cubes.describe(cube)}")


if __name__ == "__main__":
    main()

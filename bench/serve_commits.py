"""Serving speed of two commits side by side: the same point series (JSON and CSV) and tiles
asked of each commit's `smapx serve`, one client at a time, the servers taking turns request
batch by request batch so that the machine's load falls on both alike. Each commit builds its
own 20-year bench cube with its own writer (bench/serve.py's build_cube), so a change of
layout counts with the code that reads it. Reports latency p50 and the server's CPU time per
request (from /proc: the figure other processes' load moves least).

    python bench/serve_commits.py --old 870aa6b            # against this checkout
    python bench/serve_commits.py --old 870aa6b --new HEAD~3

Ends with one line: <kind>_p50_ms_old=.. <kind>_p50_ms_new=.. <kind>_cpu_ms_old=..
<kind>_cpu_ms_new=.. <kind>_cpu_new_vs_old=.. for kind in series_json, series_csv, tile.
"""

import argparse
import os
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack, contextmanager
from pathlib import Path

import httpx
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.serve import DAYS, cpu_seconds  # noqa: E402
from tests.served import free_port, wait_for_port  # noqa: E402

KINDS = ("series_json", "series_csv", "tile")


@contextmanager
def checkout(rev: str | None, folder: Path):
    """The tree of `rev` in a worktree under `folder` (removed after), or this one for None."""
    if rev is None:
        yield ROOT
        return
    tree = folder / rev.replace("/", "_")
    subprocess.run(["git", "worktree", "add", "--detach", str(tree), rev], cwd=ROOT, check=True)
    try:
        yield tree
    finally:
        subprocess.run(["git", "worktree", "remove", "--force", str(tree)], cwd=ROOT, check=True)


def build_cube(tree: Path, store: Path) -> None:
    """The bench cube, written by the commit's own bench/serve.py and cube module."""
    code = (
        "import sys; from pathlib import Path; sys.path[:0] = [sys.argv[1] + '/bench'];"
        "import serve; serve.build_cube(Path(sys.argv[2]))"
    )
    env = {**os.environ, "PYTHONPATH": str(tree)}
    subprocess.run(
        [sys.executable, "-c", code, str(tree), str(store)], cwd=tree, env=env, check=True
    )


@contextmanager
def server(tree: Path, store: Path):
    """The commit's `smapx serve` of the store; its process and base URL."""
    port = free_port()
    args = [sys.executable, "-c", "from cli.main import main; main()", "serve"]
    args += ["--cube", str(store), "--port", str(port)]
    env = {
        **os.environ,
        "PYTHONPATH": str(tree),
        "SMAPX_RATE_LIMIT_PER_MINUTE": "0",
        "SMAPX_CUBES": "[]",
    }
    proc = subprocess.Popen(args, cwd=tree, env=env, stdout=subprocess.DEVNULL)
    try:
        wait_for_port(port, 120)
        yield proc, f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(30)


def queries(store: Path, n: int, seed: int) -> dict[str, list[str]]:
    """Paths of n series (JSON and CSV) at random region cells and n tiles of random days."""
    import morecantile
    import xarray as xr

    cube = xr.open_zarr(store)
    iy, ix = np.nonzero(cube["mask"].values)
    rng = np.random.default_rng(seed)
    pick = rng.integers(0, iy.size, n)
    lat, lon = cube["lat"].values[iy[pick], ix[pick]], cube["lon"].values[iy[pick], ix[pick]]
    series = [f"/v1/series?lat={a:.5f}&lon={o:.5f}&products=lstm" for a, o in zip(lat, lon)]
    tms = morecantile.tms.get("WebMercatorQuad")
    tiles = [tms.tile(o, a, 7) for a, o in zip(lat, lon)]
    days = DAYS[rng.integers(0, len(DAYS), n)]
    return {
        "series_json": [f"{s}&format=json" for s in series],
        "series_csv": [f"{s}&format=csv" for s in series],
        "tile": [
            f"/v1/tiles/lstm/{t.z}/{t.x}/{t.y}.png?date={d.date()}&rescale=0,0.5"
            for t, d in zip(tiles, days)
        ],
    }


def timed(client: httpx.Client, base: str, paths: list[str]) -> list[float]:
    latencies = []
    for path in paths:
        began = time.perf_counter()
        client.get(base + path).raise_for_status()
        latencies.append((time.perf_counter() - began) * 1e3)
    return latencies


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--old", required=True, help="the commit to compare against")
    parser.add_argument("--new", help="the other commit (default: this checkout as it is)")
    parser.add_argument("--requests", type=int, default=300, help="per kind and server")
    parser.add_argument("--rounds", type=int, default=6, help="turns the servers take")
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="smapx-commits-"))
    figures = {}
    with ExitStack() as stack:
        servers = {}
        for name, rev in (("old", args.old), ("new", args.new)):
            tree = stack.enter_context(checkout(rev, folder))
            store = folder / f"{name}.zarr"
            build_cube(tree, store)
            servers[name] = stack.enter_context(server(tree, store))
        paths = queries(folder / "new.zarr", args.requests, seed=1)
        per_round = -(-args.requests // args.rounds)
        samples = {(n, k): ([], []) for n in servers for k in KINDS}
        with httpx.Client(timeout=60) as client:
            for _, base in servers.values():  # warm: imports, tables, caches
                for kind in KINDS:
                    timed(client, base, paths[kind][:10])
            for r in range(args.rounds):
                batch = slice(r * per_round, (r + 1) * per_round)
                order = list(servers) if r % 2 == 0 else list(reversed(servers))
                for name in order:
                    proc, base = servers[name]
                    for kind in KINDS:
                        latencies, cpu = samples[(name, kind)]
                        cpu0 = cpu_seconds(proc.pid)
                        latencies += timed(client, base, paths[kind][batch])
                        cpu.append(cpu_seconds(proc.pid) - cpu0)
        for (name, kind), (latencies, cpu) in samples.items():
            figures[f"{kind}_p50_ms_{name}"] = float(np.percentile(latencies, 50))
            figures[f"{kind}_cpu_ms_{name}"] = sum(cpu) * 1e3 / len(latencies)
    for kind in KINDS:
        old, new = figures[f"{kind}_cpu_ms_old"], figures[f"{kind}_cpu_ms_new"]
        figures[f"{kind}_cpu_new_vs_old"] = new / old if old else float("nan")
    print(f"machine load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    print(" ".join(f"{k}={v:.2f}" for k, v in sorted(figures.items())))


if __name__ == "__main__":
    main()

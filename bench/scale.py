"""Serving a cube many times larger than the service's memory: CONUS at 9 km, 1980-2025, lstm,
lstm_spread, noah, smap and lstm_percentile (~20 GB as int16), served lazily with
SMAPX_CACHE_MB=512, beside the same region and period at 36 km held in memory (the service as
it was), measured in the same run.

    python bench/scale.py --out DIR                       # builds DIR/conus9km.zarr once
    python bench/scale.py --out DIR --bbox -100,35,-97,37 --start 2014-01-01 --end 2016-12-31

The cubes are written with the project's own writers (model.product.cube: template, create,
write_block, the climatology group, publish) from a fast synthetic generator, block by block, and
reused when present with the same bbox and period. Requests run one at a time: first over fresh
cells, tiles and days (cold: the server's cache empty; the operating system's page cache may
still hold the files), then the same three times again (warm, their p50 pooled). Series ask
for the whole record at random region cells, tiles for random days at zooms 3-9 over region
cells.

Ends with one line: cube_gb=.. rss_peak_mb=.. series_p50_ms=.. series_cold_p50_ms=..
tile_p50_ms=.. tile_cold_p50_ms=.. tile_z<k>_p50_ms=.. percentile_tile_p50_ms=..
(lstm_percentile in the drought colormap, z6; percentile_tile_z1_*: z1, from the percentiles'
overviews) and the same keys prefixed `mem36_` for the 36 km
cube held in memory (and `blocks_` for the 9 km cube in the layout before series columns, with
--block-columns; `workers<N>_series_per_s` and `workers<N>_rss_peak_mb` for 4 clients on `smapx
serve --workers N`, with --workers N ...), plus build_s (0 when reused), store_files and
store_disk_gb, whether the cube has a map layout (`maps`), and `layout_*`: day fields read in
process from the time layout, from the map layout and from its overviews, cold and warm, and
whole-record series reads. `--grow` then grows the 9 km cube by a day under a server started
before: grow_day_s, grow_followed_s, grow_rss_peak_mb (a grown cube is reused by later runs).
"""

import argparse
import functools
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import morecantile
import numpy as np
import pandas as pd
from tqdm import tqdm

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from model import grid  # noqa: E402
from model.product import climatology  # noqa: E402
from model.product import cube as cubes  # noqa: E402
from model.product.fusion import DEFAULT_WEIGHT  # noqa: E402

PRODUCTS = ("smap", "lstm", "noah", "lstm_spread")
SMAP_LAUNCH = pd.Timestamp("2015-04-01")
ZOOMS = range(3, 10)
WARM_PASSES = 3  # warm p50s pool 3 passes: one pass's p50 varied +-50 % between runs
OVERVIEW_ZOOM = 1  # a 9 km tile reads an overview at zooms 0-2 (docs/performance.md)
TIME_LAYOUT_DAYS = 10  # a CONUS 9 km day from the time layout decodes ~600 MB: a few suffice


def synthetic(template, block, day_numbers: np.ndarray) -> dict[str, np.ndarray]:
    """Smooth seasonal fields with cell-to-cell texture, cheap enough for ~10^10 values."""
    t = day_numbers[block.time][:, None, None].astype(np.float32)
    lat = template["lat"].values[block.y, block.x][None].astype(np.float32)
    lon = template["lon"].values[block.y, block.x][None].astype(np.float32)
    inside = template["mask"].values[block.y, block.x][None]
    season = np.sin(2 * np.pi * t / 365.25 + lon / 20.0)
    lstm = 0.22 + 0.003 * (lat - 37) + 0.08 * season + 0.02 * np.sin(t / 11.0 + lat * 3)
    lstm = np.clip(lstm, 0.02, 0.5)
    observed = (t >= (SMAP_LAUNCH - pd.Timestamp("1970-01-01")).days) & (t.astype(int) % 3 == 0)
    values = {
        "lstm": lstm,
        "noah": lstm + 0.03,
        "lstm_spread": 0.01 + 0.005 * np.abs(season),
        "smap": np.where(observed, lstm + 0.01, np.nan),
    }
    return {p: np.where(inside, v, np.nan).astype(np.float32) for p, v in values.items()}


def percentile_codes(lstm: np.ndarray) -> np.ndarray:
    """A stand-in for the ranking (climatology.compute takes hours at this size): int16
    percentile codes monotone in the value, FILL where it is missing."""
    pct = np.clip((lstm - 0.02) / 0.48, 0, 1) * 10_000
    return np.where(np.isnan(lstm), cubes.FILL, np.rint(pct)).astype(np.int16)


def build(store: Path, on: grid.Grid, bbox, start: str, end: str) -> float:
    """Write the cube unless one of the same box and start reaching `end` is there (one grown by
    --grow still is); seconds spent."""
    request = {"bbox": list(bbox), "start": start, "grid": on.name}
    held = cubes.read_job_info(store) or {}
    same = cubes.generation(store)["generation"] and held.get("request") == request
    if same and held["end"] >= end:
        return 0.0
    began = time.perf_counter()
    rows, cols = on.bbox_cells(*bbox)
    days = pd.date_range(start, end)
    template = cubes.template(days, rows, cols, PRODUCTS, on=on)
    cubes.create(store, template)
    attrs = {
        "base_start": start,
        "base_end": end,
        "products": ["lstm"],
        "window_days": climatology.WINDOW_DAYS,
        "fused_weight": DEFAULT_WEIGHT,
        "definition": "synthetic: monotone in the value (bench)",
    }
    cubes.create_climatology(store, days, template["mask"].shape, ["lstm"], attrs)
    write(store, template, cubes.blocks(template), with_means=True)
    cubes.write_job_info(store, {"request": request, "end": end})
    return time.perf_counter() - began


def write(store: Path, template, blocks, with_means: bool = False) -> None:
    """Write the blocks' synthetic values and percentiles, then publish the template's days."""
    days = pd.DatetimeIndex(template.time.values)
    day_numbers = (days - pd.Timestamp("1970-01-01")).days.values
    doy = climatology.day_of_year(days)
    for block in tqdm(blocks, desc=store.name, unit="block"):
        values = synthetic(template, block, day_numbers)
        cubes.write_block(store, block, values)
        means = None
        if with_means and block.time.start == 0:
            first_year = values["lstm"][: cubes.DAYS_OF_YEAR]
            means = {"lstm": np.full((cubes.DAYS_OF_YEAR, *first_year.shape[1:]), np.nan)}
            means["lstm"][doy[: len(first_year)]] = first_year
        cubes.write_climatology_block(
            store, block.y, block.x, block.time, {"lstm": percentile_codes(values["lstm"])}, means
        )
    cubes.write_percentile_maps(store, min(b.time.start for b in blocks))
    cubes.publish(store, days, processes=os.cpu_count())


def grow_one_day(store: Path, on: grid.Grid, cache_mb: int) -> dict:
    """Grow the cube by a day (its touched blocks rewritten, maps and generation published) while
    a server started before serves it: the growth's wall time, how long the server took to show
    the new day (SMAPX_RELOAD_SECONDS=1), its peak memory through the swap."""
    held = cubes.read_job_info(store)
    opened = cubes.open_cube(store)
    rows, cols = np.nonzero(opened["mask"].values)
    rows, cols = rows + int(opened.attrs["row0"]), cols + int(opened.attrs["col0"])
    before = len(opened.time)
    days = pd.date_range(held["request"]["start"], periods=before + 1)
    env = {"SMAPX_CACHE_MB": str(cache_mb), "SMAPX_RELOAD_SECONDS": "1"}
    proc, base = serve(store, env)
    try:
        with httpx.Client(base_url=base, timeout=600) as client:
            series, tiles = queries(store, 20, seed=3)
            p50(client, series + tiles[6])
            began = time.perf_counter()
            template = cubes.template(days, rows, cols, PRODUCTS, on=on)
            touched = cubes.grow(store, template, before)
            cubes.grow_climatology(store, days)
            write(store, template, touched)
            grown = time.perf_counter()
            new_end = str(days[-1].date())
            while client.get("/v1/products").json()["extent"]["end"] != new_end:
                time.sleep(0.1)
            followed = time.perf_counter()
            p50(client, series + tiles[6])
        rss = peak_rss_mb(proc.pid)
    finally:
        proc.terminate()
        proc.wait(60)
    cubes.write_job_info(store, {**held, "end": new_end})
    return {
        "grow_day_s": round(grown - began, 1),
        "grow_followed_s": round(followed - grown, 1),
        "grow_rss_peak_mb": round(rss, 1),
    }


def on_disk(store: Path) -> dict:
    """The store's files and their size on disk (what `du` counts)."""
    files = [Path(d) / f for d, _, names in os.walk(store) for f in names]
    used = sum(f.stat().st_blocks * 512 for f in files)
    return {"store_files": len(files), "store_disk_gb": round(used / 1e9, 2)}


def stored_gb(store: Path) -> float:
    """Products and percentiles as int16, before compression."""
    described = cubes.describe(store)
    opened = cubes.open_cube(store)
    cells = opened.sizes["y"] * opened.sizes["x"]
    return (len(described["products"]) + 1) * described["days"] * cells * 2 / 1e9


def serve(store: Path, env: dict, workers: int = 1) -> tuple[subprocess.Popen, str]:
    from tests.served import free_port, wait_for_port

    port = free_port()
    smapx = str(Path(sys.executable).parent / "smapx")
    proc = subprocess.Popen(
        [smapx, "serve", "--cube", str(store), "--port", str(port), "--workers", str(workers)],
        cwd=ROOT,
        env={
            **os.environ,
            "SMAPX_CUBES": "[]",
            "SMAPX_RATE_LIMIT_PER_MINUTE": "0",
            "SMAPX_RELOAD_SECONDS": "0",
            **env,
        },
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        wait_for_port(port, 900, proc)
    except (TimeoutError, RuntimeError):
        proc.kill()
        raise RuntimeError(proc.stderr.read().decode()[-2000:]) from None
    return proc, f"http://127.0.0.1:{port}"


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def queries(store: Path, n: int, seed: int) -> tuple[list[str], dict[int, list[str]]]:
    """Whole-record series at random region cells; tiles over random region cells and days."""
    opened = cubes.open_cube(store)
    rng = np.random.default_rng(seed)
    iy, ix = np.nonzero(opened["mask"].values)
    pick = rng.choice(iy.size, n)
    lats, lons = opened["lat"].values[iy[pick], ix[pick]], opened["lon"].values[iy[pick], ix[pick]]
    dates = [str(pd.Timestamp(d).date()) for d in opened.time.values]
    start, end = dates[0], dates[-1]
    series = [
        f"/v1/series?lat={lat:.5f}&lon={lon:.5f}&start={start}&end={end}&products=lstm"
        for lat, lon in zip(lats, lons, strict=True)
    ]
    tms = morecantile.tms.get("WebMercatorQuad")
    tiles = {}
    for z in (OVERVIEW_ZOOM, *ZOOMS):
        tiles[z] = []
        for lat, lon in zip(lats, lons, strict=True):
            tile = tms.tile(float(lon), float(lat), z)
            day = dates[int(rng.integers(len(dates)))]
            tiles[z].append(f"/v1/tiles/lstm/{z}/{tile.x}/{tile.y}.png?date={day}")
    return series, tiles


def p50(client: httpx.Client, urls: list[str]) -> float:
    times = []
    for url in urls:
        t0 = time.perf_counter()
        answer = client.get(url)
        times.append((time.perf_counter() - t0) * 1e3)
        if answer.status_code != 200:
            raise RuntimeError(f"{url}: {answer.status_code} {answer.text[:200]}")
    return float(np.percentile(times, 50))


def measure(store: Path, env: dict, n: int, prefix: str = "") -> dict:
    series, tiles = queries(store, n, seed=1)
    proc, base = serve(store, env)
    out = {}
    try:
        with httpx.Client(base_url=base, timeout=600) as client:
            client.get("/v1/products")
            out["series_cold_p50_ms"] = p50(client, series)
            out["series_p50_ms"] = p50(client, series * WARM_PASSES)
            every_tile = [u for z in ZOOMS for u in tiles[z]]
            out["tile_cold_p50_ms"] = p50(client, every_tile)
            out["tile_p50_ms"] = p50(client, every_tile * WARM_PASSES)
            for z in ZOOMS:
                out[f"tile_z{z}_p50_ms"] = p50(client, tiles[z])
            for z, key in ((6, "percentile_tile"), (OVERVIEW_ZOOM, "percentile_tile_z1")):
                drought = [
                    f"{u.replace('/lstm/', '/lstm_percentile/')}&colormap=drought" for u in tiles[z]
                ]
                out[f"{key}_cold_p50_ms"] = p50(client, drought)
                out[f"{key}_p50_ms"] = p50(client, drought)
        out["rss_peak_mb"] = peak_rss_mb(proc.pid)
    finally:
        proc.terminate()
        proc.wait(60)
    return {f"{prefix}{k}": round(v, 2) for k, v in out.items()}


def throughput(store: Path, cache_mb: int, workers: int, n: int, clients: int = 4) -> dict:
    """Whole-record series per second from `clients` concurrent clients on `smapx serve
    --workers N` (the third pass over the same cells: each API process has its own cache), and
    the largest peak RSS of its processes."""
    series, _ = queries(store, n, seed=4)
    proc, base = serve(store, {"SMAPX_CACHE_MB": str(cache_mb)}, workers)
    try:
        limits = httpx.Limits(max_connections=clients)
        with (
            httpx.Client(base_url=base, timeout=600, limits=limits) as client,
            ThreadPoolExecutor(clients) as pool,
        ):
            for _ in range(2):
                list(pool.map(client.get, series))
            began = time.perf_counter()
            answers = list(pool.map(client.get, series))
            took = time.perf_counter() - began
        assert {a.status_code for a in answers} == {200}
        children = Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split()
        rss = max(peak_rss_mb(int(pid)) for pid in [proc.pid, *children])
    finally:
        proc.terminate()
        proc.wait(60)
    return {
        f"workers{workers}_series_per_s": round(n / took, 1),
        f"workers{workers}_rss_peak_mb": rss,
    }


def layouts(store: Path, n: int) -> dict:
    """Day fields read from the time layout and from the map layout, and whole-record series,
    in this process, each on an empty chunk cache (cold) and on the cache they fill (warm):
    what chose the layouts."""
    rng = np.random.default_rng(2)
    readers = {"time": cubes.LazyCube(store, use_maps=False), "map": cubes.LazyCube(store)}
    n_days = len(readers["time"].times)
    days = rng.integers(n_days, size=n).tolist()
    cells = np.argwhere(readers["time"].mask)[rng.choice(int(readers["time"].mask.sum()), n)]
    out = {}

    def p50_ms(read, items, cold: bool) -> float:
        """Median time of read(item); `cold`: the chunk cache emptied before each, else after
        a first pass over the same items."""
        for item in [] if cold else items:
            read(item)
        times = []
        for item in items:
            if cold:
                cubes.chunk_cache.cache_clear()
            t0 = time.perf_counter()
            read(item)
            times.append((time.perf_counter() - t0) * 1e3)
        return float(np.percentile(times, 50))

    for name, reader in readers.items():
        day = functools.partial(reader.day, "lstm")
        some = days[:TIME_LAYOUT_DAYS] if name == "time" else days
        out[f"day_{name}_layout_cold_ms"] = p50_ms(day, some, cold=True)
        out[f"day_{name}_layout_ms"] = p50_ms(day, some, cold=False)
    for factor in sorted(readers["map"]._maps)[1:]:
        day = functools.partial(readers["map"].overview_day, "lstm", factor=factor)
        out[f"day_overview{factor}_cold_ms"] = p50_ms(day, days, cold=True)
    every_day = slice(0, n_days)
    series = functools.partial(readers["time"].series, "lstm")
    out["series_read_cold_ms"] = p50_ms(lambda c: series(*c, every_day), cells, cold=True)
    out["series_read_ms"] = p50_ms(lambda c: series(*c, every_day), cells, cold=False)
    cubes.chunk_cache.cache_clear()
    return {f"layout_{k}": round(v, 2) for k, v in out.items()}


def block_columns(args, bbox, store: Path) -> dict:
    """The same 9 km cube with each shard one column of its block's 32 x 32 cells (what a
    whole-record series decoded before series columns), served the same way: `blocks_` keys."""
    narrow = cubes.SERIES_SIDE
    cubes.SERIES_SIDE = cubes.CHUNK_Y
    try:
        build(store, grid.M09, bbox, args.start, args.end)
    finally:
        cubes.SERIES_SIDE = narrow
    reads = {k: v for k, v in layouts(store, args.requests).items() if "series" in k}
    measured = measure(store, {"SMAPX_CACHE_MB": str(args.cache_mb)}, args.requests, "blocks_")
    return {f"blocks_{k}": v for k, v in reads.items()} | measured


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="folder of the cubes")
    parser.add_argument("--bbox", default=",".join(map(str, grid.REGIONS["conus"])))
    parser.add_argument("--start", default="1980-01-01")
    parser.add_argument("--end", default="2025-12-31")
    parser.add_argument("--requests", type=int, default=100, help="per kind and pass")
    parser.add_argument("--cache-mb", type=int, default=512)
    parser.add_argument(
        "--grow", action="store_true", help="then grow the 9 km cube by a day while served"
    )
    parser.add_argument(
        "--workers",
        type=int,
        nargs="*",
        default=[],
        help="series per second of 4 clients on `smapx serve --workers N`, for each N given",
    )
    parser.add_argument(
        "--block-columns",
        action="store_true",
        help="also the 9 km cube with whole-block columns (the layout before series columns)",
    )
    args = parser.parse_args()
    bbox = grid.parse_bbox(args.bbox)
    args.out.mkdir(parents=True, exist_ok=True)
    fine, coarse = args.out / "conus9km.zarr", args.out / "conus36km.zarr"
    build_s = build(fine, grid.M09, bbox, args.start, args.end)
    build(coarse, grid.M36, bbox, args.start, args.end)
    result = {"cube_gb": round(stored_gb(fine), 2), "build_s": round(build_s, 1)} | on_disk(fine)
    result |= {"maps": cubes.needs_maps(fine)} | layouts(fine, args.requests)
    result |= measure(fine, {"SMAPX_CACHE_MB": str(args.cache_mb)}, args.requests)
    result |= measure(coarse, {"SMAPX_SERVE_IN_MEMORY": "true"}, args.requests, "mem36_")
    for workers in args.workers:
        result |= throughput(fine, args.cache_mb, workers, args.requests)
    if args.block_columns:
        result |= block_columns(args, bbox, fine.parent / "conus9km-blocks.zarr")
    if args.grow:
        result |= grow_one_day(fine, grid.M09, args.cache_mb)
    print(" ".join(f"{k}={v}" for k, v in result.items()))


if __name__ == "__main__":
    main()

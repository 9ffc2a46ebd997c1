"""Serving speed: point series and 256 px PNG tiles of a 20-year cube under concurrent load,
against xpublish + xpublish-edr (series) and titiler's xarray tiler (tiles) on the same Zarr,
each in its own uvicorn process on loopback, measured in the same run.

    pip install -e '.[bench]' && python bench/serve.py      # --no-baselines: smapx alone

Derived products are timed beside the plain ones, on the same cells, days and tiles: the
20-year `lstm_percentile` series and `lstm_percentile` tiles in the `drought` colormap, from the
climatology stored with the cube (computed here once, base = the whole record).

Area statistics are timed beside them: the 10-year daily mean and drought-class shares of a
county (Riley, Kansas) and a state (Kansas), from the US Census atlas in the web map's assets.

Ends with: series_p50_ms=<a> series_vs_xpublish=<b> tile_p50_ms=<c> tile_vs_titiler=<d>
(ratios are baseline p50 / smapx p50 on the same queries), then percentile_series_p50_ms=<e>
percentile_series_vs_plain=<f> percentile_tile_p50_ms=<g> percentile_tile_vs_plain=<h> (derived
p50 / plain p50: the issue asks for <= 2), then county_series_p50_ms=<i> state_series_p50_ms=<j>.
"""

import argparse
import asyncio
import importlib
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

DAYS = pd.date_range("2001-01-01", "2020-12-31")  # 7305 days
ROWS, COLS = 48, 48  # 2,304-cell window, Great Plains to Gulf
ROW0, COL0 = 66, 196


BASELINE_PACKAGES = ("xpublish", "xpublish_edr", "titiler.xarray", "aiohttp")


def importable(name: str) -> bool:
    try:
        importlib.import_module(name)
    except ImportError:
        return False
    return True


def build_cube(store: Path) -> None:
    """A 20-year lstm/noah/smap cube with smooth fields, written through model.product.cube."""
    from tqdm import tqdm

    from model.product import cube as cubes

    rows, cols = np.meshgrid(
        np.arange(ROW0, ROW0 + ROWS), np.arange(COL0, COL0 + COLS), indexing="ij"
    )
    keep = (rows * 7 + cols * 3) % 23 != 0
    template = cubes.template(DAYS, rows[keep], cols[keep], ("smap", "lstm", "noah"))
    cubes.create(store, template)
    rng = np.random.default_rng(0)
    for block in tqdm(cubes.blocks(template), desc="bench cube", unit="block"):
        t = np.arange(block.time.start, block.time.stop)[:, None, None]
        iy = np.arange(block.y.start, block.y.stop)[None, :, None]
        ix = np.arange(block.x.start, block.x.stop)[None, None, :]
        inside = template["mask"].values[block.y, block.x][None]
        base = 0.2 + 0.002 * iy - 0.001 * ix + 0.08 * np.sin(t / 58.0 + iy / 9.0)
        base = base + rng.normal(0, 0.01, base.shape)
        smap = np.where(t >= 5200, base + 0.01, np.nan)
        cubes.write_block(
            store,
            block,
            {
                "lstm": np.where(inside, base, np.nan),
                "noah": np.where(inside, base + 0.03, np.nan),
                "smap": np.where(inside & (t % 3 == 0), smap, np.nan),
            },
        )


def run_xpublish(store: str, port: int) -> None:
    import xarray as xr
    import xpublish
    from xpublish_edr import CfEdrPlugin

    ds = xr.open_zarr(store, decode_coords="all")
    ds["time"].attrs.update(axis="T", standard_name="time")
    rest = xpublish.Rest({"cube": ds}, plugins={"edr": CfEdrPlugin()})
    rest.serve(host="127.0.0.1", port=port, log_level="warning", access_log=False)


def run_titiler(store: str, port: int) -> None:
    import uvicorn
    from fastapi import FastAPI
    from titiler.xarray.factory import TilerFactory

    app = FastAPI()
    app.include_router(TilerFactory().router, prefix="/md")
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)


def start(args: list[str], port: int) -> subprocess.Popen:
    from tests.served import wait_for_port

    proc = subprocess.Popen(
        args,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env={**os.environ, "SMAPX_CUBES": "[]", "SMAPX_RATE_LIMIT_PER_MINUTE": "0"},
    )
    try:
        wait_for_port(port, 120)
    except TimeoutError:
        proc.kill()
        raise RuntimeError(proc.stderr.read().decode()[-2000:]) from None
    return proc


async def load(urls: list[str], concurrency: int) -> tuple[np.ndarray, float, int]:
    """Latencies (ms) of every request, wall time (s) and failures, `concurrency` at a time."""
    import aiohttp

    queue = list(reversed(urls))
    latencies, failures = [], 0

    async def client(session):
        nonlocal failures
        while queue:
            url = queue.pop()
            t0 = time.perf_counter()
            async with session.get(url) as r:
                await r.read()
                ok = r.status == 200
            latencies.append((time.perf_counter() - t0) * 1e3)
            failures += not ok

    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:
        t0 = time.perf_counter()
        await asyncio.gather(*(client(session) for _ in range(concurrency)))
        wall = time.perf_counter() - t0
    return np.array(latencies), wall, failures


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measure(
    name: str, server: subprocess.Popen, urls: list[str], concurrency: int, warmup: list[str]
) -> dict:
    """Warm up one request at a time (caches, lazy imports), then time `urls` under load. The
    server's CPU time per request is reported beside latency: on a shared machine it is the
    figure that other processes' load does not move."""
    asyncio.run(load(warmup, 1))
    cpu0 = cpu_seconds(server.pid)
    lat, wall, failures = asyncio.run(load(urls, concurrency))
    cpu_ms = (cpu_seconds(server.pid) - cpu0) * 1e3 / len(urls)
    row = {
        "what": name,
        "n": len(urls),
        "p50_ms": np.percentile(lat, 50),
        "p99_ms": np.percentile(lat, 99),
        "req_s": len(urls) / wall,
        "cpu_ms": cpu_ms,
        "failed": failures,
    }
    print(
        f"{name:34s} n={row['n']:5d} p50={row['p50_ms']:7.2f} ms p99={row['p99_ms']:7.2f} ms "
        f"{row['req_s']:7.1f} req/s server cpu={cpu_ms:7.2f} ms/req failed={failures}",
        flush=True,
    )
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", type=Path, default=ROOT / "data" / "bench" / "serve20y.zarr")
    parser.add_argument("--series", type=int, default=600, help="series requests per server")
    parser.add_argument("--tiles", type=int, default=400, help="tile requests per server")
    parser.add_argument("--areas", type=int, default=60, help="requests per area (county, state)")
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument(
        "--no-baselines", action="store_true", help="time smapx alone (no xpublish, titiler)"
    )
    parser.add_argument("--serve", choices=["xpublish", "titiler"], help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        {"xpublish": run_xpublish, "titiler": run_titiler}[args.serve](str(args.store), args.port)
        return

    missing = [name for name in BASELINE_PACKAGES if not importable(name)]
    if missing and not args.no_baselines:
        sys.exit(f"missing baseline packages {missing}: pip install -e '.[bench]'")

    import morecantile

    from model.product import climatology
    from model.product import cube as cubes
    from tests.served import free_port

    if not (args.store / "zarr.json").exists():
        args.store.parent.mkdir(parents=True, exist_ok=True)
        build_cube(args.store)
    if cubes.climatology_info(args.store) is None:
        began = time.perf_counter()
        climatology.compute(args.store)
        print(f"climatology computed in {time.perf_counter() - began:.1f} s")
    cube = cubes.open_cube(args.store)
    mask = cube["mask"].values
    print(
        f"cube: {cube.sizes['time']} days x {int(mask.sum())} cells "
        f"({cube.sizes['y']} x {cube.sizes['x']} window), concurrency {args.concurrency}"
    )
    rng = np.random.default_rng(1)
    iy, ix = np.nonzero(mask)
    pick = rng.integers(0, iy.size, args.series)
    lat, lon = cube["lat"].values[iy[pick], ix[pick]], cube["lon"].values[iy[pick], ix[pick]]
    ext = cubes.extent(cube)
    tiles = [
        t
        for z in (6, 7)
        for t in morecantile.tms.get("WebMercatorQuad").tiles(
            ext["west"], ext["south"], ext["east"], ext["north"], [z]
        )
    ]
    tile_pick = [tiles[i] for i in rng.integers(0, len(tiles), args.tiles)]
    days = [str(d.date()) for d in DAYS[rng.integers(0, len(DAYS), args.tiles)]]

    servers = ("smapx",) if args.no_baselines else ("smapx", "xpublish", "titiler")
    ports = {k: free_port() for k in servers}
    smapx = [str(Path(sys.executable).parent / "smapx"), "serve", "--cube", str(args.store)]
    procs = {"smapx": start([*smapx, "--port", str(ports["smapx"])], ports["smapx"])}
    for name in servers[1:]:
        baseline = [sys.executable, __file__, "--serve", name, "--store", str(args.store)]
        procs[name] = start([*baseline, "--port", str(ports[name])], ports[name])
    base = {k: f"http://127.0.0.1:{p}" for k, p in ports.items()}
    cube_name = args.store.name.removesuffix(".zarr")
    try:
        series_csv = [
            f"{base['smapx']}/v1/series?lat={a:.5f}&lon={o:.5f}&products=lstm&format=csv"
            for a, o in zip(lat, lon, strict=True)
        ]
        series_json = [u.replace("format=csv", "format=json") for u in series_csv]
        percentile_csv = [
            u.replace("products=lstm", "products=lstm_percentile") for u in series_csv
        ]
        percentile_json = [u.replace("format=csv", "format=json") for u in percentile_csv]
        tile_ours = [
            f"{base['smapx']}/v1/tiles/lstm/{t.z}/{t.x}/{t.y}.png?date={d}"
            f"&rescale=0,0.5&colormap=ylgnbu"
            for t, d in zip(tile_pick, days, strict=True)
        ]
        tile_drought = [
            f"{base['smapx']}/v1/tiles/lstm_percentile/{t.z}/{t.x}/{t.y}.png?date={d}"
            f"&colormap=drought"
            for t, d in zip(tile_pick, days, strict=True)
        ]
        areas = {
            name: [
                f"{base['smapx']}/v1/areas/{area}/series?products=lstm,lstm_percentile"
                f"&start={DAYS[-1].year - 9}-01-01&end={DAYS[-1].date()}"
            ]
            * args.areas
            for name, area in (("county", "county:20161"), ("state", "state:20"))
        }
        c = args.concurrency
        first_of_tile = sorted(
            {(t.z, t.x, t.y): i for i, t in reversed(list(enumerate(tile_pick)))}.values()
        )
        ours = procs["smapx"]
        rows = [
            measure("smapx series csv (20 y)", ours, series_csv, c, series_csv[:10]),
            measure("smapx percentile csv (20 y)", ours, percentile_csv, c, percentile_csv[:10]),
            measure("smapx series json (20 y)", ours, series_json, c, series_json[:10]),
            measure("smapx percentile json (20 y)", ours, percentile_json, c, percentile_json[:10]),
            measure(
                "smapx tile 256 px png", ours, tile_ours, c, [tile_ours[i] for i in first_of_tile]
            ),
            measure(
                "smapx percentile tile drought png",
                ours,
                tile_drought,
                c,
                [tile_drought[i] for i in first_of_tile],
            ),
            *(
                measure(f"smapx {name} json (10 y)", ours, urls, c, urls[:2])
                for name, urls in areas.items()
            ),
        ]
        if not args.no_baselines:
            rows += baselines(
                args, base, procs, lat, lon, tile_pick, days, first_of_tile, cube_name
            )
    finally:
        for proc in procs.values():
            proc.terminate()
        for proc in procs.values():
            proc.wait(30)
    by = {r["what"]: r for r in rows}
    series_p50 = by["smapx series csv (20 y)"]["p50_ms"]
    tile_p50 = by["smapx tile 256 px png"]["p50_ms"]
    print(f"machine load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    if not args.no_baselines:
        compare_baselines(by, series_p50, tile_p50)
    percentile_series = by["smapx percentile csv (20 y)"]["p50_ms"]
    percentile_tile = by["smapx percentile tile drought png"]["p50_ms"]
    print(
        f"percentile_series_p50_ms={percentile_series:.2f} "
        f"percentile_series_vs_plain={percentile_series / series_p50:.2f} "
        f"percentile_tile_p50_ms={percentile_tile:.2f} "
        f"percentile_tile_vs_plain={percentile_tile / tile_p50:.2f}"
    )
    print(
        f"county_series_p50_ms={by['smapx county json (10 y)']['p50_ms']:.2f} "
        f"state_series_p50_ms={by['smapx state json (10 y)']['p50_ms']:.2f}"
    )


def baselines(args, base, procs, lat, lon, tile_pick, days, first_of_tile, cube_name) -> list:
    """xpublish-edr's position query and titiler's tiles on the same queries, with smapx's EDR
    position query beside them."""
    first, last = str(DAYS[0].date()), str(DAYS[-1].date())
    edr_ours = [
        f"{base['smapx']}/v1/edr/{cube_name}/position?"
        f"coords=POINT({o:.5f}%20{a:.5f})&datetime={first}/{last}&parameter-name=lstm&f=csv"
        for a, o in zip(lat, lon, strict=True)
    ]
    edr_xpub = [
        f"{base['xpublish']}/datasets/cube/edr/position?coords=POINT({o:.5f}%20{a:.5f})"
        f"&datetime={first}/{last}&parameter-name=lstm&f=csv"
        for a, o in zip(lat, lon, strict=True)
    ]
    tile_titiler = [
        f"{base['titiler']}/md/tiles/WebMercatorQuad/{t.z}/{t.x}/{t.y}.png?"
        f"url={args.store}&variable=lstm&sel=time={d}&rescale=0,0.5"
        f"&colormap_name=ylgnbu"
        for t, d in zip(tile_pick, days, strict=True)
    ]
    c = args.concurrency
    n_base_series, n_base_tiles = max(40, args.series // 8), max(40, args.tiles // 4)
    return [
        measure("smapx edr position csv", procs["smapx"], edr_ours, c, edr_ours[:10]),
        measure(
            "xpublish-edr position csv",
            procs["xpublish"],
            edr_xpub[:n_base_series],
            c,
            edr_xpub[-3:],
        ),
        measure(
            "titiler.xarray tile 256 px png",
            procs["titiler"],
            tile_titiler[:n_base_tiles],
            c,
            [tile_titiler[i] for i in first_of_tile],
        ),
    ]


def compare_baselines(by: dict, series_p50: float, tile_p50: float) -> None:
    series_cpu = by["xpublish-edr position csv"]["cpu_ms"] / by["smapx series csv (20 y)"]["cpu_ms"]
    tile_cpu = (
        by["titiler.xarray tile 256 px png"]["cpu_ms"] / by["smapx tile 256 px png"]["cpu_ms"]
    )
    print(
        f"server CPU per request: series {series_cpu:.0f}x less than xpublish-edr, "
        f"tiles {tile_cpu:.0f}x less than titiler"
    )
    print(
        f"series_p50_ms={series_p50:.2f} "
        f"series_vs_xpublish={by['xpublish-edr position csv']['p50_ms'] / series_p50:.1f} "
        f"tile_p50_ms={tile_p50:.2f} "
        f"tile_vs_titiler={by['titiler.xarray tile 256 px png']['p50_ms'] / tile_p50:.1f}"
    )


if __name__ == "__main__":
    main()

"""Does a large request body stall the server for everyone else? /healthz latency while bulk-job
bodies are posted, against /healthz on the same idle server, measured in the same run.

    python bench/event_loop.py                 # 4 bodies at once of 10,000 and of 80,000 points

Each body is a job of N points (10,000 is the default job limit: parsed, checked and refused
with 503 here, since no job queue is set; 80,000 is over it: refused with 413). Prints, per size:
healthz_idle_p50_ms, healthz_busy_max_ms, stall_vs_idle (busy max / idle p50) and posts_ms.
"""

import argparse
import asyncio
import json
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.served import NO_REDIS, build_cube, serving  # noqa: E402


def job_body(points: int) -> bytes:
    coords = [[29.0 + i * 1e-6, -103.0] for i in range(points)]
    request = {"products": ["lstm"], "start": "2015-01-01", "end": "2015-01-31", "format": "csv"}
    return json.dumps({**request, "points": coords}).encode()


async def healthz_while(client: httpx.AsyncClient, work) -> tuple[list[float], object]:
    """/healthz latencies, asked every 5 ms while `work` (an awaitable) runs; and its result."""
    latencies: list[float] = []
    done = asyncio.Event()

    async def poll() -> None:
        while not done.is_set():
            t = time.perf_counter()
            await client.get("/healthz")
            latencies.append(time.perf_counter() - t)
            await asyncio.sleep(0.005)

    poller = asyncio.create_task(poll())
    result = await work
    done.set()
    await poller
    return latencies, result


async def measure(url: str, points: int, concurrent: int) -> dict:
    body = job_body(points)
    headers = {"content-type": "application/json"}
    async with httpx.AsyncClient(base_url=url, timeout=120) as client:
        idle, _ = await healthz_while(client, asyncio.sleep(1.0))
        posts = [client.post("/v1/jobs", content=body, headers=headers) for _ in range(concurrent)]
        t = time.perf_counter()
        busy, answers = await healthz_while(client, asyncio.gather(*posts))
        took = time.perf_counter() - t
    idle_p50 = sorted(idle)[len(idle) // 2]
    return {
        "points": points,
        "statuses": sorted({a.status_code for a in answers}),
        "healthz_idle_p50_ms": round(idle_p50 * 1e3, 1),
        "healthz_busy_max_ms": round(max(busy) * 1e3, 1),
        "stall_vs_idle": round(max(busy) / idle_p50, 1),
        "posts_ms": round(took * 1e3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=int, nargs="+", default=[10_000, 80_000])
    parser.add_argument("--concurrent", type=int, default=4)
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="smapx-bench-"))
    build_cube(folder / "cube.zarr")
    env = {"SMAPX_REDIS_URL": NO_REDIS, "SMAPX_JOBS_DIR": str(folder / "jobs"), "SMAPX_CUBES": "[]"}
    with serving([folder / "cube.zarr"], env) as url:
        for points in args.points:
            figures = asyncio.run(measure(url, points, args.concurrent))
            print(" ".join(f"{k}={v}" for k, v in figures.items()))


if __name__ == "__main__":
    main()

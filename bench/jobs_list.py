"""Does a caller's job list slow with other keys' jobs? GET /v1/jobs for a key with no jobs on an
empty Redis, and again beside N large jobs (10,000 points each) of another key, measured in the
same run on one server (private Redis, API keys on, no worker: the jobs stay queued).

    python bench/jobs_list.py              # 40 jobs of 10,000 points
    python bench/jobs_list.py --jobs 10

Prints list_empty_p50_ms, list_beside_p50_ms, list_ratio (goal <= 2), healthz p50 beside the
jobs, and a small POST /v1/jobs beside them.
"""

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.served import POINT, build_cube, serving  # noqa: E402

KEYS = ("bench-idle", "bench-busy")
SMALL = {
    "products": ["lstm"],
    "start": "2016-01-01",
    "end": "2016-01-10",
    "points": [list(POINT)],
    "format": "csv",
}


def p50_ms(client: httpx.Client, path: str, key: str, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        assert client.get(path, headers={"X-API-Key": key}).status_code == 200
        times.append(1000 * (time.perf_counter() - started))
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=40)
    parser.add_argument("--points", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=31)
    args = parser.parse_args()
    from worker.pool import private_redis

    folder = Path(tempfile.mkdtemp(prefix="bench-jobs-"))
    build_cube(folder / "extended.zarr")
    big = {**SMALL, "end": "2016-12-30", "points": [list(POINT)] * args.points}
    with private_redis() as url:
        env = {
            "SMAPX_REDIS_URL": url,
            "SMAPX_JOBS_DIR": str(folder / "results"),
            "SMAPX_API_KEYS": json.dumps(KEYS),
            "SMAPX_RATE_LIMIT_PER_MINUTE": "0",
            "SMAPX_CUBES": "[]",
        }
        with (
            serving([folder / "extended.zarr"], env) as base,
            httpx.Client(base_url=base, timeout=120) as client,
        ):
            p50_ms(client, "/v1/jobs", KEYS[0], 5)  # warm: imports, connections
            empty = p50_ms(client, "/v1/jobs", KEYS[0], args.repeat)
            for _ in range(args.jobs):
                r = client.post("/v1/jobs", json=big, headers={"X-API-Key": KEYS[1]})
                assert r.status_code == 202, r.text
            beside = p50_ms(client, "/v1/jobs", KEYS[0], args.repeat)
            healthz = p50_ms(client, "/healthz", KEYS[0], args.repeat)
            started = time.perf_counter()
            r = client.post("/v1/jobs", json=SMALL, headers={"X-API-Key": KEYS[0]})
            post_ms = 1000 * (time.perf_counter() - started)
            assert r.status_code == 202, r.text
    print(
        f"jobs={args.jobs} points={args.points} list_empty_p50_ms={empty:.1f} "
        f"list_beside_p50_ms={beside:.1f} list_ratio={beside / empty:.2f} "
        f"healthz_beside_p50_ms={healthz:.1f} small_post_beside_ms={post_ms:.0f}"
    )


if __name__ == "__main__":
    main()

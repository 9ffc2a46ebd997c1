"""The service reads cubes lazily through a bounded chunk cache: every route answers the same
bytes as from the cube held whole in memory, the cache stays within SMAPX_CACHE_MB, and a store
that lost a chunk is refused at start or answered as damage (500, health check failing) by
series, subsets and jobs alike, never as missing values."""

import asyncio
import json
import os
import shutil
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import google_crc32c
import httpx
import numpy as np
import pytest
import uvicorn
import xarray as xr
import zarr

from model import grid
from model.errors import DamagedStore, InputError
from model.product import climatology
from model.product import cube as cubes
from model.settings import get_settings
from service import catalog, tiles
from service.app import create_app
from tests.served import (
    COLS,
    DAYS,
    POINT,
    REGION,
    ROWS,
    SMAPX,
    build_cube,
    free_port,
    known_values,
    serving,
    start_server,
    start_worker,
    wait_done,
    wait_for_port,
)

pytestmark = pytest.mark.integration

PRODUCTS = ("smap", "lstm", "noah", "lstm_spread")
DAY = str(DAYS[400].date())
ROUTES = [
    ("/v1/products", {}),
    ("/v1/series", {"lat": POINT[0], "lon": POINT[1], "products": "lstm,smap,noah,fused"}),
    ("/v1/series", {"lat": POINT[0], "lon": POINT[1], "format": "csv", "products": "lstm"}),
    (
        "/v1/series",
        {"lat": POINT[0], "lon": POINT[1], "products": "lstm_percentile,fused_anomaly"},
    ),
    ("/v1/series", {"lat": POINT[0], "lon": POINT[1], "start": "2014-03-01", "end": "2016-02-01"}),
    ("/v1/edr/extended/position", {"coords": f"POINT({POINT[1]} {POINT[0]})", "f": "csv"}),
    ("/v1/tiles/lstm/6/13/26.png", {"date": DAY}),
    ("/v1/tiles/fused/5/6/13.png", {"date": DAY, "weight": 0.3}),
    ("/v1/tiles/lstm_percentile/6/13/26.png", {"date": DAY, "colormap": "drought"}),
    ("/v1/tiles/noah_anomaly/6/13/26.png", {"date": DAY}),
    ("/v1/tiles/lstm_spread/6/13/26.png", {"date": DAY}),
    ("/v1/tiles/smap/WorldCRS84Quad/5/11/9.png", {"date": DAY}),
    ("/v1/tilejson/lstm.json", {"date": DAY}),
    ("/v1/zarr/extended/lstm/zarr.json", {}),
    ("/v1/subset", {"bbox": "-104,28,-102,30", "start": DAY, "end": DAY, "format": "csv"}),
    ("/v1/stac/collections/extended", {}),
]


@pytest.fixture(scope="module")
def cube_path(tmp_path_factory):
    store = tmp_path_factory.mktemp("lazy") / "extended.zarr"
    build_cube(store, products=PRODUCTS)
    cubes.write_maps(store, 0, len(DAYS))  # the layout a larger cube gets as it publishes
    zarr.consolidate_metadata(str(store))
    climatology.compute(store, progress=False)
    return store


def answers(base: str) -> list[tuple[int, bytes]]:
    """Status and body of every route, the server's own address taken out."""
    with httpx.Client(base_url=base, timeout=60) as client:
        return [
            (r.status_code, r.content.replace(base.encode(), b"BASE"))
            for r in (client.get(u, params=p) for u, p in ROUTES)
        ]


def test_every_route_answers_the_same_bytes_lazily_as_from_memory(cube_path):
    env = {"SMAPX_RATE_LIMIT_PER_MINUTE": "0", "SMAPX_RELOAD_SECONDS": "0"}
    with serving([cube_path], {**env, "SMAPX_SERVE_IN_MEMORY": "true"}) as base:
        held = answers(base)
    with serving([cube_path], {**env, "SMAPX_CACHE_MB": "1"}) as base:
        lazy = answers(base)
    assert [s for s, _ in held] == [200] * len(ROUTES), [b[:200] for _, b in held]
    for (url, params), (_, want), (_, got) in zip(ROUTES, held, lazy, strict=True):
        assert got == want, f"{url} {params}"


def test_the_chunk_cache_stays_within_its_bound(cube_path, monkeypatch):
    monkeypatch.setattr(cubes, "chunk_cache", lambda: cache)
    cache = cubes.ChunkCache(400_000)  # two of the cube's (1095, 8, 9) int16 chunks
    lazy = cubes.LazyCube(cube_path)
    held = cubes.MemoryCube(cube_path)
    assert set(lazy._maps[1]) == set(PRODUCTS)
    every_day = slice(0, len(DAYS))
    for product in PRODUCTS:
        for iy, ix in np.argwhere(lazy.mask)[::7]:
            np.testing.assert_array_equal(
                lazy.series(product, iy, ix, every_day), held.series(product, iy, ix, every_day)
            )
            assert cache.bytes <= cache.max_bytes
        np.testing.assert_array_equal(
            lazy.day(product, 400)[lazy.mask], held.day(product, 400)[lazy.mask]
        )
    assert lazy.observed_days("smap") == held.observed_days("smap") == (0, (len(DAYS) - 1) // 3 * 3)


def test_maps_of_a_grown_cube_are_those_of_one_written_at_once(cube_path, tmp_path):
    grown = tmp_path / "grown.zarr"
    shutil.copytree(cube_path, grown)
    shutil.rmtree(grown / cubes.MAPS)
    cubes.write_maps(grown, 0, 500)
    cubes.write_maps(grown, 500, len(DAYS), processes=2)
    for product in PRODUCTS:
        whole, parts = (
            zarr.open_group(str(store), path=cubes.MAPS, mode="r")[product][...]
            for store in (cube_path, grown)
        )
        np.testing.assert_array_equal(parts, whole)
    assert not cubes.needs_maps(cube_path)


def chunk_files(store, product: str) -> list:
    return sorted(p for p in (store / product / "c").rglob("*") if p.is_file())


@pytest.mark.parametrize("product", ["smap", "lstm_spread", "lstm", "maps/smap"])
def test_a_store_missing_a_chunk_is_refused_at_start(tmp_path, product):
    from service.catalog import Catalog

    store = tmp_path / "extended.zarr"
    build_cube(store, products=PRODUCTS)
    cubes.write_maps(store, 0, len(DAYS))
    zarr.consolidate_metadata(str(store))
    chunk_files(store, product)[-1].unlink()
    with pytest.raises(InputError, match=f"chunk.*missing.*{product}/c/"):
        Catalog([str(store)])


def test_a_map_shard_lost_after_opening_is_damage_not_missing_values(cube_path, tmp_path):
    store = tmp_path / "extended.zarr"
    shutil.copytree(cube_path, store)
    reader = cubes.LazyCube(store)
    chunk_files(store, "maps/noah")[0].unlink()
    with pytest.raises(DamagedStore, match="maps/noah/c/0/0/0 is missing"):
        reader.day("noah", 3)


def test_a_chunk_lost_while_serving_is_damage_in_series_subsets_and_jobs(tmp_path, redis_url):
    store = tmp_path / "extended.zarr"
    build_cube(store, products=PRODUCTS)
    env = {
        "SMAPX_REDIS_URL": redis_url,
        "SMAPX_JOBS_DIR": str(tmp_path / "results"),
        "SMAPX_CUBES": f'["{store}"]',
        "SMAPX_RELOAD_SECONDS": "0",
        "SMAPX_TORCH_THREADS": "1",
    }
    worker = start_worker(env, f"lazy-test-{os.getpid()}@%h")
    server, base = start_server([store], env)
    try:
        with httpx.Client(base_url=base, timeout=60) as client:
            assert client.get("/healthz").status_code == 200
            for path in chunk_files(store, "lstm"):
                path.unlink()
            lat, lon = POINT
            series = client.get("/v1/series", params={"lat": lat, "lon": lon})
            assert series.status_code == 500
            assert "is missing; the store is damaged" in series.json()["detail"]
            subset = client.get(
                "/v1/subset",
                params={"bbox": "-104,28,-102,30", "start": DAY, "end": DAY, "format": "csv"},
            )
            assert subset.status_code == 500
            assert "is missing; the store is damaged" in subset.json()["detail"]
            health = client.get("/healthz")
            assert health.status_code == 503 and health.json()["status"] == "damaged"
            request = {"products": ["lstm"], "start": DAY, "end": DAY, "points": [[lat, lon]]}
            submitted = client.post("/v1/jobs", json={**request, "format": "csv"})
            assert submitted.status_code == 202, submitted.text
            job = wait_done(client, submitted.json()["id"])
            assert job["state"] == "failed" and "the store is damaged" in job["error"], job
    finally:
        for proc in (server, worker):
            proc.terminate()
            proc.wait(30)


def test_strict_reads_raise_where_plain_ones_read_missing_values(tmp_path):
    store = tmp_path / "extended.zarr"
    build_cube(store, products=("lstm",))
    chunk_files(store, "lstm")[0].unlink()
    with pytest.raises(DamagedStore, match="lstm/c/0/0/0"):
        cubes.open_cube(store)["lstm"].load()


def children(pid: int) -> list[int]:
    """Processes whose parent is `pid` (Linux /proc)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def test_several_api_processes_serve_one_store(cube_path):
    port = free_port()
    args = [SMAPX, "serve", "--cube", str(cube_path), "--port", str(port), "--workers", "2"]
    env = {**os.environ, "SMAPX_RATE_LIMIT_PER_MINUTE": "0", "SMAPX_CUBES": "[]"}
    proc = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for_port(port, 60, proc)
        base = f"http://127.0.0.1:{port}"
        with httpx.Client(base_url=base, timeout=60) as client:
            lat, lon = POINT
            bodies = {
                client.get("/v1/series", params={"lat": lat, "lon": lon}).content for _ in range(20)
            }
        assert len(children(proc.pid)) >= 2  # the workers (and uvicorn's own helper)
        assert len(bodies) == 1 and b'"lstm":[' in bodies.pop()
    finally:
        proc.terminate()
        proc.wait(30)


def test_a_batch_that_would_read_too_much_is_refused_before_reading(cube_path):
    env = {"SMAPX_MAX_SERIES_VALUES": str(2 * len(DAYS)), "SMAPX_RATE_LIMIT_PER_MINUTE": "0"}
    body = "id,lat,lon\n" + "".join(f"p{k},{POINT[0]},{POINT[1]}\n" for k in range(3))
    csv = {"content-type": "text/csv"}
    with serving([cube_path], env) as base, httpx.Client(base_url=base, timeout=60) as client:
        refused = client.post("/v1/series", content=body, headers=csv)
        two = body.rsplit("p2", 1)[0]
        served = client.post("/v1/series", content=two, headers=csv)
    assert refused.status_code == 413, refused.text
    problem = refused.json()
    assert problem["limit"] == 2 * len(DAYS) and "POST /v1/jobs" in problem["detail"]
    assert f"3 points x {len(DAYS)} days read for 1 products" in problem["detail"]
    assert served.status_code == 200 and len(served.json()["series"]) == 2


def write_known(store, template, blocks) -> None:
    """Write the blocks of `template` with tests.served.known_values, then publish its days."""
    for block in blocks:
        t = np.arange(block.time.start, block.time.stop)[:, None, None]
        iy = np.arange(block.y.start, block.y.stop)[None, :, None]
        ix = np.arange(block.x.start, block.x.stop)[None, None, :]
        inside = template["mask"].values[block.y, block.x][None]
        values = {
            p: np.where(inside, known_values(p, t, iy, ix), np.nan)
            for p in cubes.products(template)
        }
        cubes.write_block(store, block, values)
    cubes.publish(store, template.time.values)


def peak_rss_mb(pid: int) -> float:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(next(x for x in status.splitlines() if x.startswith("VmHWM:")).split()[1]) / 1024


def test_a_reload_swaps_without_a_second_copy_and_memory_stays_bounded(tmp_path):
    """A 96 x 96-cell cube of ~80 MB as int16 grows by a year while served with a 4 MB cache:
    the server follows, and its peak memory grows by far less than one copy of the cube."""
    rows, cols = np.meshgrid(np.arange(100, 196), np.arange(200, 296), indexing="ij")
    products = ("smap", "lstm", "noah", "lsm2")
    store = tmp_path / "large.zarr"
    short = cubes.template(DAYS[:800], rows.ravel(), cols.ravel(), products)
    cubes.create(store, short)
    write_known(store, short, cubes.blocks(short))
    env = {
        "SMAPX_CACHE_MB": "4",
        "SMAPX_RELOAD_SECONDS": "0.2",
        "SMAPX_RATE_LIMIT_PER_MINUTE": "0",
        "SMAPX_CUBES": "[]",
    }
    server, base = start_server([store], env)
    cells = [(int(r), int(c)) for r, c in zip(rows.ravel()[::97], cols.ravel()[::97], strict=True)]
    try:
        with httpx.Client(base_url=base, timeout=60) as client:

            def read_everywhere() -> None:
                for row, col in cells:
                    lat, lon = grid.DEFAULT.rowcol_to_latlon(row, col)
                    answer = client.get("/v1/series", params={"lat": lat, "lon": lon})
                    assert answer.status_code == 200, answer.text

            read_everywhere()
            before = peak_rss_mb(server.pid)
            whole = cubes.template(DAYS, rows.ravel(), cols.ravel(), products)
            write_known(store, whole, cubes.grow(store, whole, 800))
            deadline = time.monotonic() + 30
            while client.get("/v1/products").json()["extent"]["end"] != str(DAYS[-1].date()):
                assert time.monotonic() < deadline, "the grown cube was not swapped in"
                read_everywhere()
            read_everywhere()
            grown_by = peak_rss_mb(server.pid) - before
    finally:
        server.terminate()
        server.wait(30)
    one_copy_mb = whole["mask"].size * len(DAYS) * len(products) * 2 / 2**20
    assert one_copy_mb > 75 and grown_by < one_copy_mb / 3, (grown_by, one_copy_mb)


WIDE_PRODUCTS = ("smap", "lstm")
WIDE_DAYS = DAYS[:12]


@pytest.fixture(scope="module")
def wide_cube(tmp_path_factory):
    """300 x 290 cells at 9 km, 12 days: wide enough for a map layout with overviews (x2, x4),
    published as a grown cube is; values textured cell to cell, so a coarsened tile differs."""
    store = tmp_path_factory.mktemp("wide") / "wide.zarr"
    rows, cols = np.meshgrid(np.arange(300, 600), np.arange(1000, 1290), indexing="ij")
    region = (rows + cols) % 11 != 0
    template = cubes.template(WIDE_DAYS, rows[region], cols[region], WIDE_PRODUCTS, on=grid.M09)
    cubes.create(store, template)
    for block in cubes.blocks(template):
        t, iy, ix = np.ogrid[block.time, block.y, block.x]
        lstm = 0.05 + 0.4 * ((iy * 7 + ix * 13 + t) % 97) / 97
        inside = template["mask"].values[block.y, block.x][None]
        values = {"lstm": lstm, "smap": np.where((iy + ix + t) % 3 == 0, lstm + 0.01, np.nan)}
        cubes.write_block(store, block, {p: np.where(inside, v, np.nan) for p, v in values.items()})
    cubes.publish(store, WIDE_DAYS[:5])
    cubes.publish(store, WIDE_DAYS)
    return store


def test_a_wide_cube_reads_a_cells_record_from_narrow_columns(wide_cube, cube_path, tmp_path):
    """A wide cube's time layout is shards of a block's 32 x 32 cells, each of 8 x 8-cell
    columns: a cell's series decodes one column per time chunk (1/16 of the block; the shard's
    index is kept too), and equals the cube's; day fields read from it equal the cube's too;
    its climatology is chunked the same. A narrow cube (the tests', the demo's) keeps
    whole-block chunks."""
    series_layout = (cubes.CHUNK_TIME, cubes.SERIES_SIDE, cubes.SERIES_SIDE)
    group = zarr.open_group(str(wide_cube), mode="r")
    for product in WIDE_PRODUCTS:
        assert group[product].shards == (cubes.CHUNK_TIME, cubes.CHUNK_Y, cubes.CHUNK_X)
        assert group[product].chunks == series_layout
    assert zarr.open_group(str(cube_path), mode="r")["lstm"].shards is None

    lazy, memory = cubes.LazyCube(wide_cube, use_maps=False), cubes.MemoryCube(wide_cube)
    every = slice(0, len(WIDE_DAYS))
    cells = np.argwhere(lazy.mask)
    for iy, ix in cells[:: len(cells) // 7]:
        cubes.chunk_cache.cache_clear()
        for product in WIDE_PRODUCTS:
            got = lazy.series(product, int(iy), int(ix), every)
            assert np.array_equal(got, memory.series(product, int(iy), int(ix), every))
        side = cubes.SERIES_SIDE
        rows, cols = (min(side, n - i // side * side) for i, n in zip((iy, ix), lazy.mask.shape))
        column = len(WIDE_DAYS) * rows * cols * np.dtype(np.int16).itemsize  # clipped at edges
        index = (cubes.CHUNK_Y // side) ** 2 * 16  # the shard's (offset, length) per column
        assert cubes.chunk_cache().bytes == len(WIDE_PRODUCTS) * (column + index)
    for t in (0, len(WIDE_DAYS) - 1):
        assert np.array_equal(lazy.day("smap", t), memory.day("smap", t))

    copy = tmp_path / "wide.zarr"
    shutil.copytree(wide_cube, copy)
    cubes.create_climatology(copy, WIDE_DAYS, lazy.mask.shape, ["lstm"], {})
    clim = zarr.open_group(str(copy), path=cubes.CLIMATOLOGY, mode="r")
    assert clim["lstm_percentile"].chunks == series_layout
    assert clim["lstm_window_mean"].chunks == (cubes.DAYS_OF_YEAR, *series_layout[1:])
    assert clim["lstm_window_mean"].shards == (cubes.DAYS_OF_YEAR, cubes.CHUNK_Y, cubes.CHUNK_X)


def rewritten_shard_index(shard: Path, change) -> None:
    """Rewrite the index at the end of a shard file (16 columns of 32 x 32 cells) with `change`
    applied to its (offset, length) rows, its crc32c recomputed."""
    data = shard.read_bytes()
    index = np.frombuffer(data[-260:-4], "<u8").reshape(-1, 2).copy()
    change(index)
    raw = index.astype("<u8").tobytes()
    shard.write_bytes(
        data[:-260] + raw + np.uint32(google_crc32c.value(raw)).astype("<u4").tobytes()
    )


def test_a_shard_index_that_fails_its_checksum_is_damage(wide_cube, tmp_path):
    copy = tmp_path / "wide.zarr"
    shutil.copytree(wide_cube, copy)
    shard = copy / "lstm" / "c" / "0" / "0" / "0"
    data = bytearray(shard.read_bytes())
    data[-20] ^= 0xFF
    shard.write_bytes(bytes(data))
    cubes.chunk_cache.cache_clear()
    lazy = cubes.LazyCube(copy, use_maps=False)
    assert lazy.mask[0, 0]
    with pytest.raises(DamagedStore, match="fails its index checksum"):
        lazy.series("lstm", 0, 0, slice(0, len(WIDE_DAYS)))


def test_a_column_absent_from_its_shard_reads_as_zarr_reads_it(wide_cube, tmp_path):
    """An inner chunk the shard's index marks absent (zarr leaves out one that holds no value)
    reads as missing values, as zarr itself reads it; its neighbours are untouched."""
    copy = tmp_path / "wide.zarr"
    shutil.copytree(wide_cube, copy)
    rewritten_shard_index(
        copy / "lstm" / "c" / "0" / "0" / "0", lambda index: index.__setitem__(0, 2**64 - 1)
    )
    cubes.chunk_cache.cache_clear()
    lazy, every = cubes.LazyCube(copy, use_maps=False), slice(0, len(WIDE_DAYS))
    stored = zarr.open_group(str(copy), mode="r")["lstm"]
    assert (lazy.series("lstm", 0, 0, every) == cubes.FILL).all()
    assert np.array_equal(lazy.series("lstm", 0, 0, every), stored[:, 0, 0])
    assert np.array_equal(lazy.series("lstm", 0, 10, every), stored[:, 0, 10])
    assert (stored[:, 0, 10] != cubes.FILL).all()


@pytest.fixture
def shard_reads(monkeypatch) -> list[str]:
    """The paths of the sharded arrays read from (one entry a batch of chunk reads)."""
    reads = []

    def counted(self, coords):
        reads.append(self.array.path)
        return chunks(self, coords)

    chunks = cubes._ShardReads.chunks
    monkeypatch.setattr(cubes._ShardReads, "chunks", counted)
    return reads


@pytest.fixture(scope="module")
def ranked_wide(wide_cube, tmp_path_factory) -> tuple[Path, np.ndarray, np.ndarray]:
    """A copy of the wide cube with an lstm climatology staged and published as `smapx
    climatology` publishes one (which, on a wide cube, writes its percentiles' map layout); the
    copy, its mask and the percentile codes written."""
    copy = tmp_path_factory.mktemp("ranked") / "wide.zarr"
    shutil.copytree(wide_cube, copy)
    mask = zarr.open_group(str(copy), mode="r")["mask"][...]
    attrs = {"base_start": "2015-01-01", "base_end": "2015-01-12", "products": ["lstm"]}
    attrs |= {"window_days": 15, "fused_weight": 0.5}
    cubes.stage_climatology(copy, WIDE_DAYS, mask.shape, {"products": ["lstm"], "attrs": attrs})
    rng = np.random.default_rng(4)
    codes = np.where(mask, rng.integers(0, 10_001, (len(WIDE_DAYS), *mask.shape)), cubes.FILL)
    for y0 in range(0, mask.shape[0], cubes.CHUNK_Y):
        for x0 in range(0, mask.shape[1], cubes.CHUNK_X):
            ys, xs = slice(y0, y0 + cubes.CHUNK_Y), slice(x0, x0 + cubes.CHUNK_X)
            block = {"lstm": codes[:, ys, xs]}
            into = cubes.CLIMATOLOGY_STAGED
            cubes.write_climatology_block(copy, ys, xs, slice(0, len(WIDE_DAYS)), block, into=into)
    assert cubes.publish_climatology(copy)
    return copy, mask, codes


def test_a_wide_cubes_percentile_days_come_from_their_map_layout(ranked_wide, shard_reads):
    """On a wide cube a percentile day reads only its map layout's shards and equals the
    percentiles written (and the day read from the time layout)."""
    copy, mask, codes = ranked_wide
    cubes.chunk_cache.cache_clear()
    lazy, plain = cubes.LazyCube(copy), cubes.LazyCube(copy, use_maps=False)
    for t in (0, 5, len(WIDE_DAYS) - 1):
        shard_reads.clear()
        day = lazy.percentile_day("lstm", t)
        assert shard_reads == [f"{cubes.CLIMATOLOGY}/{cubes.MAPS}/lstm_percentile"]
        assert np.array_equal(day[mask], codes[t][mask])
        assert np.array_equal(day[mask], plain.percentile_day("lstm", t)[mask])


def test_a_lost_percentile_map_shard_is_damage_not_unranked_days(ranked_wide, tmp_path):
    """A shard of the percentiles' map layout (or of an overview) gone from a published
    climatology: refused at start, and, lost while serving, a percentile day raises
    DamagedStore instead of answering 'not ranked' (the time layout still reads)."""
    from service.catalog import Catalog

    _, mask, codes = ranked_wide
    copy = tmp_path / "wide.zarr"
    shutil.copytree(ranked_wide[0], copy)
    lazy = cubes.LazyCube(copy)
    shards = copy / cubes.CLIMATOLOGY / cubes.MAPS / "lstm_percentile" / "c"
    lost = sorted(p for p in shards.rglob("*") if p.is_file())[0]
    lost.rename(tmp_path / "kept")
    cubes.chunk_cache.cache_clear()
    with pytest.raises(DamagedStore, match="lstm_percentile/c/0/0/0 is missing"):
        lazy.percentile_day("lstm", 0)
    plain = cubes.LazyCube(copy, use_maps=False).percentile_day("lstm", 0)
    assert np.array_equal(plain[mask], codes[0][mask])
    with pytest.raises(InputError, match="missing .first climatology/maps/lstm_percentile/c/"):
        Catalog([str(copy)])
    (tmp_path / "kept").rename(lost)
    overview = copy / cubes.CLIMATOLOGY / cubes.MAPS / "4" / "lstm_percentile" / "c"
    next(p for p in overview.rglob("*") if p.is_file()).unlink()
    with pytest.raises(InputError, match="climatology/maps/4/lstm_percentile/c/"):
        Catalog([str(copy)])


def test_sampling_keeps_the_valid_cell_nearest_each_blocks_centre():
    F = cubes.FILL
    codes = np.array(
        [
            [1, 2, 3, 4, 5],
            [6, 7, 8, 9, F],
            [F, F, F, F, F],
            [F, 9, F, F, F],
        ],
        np.int16,
    )
    # 2 x 2: equally near the centre, the first valid in row-major order; 4 x 4: the four
    # centre cells (7, 8 valid) come first
    assert cubes.sample(codes, 2).tolist() == [[1, 3, 5], [9, F, F]]
    assert cubes.sample(codes, 4).tolist() == [[7, 5]]
    assert cubes.sample(np.stack([codes, codes]), 4).shape == (2, 1, 2)


def test_percentile_overviews_sample_the_percentiles_written(ranked_wide):
    """The percentiles' map layout has the products' overview levels, each a sample of the
    percentiles written (a real cell's rank, never a mean of ranks), and the server holding
    the cube in memory samples the same cells."""
    copy, mask, codes = ranked_wide
    lazy, memory = cubes.LazyCube(copy), cubes.MemoryCube(copy)
    assert sorted(lazy._percentile_maps) == sorted(lazy._maps) == [1, 2, 4]
    attrs = zarr.open_group(str(copy / cubes.CLIMATOLOGY / cubes.MAPS), mode="r").attrs
    assert attrs[cubes.MULTISCALES]["resampling_method"] == "nearest"
    written = np.where(mask, codes, cubes.FILL)
    for factor in (2, 4):
        assert lazy.percentile_overview_factor("lstm", factor + 1) == factor
        for t in (0, len(WIDE_DAYS) - 1):
            got = lazy.percentile_day("lstm", t, factor)
            assert np.array_equal(got, cubes.sample(written[t], factor))
            assert np.array_equal(got, memory.percentile_day("lstm", t, factor))
            blocks = {
                (y // factor, x // factor): set() for y, x in zip(*np.nonzero(mask), strict=True)
            }
            for y, x in zip(*np.nonzero(mask), strict=True):
                blocks[y // factor, x // factor].add(int(written[t, y, x]))
            assert all(got[b] in ranks for b, ranks in blocks.items())
            assert (got != cubes.FILL).sum() == len(blocks)


def test_percentile_maps_rewritten_from_a_later_day_are_the_same_bytes(ranked_wide, tmp_path):
    """Growth rewrites the percentiles' map layout, overviews included, from the time chunk
    holding its first new day: the files equal those written at once."""
    copy = tmp_path / "wide.zarr"
    shutil.copytree(ranked_wide[0], copy)
    maps = copy / cubes.CLIMATOLOGY / cubes.MAPS

    def files() -> dict:
        return {str(p.relative_to(maps)): p.read_bytes() for p in maps.rglob("*") if p.is_file()}

    written = files()
    assert {k.split("/")[0] for k in written if "/c/" in k} == {"lstm_percentile", "2", "4"}
    shutil.rmtree(maps)
    cubes.write_percentile_maps(copy, 0)
    assert files() == written
    cubes.write_percentile_maps(copy, len(WIDE_DAYS) - 1)
    assert files() == written


def test_a_low_zoom_percentile_tile_reads_a_percentile_overview(
    ranked_wide, shard_reads, monkeypatch
):
    """A z1 drought tile of lstm_percentile reads the sampled x4 level of the percentiles, not
    the full one, and is the same PNG the server holding the cube in memory renders."""
    copy, _, _ = ranked_wide
    style = tiles.TileStyle(date=str(WIDE_DAYS[9].date()), colormap="drought")
    pngs = []
    for in_memory in ("false", "true"):
        monkeypatch.setenv("SMAPX_SERVE_IN_MEMORY", in_memory)
        get_settings.cache_clear()
        cubes.chunk_cache.cache_clear()
        served = catalog.load_cube("wide", str(copy))
        shard_reads.clear()
        pngs.append(tiles.render_tile(served, "lstm_percentile", "WebMercatorQuad", 1, 0, 0, style))
        if in_memory == "false":
            assert shard_reads == [f"{cubes.CLIMATOLOGY}/{cubes.MAPS}/4/lstm_percentile"]
    get_settings.cache_clear()
    assert pngs[0] == pngs[1]


def test_overviews_are_the_full_level_coarsened_to_the_mean_of_valid_cells(wide_cube):
    lazy = cubes.LazyCube(wide_cube)
    assert sorted(lazy._maps) == [1, 2, 4]
    for product in WIDE_PRODUCTS:
        full = lazy.day(product, 9).astype(float)
        full[full == cubes.FILL] = np.nan
        for factor in (2, 4):
            means = (
                xr.DataArray(full, dims=("y", "x"))
                .coarsen(y=factor, x=factor, boundary="pad")
                .mean()
                .values
            )
            got = lazy.overview_day(product, 9, factor).astype(float)
            assert ((got == cubes.FILL) == np.isnan(means)).all()
            valid = ~np.isnan(means)
            assert np.abs(got[valid] - means[valid]).max() <= 0.5  # rounded to the nearest code


def test_a_low_zoom_tile_reads_an_overview_far_smaller_than_the_full_level(wide_cube, monkeypatch):
    """z1 over the cube: pixels ~7.5 cells apart, so the x4 overview (one chunk of the day)
    answers where the full level decodes nine; the tile is the full level coarsened the same
    way, as the server holding the cube in memory coarsens it (same bytes)."""
    served = catalog.load_cube("wide", str(wide_cube))
    reads = []

    async def counted(self, key, prototype, byte_range=None):
        found = await get(self, key, prototype, byte_range)
        if "/c/" in key and found is not None:
            reads.append(len(found.to_bytes()))
        return found

    get = cubes._StrictStore.get
    monkeypatch.setattr(cubes._StrictStore, "get", counted)
    style = tiles.TileStyle(date=str(WIDE_DAYS[9].date()))

    def tile(factor: int | None) -> tuple[bytes, int, int]:
        cubes.chunk_cache.cache_clear()
        reads.clear()
        if factor is not None:
            monkeypatch.setattr(served.reader, "overview_factor", lambda *_: factor)
        png = tiles.render_tile(served, "lstm", "WebMercatorQuad", 1, 0, 0, style)
        return png, len(reads), sum(reads)

    overview, overview_reads, overview_bytes = tile(None)
    full, full_reads, full_bytes = tile(1)
    assert overview != full
    assert overview_reads * 4 <= full_reads and overview_bytes * 4 <= full_bytes, (
        overview_reads,
        full_reads,
        overview_bytes,
        full_bytes,
    )
    env = {"SMAPX_RATE_LIMIT_PER_MINUTE": "0", "SMAPX_RELOAD_SECONDS": "0"}
    urls = [
        ("/v1/tiles/lstm/1/0/0.png", {}),
        ("/v1/tiles/lstm/2/1/1.png", {}),
        ("/v1/tiles/smap/2/1/1.png", {"colormap": "plasma"}),
        ("/v1/tiles/lstm/6/17/25.png", {}),
    ]
    answers = {}
    for how, setting in (("lazy", {}), ("memory", {"SMAPX_SERVE_IN_MEMORY": "true"})):
        with serving([wide_cube], {**env, **setting}) as base, httpx.Client(base_url=base) as c:
            answers[how] = [c.get(u, params={"date": style.date, **p}) for u, p in urls]
    assert [a.status_code for a in answers["lazy"]] == [200] * len(urls)
    assert [a.content for a in answers["lazy"]] == [a.content for a in answers["memory"]]
    assert answers["lazy"][0].content == overview


def test_a_slow_cold_read_does_not_stall_the_health_check(wide_cube, monkeypatch):
    """Reads of the map layout made slow (an object store far away): while a cold tile waits
    on them, /healthz answers in a small share of that wait."""
    delay = 1.0

    async def slow(self, key, prototype, byte_range=None):
        if key.startswith(cubes.MAPS) and "/c/" in key:
            await asyncio.sleep(delay)
        return await get(self, key, prototype, byte_range)

    get = cubes._StrictStore.get
    monkeypatch.setattr(cubes._StrictStore, "get", slow)
    monkeypatch.setenv("SMAPX_RATE_LIMIT_PER_MINUTE", "0")
    monkeypatch.setenv("SMAPX_RELOAD_SECONDS", "0")
    get_settings.cache_clear()
    cubes.chunk_cache.cache_clear()
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(create_app([wide_cube]), host="127.0.0.1", port=port, log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        wait_for_port(port)
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60) as client:
            idle = timed(client, "/healthz")
            with ThreadPoolExecutor(1) as pool:
                began = time.perf_counter()
                cold = pool.submit(
                    client.get, "/v1/tiles/lstm/6/17/25.png", params={"date": "2014-01-05"}
                )
                time.sleep(delay / 4)
                busy = timed(client, "/healthz")
                assert cold.result().status_code == 200
                tile_s = time.perf_counter() - began
    finally:
        server.should_exit = True
        thread.join(30)
        get_settings.cache_clear()
    assert tile_s >= delay
    assert busy < tile_s / 4, (
        f"healthz {busy:.3f} s (idle {idle:.3f} s) during a {tile_s:.1f} s read"
    )


def timed(client: httpx.Client, url: str) -> float:
    began = time.perf_counter()
    assert client.get(url).status_code == 200
    return time.perf_counter() - began


def test_each_generation_records_the_smap_period_servers_read_without_a_scan(
    wide_cube, tmp_path, monkeypatch
):
    record = cubes.generation(wide_cube)["observed"]
    assert record == {"smap": {"start": "2014-01-01", "end": "2014-01-12"}}

    def scan(*_):
        raise AssertionError("scanned the cube's chunks for the SMAP period")

    with monkeypatch.context() as patched:
        patched.setattr(cubes.LazyCube, "observed_days", scan)
        assert catalog.load_cube("wide", str(wide_cube)).smap_period == record["smap"]
    old = tmp_path / "old.zarr"  # published before generations kept the period: scanned
    shutil.copytree(wide_cube, old)
    published = cubes.generation(old)
    del published["observed"]
    (old / cubes.GENERATION).write_text(json.dumps(published))
    assert catalog.load_cube("old", str(old)).smap_period == record["smap"]
    cubes.republish(old)
    assert cubes.generation(old)["observed"] == record


def test_a_product_without_a_value_for_a_whole_shard_still_has_its_map_shards(tmp_path):
    """smap before its launch: its map layout's shards hold no value, and are written all the
    same, so that an absent shard still means damage."""
    store = tmp_path / "early.zarr"
    template = cubes.template(DAYS[:30], ROWS[REGION], COLS[REGION], ("smap", "lstm"))
    cubes.create(store, template)
    for block in cubes.blocks(template):
        shape = [s.stop - s.start for s in (block.time, block.y, block.x)]
        cubes.write_block(
            store, block, {"smap": np.full(shape, np.nan), "lstm": np.full(shape, 0.2)}
        )
    cubes.write_maps(store, 0, 30)
    zarr.consolidate_metadata(str(store))
    cubes.verify(store)
    assert chunk_files(store, "maps/smap")


def test_map_shards_are_the_bytes_zarr_itself_writes(tmp_path):
    """The map layout's shards are encoded by model.product.cube.write_shards, not zarr: the
    same bytes, for a whole shard, one cut by the array's end in time and x, and no value."""
    rng = np.random.default_rng(0)
    group = zarr.open_group(str(tmp_path / "maps.zarr"), mode="w")
    for n_days in (cubes.CHUNK_TIME, 731):
        width = cubes.MAP_SIDE + 12  # one whole shard in x, one cut by the array's end
        codes = (2000 + rng.integers(0, 50, (n_days, cubes.MAP_SIDE, width))).astype(np.int16)
        codes[:, :, :20] = codes[:100] = cubes.FILL
        source = group.create_array(
            f"source{n_days}", shape=codes.shape, chunks=(n_days, 32, 32), dtype="int16"
        )
        ours, theirs = (
            cubes._map_array(group, f"{name}{n_days}", source, 1, n_days)
            for name in ("ours", "zarr")
        )
        cubes.write_shards(ours, 0, 0, codes)
        theirs[...] = codes
        np.testing.assert_array_equal(ours[::50], codes[::50])  # equal bytes: theirs too
        for bx in range(2):
            key = f"c/0/0/{bx}"
            assert (tmp_path / "maps.zarr" / ours.path / key).read_bytes() == (
                tmp_path / "maps.zarr" / theirs.path / key
            ).read_bytes()

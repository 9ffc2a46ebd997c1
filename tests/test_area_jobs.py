"""Bulk area jobs through the HTTP service with a real Redis and a real Celery worker process,
on a cube of random values over Kansas with its climatology: a job over a state, a county and
a GeoJSON feature writes one long CSV and one JSON whose every value is the area routes'
answer, per day and per week; every bad area is refused at submit time with one clear error,
before anything is queued; a job is its owner's."""

import csv
import io
import json
import os

import httpx
import pytest
import redis

from model.product import area_export
from service.areas import ATLAS_DIR
from tests import kansas
from tests.served import start_server, start_worker, wait_done

pytestmark = pytest.mark.integration

KEY = "area-key"
OTHER = "other-key"
SQUARE = {
    "type": "Feature",
    "id": "square",
    "properties": {"name": "a square with a hole"},
    "geometry": {
        "type": "Polygon",
        "coordinates": [
            [[-99.3, 37.6], [-97.1, 37.9], [-96.8, 39.4], [-98.9, 39.7], [-99.3, 37.6]],
            [[-98.4, 38.4], [-97.7, 38.4], [-97.7, 38.9], [-98.4, 38.4]],
        ],
    },
}
REQUEST = {
    "areas": ["state:20", "county:20161", SQUARE],
    "products": ["lstm", "lstm_percentile"],
    "start": "2010-01-20",
    "end": "2010-03-10",
    "formats": ["csv", "json"],
}
CLASSES = ("D0", "D1", "D2", "D3", "D4")


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return kansas.build(tmp_path_factory.mktemp("area-cube") / "kansas.zarr")


@pytest.fixture(scope="module")
def stack(tmp_path_factory, redis_url, store):
    folder = tmp_path_factory.mktemp("area-jobs")
    url = redis_url.rsplit("/", 1)[0] + "/6"
    redis.Redis.from_url(url).flushdb()
    env = {
        "SMAPX_REDIS_URL": url,
        "SMAPX_JOBS_DIR": str(folder / "results"),
        "SMAPX_API_KEYS": f'["{KEY}", "{OTHER}"]',
        "SMAPX_CUBES": f'["{store}"]',
        "SMAPX_AREA_MAX_VERTICES": "200",
        "SMAPX_MAX_JOB_VALUES": "200000",
        "SMAPX_TORCH_THREADS": "1",
    }
    worker = start_worker(env, f"area-jobs-{os.getpid()}@%h")
    server, base = start_server([store], env)
    try:
        with httpx.Client(base_url=base, timeout=60, headers={"X-API-Key": KEY}) as client:
            yield client
    finally:
        for proc in (server, worker):
            proc.terminate()
        for proc in (server, worker):
            proc.wait(30)


def run_job(client, request: dict) -> tuple[dict, dict]:
    """Submit a job, wait until it is done; (its record, {file name: bytes})."""
    r = client.post("/v1/jobs", json=request)
    assert r.status_code == 202, r.text[:300]
    submitted = r.json()
    assert submitted["estimate"]["areas"] == len(request["areas"])
    job = wait_done(client, submitted["id"], timeout=120)
    assert job["state"] == "done", job
    assert job["percent"] == 100.0
    listing = client.get(f"/v1/jobs/{job['id']}/files").json()["files"]
    files = {f["name"]: client.get(f["href"]).content for f in listing}
    assert {f["name"]: f["size"] for f in listing} == {n: len(b) for n, b in files.items()}
    return job, files


def route_answers(client, request: dict) -> dict:
    """Each area's answer from the area routes, by the job's id of the area."""
    params = {
        "start": request["start"],
        "end": request["end"],
        "products": ",".join(request["products"]),
        "period": request.get("period", "day"),
    }
    answers = {}
    for area in request["areas"]:
        if isinstance(area, str):
            r = client.get(f"/v1/areas/{area}/series", params=params)
        else:
            r = client.post("/v1/areas/series", params=params, json=area)
        assert r.status_code == 200, r.text[:300]
        answers[area if isinstance(area, str) else area["id"]] = r.json()
    return answers


def check_rows_equal_the_routes(files: dict, answers: dict, products: list[str]) -> None:
    rows = list(csv.DictReader(io.StringIO(files["areas.csv"].decode())))
    assert list(rows[0]) == ["area", "date", "product", "mean", *CLASSES]
    expected = []
    for area_id, answer in answers.items():
        for product in products:
            for i, day in enumerate(answer["dates"]):
                stats = [answer[product]["mean"][i]]
                stats += [answer[product][c][i] if c in answer[product] else None for c in CLASSES]
                expected.append([area_id, day, product, *stats])
    got = [
        [r["area"], r["date"], r["product"]]
        + [None if r[c] == "" else float(r[c]) for c in ("mean", *CLASSES)]
        for r in rows
    ]
    assert got == expected
    assert any(r[4] is not None and r[4] > 0 for r in got)  # some area is dry some day


def test_an_area_job_writes_the_area_routes_answers(stack):
    job, files = run_job(stack, REQUEST)
    assert set(files) == {"areas.csv", "areas.json"}
    answers = route_answers(stack, REQUEST)
    check_rows_equal_the_routes(files, answers, REQUEST["products"])
    body = json.loads(files["areas.json"])
    assert body["period"] == "day" and body["products"] == REQUEST["products"]
    for described, (area_id, answer) in zip(body["areas"], answers.items(), strict=True):
        assert described["id"] == area_id
        measures = ("area_km2", "covered_km2", "cells")
        assert [described[k] for k in measures] == [answer["area"][k] for k in measures]
        assert described["dates"] == answer["dates"]
        for product in REQUEST["products"]:
            assert described[product] == answer[product]
    names = [a.get("name") for a in body["areas"]]
    assert names == ["Kansas", "Riley", SQUARE["properties"]["name"]]
    assert job["request"]["areas"][0] == "state:20" and "atlas" not in job["request"]


def test_a_weekly_area_job_writes_the_routes_weekly_answers(stack):
    request = {**REQUEST, "period": "week", "end": "2010-04-30", "formats": ["csv"]}
    _, files = run_job(stack, request)
    assert set(files) == {"areas.csv"}
    answers = route_answers(stack, request)
    assert answers["state:20"]["period"] == "week"
    check_rows_equal_the_routes(files, answers, request["products"])


def test_an_area_job_is_its_owners(stack):
    job, _ = run_job(stack, {**REQUEST, "areas": ["county:20161"], "formats": ["json"]})
    other = httpx.Client(base_url=stack.base_url, timeout=30, headers={"X-API-Key": OTHER})
    assert other.get(f"/v1/jobs/{job['id']}").status_code == 404
    listed = {j["id"]: j for j in stack.get("/v1/jobs").json()["jobs"]}
    assert listed[job["id"]]["request"]["areas"] == 1  # a list shows how many areas


def test_progress_is_reported_per_area_and_can_stop_the_job(store, tmp_path):
    """The worker's progress callback hears each area in turn, percent rising to 100; raising
    there stops the job and leaves no result file behind."""
    request = {**REQUEST, "areas": ["state:20", "county:20161"], "formats": ["csv"]}
    heard = []
    files = area_export.export_areas(
        str(store), ATLAS_DIR, request, tmp_path / "out", 200, lambda p, s: heard.append((p, s))
    )
    assert [f.name for f in files] == ["areas.csv"]
    stages = [s for _, s in heard]
    assert stages[0] == "area 1 of 2: state:20" and "area 2 of 2: county:20161" in stages
    assert stages[-1] == "done" and heard[-1][0] == 100.0
    percents = [p for p, _ in heard]
    assert percents == sorted(percents) and percents[0] == 0.0

    def stop(percent, stage):
        if stage.startswith("area 2"):
            raise RuntimeError("cancelled")

    with pytest.raises(RuntimeError, match="cancelled"):
        area_export.export_areas(str(store), ATLAS_DIR, request, tmp_path / "stopped", 200, stop)
    assert list((tmp_path / "stopped").iterdir()) == []


BOWTIE = {
    "type": "Polygon",
    "coordinates": [[[-99.0, 38.0], [-97.0, 39.0], [-97.0, 38.0], [-99.0, 39.0], [-99.0, 38.0]]],
}
FLORIDA = {
    "type": "Polygon",
    "coordinates": [[[-82.0, 28.0], [-81.0, 28.0], [-81.0, 29.0], [-82.0, 28.0]]],
}
MANY_VERTICES = {
    "type": "Polygon",
    "coordinates": [
        [[-99 + 0.001 * i, 38.0 + (0.5 if i % 2 else 0)] for i in range(300)] + [[-99.0, 38.0]]
    ],
}


@pytest.mark.parametrize(
    ("change", "status", "words"),
    [
        ({"areas": ["state:20", "county:99999"]}, 404, "areas[1]: area: no county has FIPS"),
        ({"areas": ["state:2"]}, 422, "areas[0]: area: expected state:FIPS"),
        ({"areas": [BOWTIE]}, 422, "areas[0]: body: invalid polygon: Self-intersection"),
        ({"areas": ["county:20161", FLORIDA]}, 404, "areas[1]: area: polygon:2 covers no cell"),
        ({"areas": [MANY_VERTICES]}, 413, "more than 200 vertices"),
        ({"areas": [{**SQUARE, "id": "=cmd()"}]}, 422, "a Feature's id names its rows"),
        ({"areas": []}, 422, "areas"),
        ({"products": ["lstm", "smap"]}, 422, "not available"),
        ({"start": "2030-01-01", "end": "2030-02-01"}, 404, "outside the cube"),
        ({"period": "week", "end": "2010-01-10", "start": "2010-01-01"}, 404, "no whole week"),
        ({"start": "2010-01-01", "end": "2011-12-31"}, 413, "cell-days"),
    ],
)
def test_bad_area_jobs_are_refused_before_anything_is_queued(stack, change, status, words):
    before = len(stack.get("/v1/jobs").json()["jobs"])
    r = stack.post("/v1/jobs", json={**REQUEST, **change})
    assert r.status_code == status, r.text[:300]
    assert words in r.json()["detail"]
    assert len(stack.get("/v1/jobs").json()["jobs"]) == before

"""Schemathesis over the service's own OpenAPI document, against a real server with a real Redis:
a bounded number of generated requests per operation, valid and invalid, and not one answer a
5xx, not one body outside the documented schema, not one status the document does not list.
Then the batch bodies the document cannot describe, CSV and GeoJSON, fuzzed with hypothesis:
not one 5xx; and what a spreadsheet would run or split in a CSV answer made harmless."""

import csv
import io
import json

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.served import POINT, build_cube, start_server

pytestmark = pytest.mark.integration
# Generated cases per operation: invalid ones mostly meet the same validation (a 422 naming the
# parameter), so fewer of them explore as much as the valid ones do.
EXAMPLES = {GenerationMode.POSITIVE: 25, GenerationMode.NEGATIVE: 10}


@pytest.fixture(scope="module")
def base_url(tmp_path_factory, redis_url):
    """The schema of a server with keys off (every job route reachable), no rate limit, and a
    Redis of its own with no worker (jobs queue and wait)."""
    folder = tmp_path_factory.mktemp("fuzz")
    store = folder / "extended.zarr"
    build_cube(store)
    env = {
        "SMAPX_REDIS_URL": redis_url.rsplit("/", 1)[0] + "/11",
        "SMAPX_JOBS_DIR": str(folder / "results"),
        "SMAPX_RATE_LIMIT_PER_MINUTE": "0",
        "SMAPX_CUBES": "[]",
    }
    proc, url = start_server([store], env)
    try:
        yield url
    finally:
        proc.terminate()
        proc.wait(20)


@pytest.fixture(scope="module")
def api_schema(base_url):
    schema = schemathesis.openapi.from_url(f"{base_url}/openapi.json")
    schema.config.update(base_url=base_url)
    return schema


CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]


def fuzz(operation, mode: GenerationMode, sent: list) -> None:
    """EXAMPLES[mode] cases of one operation; an operation with nothing to make invalid is
    skipped in the negative mode (a route without parameters)."""

    @settings(
        max_examples=EXAMPLES[mode],
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(case=operation.as_strategy(generation_mode=mode))
    def call(case):
        sent.append(operation.label)
        case.call_and_validate(checks=CHECKS)

    try:
        call()
    except Unsatisfiable:
        assert mode == GenerationMode.NEGATIVE, operation.label


@pytest.mark.parametrize("mode", list(GenerationMode), ids=lambda m: m.value)
def test_no_5xx_and_every_answer_as_documented(api_schema, mode):
    """Every operation, EXAMPLES[mode] generated cases each (valid ones, or invalid ones); the
    first failing case fails the test with schemathesis' report of the request and the answer."""
    sent = []
    operations = [result.ok() for result in api_schema.get_all_operations()]
    assert len(operations) >= 15
    for operation in operations:
        fuzz(operation, mode, sent)
    print(f"{mode.value}: {len(sent)} requests over {len(operations)} operations")
    assert len(sent) >= 5 * len(operations)


BATCH_EXAMPLES = 150


def csv_text(rows) -> str:
    out = io.StringIO()
    csv.writer(out).writerows(rows)
    return out.getvalue()


TEXT = st.text(st.sampled_from(list('=+-@\t\r\n,;"[]{}:x0123456789.eE \x00é')), max_size=40)
NUMBER = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(-(10**20), 10**20),
    st.sampled_from([29.0, -103.0, 28.9, -102.9]),
)
CELL = st.one_of(TEXT, NUMBER.map(repr), st.just(""))
CSV_BODY = st.one_of(
    TEXT,
    st.lists(st.lists(CELL, min_size=0, max_size=5), min_size=0, max_size=8).map(
        lambda rows: "\n".join(",".join(r) for r in [["id", "lat", "lon"], *rows])
    ),
    st.lists(st.tuples(CELL, NUMBER, NUMBER), min_size=1, max_size=6).map(
        lambda rows: csv_text([("id", "lat", "lon"), *rows])
    ),
)
VALID_CSV = st.lists(TEXT, min_size=1, max_size=6).map(
    lambda ids: csv_text([("id", "lat", "lon"), *((i, *POINT) for i in ids)])
)
JSON_VALUE = st.recursive(
    st.one_of(st.none(), st.booleans(), NUMBER, TEXT),
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.sampled_from(["a", "id"]), inner)
    ),
    max_leaves=12,
)
FEATURE = st.fixed_dictionaries(
    {
        "type": st.sampled_from(["Feature", "Point", "x"]),
        "properties": st.one_of(st.none(), st.fixed_dictionaries({"id": JSON_VALUE})),
        "geometry": st.one_of(
            JSON_VALUE,
            st.fixed_dictionaries(
                {
                    "type": st.just("Point"),
                    "coordinates": st.one_of(
                        st.lists(NUMBER, max_size=3), st.just([POINT[1], POINT[0]]), JSON_VALUE
                    ),
                }
            ),
        ),
    }
)
VALID_FEATURE = st.fixed_dictionaries(
    {
        "type": st.just("Feature"),
        "properties": st.fixed_dictionaries({"id": JSON_VALUE}),
        "geometry": st.just({"type": "Point", "coordinates": [POINT[1], POINT[0]]}),
    }
)
GEOJSON_BODY = st.one_of(
    JSON_VALUE,
    st.fixed_dictionaries(
        {"type": st.just("FeatureCollection"), "features": st.lists(FEATURE, max_size=5)}
    ),
).map(lambda value: json.dumps(value, allow_nan=True))
VALID_GEOJSON = st.fixed_dictionaries(
    {
        "type": st.just("FeatureCollection"),
        "features": st.lists(VALID_FEATURE, min_size=1, max_size=5),
    }
).map(json.dumps)
CONTENT_TYPE = st.sampled_from(
    ["text/csv", "application/geo+json", "application/json", "text/plain", ""]
)


def test_batch_bodies_never_answer_5xx(base_url):
    """Generated CSV and GeoJSON bodies (broken, hostile and valid ones) under every content
    type, for a JSON and a CSV answer: every answer is 200 or a 4xx problem, never a 5xx."""
    sent, statuses = [], {}

    @settings(
        max_examples=BATCH_EXAMPLES,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(
        body=st.one_of(CSV_BODY, GEOJSON_BODY, VALID_CSV, VALID_GEOJSON),
        content_type=CONTENT_TYPE,
        answer=st.sampled_from(["json", "csv"]),
    )
    def post(body, content_type, answer):
        r = client.post(
            "/v1/series",
            content=body.encode("utf-8", errors="surrogatepass"),
            params={"start": "2015-01-01", "end": "2015-01-03", "format": answer},
            headers={"content-type": content_type},
        )
        sent.append(r.status_code)
        statuses[r.status_code] = statuses.get(r.status_code, 0) + 1
        assert r.status_code < 500, (body, content_type, r.text)
        if r.status_code >= 400:
            assert r.headers["content-type"].startswith("application/problem+json"), r.text
            assert "\n" not in r.json()["detail"]

    with httpx.Client(base_url=base_url, timeout=30) as client:
        post()
    print(f"batch bodies: {len(sent)} requests, statuses {dict(sorted(statuses.items()))}")
    assert len(sent) >= BATCH_EXAMPLES and statuses.get(200, 0) > 0


def test_a_huge_csv_field_or_deep_json_sent_as_csv_is_422(base_url):
    huge = "id,lat,lon\n" + "x" * 200_000 + ",29.0,-103.0\n"
    deep = "[" * 150_000 + "]" * 150_000
    with httpx.Client(base_url=base_url, timeout=30) as client:
        for body in (huge, deep):
            r = client.post("/v1/series", content=body, headers={"content-type": "text/csv"})
            assert r.status_code == 422, r.text
            assert r.json()["detail"].startswith("body: not a CSV of id,lat,lon rows")


INJECTED = ["x\r=1+1", "=1+1", "+1", "-2", "@SUM(A1)", "\tx", "\r=3", "a\nb", "plain"]


@pytest.mark.parametrize("body_type", ["csv", "geojson"])
def test_csv_answers_quote_line_ends_and_neutralise_formulas(base_url, body_type):
    """Ids that would split a CSV row (a lone CR) or run as a formula in a spreadsheet (OWASP
    CSV injection: = + - @ tab CR first) come back quoted, and a formula's with an apostrophe
    before it; the JSON answer keeps every id as sent."""
    if body_type == "csv":
        rows = io.StringIO()
        writer = csv.writer(rows)
        writer.writerow(["id", "lat", "lon"])
        writer.writerows([pid, *POINT] for pid in INJECTED)
        body, content_type = rows.getvalue(), "text/csv"
    else:
        features = [
            {
                "type": "Feature",
                "properties": {"id": pid},
                "geometry": {"type": "Point", "coordinates": [POINT[1], POINT[0]]},
            }
            for pid in INJECTED
        ]
        body = json.dumps({"type": "FeatureCollection", "features": features})
        content_type = "application/geo+json"
    params = {"start": "2015-01-01", "end": "2015-01-02"}
    with httpx.Client(base_url=base_url, timeout=30) as client:
        r = client.post(
            "/v1/series",
            content=body,
            params={**params, "format": "csv"},
            headers={"content-type": content_type},
        )
        as_json = client.post(
            "/v1/series", content=body, params=params, headers={"content-type": content_type}
        )
    assert r.status_code == 200, r.text
    table = list(csv.DictReader(io.StringIO(r.text, newline="")))
    expected = [("'" + p if p[0] in "=+-@\t\r" else p) for p in INJECTED]
    assert [row["id"] for row in table] == [p for p in expected for _ in range(2)]
    assert {row["time"] for row in table} == {"2015-01-01", "2015-01-02"}
    assert [s["cell"]["id"] for s in as_json.json()["series"]] == INJECTED

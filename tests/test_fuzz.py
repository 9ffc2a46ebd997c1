"""Schemathesis over the service's own OpenAPI document, against a real server with a real Redis:
a bounded number of generated requests per operation, valid and invalid, and not one answer a
5xx, not one body outside the documented schema, not one status the document does not list."""

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.served import build_cube, start_server

pytestmark = pytest.mark.integration
EXAMPLES = 25


@pytest.fixture(scope="module")
def api_schema(tmp_path_factory, redis_url):
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
        schema = schemathesis.openapi.from_url(f"{url}/openapi.json")
        schema.config.update(base_url=url)
        yield schema
    finally:
        proc.terminate()
        proc.wait(20)


CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]


def fuzz(operation, mode: GenerationMode, sent: list) -> None:
    """EXAMPLES cases of one operation; an operation with nothing to make invalid is skipped
    in the negative mode (a route without parameters)."""

    @settings(
        max_examples=EXAMPLES,
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
    """Every operation, EXAMPLES generated cases each (valid ones, or invalid ones); the first
    failing case fails the test with schemathesis' report of the request and the answer."""
    sent = []
    operations = [result.ok() for result in api_schema.get_all_operations()]
    assert len(operations) >= 15
    for operation in operations:
        fuzz(operation, mode, sent)
    print(f"{mode.value}: {len(sent)} requests over {len(operations)} operations")
    assert len(sent) >= 5 * len(operations)

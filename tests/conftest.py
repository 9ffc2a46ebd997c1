"""Shared fixtures: the real data samples, a real Redis, small input datasets."""

import os
from pathlib import Path

import pytest

from tests.real_formats import write_products
from tests.twins import make_twin

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"


# Modules, or single tests, that start servers, workers or a browser, or train a network: the
# `integration` marker, so that `pytest -m "not integration"` runs the fast unit tests alone.
INTEGRATION_MODULES = {
    "test_service",
    "test_service_jobs",
    "test_worker",
    "test_webmap",
    "test_train_extend",
    "test_ingest_e2e",
    "test_inference",
    "test_climatology",  # twin-world cubes ranked over their whole record
    "test_report",  # the evaluation and its report, end to end
    "test_tile_cache",  # a second interpreter
}
INTEGRATION_TESTS = {  # the command line in a process of its own, or the whole evaluation
    "test_twin_world_end_to_end",
    "test_cli_with_ismn_archive_over_a_cube",
    "test_cli_bad_input_is_one_line",
    "test_report_run_logs_to_its_file_and_leaves_logging_as_it_was",
    "test_report_files_and_figures",
    "test_cli_bad_bbox_is_one_line_exit_1",
    "test_cli_writes_a_world_and_reports_it",
    "test_same_seed_gives_identical_world_other_seed_differs",
    "test_a_dataset_takes_one_ingest_at_a_time",
}


def pytest_collection_modifyitems(items):
    for item in items:
        module = item.module.__name__.rpartition(".")[2]
        if module in INTEGRATION_MODULES or item.originalname in INTEGRATION_TESTS:
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """../shared/data, or skip: the real samples live beside the project, never inside it."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real data samples not present at {SHARED_DATA}")
    return SHARED_DATA


@pytest.fixture(scope="session")
def conus412(shared_data) -> Path:
    path = shared_data / "conus412"
    if not path.is_dir():
        pytest.skip(f"hydroDL sample not present at {path}")
    return path


@pytest.fixture(scope="session")
def redis_url():
    """SMAPX_REDIS_URL if set, else a private redis-server on a free port for this session (the
    one `smapx extend --workers N` starts when no Redis is configured)."""
    url = os.environ.get("SMAPX_REDIS_URL")
    if url:
        yield url
        return
    from worker.pool import private_redis

    with private_redis() as url:
        yield url


@pytest.fixture(scope="session")
def twin(tmp_path_factory):
    """A small twin world and two quickly trained checkpoints (tests.twins.make_twin)."""
    return make_twin(tmp_path_factory.mktemp("twin"))


@pytest.fixture(scope="session")
def files(tmp_path_factory):
    """150 days of SMAP, NLDAS-2 forcing and Noah files and a sand GeoTIFF in their real formats
    (tests.real_formats.write_products)."""
    return write_products(tmp_path_factory.mktemp("products"))


@pytest.fixture(scope="session")
def demo_cube(tmp_path_factory) -> Path:
    """The demo's cube made by the demo's own stages (cli.demo.make_cube: the twin world, the
    LSTM, the extension with its climatology) over a small region of the demo's, 2000-2020,
    one training epoch, extended in-process."""
    from cli.demo import DemoConfig, make_cube

    config = DemoConfig(
        out=tmp_path_factory.mktemp("demo"),
        bbox=(-99.0, 36.0, -96.0, 39.0),
        max_epochs=1,
        workers=0,
        serve=False,
    )
    return make_cube(config)

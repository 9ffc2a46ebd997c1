"""Shared fixtures: the real data samples, a real Redis, small input datasets, and how the suite
is spread over three worker processes.

Reuse before building: a test that trains, extends, serves or starts workers anew costs seconds
on two cores.
- Session fixtures here: `redis_url` (one private redis-server; take a database of your own,
  `redis_url.rsplit("/", 1)[0] + "/N"`), `twin` (a twin world and two trained checkpoints),
  `files` (real-format SMAP, NLDAS-2, Noah and GeoTIFF files), `demo_cube` (the demo's own
  cube, with a climatology), `shared_data` and `conus412` (the real samples).
- Helpers: tests.served (`build_cube` of known values, `serving`/`start_server` a real server,
  `start_worker` a real worker, `wait_done`), tests.twins (comparing cubes byte for byte),
  tests.pools (the worker pool's world), tests.climatologies, tests.kansas, tests.tiny,
  tests.real_formats.
- Module-scoped servers and workers: start one per module and share it between its tests; a
  test that needs other settings starts its own.
- A module using an expensive session fixture of another module's (as `demo_cube`) goes in
  SHARING below, so that `make test` builds the fixture once; a slow module goes in
  SLOWEST_FIRST.
"""

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"

# One compute thread in every process the tests start (trainings, extensions, workers, servers)
# unless a test says otherwise: three test processes share two cores, and a process spinning
# threads on both cores slows the others. Set before numpy or torch is imported here.
os.environ.setdefault("SMAPX_TORCH_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")


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


# How `make test` runs the suite on two cores (pytest-xdist: `-n 3 --dist loadscope`): a module,
# with its module-scoped servers, workers and cubes, runs whole on one worker process, slowest
# modules first so that the workers finish together. A module that takes more than ~15 s
# (`pytest --durations`) belongs in this list, by its time.
SLOWEST_FIRST = [  # by seconds on one worker (wall: computing and waits), measured at load 6-9
    "test_webmap",  # with test_demo and test_readme, which share its demo cube
    "test_worker",  # 165 s of CPU, 480 s
    "test_liveness",  # 100 s of CPU, 260 s (waits out the default visibility timeout)
    "test_inference",  # 77 s of CPU, 245 s (the ARM64 kernels under emulation)
    "test_lazy",  # 115 s of CPU, 205 s
    "test_fuzz",  # 57 s of CPU, 130 s
    "test_climatology",  # 56 s of CPU, 100 s
    "test_daily",  # 52 s of CPU, 90 s
    "test_security",  # 44 s of CPU, 75 s
    "test_growth",  # 40 s of CPU, 56 s
    "test_job_lifecycle",  # 37 s of CPU, 45-65 s
    "test_nowcast",
    "test_areas",
    "test_reload",
    "test_ingest_e2e",
]
# Modules that share an expensive session fixture run on the same worker, so it is built once.
SHARING = {
    "test_demo": "demo_cube",
    "test_readme": "demo_cube",
    "test_stac": "demo_cube",
    "test_webmap": "demo_cube",
    "test_area_jobs": "files",
    "test_daily": "files",
    "test_ingest_e2e": "files",
    "test_climatology": "twin",
    "test_growth": "twin",
    "test_nowcast": "twin",
    "test_reload": "twin",
}
# expensive session fixtures (demo_cube ~15 s, files ~4 s, twin ~2 s): their users are in SHARING
SHARED_FIXTURES = {"demo_cube", "files", "twin"}


def work_unit(nodeid: str) -> str:
    """What a test runs with on one worker: its module, or its module's SHARING name."""
    module = Path(nodeid.split("::", 1)[0]).stem
    return SHARING.get(module, module)


def run_order(item: pytest.Item) -> int:
    unit = work_unit(item.nodeid)
    listed = [k for k, module in enumerate(SLOWEST_FIRST) if SHARING.get(module, module) == unit]
    return min(listed, default=len(SLOWEST_FIRST))


def pytest_collection_modifyitems(items):
    for item in items:
        module = item.module.__name__.rpartition(".")[2]
        if module in INTEGRATION_MODULES or item.originalname in INTEGRATION_TESTS:
            item.add_marker(pytest.mark.integration)
    items.sort(key=run_order)  # stable: a module's tests keep their order


def pytest_xdist_make_scheduler(config, log):
    """--dist loadscope, with the modules of one SHARING name as one unit of work."""
    if config.getvalue("dist") != "loadscope":
        return None
    from xdist.scheduler import LoadScopeScheduling

    class ByWorkUnit(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return work_unit(nodeid)

    return ByWorkUnit(config, log)


@pytest.fixture(scope="session", autouse=True)
def one_torch_thread():
    """torch computes on one thread in the test process, whatever ran before (training sets its
    own count and keeps it): two test processes on two cores must not spin against each other,
    and a test's result must not depend on the order tests run in. A test that needs more
    threads sets them itself."""
    import torch

    torch.set_num_threads(1)


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
    from tests.twins import make_twin

    return make_twin(tmp_path_factory.mktemp("twin"))


@pytest.fixture(scope="session")
def files(tmp_path_factory):
    """150 days of SMAP, NLDAS-2 forcing and Noah files and a sand GeoTIFF in their real formats
    (tests.real_formats.write_products)."""
    from tests.real_formats import write_products

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

"""The layers keep their direction (cli -> service -> worker -> model) and no module imports
itself back through others: read from the source, so a violation fails here before it tangles."""

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LAYERS = ("model", "worker", "service", "cli")  # each may import only those before it
# model/'s floors (docs/architecture.md): a subpackage imports only floors below its own; its
# top-level modules (settings, errors, grid, dataset, metrics, ...) are the ground
MODEL_FLOORS = {
    "ground": 0,
    "sources": 1,
    "world": 1,
    "training": 2,
    "engine": 3,
    "product": 4,
    "production": 5,
    "evaluation": 5,
}


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def project_modules() -> dict[str, Path]:
    return {
        module_name(path): path
        for layer in LAYERS
        for path in (ROOT / layer).rglob("*.py")
        if "vendor" not in path.parts
    }


def imported(path: Path, modules: dict[str, Path]) -> set[str]:
    """Project modules that `path` imports, at any depth of the file (lazy imports count)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
        else:
            continue
        found.update(name for name in names if name in modules)
    return found


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    modules = project_modules()
    return {name: imported(path, modules) - {name} for name, path in modules.items()}


def test_layers_import_only_the_layers_below(graph):
    rank = {layer: i for i, layer in enumerate(LAYERS)}
    upward = [
        f"{module} imports {target}"
        for module, targets in graph.items()
        for target in targets
        if rank[target.split(".")[0]] > rank[module.split(".")[0]]
    ]
    assert not upward


def model_floor(module: str) -> str:
    """The floor of a model module: its subpackage, or the ground for model's own modules."""
    parts = module.split(".")
    return parts[1] if len(parts) > 2 or (ROOT / "model" / parts[-1]).is_dir() else "ground"


def upward_in_model(graph: dict[str, set[str]]) -> list[str]:
    """Imports of a model module from a floor of model/ not below its own."""
    return [
        f"{module} imports {target}"
        for module, targets in graph.items()
        if module.startswith("model.")
        for target in targets
        if target.startswith("model")
        and model_floor(target) != model_floor(module)
        and MODEL_FLOORS[model_floor(target)] >= MODEL_FLOORS[model_floor(module)]
    ]


def test_model_subpackages_import_only_the_floors_below(graph):
    assert not upward_in_model(graph)


def test_every_model_subpackage_has_a_floor():
    packages = {p.name for p in (ROOT / "model").iterdir() if (p / "__init__.py").exists()}
    assert packages == set(MODEL_FLOORS) - {"ground"}


def test_an_upward_import_inside_model_is_caught():
    graph = {
        "model.training.train": {"model.engine", "model.grid"},
        "model.engine": {"model.training"},
    }
    assert upward_in_model(graph) == ["model.training.train imports model.engine"]


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(node):
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in graph.get(node, ()):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_no_import_cycles(graph):
    assert cycles(graph) == []


def test_the_cycle_finder_finds_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_the_http_layer_never_names_zarr_paths():
    """The cube module owns the Zarr layout: the service reads cubes through it."""
    offenders = [
        str(path.relative_to(ROOT))
        for path in (ROOT / "service").rglob("*.py")
        if "zarr.json" in path.read_text() or "import zarr" in path.read_text()
    ]
    assert not offenders


def modules_imported(source: str) -> list[str]:
    """The modules an import statement names, `from tests import test_x` and `import
    tests.test_x` included, reduced to their last part."""
    names = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom) and node.module:
            names.append(node.module)
            names += [f"{node.module}.{alias.name}" for alias in node.names]
        elif isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
    return [name.rpartition(".")[2] for name in names]


def test_no_test_module_imports_another():
    """Shared helpers live in their own modules (tests/served.py, ...), fixtures in conftest."""
    offenders = [
        f"{path.name} imports {name}"
        for path in sorted((ROOT / "tests").glob("*.py"))
        for name in modules_imported(path.read_text())
        if name.startswith("test_") or name == "conftest"
    ]
    assert not offenders


def test_every_form_of_importing_a_test_module_is_seen():
    sources = ["from tests import test_a", "import tests.test_a", "from tests.test_a import x"]
    assert all("test_a" in modules_imported(s) for s in sources)


def test_loggers_are_named_after_their_modules():
    """logging.getLogger(__name__) everywhere, so that a handler on a package (the report's on
    model.evaluation) hears its modules; names of our own making drifted apart before."""
    named = [
        f"{path.relative_to(ROOT)}:{node.lineno}"
        for layer in LAYERS
        for path in (ROOT / layer).rglob("*.py")
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.Call)
        and getattr(node.func, "attr", None) == "getLogger"
        and node.args
        and isinstance(node.args[0], ast.Constant)
        and str(node.args[0].value).split(".")[0] in ("smapx", *LAYERS)
        and path.name != "report.py"  # the one handler attached to a package's logger
    ]
    assert not named


def test_benchmarks_import_what_the_test_helpers_define():
    """bench/ scripts borrow the suite's helpers, often inside a function that only a full run
    reaches: every name they import from tests/ must exist there."""
    import importlib

    missing = [
        f"{path.name}: {node.module}.{alias.name}"
        for path in sorted((ROOT / "bench").glob("*.py"))
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("tests")
        for alias in node.names
        if not hasattr(importlib.import_module(node.module), alias.name)
    ]
    assert not missing


def test_every_test_module_takes_a_redis_database_of_its_own():
    """Where SMAPX_REDIS_URL is set, both pytest workers share one Redis: two modules on one
    database number would consume, and flush, each other's queues."""
    pattern = re.compile(r'rsplit\("/", 1\)\[0\] \+ "/(\d+)"|database\(redis_url, (\d+)\)')
    taken: dict[str, list[str]] = {}
    for path in sorted((ROOT / "tests").glob("test_*.py")):
        for match in pattern.finditer(path.read_text()):
            taken.setdefault(match.group(1) or match.group(2), []).append(path.name)
    assert taken, "no database found: the pattern no longer matches how tests take one"
    shared = {n: names for n, names in taken.items() if len(set(names)) > 1}
    assert not shared, f"databases taken by more than one module: {shared}"


def fixtures_asked_for(path: Path) -> set[str]:
    """The names a test module's functions take as arguments: the fixtures it asks for."""
    functions = (
        node
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
    )
    return {arg.arg for f in functions for arg in f.args.args}


def conftest_value(name: str):
    """A literal assigned in tests/conftest.py, read from its source (no test imports it)."""
    tree = ast.parse((ROOT / "tests" / "conftest.py").read_text())
    (value,) = [
        node.value
        for node in tree.body
        if isinstance(node, ast.Assign) and [t.id for t in node.targets] == [name]
    ]
    return ast.literal_eval(value)


def test_every_user_of_an_expensive_session_fixture_shares_a_worker():
    """A module using the demo cube outside SHARING runs on the other pytest worker, which
    builds the cube a second time (15-25 s; test_stac did)."""
    shared, sharing = conftest_value("SHARED_FIXTURES"), conftest_value("SHARING")
    users = {
        path.stem
        for path in (ROOT / "tests").glob("test_*.py")
        if fixtures_asked_for(path) & shared
    }
    assert users, "no user found: the fixtures' names no longer match"
    assert users <= set(sharing), f"add to SHARING in tests/conftest.py: {users - set(sharing)}"

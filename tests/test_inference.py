"""The fast inference engine against the float32 torch.nn.LSTM network it replaces."""

import dataclasses
import logging
import os
import platform
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from model import engine
from model.engine import (
    CACHE_LINE,
    INT32_MAX,
    KERNEL_DIR,
    KERNELS,
    LAYOUTS,
    TOLERANCE,
    WIDE_ACTIVATION_LEVELS,
    Engine,
    KernelMember,
    KernelSource,
    _bf16_parts,
    _levels_within_int32,
    _loaded,
    _quantise_rows,
    choose,
    instruction_set,
    kernel,
    kernel_arrays,
    kernel_ladder,
    open_kernel,
)
from model.engine.inference import predict
from model.engine.kernels import (
    ARM64,
    BUILDS,
    INSTRUCTION_SETS,
    X86_64,
    KernelBuild,
    compile_defines,
)
from model.errors import InputError
from model.training import checkpoint
from model.training.checkpoint import Checkpoint
from model.training.network import SoilMoistureLSTM
from model.training.normalize import Normalizer
from model.training.reference import probe_references, reference

TARGET_STD = 0.124  # conus412's SMAP standard deviation, m3/m3
KERNEL_MISSING = {
    "int8": "CPU without AVX-512 VNNI",
    "int16": "CPU without AVX-512 VNNI",
    "bf16x3": "CPU without AMX (or a kernel without tile permission)",
}
# the fastest kernel precision this CPU runs; None where none does (test_this_cpu_runs_... fails)
FASTEST = next(iter(kernel_ladder("int8")), None)
needs_kernel = pytest.mark.skipif(FASTEST is None, reason="no inference kernel runs on this CPU")


def skip_unless_runs(precision: str, isa: str = "auto") -> None:
    """Skips, with the reason, a reduced precision or instruction set this CPU cannot run."""
    if isa != "auto" and kernel_ladder("int8", isa) == []:
        pytest.skip(f"CPU without {INSTRUCTION_SETS[isa]}")
    if precision in KERNEL_MISSING and kernel(precision, isa) is None:
        pytest.skip(KERNEL_MISSING[precision])


def cpu_flags() -> set[str]:
    """The instruction-set flags the operating system reports for this CPU (Linux; elsewhere
    NEON on ARM64, nothing known on x86-64)."""
    if not Path("/proc/cpuinfo").is_file():
        return {"asimd"} if platform.machine().lower() in ("arm64", "aarch64") else set()
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith(("flags", "Features")):
            return set(line.partition(":")[2].split())
    return set()


def make_checkpoint(
    seed: int = 0, members: int = 1, weight_scale: float = 1.0, hidden: int = 256
) -> Checkpoint:
    """A real-size network (19 inputs, hidden 256 unless told) with random weights;
    `weight_scale` enlarges the LSTM and head weights towards what training produces."""
    normalizer = Normalizer(
        [f"f{i}" for i in range(7)],
        [f"s{i}" for i in range(12)],
        [0.0] * 7,
        [1.0] * 7,
        [0.0] * 12,
        [1.0] * 12,
        0.2,
        TARGET_STD,
    )
    states = []
    for k in range(members):
        torch.manual_seed(seed + k)
        state = SoilMoistureLSTM(normalizer.n_inputs, hidden).state_dict()
        states.append(
            {
                name: value * weight_scale if name.startswith(("lstm.weight", "head")) else value
                for name, value in state.items()
            }
        )
    return Checkpoint({"hidden": hidden, "dropout": 0.5}, normalizer, states)


def inputs(cells: int, days: int, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((cells, days, 19), np.float32)


@pytest.fixture(scope="module")
def ckpt():
    return make_checkpoint(members=2)


@pytest.mark.parametrize(
    "isa, precision, bound",
    [
        ("auto", "int8", TOLERANCE),
        ("auto", "int16", 2e-4),
        ("auto", "bf16x3", 2e-5),
        ("auto", "float32", 1e-5),
        ("avx2", "float32", 1e-5),
    ],
)
def test_engine_matches_the_float32_network(ckpt, isa, precision, bound):
    skip_unless_runs(precision, isa)
    engine = Engine(ckpt, "cpu", precision, isa)
    assert engine.chosen == [precision, precision]
    if isa != "auto":
        assert {path.instruction_set for path in engine.paths} == {INSTRUCTION_SETS[isa]}
    x = inputs(37, 300)
    got = engine.run(x)
    assert np.isfinite(got).all()
    error = np.abs(got - reference(ckpt, x)).max() * TARGET_STD
    assert error <= bound
    assert got.std() > 0.01  # a network that moves, not a constant that matches trivially


@pytest.mark.parametrize(
    "isa, precision",
    [("auto", "int8"), ("auto", "int16"), ("auto", "bf16x3"), ("avx2", "float32")],
)
def test_a_cell_gets_the_same_bytes_whatever_shares_its_block(ckpt, isa, precision):
    skip_unless_runs(precision, isa)
    engine = Engine(ckpt, "cpu", precision, isa)
    assert engine.chosen == [precision, precision]
    assert all(path.kernel != "torch.nn.LSTM" for path in engine.paths)
    x = inputs(141, 120)  # the AMX kernel passes 64 cells at a time in row blocks of 16
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(4)  # whatever the machine: each member's cells on two threads
        whole = engine.run(x)
        for lo, hi in [(0, 1), (3, 8), (5, 38), (40, 41), (60, 133)]:
            np.testing.assert_array_equal(engine.run(x[lo:hi]), whole[lo:hi])
        torch.set_num_threads(1)
        np.testing.assert_array_equal(engine.run(x), whole)
    finally:
        torch.set_num_threads(threads)


@pytest.mark.parametrize(
    "isa, precision",
    [("auto", "int8"), ("auto", "bf16x3"), ("auto", "float32"), ("avx2", "float32")],
)
def test_warmup_gives_the_days_after_it_of_a_full_run(ckpt, isa, precision):
    skip_unless_runs(precision, isa)
    engine = Engine(ckpt, "cpu", precision, isa)
    x = inputs(9, 200)
    np.testing.assert_array_equal(engine.run(x, warmup=150), engine.run(x)[:, 150:])


def test_predict_unscales_the_ensemble_mean(ckpt):
    x = inputs(6, 90)
    got = predict(ckpt, x, warmup=30)
    expected = ckpt.normalizer.unscale_target(reference(ckpt, x, warmup=30))
    assert got.shape == (6, 60)
    assert np.abs(got - expected).max() <= TOLERANCE


def predict_in_another_process(
    folder, ckpt: Checkpoint, x: np.ndarray, warmup: int, without_torch: bool = False
) -> np.ndarray:
    """predict() of the checkpoint, saved and loaded again, in a fresh Python process; with
    `without_torch`, that process fails if it imported torch."""
    checkpoint.save(folder / "model", ckpt)
    np.save(folder / "x.npy", x)
    script = (
        "import sys, numpy as np; from model.training import checkpoint;"
        "from model.engine.inference import predict;"
        "d = sys.argv[1]; np.save(d + '/y.npy', predict(checkpoint.load(d + '/model'),"
        f" np.load(d + '/x.npy'), warmup={warmup}))"
    )
    if without_torch:
        script += "; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", script, str(folder)], check=True)
    return np.load(folder / "y.npy")


@needs_kernel
def test_same_block_in_another_process_gives_the_same_bytes(tmp_path, ckpt):
    x = inputs(23, 150)
    elsewhere = predict_in_another_process(tmp_path, ckpt, x, 50)
    here = predict(checkpoint.load(tmp_path / "model"), x, warmup=50)
    assert elsewhere.tobytes() == here.tobytes()


@needs_kernel
def test_a_checkpoint_with_saved_probe_outputs_runs_on_the_kernels_without_torch(tmp_path, ckpt):
    probe = inputs(8, 120)
    saved = dataclasses.replace(ckpt, probe=probe, probe_reference=probe_references(ckpt, probe))
    x = inputs(23, 150)
    elsewhere = predict_in_another_process(tmp_path, saved, x, 50, without_torch=True)
    expected = predict(ckpt, x, warmup=50)
    assert elsewhere.tobytes() == expected.tobytes()


def test_bf16_splits_round_like_torch():
    w = np.random.default_rng(3).standard_normal((64, 48)).astype(np.float32) * 0.3
    w[0, :4] = [1.00390625, 1.01171875, -3.0078125, 0.0]  # ties to even, up and down
    hi = torch.from_numpy(w).to(torch.bfloat16)
    lo = (torch.from_numpy(w) - hi.float()).to(torch.bfloat16)
    expected = torch.stack([hi, lo]).view(torch.int16).numpy().view(np.uint16)
    np.testing.assert_array_equal(_bf16_parts(w), expected)


def test_a_network_8_bits_cannot_hold_runs_at_a_finer_precision_within_tolerance():
    skip_unless_runs("int8")
    strong = make_checkpoint(weight_scale=2.0)
    engine = Engine(strong, "cpu", "auto")
    assert engine.chosen == ["int16"]
    x = inputs(16, 300)
    assert np.abs(engine.run(x) - reference(strong, x)).max() * TARGET_STD <= TOLERANCE


@needs_kernel
def test_the_engine_probes_on_the_inputs_the_checkpoint_saved(ckpt, monkeypatch):
    def synthetic(_):
        raise AssertionError("the synthetic probe is only for checkpoints without one")

    monkeypatch.setattr(engine, "probe_inputs", synthetic)
    with_probe = dataclasses.replace(ckpt, probe=inputs(8, 120))
    assert Engine(with_probe, "cpu", FASTEST).chosen == [FASTEST, FASTEST]


@needs_kernel
def test_the_engine_checks_against_the_float32_outputs_the_checkpoint_saved(ckpt, monkeypatch):
    probe = inputs(8, 120)
    expected = probe_references(ckpt, probe)

    def recomputed(*_):
        raise AssertionError("saved probe outputs are not computed again")

    monkeypatch.setattr(engine, "probe_references", recomputed)
    saved = dataclasses.replace(ckpt, probe=probe, probe_reference=expected)
    assert all(path.kernel != "torch.nn.LSTM" for path in Engine(saved, "cpu", FASTEST).paths)
    shifted = dataclasses.replace(saved, probe_reference=expected + 0.01 / TARGET_STD)
    assert {path.kernel for path in Engine(shifted, "cpu", FASTEST).paths} == {"torch.nn.LSTM"}


@needs_kernel
def test_a_probe_result_is_kept_for_the_next_process_and_only_for_the_same_member(
    ckpt, tmp_path, monkeypatch
):
    monkeypatch.setattr(engine, "_engine_dir", lambda: tmp_path)
    probe = inputs(8, 120)
    saved = dataclasses.replace(ckpt, probe=probe, probe_reference=probe_references(ckpt, probe))
    assert Engine(saved, "cpu", FASTEST).chosen == [FASTEST, FASTEST]
    assert len(list(tmp_path.glob("probe-*"))) == 2

    def not_again(*_):
        raise AssertionError("a kept probe result is not computed again")

    monkeypatch.setattr(KernelMember, "run", not_again)
    again = Engine(saved, "cpu", FASTEST)
    assert again.chosen == [FASTEST, FASTEST]
    np.testing.assert_array_equal(
        again.run(inputs(5, 40)), Engine(saved, "cpu", FASTEST).run(inputs(5, 40))
    )
    other = dataclasses.replace(saved, probe_reference=saved.probe_reference + 1e-6)
    with pytest.raises(AssertionError, match="not computed again"):
        Engine(other, "cpu", FASTEST)


@needs_kernel
def test_a_kept_probe_result_is_not_reused_by_a_kernel_rebuilt_from_other_source(ckpt):
    member = KernelMember(ckpt.state_dicts[0], FASTEST)
    probe = inputs(4, 30)
    before = member.digest(probe)

    class Rebuilt:  # the same library file, rebuilt from changed C source
        _name = member.lib._name

        @staticmethod
        def smapx_source_digest() -> bytes:
            return b"0123456789abcdef"

    member.lib = Rebuilt()
    assert member.digest(probe) != before


def test_16_bit_rows_use_every_level_int32_leaves_them():
    w = make_checkpoint(weight_scale=2.0).state_dicts[0]["lstm.weight_hh_l0"].copy()
    w[0, 0] = 50 * np.abs(w).max()  # an outlier row gets its own scale
    q, scale = _quantise_rows(w, _levels_within_int32(w), np.int16)
    worst_sum = np.abs(q.astype(np.int64)).sum(axis=1) * WIDE_ACTIVATION_LEVELS
    assert worst_sum.max() <= INT32_MAX  # no activation vector can overflow a row's sum
    top = np.abs(q).max(axis=1)
    assert top[0] == 32767  # one large weight, small L1 norm: the finest scale
    assert (
        np.median(top) > 0.9 * WIDE_ACTIVATION_LEVELS
    )  # uniform rows: about as fine as activations
    assert np.abs(q * scale[:, None] - w).max() <= scale.max() / 2 + 1e-9


def test_the_ladder_runs_from_fast_to_precise_and_int16_takes_the_tiles_where_amx_runs():
    skip_unless_runs("bf16x3")
    skip_unless_runs("int8")
    assert kernel_ladder("int8") == ["int8", "int16", "bf16x3"]
    assert kernel_ladder("int16") == ["int16", "bf16x3"]
    assert kernel("int8")[1].build.source == kernel("int16")[1].build.source == "kernel_amx_int.c"
    assert choose("cpu", "bf16x3")[1] == "bf16x3"


MACHINE = platform.machine().lower()
# Kernels whose instructions the suite can emulate in portable C (model/engine/emulated.h): built
# with SMAPX_EMULATE, they run, and are tested, on CPUs without those instructions.
EMULATED_SETS = ("amx", "avx512_vnni")
IMPLEMENTATIONS = [
    KernelSource(build, *LAYOUTS[build.source, build.precision])
    for build in BUILDS
    if MACHINE in build.machines or build.instruction_set in EMULATED_SETS
]


def emulated_library(build: KernelBuild, folder: Path) -> Path:
    """A kernel built with SMAPX_EMULATE: its AVX-512 and AMX operations in portable C, which
    any CPU runs (integers wrapping as the hardware's, -fwrapv)."""
    library = folder / f"{build.name}.so"
    defines = compile_defines(build, KERNEL_DIR)
    subprocess.run(
        [
            "gcc", "-O2", "-march=native", "-fwrapv", "-Wno-psabi", "-shared", "-fPIC",
            "-DSMAPX_EMULATE", *(f"-D{name}={value}" for name, value in defines),
            "-o", str(library), str(KERNEL_DIR / build.source), "-lm",
        ],
        check=True,
    )  # fmt: skip
    return library


def implementation(source: KernelSource, folder: Path) -> tuple[object, bool]:
    """The library of a kernel that runs here, natively or else under emulation, and whether
    emulated; skips, with the reason, one that does neither."""
    build = source.build
    if MACHINE in build.machines and (lib := _loaded(source)) is not None:
        return lib, False
    if build.instruction_set not in EMULATED_SETS:
        pytest.skip(f"{build.name}: CPU without {INSTRUCTION_SETS[build.instruction_set]}")
    if not shutil.which("gcc"):
        pytest.skip(f"{build.name}: neither this CPU nor gcc to build it under emulation")
    lib = open_kernel(emulated_library(build, folder), source)
    assert lib is not None, f"{build.name} built under emulation did not load"
    return lib, True


@pytest.mark.parametrize("source", IMPLEMENTATIONS, ids=[s.build.name for s in IMPLEMENTATIONS])
def test_every_implementation_matches_the_network_whatever_shares_its_block(ckpt, source, tmp_path):
    """Every kernel, each size: natively where this CPU runs it, else the AVX-512 and AMX ones
    with their instructions emulated (fewer cells and days: ~100x slower), against the float32
    network, and a cell's bytes whatever shares its block."""
    lib, emulated = implementation(source, tmp_path)
    build = source.build
    if build.hidden != ckpt.config["hidden"]:
        ckpt = make_checkpoint(members=1, hidden=build.hidden)
    state = ckpt.state_dicts[0]
    member = KernelMember(state, build.precision, source, library=lib)
    # the AMX kernels pass 64 cells at a time in row blocks of 16: two passes, the last one short
    x = inputs(70, 40) if emulated else inputs(141, 150)
    whole = member.run(x, 20)
    expected = reference(dataclasses.replace(ckpt, state_dicts=[state]), x, 20)
    if emulated:  # ~5x the error they give (the hardware's rcp14 estimate is exact here)
        bound = {"int8": 5e-4, "int16": 4e-5, "bf16x3": 1e-6}[build.precision]
    else:
        bound = {"int8": TOLERANCE}.get(build.precision, 2e-4)
    assert np.abs(whole - expected).max() * TARGET_STD <= bound
    assert whole.std() > 0.01
    for lo, hi in [(0, 1), (5, 38), (60, len(x) - 8)]:
        np.testing.assert_array_equal(member.run(x[lo:hi], 20), whole[lo:hi])
    misaligned = {
        name: a.ctypes.data % CACHE_LINE
        for name, a in member.arrays.items()
        if a.ctypes.data % CACHE_LINE
    }
    assert misaligned == {}, "weights split the kernel's 64-byte loads over two cache lines"


@pytest.fixture
def emulated_cpu(monkeypatch, tmp_path):
    """Makes the engine see a CPU with the given instruction sets: their kernels are built under
    emulation (on demand) and loaded in place of the package's; the others do not load."""
    if MACHINE not in X86_64 or not shutil.which("gcc"):
        pytest.skip("the AVX-512 and AMX kernels are dispatched on x86-64 (and built with gcc)")
    monkeypatch.setattr(engine, "_engine_dir", lambda: tmp_path / "probes")
    instruction_sets: tuple[str, ...] = ()
    libraries = {}

    def loaded(source: KernelSource):
        build = source.build
        if build.instruction_set not in instruction_sets:
            return None
        if build.name not in libraries:
            libraries[build.name] = open_kernel(emulated_library(build, tmp_path), source)
        return libraries[build.name]

    def use(*sets: str) -> None:
        nonlocal instruction_sets
        instruction_sets = sets
        instruction_set.cache_clear()
        kernel.cache_clear()

    monkeypatch.setattr(engine, "_loaded", loaded)
    yield use
    instruction_set.cache_clear()
    kernel.cache_clear()


@pytest.mark.parametrize(
    "cpu, expected",
    [
        (("amx", "avx512_vnni", "avx2"), ("kernel_amx_int8_h128", "kernel_amx_int16_h128")),
        (("avx512_vnni", "avx2"), ("kernel_vnni_int8_h128", "kernel_vnni_int16_h128")),
    ],
)
def test_the_default_network_runs_the_integer_kernels_of_an_avx512_or_amx_cpu(
    emulated_cpu, cpu, expected
):
    """The 128-unit default on a CPU with AMX, or with AVX-512 VNNI only (their instructions
    emulated): int8 where it holds, else int16, on that CPU's kernels, within tolerance."""
    emulated_cpu(*cpu)
    assert instruction_set() == cpu[0]
    probe = inputs(4, 30)
    for weight_scale, path in zip([1.0, 3.0], expected, strict=True):  # 8 bits fail at 3x
        small = make_checkpoint(hidden=128, weight_scale=weight_scale)
        saved = dataclasses.replace(
            small, probe=probe, probe_reference=probe_references(small, probe)
        )
        chosen = Engine(saved, "cpu", "auto")
        assert [p.kernel for p in chosen.paths] == [path]
        x = inputs(5, 40)
        assert np.abs(chosen.run(x) - reference(small, x)).max() * TARGET_STD <= TOLERANCE


def test_choose_checks_requests_and_falls_back_to_what_the_machine_has():
    with pytest.raises(InputError, match="unknown inference precision"):
        choose("cpu", "int4")
    with pytest.raises(InputError, match="unknown device"):
        choose("tpu", "auto")
    device, precision = choose("cpu", "auto")
    assert device == "cpu"
    assert precision == (FASTEST or "float32")
    if torch.cuda.is_available():
        device, precision = choose("auto", "int8")
        assert device == "cuda" and precision in ("bfloat16", "float32")
    else:
        with pytest.raises(InputError, match="no GPU"):
            choose("cuda", "auto")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no GPU")
def test_gpu_engine_matches_the_float32_network(ckpt):
    engine = Engine(ckpt, "cuda", "auto")
    x = inputs(37, 300)
    assert np.abs(engine.run(x) - reference(ckpt, x)).max() * TARGET_STD <= TOLERANCE


def test_predict_rejects_inputs_that_do_not_fit(ckpt):
    with pytest.raises(InputError, match=r"\(cell, time, 19\)"):
        predict(ckpt, np.zeros((3, 10, 5), np.float32))
    with pytest.raises(InputError, match="warm-up"):
        predict(ckpt, inputs(3, 10), warmup=10)


EXPECTED_INSTRUCTION_SET = [  # (CPU flags, kernels it must run), fastest first
    ({"amx_tile", "amx_int8", "amx_bf16", "avx512_bf16"}, "amx"),
    ({"avx512f", "avx512bw", "avx512vl", "avx512_vnni", "fma"}, "avx512_vnni"),
    ({"avx2", "fma"}, "avx2"),
    ({"asimd"}, "neon"),
]


def test_this_cpu_runs_its_kernels():
    flags = cpu_flags()
    expected = next((isa for needed, isa in EXPECTED_INSTRUCTION_SET if needed <= flags), None)
    if expected is None:
        pytest.skip(f"no inference kernel for this CPU ({platform.machine()})")
    if expected == "amx" and instruction_set() == "avx512_vnni":
        pytest.skip("CPU with AMX whose kernel grants no tile permission: the VNNI kernels run")
    assert instruction_set() == expected, "this CPU has a kernel, but it did not load"
    engine = Engine(make_checkpoint(members=2), "cpu", "auto")
    assert {path.instruction_set for path in engine.paths} == {INSTRUCTION_SETS[expected]}
    assert all(path.kernel.startswith("kernel_") for path in engine.paths)


@pytest.mark.parametrize("hidden", [128, 64])
def test_a_smaller_network_runs_on_the_kernel_built_for_its_size(hidden):
    if instruction_set() is None:
        pytest.skip("no inference kernel runs on this CPU")
    small = make_checkpoint(members=1, hidden=hidden)
    engine = Engine(small, "cpu", "auto")
    x = inputs(50, 90)
    error = np.abs(engine.run(x, 10) - reference(small, x, 10)).max() * TARGET_STD
    assert error <= TOLERANCE
    assert engine.paths[0].instruction_set == INSTRUCTION_SETS[instruction_set()]
    assert engine.paths[0].kernel.endswith(f"_h{hidden}")


def test_the_engine_logs_what_runs_each_member(ckpt, caplog):
    caplog.set_level(logging.INFO, logger="model.engine")
    engine = Engine(ckpt, "cpu", "auto")
    logged = [r.getMessage() for r in caplog.records if r.getMessage().startswith("member ")]
    assert logged == [f"member {k} runs on {path}" for k, path in enumerate(engine.paths)]
    precision = FASTEST or "float32"
    assert all(path.precision == precision for path in engine.paths)
    assert all(f", {precision})" in line for line in logged)


@pytest.fixture
def kernels_from(monkeypatch):
    """Loads the kernels from another folder for one test, and forgets them afterwards."""

    def forget() -> None:
        for cached in (_loaded, kernel, instruction_set):
            cached.cache_clear()

    def use(folder: Path) -> None:
        forget()
        monkeypatch.setattr(engine, "KERNEL_DIR", folder)

    yield use
    monkeypatch.undo()
    forget()


def only_kernel_warnings(caplog) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.levelno == logging.WARNING and "inference kernel" in r.getMessage()
    ]


@pytest.mark.parametrize(
    "damage, reason",
    [
        ("missing", "was not built when smapx was installed"),
        ("broken", "did not load"),
        ("stale", "is older than its C source"),
    ],
)
def test_a_kernel_that_does_not_load_falls_back_with_one_warning(
    ckpt, tmp_path, kernels_from, caplog, damage, reason
):
    fastest = instruction_set()
    if fastest is None:
        pytest.skip("no inference kernel runs on this CPU")
    for path in engine.KERNEL_DIR.glob("kernel_*.so"):
        shutil.copy(path, tmp_path)
    lost = {s.build: s.build.name for sources in KERNELS.values() for s in sources if _loaded(s)}
    if damage == "stale":  # sources edited since the install built the libraries
        for path in engine.KERNEL_DIR.glob("*.[ch]"):
            shutil.copy(path, tmp_path)
    for build, name in lost.items():
        if damage == "stale":
            with open(tmp_path / build.source, "a") as source:
                source.write("\n")
        else:
            (tmp_path / f"{name}.so").unlink()
        if damage == "broken":
            (tmp_path / f"{name}.so").write_bytes(b"not a shared library")
    kernels_from(tmp_path)
    caplog.set_level(logging.WARNING, logger="model.engine")
    first = Engine(ckpt, "cpu", "auto")
    Engine(ckpt, "cpu", "auto")
    warnings = only_kernel_warnings(caplog)
    assert len(warnings) == len(lost)  # one per kernel and process, however often it is asked
    assert all(reason in w for w in warnings)
    assert sorted(w.split()[2] for w in warnings) == sorted(
        str(tmp_path / f"{name}.so") for name in lost.values()
    )
    assert instruction_set() != fastest
    assert all(path.instruction_set != INSTRUCTION_SETS[fastest] for path in first.paths)
    x = inputs(9, 80)
    assert np.abs(first.run(x) - reference(ckpt, x)).max() * TARGET_STD <= TOLERANCE


def test_kernels_run_without_a_compiler_and_write_nothing_executable(tmp_path, ckpt):
    if FASTEST is None:
        pytest.skip("no inference kernel runs on this CPU")
    temp = tmp_path / "tmp"
    temp.mkdir()
    x = inputs(5, 60)
    script = (
        "import sys, numpy as np, logging; logging.basicConfig(level=logging.INFO);"
        "from model.training import checkpoint; from model.engine import engine_for;"
        "d = sys.argv[1]; e = engine_for(checkpoint.load(d + '/model'));"
        "np.save(d + '/y.npy', e.run(np.load(d + '/x.npy')));"
        "print(*e.paths, sep='\\n')"
    )
    checkpoint.save(tmp_path / "model", ckpt)
    np.save(tmp_path / "x.npy", x)
    env = {**os.environ, "CC": "/bin/false", "TMPDIR": str(temp), "PATH": "/nonexistent"}
    done = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path)],
        env=env,
        check=True,
        capture_output=True,
        text=True,
    )
    assert "WARNING" not in done.stderr
    assert done.stdout.split("\n")[0].startswith("kernel_")
    np.testing.assert_array_equal(np.load(tmp_path / "y.npy"), Engine(ckpt, "cpu", "auto").run(x))
    written = [p for p in temp.rglob("*") if p.is_file()]
    assert all(not os.access(p, os.X_OK) and p.suffix != ".so" for p in written)


def test_an_unwritable_temp_dir_only_costs_the_kept_probe(ckpt, tmp_path, monkeypatch):
    if FASTEST is None:
        pytest.skip("no inference kernel runs on this CPU")
    not_a_folder = tmp_path / "file"
    not_a_folder.write_text("")
    monkeypatch.setattr(engine, "_engine_dir", lambda: not_a_folder / "engine")
    probe = inputs(8, 120)
    saved = dataclasses.replace(ckpt, probe=probe, probe_reference=probe_references(ckpt, probe))
    assert Engine(saved, "cpu", "auto").chosen == [FASTEST, FASTEST]


def test_an_unknown_kernel_request_is_refused_and_a_missing_one_falls_back(ckpt, caplog):
    with pytest.raises(InputError, match="unknown inference kernel 'sse2'"):
        choose("cpu", "auto", "sse2")
    missing = next(isa for isa in INSTRUCTION_SETS if not kernel_ladder("int8", isa))
    caplog.set_level(logging.WARNING, logger="model.engine")
    assert choose("cpu", "auto", missing) == ("cpu", "float32")
    assert f"the {INSTRUCTION_SETS[missing]} inference kernels do not run here" in caplog.text
    assert {p.kernel for p in Engine(ckpt, "cpu", "auto", missing).paths} == {"torch.nn.LSTM"}


def network_numpy(state: dict, x: np.ndarray, warmup: int) -> np.ndarray:
    """The network in numpy float32, step by step: the reference of the aarch64 kernel."""
    f = {k: np.asarray(v, np.float32) for k, v in state.items()}
    hidden = f["lstm.weight_hh_l0"].shape[1]
    h = np.zeros((x.shape[0], hidden), np.float32)
    c = np.zeros_like(h)
    bias = f["lstm.bias_ih_l0"] + f["lstm.bias_hh_l0"]
    out = []
    for t in range(x.shape[1]):
        u = np.maximum(x[:, t] @ f["input_layer.weight"].T + f["input_layer.bias"], 0)
        gates = u @ f["lstm.weight_ih_l0"].T + h @ f["lstm.weight_hh_l0"].T + bias
        i, fg, g, o = np.split(gates, 4, axis=1)
        c = c / (1 + np.exp(-fg)) + np.tanh(g) / (1 + np.exp(-i))
        h = np.tanh(c) / (1 + np.exp(-o))
        out.append(h @ f["head.weight"][0] + f["head.bias"][0])
    return np.stack(out, axis=1)[:, warmup:]


def aarch64_tools() -> tuple[list[str], list[str]]:
    """The compiler and runner of aarch64 programs here: native, or a cross compiler and qemu."""
    if platform.machine().lower() in ("aarch64", "arm64"):
        return ["gcc"], []
    missing = [t for t in ("aarch64-linux-gnu-gcc", "qemu-aarch64") if not shutil.which(t)]
    if missing:
        pytest.skip(
            f"{' and '.join(missing)} missing: the aarch64 kernel runs under qemu-user "
            "(make emulators installs qemu-user and gcc-aarch64-linux-gnu)"
        )
    return ["aarch64-linux-gnu-gcc", "-static"], ["qemu-aarch64"]


ARM64_BUILDS = [build for build in BUILDS if build.machines == ARM64 and build.hidden >= 128]


class CpuLacksInstructions(Exception):
    """A kernel program said the CPU cannot run it (exit status 7)."""


def run_arm64_kernel(
    build: KernelBuild, state: dict, x: np.ndarray, warmup: int, folder: Path, cpu: str = ""
):
    """The outputs of an ARM64 kernel built as a program (tests/engine_kernel_main.c), run
    natively or under qemu-user (as `cpu`, a qemu CPU model, where given)."""
    compiler, runner = aarch64_tools()
    runner = [*runner, "-cpu", cpu] if cpu and runner else runner
    program = folder / build.name
    if not program.exists():
        defines = [*build.defines, *((("INT8", "1"),) if build.precision == "int8" else ())]
        subprocess.run(
            [*compiler, "-O3", *build.flags, *(f"-D{name}={value}" for name, value in defines),
             "-o", str(program), str(Path(__file__).with_name("engine_kernel_main.c"))],
            check=True,
        )  # fmt: skip
    f32 = {k: np.asarray(v, np.float32) for k, v in state.items()}
    arrays = kernel_arrays(f32, LAYOUTS[build.source, build.precision][1])
    own = ("wq", "scale_u", "scale_h") if build.precision == "int8" else ("w",)
    with open(folder / "in.bin", "wb") as f:
        f.write(np.array([x.shape[2], x.shape[0], x.shape[1], warmup], np.int64).tobytes())
        f.write(np.float32(state["head.bias"][0]).tobytes())
        for name in ("w1t", "b1", "bias", "w_head", *own):
            f.write(arrays[name].tobytes())
        f.write(x.tobytes())
    done = subprocess.run([*runner, str(program), str(folder / "in.bin"), str(folder / "out.bin")])
    if done.returncode == 7:
        raise CpuLacksInstructions(f"{build.name}: the CPU (or qemu's) lacks its instructions")
    assert done.returncode == 0
    return np.fromfile(folder / "out.bin", np.float32).reshape(x.shape[0], x.shape[1] - warmup)


@pytest.mark.parametrize("build", ARM64_BUILDS, ids=[build.name for build in ARM64_BUILDS])
def test_the_arm64_kernels_match_the_network(build, tmp_path):
    """The NEON float32 kernel and the sdot int8 one, under qemu-user where the machine is not
    ARM64: against the float32 network, and a cell's bytes whatever shares its block."""
    state = make_checkpoint(hidden=build.hidden).state_dicts[0]
    x = inputs(11, 40)  # 6 (float32) or 4 (int8) cells at a time: a short last group too
    got = run_arm64_kernel(build, state, x, 10, tmp_path)
    error = np.abs(got - network_numpy(state, x, 10)).max() * TARGET_STD
    assert error <= {"int8": 5e-4, "float32": 1e-6}[build.precision]  # ~5x what they give
    assert got.std() > 0.01
    np.testing.assert_array_equal(run_arm64_kernel(build, state, x[3:8], 10, tmp_path), got[3:8])


def test_the_arm64_int8_kernel_is_passed_over_on_a_cpu_without_sdot(tmp_path):
    """On an ARMv8.0 core (qemu's Cortex-A53: no dot-product extension) the int8 kernel says it
    cannot run, and the float32 one runs."""
    if platform.machine().lower() in ARM64:
        pytest.skip("the CPU model is chosen under qemu-user only")
    int8, float32 = (
        next(b for b in ARM64_BUILDS if b.precision == precision and b.hidden == 128)
        for precision in ("int8", "float32")
    )
    state = make_checkpoint(hidden=128).state_dicts[0]
    x = inputs(3, 12)
    with pytest.raises(CpuLacksInstructions):
        run_arm64_kernel(int8, state, x, 2, tmp_path, cpu="cortex-a53")
    assert run_arm64_kernel(float32, state, x, 2, tmp_path, cpu="cortex-a53").std() > 0

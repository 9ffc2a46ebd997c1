"""The fast inference engine against the float32 torch.nn.LSTM network it replaces."""

import dataclasses
import subprocess
import sys

import numpy as np
import pytest
import torch

from model import engine
from model.engine import (
    CACHE_LINE,
    INT32_MAX,
    KERNELS,
    TOLERANCE,
    WIDE_ACTIVATION_LEVELS,
    Engine,
    KernelMember,
    _bf16_parts,
    _compiled,
    _levels_within_int32,
    _quantise_rows,
    choose,
    kernel,
    kernel_ladder,
    probe_references,
    reference,
)
from model.engine.inference import predict
from model.errors import InputError
from model.training import checkpoint
from model.training.checkpoint import Checkpoint
from model.training.network import SoilMoistureLSTM
from model.training.normalize import Normalizer

TARGET_STD = 0.124  # conus412's SMAP standard deviation, m3/m3
needs_vnni = pytest.mark.skipif(kernel("int8") is None, reason="CPU without AVX-512 VNNI")
KERNEL_MISSING = {
    "int8": "CPU without AVX-512 VNNI",
    "int16": "CPU without AVX-512 VNNI",
    "bf16x3": "CPU without AMX (or a kernel without tile permission)",
}


def skip_unless_runs(precision: str) -> None:
    if precision in KERNEL_MISSING and kernel(precision) is None:
        pytest.skip(KERNEL_MISSING[precision])


def make_checkpoint(seed: int = 0, members: int = 1, weight_scale: float = 1.0) -> Checkpoint:
    """A real-size network (19 inputs, hidden 256) with random weights; `weight_scale` enlarges
    the LSTM and head weights towards what training produces."""
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
        state = SoilMoistureLSTM(normalizer.n_inputs).state_dict()
        states.append(
            {
                name: value * weight_scale if name.startswith(("lstm.weight", "head")) else value
                for name, value in state.items()
            }
        )
    return Checkpoint({"hidden": 256, "dropout": 0.5}, normalizer, states)


def inputs(cells: int, days: int, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((cells, days, 19), np.float32)


@pytest.fixture(scope="module")
def ckpt():
    return make_checkpoint(members=2)


@pytest.mark.parametrize(
    "precision, bound", [("int8", TOLERANCE), ("int16", 2e-4), ("bf16x3", 2e-5), ("float32", 1e-5)]
)
def test_engine_matches_the_float32_network(ckpt, precision, bound):
    skip_unless_runs(precision)
    engine = Engine(ckpt, "cpu", precision)
    assert engine.chosen == [precision, precision]
    x = inputs(37, 300)
    got = engine.run(x)
    assert np.isfinite(got).all()
    error = np.abs(got - reference(ckpt, x)).max() * TARGET_STD
    assert error <= bound
    assert got.std() > 0.01  # a network that moves, not a constant that matches trivially


@pytest.mark.parametrize("precision", ["int8", "int16", "bf16x3"])
def test_a_cell_gets_the_same_bytes_whatever_shares_its_block(ckpt, precision):
    skip_unless_runs(precision)
    engine = Engine(ckpt, "cpu", precision)
    assert engine.chosen == [precision, precision]
    x = inputs(141, 120)  # the AMX kernel passes 64 cells at a time in row blocks of 16
    whole = engine.run(x)
    for lo, hi in [(0, 1), (3, 8), (5, 38), (40, 41), (60, 133)]:
        np.testing.assert_array_equal(engine.run(x[lo:hi]), whole[lo:hi])
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        np.testing.assert_array_equal(engine.run(x), whole)
    finally:
        torch.set_num_threads(threads)


@pytest.mark.parametrize("precision", ["int8", "bf16x3", "float32"])
def test_warmup_gives_the_days_after_it_of_a_full_run(ckpt, precision):
    skip_unless_runs(precision)
    engine = Engine(ckpt, "cpu", precision)
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


@needs_vnni
def test_same_block_in_another_process_gives_the_same_bytes(tmp_path, ckpt):
    x = inputs(23, 150)
    elsewhere = predict_in_another_process(tmp_path, ckpt, x, 50)
    here = predict(checkpoint.load(tmp_path / "model"), x, warmup=50)
    assert elsewhere.tobytes() == here.tobytes()


@needs_vnni
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


@needs_vnni
def test_a_network_8_bits_cannot_hold_runs_at_a_finer_precision_within_tolerance():
    strong = make_checkpoint(weight_scale=2.0)
    engine = Engine(strong, "cpu", "auto")
    assert engine.chosen == ["int16"]
    x = inputs(16, 300)
    assert np.abs(engine.run(x) - reference(strong, x)).max() * TARGET_STD <= TOLERANCE


@needs_vnni
def test_the_engine_probes_on_the_inputs_the_checkpoint_saved(ckpt, monkeypatch):
    def synthetic(_):
        raise AssertionError("the synthetic probe is only for checkpoints without one")

    monkeypatch.setattr(engine, "probe_inputs", synthetic)
    with_probe = dataclasses.replace(ckpt, probe=inputs(8, 120))
    assert Engine(with_probe, "cpu", "int8").chosen == ["int8", "int8"]


@needs_vnni
def test_the_engine_checks_against_the_float32_outputs_the_checkpoint_saved(ckpt, monkeypatch):
    probe = inputs(8, 120)
    expected = probe_references(ckpt, probe)

    def recomputed(*_):
        raise AssertionError("saved probe outputs are not computed again")

    monkeypatch.setattr(engine, "probe_references", recomputed)
    saved = dataclasses.replace(ckpt, probe=probe, probe_reference=expected)
    assert Engine(saved, "cpu", "int8").chosen == ["int8", "int8"]
    shifted = dataclasses.replace(saved, probe_reference=expected + 0.01 / TARGET_STD)
    assert Engine(shifted, "cpu", "int8").chosen == ["float32", "float32"]


@needs_vnni
def test_a_probe_result_is_kept_for_the_next_process_and_only_for_the_same_member(
    ckpt, tmp_path, monkeypatch
):
    monkeypatch.setattr(engine, "_engine_dir", lambda: tmp_path)
    probe = inputs(8, 120)
    saved = dataclasses.replace(ckpt, probe=probe, probe_reference=probe_references(ckpt, probe))
    assert Engine(saved, "cpu", "int8").chosen == ["int8", "int8"]
    assert len(list(tmp_path.glob("probe-*"))) == 2

    def not_again(*_):
        raise AssertionError("a kept probe result is not computed again")

    monkeypatch.setattr(KernelMember, "run", not_again)
    again = Engine(saved, "cpu", "int8")
    assert again.chosen == ["int8", "int8"]
    np.testing.assert_array_equal(
        again.run(inputs(5, 40)), Engine(saved, "cpu", "int8").run(inputs(5, 40))
    )
    other = dataclasses.replace(saved, probe_reference=saved.probe_reference + 1e-6)
    with pytest.raises(AssertionError, match="not computed again"):
        Engine(other, "cpu", "int8")


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
    assert kernel("int8")[1].file == kernel("int16")[1].file == "kernel_amx_int.c"
    assert choose("cpu", "bf16x3")[1] == "bf16x3"


IMPLEMENTATIONS = [
    (precision, source) for precision, sources in KERNELS.items() for source in sources
]


@pytest.mark.parametrize(
    "precision, source", IMPLEMENTATIONS, ids=[f"{p}-{s.file}" for p, s in IMPLEMENTATIONS]
)
def test_every_implementation_matches_the_network_whatever_shares_its_block(
    ckpt, precision, source
):
    if _compiled(source) is None:
        pytest.skip(f"{source.file} does not run on this CPU")
    state = ckpt.state_dicts[0]
    member = KernelMember(state, precision, source)
    x = inputs(141, 150)  # the AMX kernels pass 32 or 64 cells at a time in row blocks of 16
    whole = member.run(x, 20)
    expected = reference(dataclasses.replace(ckpt, state_dicts=[state]), x, 20)
    assert np.abs(whole - expected).max() * TARGET_STD <= {"int8": TOLERANCE}.get(precision, 2e-4)
    for lo, hi in [(0, 1), (5, 38), (60, 133)]:
        np.testing.assert_array_equal(member.run(x[lo:hi], 20), whole[lo:hi])
    misaligned = {
        name: a.ctypes.data % CACHE_LINE
        for name, a in member.arrays.items()
        if a.ctypes.data % CACHE_LINE
    }
    assert misaligned == {}, "weights split the kernel's 64-byte loads over two cache lines"


def test_choose_checks_requests_and_falls_back_to_what_the_machine_has():
    with pytest.raises(InputError, match="unknown inference precision"):
        choose("cpu", "int4")
    with pytest.raises(InputError, match="unknown device"):
        choose("tpu", "auto")
    device, precision = choose("cpu", "auto")
    assert device == "cpu"
    assert precision == ("int8" if kernel("int8") is not None else "float32")
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

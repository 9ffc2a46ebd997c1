"""The kernels' gate nonlinearities against exact sigmoid and tanh: the AVX-512 ones
(model/engine/gates.h, shared by the integer and bf16x3 kernels) on every CPU, natively with
AVX-512, else emulated; the float32 kernels' (vector.h) as installed, on every CPU with AVX2+FMA
or NEON."""

import ctypes
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from model.engine import kernel

SOURCE = Path(__file__).with_name("engine_math_check.c")


def avx512_gates(tmp_path_factory) -> ctypes.CDLL:
    """gates.h as compiled for AVX-512 where this CPU has it, else with its instructions
    emulated in portable C (model/engine/emulated.h; its rcp14 is exact, the hardware's within
    2^-14 before the Newton step)."""
    compiler = shutil.which("gcc") or shutil.which("cc")
    if compiler is None:
        pytest.skip("no C compiler")
    folder = tmp_path_factory.mktemp("math")

    def built(name: str, *options: str) -> ctypes.CDLL:
        library = folder / name
        subprocess.run(
            [compiler, "-O2", "-shared", "-fPIC", *options, "-o", str(library), str(SOURCE), "-lm"],
            check=True,
        )
        return ctypes.CDLL(str(library))

    native = built("gates.so")
    return (
        native
        if native.smapx_supported()
        else built("emulated.so", "-DSMAPX_EMULATE", "-Wno-psabi")
    )


def float32_kernel_gates(_) -> ctypes.CDLL:
    found = kernel("float32", "avx2") or kernel("float32", "neon")
    if found is None:
        pytest.skip("CPU without AVX2+FMA or NEON")
    return found[0]


@pytest.fixture(scope="module", params=[avx512_gates, float32_kernel_gates])
def gates(request, tmp_path_factory):
    lib = request.param(tmp_path_factory)
    lib.smapx_gates.argtypes = [ctypes.c_void_p, ctypes.c_int64, ctypes.c_void_p, ctypes.c_void_p]

    def run(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        x = np.ascontiguousarray(x, np.float32)
        sigmoid, tanh = np.empty_like(x), np.empty_like(x)
        lib.smapx_gates(x.ctypes.data, x.size, sigmoid.ctypes.data, tanh.ctypes.data)
        return sigmoid, tanh

    return run


def test_gate_nonlinearities_are_float32_accurate(gates):
    x = np.linspace(-40, 40, 2**20, dtype=np.float32)
    sigmoid, tanh = gates(x)
    exact = x.astype(np.float64)
    assert np.abs(sigmoid - 1 / (1 + np.exp(-exact))).max() <= 2e-7
    assert np.abs(tanh - np.tanh(exact)).max() <= 4e-7


def test_gate_nonlinearities_saturate_without_nan(gates):
    x = np.array(
        [
            np.inf,
            -np.inf,
            3e38,
            -3e38,
            1e4,
            -1e4,
            200,
            -200,
            88,
            -88,
            0,
            -0.0,
            1e-30,
            -1e-30,
            150,
            -150,
        ],
        np.float32,
    )
    sigmoid, tanh = gates(x)
    assert np.isfinite(sigmoid).all() and np.isfinite(tanh).all()
    np.testing.assert_allclose(sigmoid[:10:2], 1.0)
    np.testing.assert_allclose(sigmoid[1:10:2], 0.0, atol=1e-37)
    np.testing.assert_allclose(tanh[:10:2], 1.0)
    np.testing.assert_allclose(tanh[1:10:2], -1.0)
    np.testing.assert_allclose(sigmoid[10:14], 0.5)
    np.testing.assert_allclose(tanh[10:14], 0.0, atol=1e-30)

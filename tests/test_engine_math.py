"""The kernels' gate nonlinearities (model/engine/gates.h, shared by every kernel) against exact
sigmoid and tanh, on every CPU with AVX-512: the AMX kernels use them too, where no AMX runs."""

import ctypes
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

SOURCE = Path(__file__).with_name("engine_math_check.c")


@pytest.fixture(scope="module")
def gates(tmp_path_factory):
    compiler = shutil.which("gcc") or shutil.which("cc")
    if compiler is None:
        pytest.skip("no C compiler")
    library = tmp_path_factory.mktemp("math") / "gates.so"
    subprocess.run(
        [compiler, "-O2", "-shared", "-fPIC", "-o", str(library), str(SOURCE)], check=True
    )
    lib = ctypes.CDLL(str(library))
    if not lib.smapx_supported():
        pytest.skip("CPU without AVX-512")
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

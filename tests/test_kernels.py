"""The raw kernels through the binding: every implementation this CPU runs gives the same integers as the
reference and as numpy, on random data and edge shapes; and the C-level ctest suite passes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import BUILD_DIR

from bifsmn_cli.engine.binding import Library
from bifsmn_cli.errors import UserError
from bifsmn_cli.export.bfsm import pack_signs, unpack_signs
from bifsmn_cli.nn.binarizers import sign

IMPLS = ["ref", "avx2", "avx512"]
# K around word and 128-bit boundaries, M and N not multiples of any tile, K = 1
SHAPES = [
    (1, 1, 1),
    (3, 5, 63),
    (8, 7, 64),
    (9, 9, 65),
    (17, 33, 127),
    (8, 256, 128),
    (40, 31, 129),
    (64, 12, 400),
]


def _need(lib: Library, impl: str) -> None:
    if not lib.kernel_available(impl):
        pytest.skip(f"{impl} kernels do not run on this CPU")


def _data(shape: tuple[int, ...], seed: int) -> np.ndarray:
    x = np.random.default_rng(seed).standard_normal(shape).astype(np.float32)
    x.flat[::7] = 0.0  # sign(0) = +1
    x.flat[3::11] = -0.0  # -0.0 is not < 0: +1
    return x


@pytest.mark.parametrize("impl", IMPLS)
def test_bitpack_matches_the_exporter_packing(lib, impl):
    _need(lib, impl)
    for _, rows, k in SHAPES:
        x = _data((rows, k), k)
        np.testing.assert_array_equal(lib.bitpack(x, impl), pack_signs(x))


@pytest.mark.parametrize("impl", IMPLS)
def test_bitpack_and_training_sign_agree_on_special_values(lib, impl):
    """ARCHITECTURE.md's sign convention on both sides: -1 exactly where x < 0, so 0, -0 and NaN are +1."""
    _need(lib, impl)
    specials = np.array([0.0, -0.0, np.nan, -np.nan, np.inf, -np.inf, -1e-40, 1e-40, -1.0], np.float32)
    x = np.resize(specials, (5, 130))  # every special in every lane position, across two words and a tail
    bits = lib.bitpack(x, impl)
    engine_signs = unpack_signs(bits, x.shape[1])
    np.testing.assert_array_equal(engine_signs, sign(torch.from_numpy(x)).numpy())
    assert (engine_signs[np.isnan(x)] == 1).all()


@pytest.mark.parametrize("impl", IMPLS)
def test_bgemm_gives_the_exact_pm1_dot_products(lib, impl):
    _need(lib, impl)
    for m, n, k in SHAPES:
        a, w = _data((m, k), 1), _data((n, k), 2)
        want = np.where(a < 0, -1, 1) @ np.where(w < 0, -1, 1).T
        got = lib.bgemm(pack_signs(a), pack_signs(w), k, impl)
        np.testing.assert_array_equal(got, want.astype(np.int32))
        np.testing.assert_array_equal(got, lib.bgemm(pack_signs(a), pack_signs(w), k, "ref"))


@pytest.mark.parametrize("impl", IMPLS)
def test_sgemm_matches_numpy(lib, impl):
    _need(lib, impl)
    for m, n, k in SHAPES:
        a, w, bias = _data((m, k), 3), _data((n, k), 4), _data((n,), 5)
        want = a.astype(np.float64) @ w.T.astype(np.float64)
        np.testing.assert_allclose(lib.sgemm(a, w, None, impl), want, rtol=1e-5, atol=1e-5 * np.sqrt(k))
        np.testing.assert_allclose(
            lib.sgemm(a, w, bias, impl), want + bias, rtol=1e-5, atol=1e-5 * np.sqrt(k)
        )


def test_auto_picks_the_best_available_kernel(lib):
    engine_kernel = next(i for i in ("avx512", "avx2", "neon", "ref") if lib.kernel_available(i))
    x = _data((4, 100), 6)
    np.testing.assert_array_equal(lib.bitpack(x, "auto"), lib.bitpack(x, engine_kernel))
    missing = [i for i in ("avx2", "avx512", "neon") if not lib.kernel_available(i)]
    for impl in missing:  # on x86 at least neon
        with pytest.raises(UserError, match="not available"):
            lib.bitpack(x, impl)
    with pytest.raises(UserError, match="expected one of"):
        lib.bitpack(x, "sse9")


def test_ctest_suite_passes(lib):
    ctest = Path(sys.executable).with_name("ctest")
    result = subprocess.run(
        [str(ctest) if ctest.exists() else "ctest", "--output-on-failure"],
        cwd=BUILD_DIR,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "100% tests passed" in result.stdout

"""Kernel throughput: the engine's binary GEMM (bit-MACs/s) and float GEMM (FLOP/s), per implementation, on
the model's own layer shapes and on larger squares, beside PyTorch's float32 matmul (one thread).

The kernels are called through their public C entry points with prepared buffers (ctypes prototypes taking
raw addresses), so one call costs well under a microsecond of Python; a sample is a loop of calls lasting at
least `min_sample_s`, and the implementations alternate sample by sample. The model's layers are small
(M = 8 time steps), so their figures include that call cost, which is reported on its own
(`call_overhead_us`, a 1 x 1 x 64 binary GEMM).
"""

from __future__ import annotations

import ctypes
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from bifsmn_cli.engine.binding import Engine, Library

_c_int, _vp = ctypes.c_int, ctypes.c_void_p
_BGEMM = ctypes.CFUNCTYPE(_c_int, _vp, _vp, _vp, _vp, _c_int, _c_int, _c_int)
_SGEMM = ctypes.CFUNCTYPE(_c_int, _vp, _vp, _vp, _vp, _vp, _c_int, _c_int, _c_int)


@dataclass(frozen=True)
class Shape:
    """C (M x N) = A (M x K) . W (N x K)^T; `layers` counts the model layers with this shape."""

    name: str
    m: int
    n: int
    k: int
    layers: int = 1


def model_shapes(engine: Engine, record: dict[str, Any]) -> list[Shape]:
    """The GEMM shapes of a binary .bfsm's binarized conv2d/linear layers (depthwise memory convs are not
    GEMMs), deduplicated; `record` is read_bfsm's view of the same file."""
    found: dict[tuple[int, int, int], Shape] = {}
    for i, op in enumerate(record["ops"]):
        if not op["binary"] or op["type"] == "dwconv1d":
            continue
        out = engine.op_info(i)["out_shape"]
        d = op["dims"]
        k = d["kh"] * d["kw"] * d["c_in"] if op["type"] == "conv2d" else d["k"]
        key = (out[0] * out[1], out[2], k)
        if key in found:
            s = found[key]
            found[key] = Shape(s.name, *key, layers=s.layers + 1)
        else:
            found[key] = Shape(f"{op['type']} {key[0]}x{key[1]}x{key[2]}", *key)
    return list(found.values())


def square_shapes(sizes: list[int]) -> list[Shape]:
    return [Shape(f"square {s}", s, s, s) for s in sizes]


def _time(fn: Callable[[], Any], calls: int) -> float:
    t0 = time.perf_counter_ns()
    for _ in range(calls):
        fn()
    return (time.perf_counter_ns() - t0) / calls / 1e3  # microseconds per call


def _calls_for(fn: Callable[[], Any], min_sample_s: float) -> int:
    fn()  # warm caches and lazy initialisation
    single = max(_time(fn, 1), 0.05)
    return max(1, math.ceil(min_sample_s * 1e6 / single))


def _alternate(fns: dict[str, Callable[[], Any]], samples: int, min_sample_s: float) -> dict[str, float]:
    """Median microseconds per call of each function, the functions alternating sample by sample."""
    calls = {name: _calls_for(fn, min_sample_s) for name, fn in fns.items()}
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(samples):
        for name, fn in fns.items():
            times[name].append(_time(fn, calls[name]))
    return {name: float(np.median(t)) for name, t in times.items()}


class _Kernels:
    """Raw entry points of one library, with buffers kept alive by the caller."""

    def __init__(self, lib: Library) -> None:
        self.lib = lib
        self.bgemm = _BGEMM(("bifsmn_kernel_bgemm", lib.c))
        self.sgemm = _SGEMM(("bifsmn_kernel_sgemm", lib.c))

    def bgemm_call(
        self, impl: str, a: np.ndarray, w: np.ndarray, out: np.ndarray, k: int
    ) -> Callable[[], Any]:
        s, m, n = self.lib.kernel_set(impl).value, a.shape[0], w.shape[0]
        pa, pw, po, fn = a.ctypes.data, w.ctypes.data, out.ctypes.data, self.bgemm
        self.lib.check(fn(s, pa, pw, po, m, n, k), f"bgemm ({impl})")
        return lambda: fn(s, pa, pw, po, m, n, k)

    def sgemm_call(self, impl: str, a: np.ndarray, w: np.ndarray, out: np.ndarray) -> Callable[[], Any]:
        s, (m, k), n = self.lib.kernel_set(impl).value, a.shape, w.shape[0]
        pa, pw, po, fn = a.ctypes.data, w.ctypes.data, out.ctypes.data, self.sgemm
        self.lib.check(fn(s, pa, pw, None, po, m, n, k), f"sgemm ({impl})")
        return lambda: fn(s, pa, pw, None, po, m, n, k)


def measure(
    lib: Library,
    impls: list[str],
    shapes: list[Shape],
    peak: dict[str, Any],
    samples: int = 7,
    min_sample_s: float = 2e-3,
    seed: int = 0,
) -> dict[str, Any]:
    """Throughput of every implementation on every shape; fractions of the CPU's estimated per-core peak."""
    kernels = _Kernels(lib)
    rng = np.random.default_rng(seed)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    rows = []
    try:
        tiny_a = np.zeros((1, 1), np.uint64)
        tiny_out = np.zeros((1, 1), np.int32)
        overhead = _alternate(
            {i: kernels.bgemm_call(i, tiny_a, tiny_a, tiny_out, 64) for i in impls}, samples, min_sample_s
        )
        for shape in shapes:
            kw = (shape.k + 63) // 64
            a_bits = rng.integers(0, 2**63, (shape.m, kw), dtype=np.uint64)
            w_bits = rng.integers(0, 2**63, (shape.n, kw), dtype=np.uint64)
            if shape.k % 64:  # the kernel contract: pad bits are 0 in both operands
                mask = np.uint64((1 << (shape.k % 64)) - 1)
                a_bits[:, -1] &= mask
                w_bits[:, -1] &= mask
            ints = np.zeros((shape.m, shape.n), np.int32)
            a = rng.standard_normal((shape.m, shape.k), dtype=np.float32)
            w = rng.standard_normal((shape.n, shape.k), dtype=np.float32)
            c = np.zeros((shape.m, shape.n), np.float32)
            ta, tw, tc = torch.from_numpy(a), torch.from_numpy(w).t(), torch.zeros(shape.m, shape.n)
            fns: dict[str, Callable[[], Any]] = {}
            for i in impls:
                fns[f"bgemm/{i}"] = kernels.bgemm_call(i, a_bits, w_bits, ints, shape.k)
                fns[f"sgemm/{i}"] = kernels.sgemm_call(i, a, w, c)
            fns["sgemm/pytorch"] = lambda ta=ta, tw=tw, tc=tc: torch.mm(ta, tw, out=tc)
            us = _alternate(fns, samples, min_sample_s)
            rows.append(_row(shape, us, impls, peak))
    finally:
        torch.set_num_threads(threads)
    return {
        "implementations": impls,
        "samples": samples,
        "min_sample_ms": min_sample_s * 1e3,
        "call_overhead_us": overhead,
        "shapes": rows,
    }


def _row(shape: Shape, us: dict[str, float], impls: list[str], peak: dict[str, Any]) -> dict[str, Any]:
    macs = shape.m * shape.n * shape.k
    bin_peak = peak.get("binary_gbit_macs")
    flt_peak = peak.get("float32_gflops")
    binary = {}
    for i in impls:
        rate = macs / us[f"bgemm/{i}"] / 1e3  # G bit-MACs/s
        binary[i] = {"us": us[f"bgemm/{i}"], "gbit_macs_per_s": rate}
        if bin_peak:
            binary[i]["fraction_of_peak"] = rate / bin_peak
    floating = {}
    for i in [*impls, "pytorch"]:
        rate = 2 * macs / us[f"sgemm/{i}"] / 1e3  # GFLOP/s
        floating[i] = {"us": us[f"sgemm/{i}"], "gflops_per_s": rate}
        if flt_peak:
            floating[i]["fraction_of_peak"] = rate / flt_peak
    best_bin = max(binary.values(), key=lambda r: r["gbit_macs_per_s"])
    best_flt = max(floating.values(), key=lambda r: r["gflops_per_s"])
    return {
        "name": shape.name,
        "m": shape.m,
        "n": shape.n,
        "k": shape.k,
        "layers": shape.layers,
        "bgemm": binary,
        "sgemm": floating,
        # MAC for MAC, how much faster the best binary kernel is than the best float one (incl. PyTorch)
        "binary_vs_float_mac_ratio": best_bin["gbit_macs_per_s"] / (best_flt["gflops_per_s"] / 2),
    }

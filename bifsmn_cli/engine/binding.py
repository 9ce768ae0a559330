"""ctypes binding to libbifsmn (csrc/include/bifsmn.h): models, the C front end and the raw kernels.

The library is an explicit path or the one `build.find_library` locates (`$BIFSMN_LIB`, then the CMake build
directories under `csrc/build/`). Every C error becomes a UserError carrying the engine's own one-line message
(malformed model files are user input).
"""

from __future__ import annotations

import ctypes
import functools
from pathlib import Path
from typing import Any

import numpy as np

from bifsmn_cli.audio.config import FrontEndConfig
from bifsmn_cli.engine.build import find_library
from bifsmn_cli.errors import UserError
from bifsmn_cli.export.bfsm import OP_NAMES, PCM_SCALE

IMPLS = {"auto": 0, "ref": 1, "avx2": 2, "avx512": 3, "neon": 4}

_f32p = np.ctypeslib.ndpointer(np.float32, flags="C_CONTIGUOUS")
_i16p = np.ctypeslib.ndpointer(np.int16, flags="C_CONTIGUOUS")
_i32p = np.ctypeslib.ndpointer(np.int32, flags="C_CONTIGUOUS")
_u64p = np.ctypeslib.ndpointer(np.uint64, flags="C_CONTIGUOUS")


class _FrontEndStruct(ctypes.Structure):
    """bifsmn_frontend_config, filled from a FrontEndConfig."""

    _fields_ = [
        ("sample_rate", ctypes.c_int),
        ("num_samples", ctypes.c_int),
        ("n_fft", ctypes.c_int),
        ("win_length", ctypes.c_int),
        ("hop_length", ctypes.c_int),
        ("n_mels", ctypes.c_int),
        ("f_min", ctypes.c_float),
        ("f_max", ctypes.c_float),
        ("normalized", ctypes.c_int),
        ("to_db", ctypes.c_int),
        ("top_db", ctypes.c_float),
        ("pcm_scale", ctypes.c_float),
    ]


class _OpInfo(ctypes.Structure):
    _fields_ = [
        ("type", ctypes.c_int),
        ("binary", ctypes.c_int),
        ("in_shape", ctypes.c_int * 3),
        ("out_shape", ctypes.c_int * 3),
        ("has_residual", ctypes.c_int),
    ]


@functools.cache
def _load_cdll(path: str) -> ctypes.CDLL:
    try:
        lib = ctypes.CDLL(path)
    except OSError as exc:
        raise UserError(
            f"{path}: cannot load the engine library ({exc}); rebuild it for this machine"
        ) from None
    c_int, c_size, c_char_p, c_void_p = ctypes.c_int, ctypes.c_size_t, ctypes.c_char_p, ctypes.c_void_p
    model_p = ctypes.c_void_p
    sigs: dict[str, tuple[Any, list[Any]]] = {
        "bifsmn_strerror": (c_char_p, [c_int]),
        "bifsmn_load_file": (c_int, [c_char_p, c_int, ctypes.POINTER(model_p), c_char_p, c_size]),
        "bifsmn_load_memory": (c_int, [c_char_p, c_size, c_int, ctypes.POINTER(model_p), c_char_p, c_size]),
        "bifsmn_free": (None, [model_p]),
        "bifsmn_num_classes": (c_int, [model_p]),
        "bifsmn_class_name": (c_char_p, [model_p, c_int]),
        "bifsmn_variant": (c_char_p, [model_p]),
        "bifsmn_is_binary": (c_int, [model_p]),
        "bifsmn_kernel_name": (c_char_p, [model_p]),
        "bifsmn_sample_rate": (c_int, [model_p]),
        "bifsmn_num_samples": (c_int, [model_p]),
        "bifsmn_num_mels": (c_int, [model_p]),
        "bifsmn_num_frames": (c_int, [model_p]),
        "bifsmn_run_pcm": (c_int, [model_p, _i16p, c_size, _f32p, c_size]),
        "bifsmn_run_features": (c_int, [model_p, _f32p, c_size, _f32p, c_size]),
        "bifsmn_features_pcm": (c_int, [model_p, _i16p, c_size, _f32p, c_size]),
        "bifsmn_num_ops": (c_int, [model_p]),
        "bifsmn_op_get_info": (c_int, [model_p, c_int, ctypes.POINTER(_OpInfo)]),
        "bifsmn_op_run": (c_int, [model_p, c_int, _f32p, c_void_p, _f32p, c_void_p]),
        "bifsmn_frontend_create": (c_int, [ctypes.POINTER(_FrontEndStruct), ctypes.POINTER(c_void_p)]),
        "bifsmn_frontend_free": (None, [c_void_p]),
        "bifsmn_frontend_num_frames": (c_int, [c_void_p]),
        "bifsmn_frontend_run_pcm": (c_int, [c_void_p, _i16p, c_size, _f32p, c_size]),
        "bifsmn_frontend_run_float": (c_int, [c_void_p, _f32p, c_size, _f32p, c_size]),
        "bifsmn_kernel_available": (c_int, [c_int]),
        "bifsmn_kernel_set_create": (c_int, [c_int, ctypes.POINTER(c_void_p)]),
        "bifsmn_kernel_set_name": (c_char_p, [c_void_p]),
        "bifsmn_kernel_bitpack": (c_int, [c_void_p, _f32p, _u64p, c_int, c_int]),
        "bifsmn_kernel_bgemm": (c_int, [c_void_p, _u64p, _u64p, _i32p, c_int, c_int, c_int]),
        "bifsmn_kernel_sgemm": (c_int, [c_void_p, _f32p, _f32p, c_void_p, _f32p, c_int, c_int, c_int]),
    }
    for name, (res, args) in sigs.items():
        fn = getattr(lib, name)
        fn.restype, fn.argtypes = res, args
    return lib


def _impl(name: str) -> int:
    if name not in IMPLS:
        raise UserError(f"kernel {name!r}: expected one of {', '.join(IMPLS)}")
    return IMPLS[name]


def _f32(x: Any, shape: tuple[int, ...] | None = None, what: str = "array") -> np.ndarray:
    a = np.ascontiguousarray(x, dtype=np.float32)
    if shape is not None and a.shape != shape:
        raise UserError(f"{what}: expected shape {shape}, got {a.shape}")
    return a


class Library:
    """One loaded libbifsmn: the raw kernels, the standalone front end, and model loading."""

    def __init__(self, path: Path | str | None = None) -> None:
        self.path = find_library(path)
        self.c = _load_cdll(str(self.path))
        self._sets: dict[str, ctypes.c_void_p] = {}

    def check(self, rc: int, what: str) -> None:
        if rc != 0:
            raise UserError(f"{what}: {self.c.bifsmn_strerror(rc).decode()}")

    def kernel_available(self, impl: str) -> bool:
        return bool(self.c.bifsmn_kernel_available(_impl(impl)))

    def available_kernels(self) -> list[str]:
        """The implementations this library runs on this CPU (its own cpuid detection), without 'auto'."""
        return [name for name in IMPLS if name != "auto" and self.kernel_available(name)]

    def kernel_set(self, impl: str = "auto") -> ctypes.c_void_p:
        """The C kernel set of `impl`, resolved once per Library (the kernel calls then cost no cpuid)."""
        if impl not in self._sets:
            handle = ctypes.c_void_p()
            self.check(self.c.bifsmn_kernel_set_create(_impl(impl), ctypes.byref(handle)), f"kernel {impl!r}")
            self._sets[impl] = handle  # kept for the process: a handful of bytes per implementation
        return self._sets[impl]

    def kernel_name(self, impl: str = "auto") -> str:
        """The implementation `impl` resolves to ('auto' -> 'avx512' on a CPU that has it)."""
        return self.c.bifsmn_kernel_set_name(self.kernel_set(impl)).decode()

    def bitpack(self, x: Any, impl: str = "auto") -> np.ndarray:
        """(rows, K) floats -> (rows, ceil(K/64)) uint64 sign words (bit 1 = negative)."""
        x = _f32(x)
        rows, k = x.shape
        out = np.zeros((rows, (k + 63) // 64), dtype=np.uint64)
        self.check(self.c.bifsmn_kernel_bitpack(self.kernel_set(impl), x, out, rows, k), f"bitpack ({impl})")
        return out

    def bgemm(self, a: np.ndarray, w: np.ndarray, k: int, impl: str = "auto") -> np.ndarray:
        """(M, kw) x (N, kw) packed words -> (M, N) int32 +-1 dot products over k bits."""
        a, w = np.ascontiguousarray(a, dtype=np.uint64), np.ascontiguousarray(w, dtype=np.uint64)
        kw = (k + 63) // 64
        if a.shape[1] != kw or w.shape[1] != kw:
            raise UserError(f"bgemm: K={k} needs {kw} words per row, got {a.shape[1]} and {w.shape[1]}")
        out = np.zeros((a.shape[0], w.shape[0]), dtype=np.int32)
        rc = self.c.bifsmn_kernel_bgemm(self.kernel_set(impl), a, w, out, a.shape[0], w.shape[0], k)
        self.check(rc, f"bgemm ({impl})")
        return out

    def sgemm(self, a: Any, w: Any, bias: Any | None = None, impl: str = "auto") -> np.ndarray:
        """a (M, K) @ w (N, K)^T + bias (N,) in float32."""
        a, w = _f32(a), _f32(w)
        if a.shape[1] != w.shape[1]:
            raise UserError(f"sgemm: inner sizes differ ({a.shape[1]} vs {w.shape[1]})")
        b = None if bias is None else _f32(bias, (w.shape[0],), "sgemm bias")
        out = np.zeros((a.shape[0], w.shape[0]), dtype=np.float32)
        bias_p = None if b is None else b.ctypes.data_as(ctypes.c_void_p)
        m, n, k = a.shape[0], w.shape[0], a.shape[1]
        rc = self.c.bifsmn_kernel_sgemm(self.kernel_set(impl), a, w, bias_p, out, m, n, k)
        self.check(rc, f"sgemm ({impl})")
        return out

    def frontend(self, config: FrontEndConfig) -> EngineFrontEnd:
        """A standalone C front end with these settings."""
        return EngineFrontEnd(self, config)

    def load(self, path: Path | str, kernel: str = "auto") -> Engine:
        return Engine.load(path, lib=self, kernel=kernel)


class EngineFrontEnd:
    """The C log-mel front end alone, to compare with the Python one (bifsmn_cli.audio.frontend)."""

    def __init__(self, lib: Library, config: FrontEndConfig) -> None:
        self.lib, self._h = lib, ctypes.c_void_p()
        config.check_engine()
        cfg = _FrontEndStruct(
            config.sample_rate,
            config.num_samples,
            config.n_fft,
            config.window,
            config.hop_length,
            config.n_mels,
            config.f_min,
            config.mel_f_max,
            int(config.normalized),
            1,  # to dB
            config.top_db or 0.0,
            PCM_SCALE,
        )
        self.num_samples, self.n_mels = cfg.num_samples, cfg.n_mels
        lib.check(
            lib.c.bifsmn_frontend_create(ctypes.byref(cfg), ctypes.byref(self._h)), "front-end settings"
        )
        self.n_frames = lib.c.bifsmn_frontend_num_frames(self._h)

    def run(self, wave: Any) -> np.ndarray:
        """int16 PCM or float waveform (num_samples,) -> (n_mels, n_frames) features."""
        out = np.empty((self.n_mels, self.n_frames), dtype=np.float32)
        w = np.asarray(wave)
        if w.dtype == np.int16:
            rc = self.lib.c.bifsmn_frontend_run_pcm(self._h, np.ascontiguousarray(w), w.size, out, out.size)
        else:
            w = _f32(w)
            rc = self.lib.c.bifsmn_frontend_run_float(self._h, w, w.size, out, out.size)
        self.lib.check(rc, f"front end on {w.size} samples (expects {self.num_samples})")
        return out

    def close(self) -> None:
        if self._h:
            self.lib.c.bifsmn_frontend_free(self._h)
            self._h = ctypes.c_void_p()

    def __del__(self) -> None:
        self.close()


class Engine:
    """A loaded .bfsm model. Not thread-safe: one Engine per thread."""

    def __init__(self, lib: Library, handle: ctypes.c_void_p, source: str) -> None:
        self.lib, self._h, self.source = lib, handle, source
        c = lib.c
        self.num_classes = c.bifsmn_num_classes(handle)
        self.classes = [c.bifsmn_class_name(handle, i).decode() for i in range(self.num_classes)]
        self.variant = c.bifsmn_variant(handle).decode()
        self.binary = bool(c.bifsmn_is_binary(handle))
        self.kernel = c.bifsmn_kernel_name(handle).decode()
        self.sample_rate = c.bifsmn_sample_rate(handle)
        self.num_samples = c.bifsmn_num_samples(handle)
        self.feature_shape = (c.bifsmn_num_mels(handle), c.bifsmn_num_frames(handle))
        self.num_ops = c.bifsmn_num_ops(handle)
        self._scores = np.empty(self.num_classes, dtype=np.float32)

    @classmethod
    def load(cls, path: Path | str, lib: Library | Path | str | None = None, kernel: str = "auto") -> Engine:
        lib = lib if isinstance(lib, Library) else Library(lib)
        handle, msg = ctypes.c_void_p(), ctypes.create_string_buffer(512)
        rc = lib.c.bifsmn_load_file(str(path).encode(), _impl(kernel), ctypes.byref(handle), msg, len(msg))
        if rc != 0:
            raise UserError(f"{path}: {msg.value.decode(errors='replace')}")
        return cls(lib, handle, str(path))

    @classmethod
    def from_bytes(cls, data: bytes, lib: Library | Path | str | None = None, kernel: str = "auto") -> Engine:
        lib = lib if isinstance(lib, Library) else Library(lib)
        handle, msg = ctypes.c_void_p(), ctypes.create_string_buffer(512)
        rc = lib.c.bifsmn_load_memory(data, len(data), _impl(kernel), ctypes.byref(handle), msg, len(msg))
        if rc != 0:
            raise UserError(f"model bytes: {msg.value.decode(errors='replace')}")
        return cls(lib, handle, "<memory>")

    def _handle(self) -> ctypes.c_void_p:
        if not self._h:
            raise UserError(f"{self.source}: the engine is closed")
        return self._h

    def run_pcm(self, pcm: Any) -> np.ndarray:
        """int16 samples (num_samples,) -> logits (num_classes,)."""
        x = np.ascontiguousarray(pcm, dtype=np.int16)
        rc = self.lib.c.bifsmn_run_pcm(self._handle(), x, x.size, self._scores, self.num_classes)
        self.lib.check(rc, f"run_pcm on {x.size} samples (the model takes {self.num_samples})")
        return self._scores.copy()

    def run_features(self, features: Any) -> np.ndarray:
        """dB features (n_mels, n_frames) -> logits (num_classes,)."""
        x = _f32(features, self.feature_shape, "run_features")
        self.lib.check(
            self.lib.c.bifsmn_run_features(self._handle(), x, x.size, self._scores, self.num_classes),
            "run_features",
        )
        return self._scores.copy()

    def features_pcm(self, pcm: Any) -> np.ndarray:
        """The model's C front end alone: int16 samples -> (n_mels, n_frames)."""
        x = np.ascontiguousarray(pcm, dtype=np.int16)
        out = np.empty(self.feature_shape, dtype=np.float32)
        rc = self.lib.c.bifsmn_features_pcm(self._handle(), x, x.size, out, out.size)
        self.lib.check(rc, f"features_pcm on {x.size} samples (the model takes {self.num_samples})")
        return out

    def op_info(self, index: int) -> dict[str, Any]:
        info = _OpInfo()
        self.lib.check(
            self.lib.c.bifsmn_op_get_info(self._handle(), index, ctypes.byref(info)), f"op {index}"
        )
        return {
            "type": OP_NAMES[info.type],
            "binary": bool(info.binary),
            "in_shape": tuple(info.in_shape),
            "out_shape": tuple(info.out_shape),
            "has_residual": bool(info.has_residual),
        }

    def run_op(self, index: int, x: Any, residual: Any | None = None) -> tuple[np.ndarray, np.ndarray | None]:
        """Run one layer record alone on (time, height, channels) input: (float output, integer +-1 dot
        products before the affine for a binary op, else None)."""
        info = self.op_info(index)
        x = _f32(x, info["in_shape"], f"op {index} input")
        out = np.empty(info["out_shape"], dtype=np.float32)
        ints = np.empty(info["out_shape"], dtype=np.int32) if info["binary"] else None
        res = None if residual is None else _f32(residual, info["out_shape"], f"op {index} residual")
        rc = self.lib.c.bifsmn_op_run(
            self._handle(),
            index,
            x,
            None if res is None else res.ctypes.data_as(ctypes.c_void_p),
            out,
            None if ints is None else ints.ctypes.data_as(ctypes.c_void_p),
        )
        self.lib.check(rc, f"op {index}" + (" needs a residual input" if info["has_residual"] else ""))
        return out, ints

    def close(self) -> None:
        if self._h:
            self.lib.c.bifsmn_free(self._h)
            self._h = ctypes.c_void_p()

    def __enter__(self) -> Engine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        self.close()

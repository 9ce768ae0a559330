"""ctypes binding to the engine's streaming API (csrc/include/bifsmn.h, "Streaming keyword detection"):
`Stream` turns continuous int16 PCM into keyword events (and, optionally, every run's posteriors) with the C
incremental front end, network and detector; `Detector` runs the same posterior rule on posteriors from
anywhere, so that a threshold sweep does not rerun the network.

It declares its own C signatures on the library an `Engine` was loaded from. Times are in samples from the
start of the stream (the end of the window that produced them); `seconds` divides by the sample rate.
"""

from __future__ import annotations

import ctypes
import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from bifsmn_cli.engine.binding import Engine
from bifsmn_cli.errors import UserError

EDGE_MODES = {"audio": 0, "reflect": 1}


class _Event(ctypes.Structure):
    _fields_ = [("time", ctypes.c_int64), ("keyword", ctypes.c_int), ("score", ctypes.c_float)]


class _DetectorConfig(ctypes.Structure):
    _fields_ = [
        ("threshold", ctypes.c_float),
        ("thresholds", ctypes.POINTER(ctypes.c_float)),
        ("average_ms", ctypes.c_float),
        ("refractory_ms", ctypes.c_float),
        ("rearm", ctypes.c_float),
        ("min_count", ctypes.c_int),
    ]


_EVENT_FN = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.POINTER(_Event))
_POSTERIORS_FN = ctypes.CFUNCTYPE(
    None,
    ctypes.c_void_p,
    ctypes.c_int64,
    ctypes.POINTER(ctypes.c_float),
    ctypes.POINTER(ctypes.c_float),
    ctypes.c_int,
)


class _StreamConfig(ctypes.Structure):
    _fields_ = [
        ("stride", ctypes.c_int),
        ("edge_frames", ctypes.c_int),
        ("detector", _DetectorConfig),
        ("on_event", _EVENT_FN),
        ("on_posteriors", _POSTERIORS_FN),
        ("user", ctypes.c_void_p),
    ]


_i16p = np.ctypeslib.ndpointer(np.int16, flags="C_CONTIGUOUS")
_f32p = np.ctypeslib.ndpointer(np.float32, flags="C_CONTIGUOUS")
_SIGNATURES: dict[str, tuple[Any, list[Any]]] = {
    "bifsmn_stream_config_default": (None, [ctypes.POINTER(_StreamConfig)]),
    "bifsmn_stream_create": (
        ctypes.c_int,
        [
            ctypes.c_void_p,
            ctypes.POINTER(_StreamConfig),
            ctypes.POINTER(ctypes.c_void_p),
            ctypes.c_char_p,
            ctypes.c_size_t,
        ],
    ),
    "bifsmn_stream_push": (ctypes.c_int, [ctypes.c_void_p, _i16p, ctypes.c_size_t]),
    "bifsmn_stream_finish": (ctypes.c_int, [ctypes.c_void_p]),
    "bifsmn_stream_reset": (ctypes.c_int, [ctypes.c_void_p]),
    "bifsmn_stream_free": (None, [ctypes.c_void_p]),
    "bifsmn_stream_position": (ctypes.c_int64, [ctypes.c_void_p]),
    "bifsmn_stream_hop": (ctypes.c_int, [ctypes.c_void_p]),
    "bifsmn_stream_latency": (ctypes.c_int, [ctypes.c_void_p]),
    "bifsmn_stream_features": (ctypes.c_int, [ctypes.c_void_p, _f32p, ctypes.c_size_t]),
    "bifsmn_detector_create": (
        ctypes.c_int,
        [
            ctypes.c_void_p,
            ctypes.c_int,
            ctypes.POINTER(_DetectorConfig),
            ctypes.POINTER(ctypes.c_void_p),
            ctypes.c_char_p,
            ctypes.c_size_t,
        ],
    ),
    "bifsmn_detector_step": (
        ctypes.c_int,
        [ctypes.c_void_p, ctypes.c_int64, _f32p, ctypes.c_size_t, ctypes.POINTER(_Event)],
    ),
    "bifsmn_detector_run": (
        ctypes.c_int,
        [
            ctypes.c_void_p,
            np.ctypeslib.ndpointer(np.int64, flags="C_CONTIGUOUS"),
            _f32p,
            ctypes.c_size_t,
            ctypes.c_size_t,
            ctypes.POINTER(_Event),
            ctypes.c_size_t,
        ],
    ),
    "bifsmn_detector_reset": (None, [ctypes.c_void_p]),
    "bifsmn_detector_free": (None, [ctypes.c_void_p]),
}


def _declare(engine: Engine) -> ctypes.CDLL:
    c = engine.lib.c
    if not getattr(c, "_bifsmn_stream_declared", False):
        for name, (res, args) in _SIGNATURES.items():
            try:
                fn = getattr(c, name)
            except AttributeError:
                raise UserError(
                    f"{engine.source}: this engine library has no streaming API ({name}); rebuild it"
                ) from None
            fn.restype, fn.argtypes = res, args
        c._bifsmn_stream_declared = True
    return c


def _defaults(engine: Engine) -> _StreamConfig:
    """bifsmn_stream_config_default: the one place the defaults are defined is the C library."""
    cfg = _StreamConfig()
    _declare(engine).bifsmn_stream_config_default(ctypes.byref(cfg))
    return cfg


def default_stride(engine: Engine) -> int:
    """BIFSMN_DEFAULT_STRIDE, as the engine library defines it."""
    return int(_defaults(engine).stride)


@dataclass(frozen=True)
class Event:
    """A detection: the window [time - clip, time) fired `keyword` with averaged posterior `score`."""

    time: int
    keyword: str
    score: float
    seconds: float


_KEYS = ("threshold", "average_ms", "refractory_ms", "rearm", "min_count")


@dataclass(frozen=True)
class DetectorSettings:
    """The detector's keys (bifsmn.h): thresholds per class name override `threshold`; above 1 disables. None
    is the engine's default (BIFSMN_DEFAULT_*; `resolved` fills them in)."""

    threshold: float | None = None
    thresholds: Mapping[str, float] | None = None
    average_ms: float | None = None
    refractory_ms: float | None = None
    rearm: float | None = None
    min_count: int | None = None

    def resolved(self, engine: Engine) -> DetectorSettings:
        """These settings with every default filled in from the engine library."""
        d = _defaults(engine).detector  # C floats: 0.8f reads 0.800000011920929, so round to float32 digits
        c = {k: getattr(d, k) if k == "min_count" else round(getattr(d, k), 6) for k in _KEYS}
        return dataclasses.replace(
            self, **{k: c[k] if getattr(self, k) is None else getattr(self, k) for k in _KEYS}
        )

    def _c(self, engine: Engine) -> tuple[_DetectorConfig, Any]:
        """The C struct and the per-class array it points to (keep it alive until the C side copied it)."""
        r = self.resolved(engine)
        per_class = None
        if r.thresholds is not None:
            unknown = sorted(set(r.thresholds) - set(engine.classes))
            if unknown:
                raise UserError(
                    f"thresholds: {engine.source} has no class {', '.join(map(repr, unknown))} "
                    f"(classes: {', '.join(engine.classes)})"
                )
            values = [
                r.thresholds.get(name, 2.0 if name.startswith("_") else r.threshold)
                for name in engine.classes
            ]
            per_class = (ctypes.c_float * len(values))(*values)
        cfg = _DetectorConfig(
            r.threshold,
            ctypes.cast(per_class, ctypes.POINTER(ctypes.c_float)) if per_class is not None else None,
            r.average_ms,
            r.refractory_ms,
            r.rearm,
            r.min_count,
        )
        return cfg, per_class


def _created(rc: int, msg: ctypes.Array, what: str) -> None:
    if rc != 0:
        raise UserError(f"{what}: {msg.value.decode(errors='replace') or f'error {rc}'}")


class Stream:
    """Continuous PCM -> events through the C engine. push() may take any number of samples: the events and
    posteriors do not depend on how the audio is cut; finish() evaluates the end of the audio. Not thread-safe,
    like the Engine it runs on. `stride` None is the engine's default (BIFSMN_DEFAULT_STRIDE)."""

    def __init__(
        self,
        engine: Engine,
        detector: DetectorSettings | None = None,
        stride: int | None = None,
        edge: str = "audio",
        posteriors: bool = False,
    ) -> None:
        self._h = ctypes.c_void_p()  # first: __del__ runs even when __init__ raises
        if edge not in EDGE_MODES:
            raise UserError(f"edge: expected one of {', '.join(EDGE_MODES)}, got {edge!r}")
        self.engine, self.c = engine, _declare(engine)
        self.events: list[Event] = []
        self.posteriors: list[tuple[int, np.ndarray]] = []
        self._keep_posteriors = posteriors
        self._on_event = _EVENT_FN(self._event)
        self._on_posteriors = _POSTERIORS_FN(self._posterior)
        cfg = _defaults(engine)
        if stride is not None:
            cfg.stride = stride
        cfg.edge_frames = EDGE_MODES[edge]
        cfg.detector, per_class = (detector or DetectorSettings())._c(engine)  # per_class lives until create
        cfg.on_event, cfg.on_posteriors = self._on_event, self._on_posteriors
        msg = ctypes.create_string_buffer(512)
        rc = self.c.bifsmn_stream_create(
            engine._handle(), ctypes.byref(cfg), ctypes.byref(self._h), msg, len(msg)
        )
        _created(rc, msg, f"{engine.source}: stream settings")
        self.stride = int(cfg.stride)
        self.hop = self.c.bifsmn_stream_hop(self._h)
        self.latency = self.c.bifsmn_stream_latency(self._h)

    def _event(self, _user: Any, e: Any) -> None:
        ev = e.contents
        self.events.append(
            Event(
                ev.time, self.engine.classes[ev.keyword], float(ev.score), ev.time / self.engine.sample_rate
            )
        )

    def _posterior(self, _user: Any, time: int, p: Any, _a: Any, n: int) -> None:
        if self._keep_posteriors:
            self.posteriors.append((time, np.ctypeslib.as_array(p, (n,)).copy()))

    def _stream(self) -> ctypes.c_void_p:
        self.engine._handle()  # refuses when the engine was closed under the stream
        if not self._h:
            raise UserError(f"{self.engine.source}: the stream is closed")
        return self._h

    def push(self, pcm: Any) -> list[Event]:
        """Feed int16 samples; returns the events this push produced (all of them stay in .events)."""
        x = np.asarray(pcm)
        if x.dtype != np.int16:
            raise UserError(
                f"stream push: expected int16 PCM samples, got {x.dtype} (scale floats by 32768 and round)"
            )
        x = np.ascontiguousarray(x).reshape(-1)
        before = len(self.events)
        self.engine.lib.check(self.c.bifsmn_stream_push(self._stream(), x, x.size), "stream push")
        return self.events[before:]

    def finish(self) -> list[Event]:
        """The end of the audio: the stream runs on over appended silence until a window ends half a clip past
        the last sample (bifsmn_stream_finish), so a keyword at the very end fires; returns the events this
        produced. Afterwards push() refuses samples until reset(); a second finish() does nothing."""
        before = len(self.events)
        self.engine.lib.check(self.c.bifsmn_stream_finish(self._stream()), "stream finish")
        return self.events[before:]

    @property
    def position(self) -> int:
        return int(self.c.bifsmn_stream_position(self._stream()))

    def features(self) -> np.ndarray:
        """The (n_mels, n_frames) features of the last run's window."""
        out = np.empty(self.engine.feature_shape, dtype=np.float32)
        self.engine.lib.check(self.c.bifsmn_stream_features(self._stream(), out, out.size), "stream features")
        return out

    def reset(self) -> None:
        self.engine.lib.check(self.c.bifsmn_stream_reset(self._stream()), "stream reset")
        self.events.clear()
        self.posteriors.clear()

    def close(self) -> None:
        if self._h:
            self.c.bifsmn_stream_free(self._h)
            self._h = ctypes.c_void_p()

    def __enter__(self) -> Stream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        self.close()


class Detector:
    """The stream's posterior rule alone, with runs `stride` hops apart on the engine's front end (None: the
    engine's default stride, as Stream)."""

    def __init__(
        self, engine: Engine, detector: DetectorSettings | None = None, stride: int | None = None
    ) -> None:
        self._h = ctypes.c_void_p()
        self.engine, self.c = engine, _declare(engine)
        if stride is None:
            stride = default_stride(engine)
        cfg, per_class = (detector or DetectorSettings())._c(engine)
        msg = ctypes.create_string_buffer(512)
        rc = self.c.bifsmn_detector_create(
            engine._handle(), stride, ctypes.byref(cfg), ctypes.byref(self._h), msg, len(msg)
        )
        _created(rc, msg, f"{engine.source}: detector settings")

    def run(self, times: Any, posteriors: Any) -> list[Event]:
        """Events of a posterior sequence (runs x classes) at the given times (samples), from a reset state."""
        p = np.ascontiguousarray(posteriors, dtype=np.float32)
        t = np.ascontiguousarray(times, dtype=np.int64)
        if p.ndim != 2 or p.shape[1] != self.engine.num_classes or t.shape != (len(p),):
            raise UserError(
                f"detector: expected ({len(t)}, {self.engine.num_classes}) posteriors, got {p.shape}"
            )
        out = (_Event * max(1, len(p)))()  # at most one event per run
        fired = self.c.bifsmn_detector_run(self._h, t, p, len(p), p.shape[1], out, len(out))
        if fired < 0:
            self.engine.lib.check(fired, "detector run")
        rate, classes = self.engine.sample_rate, self.engine.classes
        return [Event(e.time, classes[e.keyword], float(e.score), e.time / rate) for e in out[:fired]]

    def close(self) -> None:
        if self._h:
            self.c.bifsmn_detector_free(self._h)
            self._h = ctypes.c_void_p()

    def __del__(self) -> None:
        self.close()

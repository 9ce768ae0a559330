"""bench.json's `streaming` section: every exported model as a streaming keyword detector in the C engine.

Accuracy. Two streams are built from the evaluation split (stream_eval.streams, TensorFlow's recipe): a keyword
stream (a word every 1-5 s, 30 % of them non-keywords, over background noise) and a false-alarm stream (noise
and non-keywords only), from seeds `seed` and `seed + 1`. Each model's `Stream` (default detector, the
configured stride, edge frames from real audio) runs over both, finished at their ends, once, keeping every
run's posteriors. At the default threshold: TensorFlow's matched / correct / wrong / false-positive percentages
on the keyword stream, found keywords and false alarms per hour (stream_eval.scoring). The DET curve reruns
only the C detector (`Detector.run`) on the stored posteriors at every threshold of the sweep; the operating
point is the best threshold at <= 1 false alarm per hour (stream_eval.det).

Cost. `bifsmn-infer --bench --stream` pushes `cost_seconds` of a test clip, tiled, a hop at a time through a
reset stream, and reports this thread's CPU time; the models alternate in round-robin rounds (bench.latency).
Per audio second, per hop and as a real-time factor; beside it, what a loop of the clip engine over a 1-s window
every 30 ms (the improvised detector the streaming API replaced) costs with this engine: 1000 / 30 x its e2e
clip time from the latency section. Under qemu with the insn plugin: executed aarch64 instructions per second
of audio, (count(1 + S seconds) - count(1 second)) / S.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bifsmn_cli.bench import arm, latency
from bifsmn_cli.console import progress
from bifsmn_cli.engine.binding import Engine
from bifsmn_cli.engine.stream import Detector, DetectorSettings, Event, Stream, default_stride
from bifsmn_cli.errors import UserError
from bifsmn_cli.stream_eval import det, scoring, streams

LOOP_PERIOD_MS = 30.0  # the improvised detector's window period (the measurement)
COST_REPEATS = 3  # timed pushes of cost_seconds per model and round


@dataclass(frozen=True)
class Settings:
    """The bench keys that shape the streaming evaluation (bench.streaming_*)."""

    seconds: float = 600.0
    false_alarm_seconds: float = 3600.0
    unknown_percentage: float = 30.0
    background_volume: float = 0.1
    tolerance_ms: float = 750.0
    stride: int | None = None  # None: the engine's default
    thresholds: tuple[float, ...] = det.THRESHOLDS
    cost_seconds: float = 10.0

    @classmethod
    def from_config(cls, c: dict[str, Any]) -> Settings:
        return cls(
            seconds=c["streaming_seconds"],
            false_alarm_seconds=c["streaming_false_alarm_seconds"],
            unknown_percentage=c["streaming_unknown_percentage"],
            background_volume=c["streaming_background_volume"],
            tolerance_ms=c["streaming_tolerance_ms"],
            stride=c["streaming_stride"],
            thresholds=tuple(c["streaming_thresholds"]),
            cost_seconds=c["streaming_cost_seconds"],
        )


@dataclass
class SplitAudio:
    """The clips streams are built from."""

    name: str
    waves: np.ndarray  # int16, one clip each
    labels: np.ndarray
    classes: list[str]
    noises: list[np.ndarray]


def build_streams(
    split: SplitAudio, s: Settings, seed: int, sample_rate: int
) -> list[streams.LabelledStream]:
    """The keyword stream, then the false-alarm stream (when its length is not 0)."""
    common = {
        "waves": split.waves,
        "labels": split.labels,
        "classes": split.classes,
        "noises": split.noises,
        "background_volume": s.background_volume,
        "sample_rate": sample_rate,
    }
    out = [streams.build(**common, seconds=s.seconds, seed=seed, unknown_fraction=s.unknown_percentage / 100)]
    if s.false_alarm_seconds > 0:
        out.append(
            streams.build(**common, seconds=s.false_alarm_seconds, seed=seed + 1, unknown_fraction=1.0)
        )
    return out


@dataclass
class Runs:
    """One model over one stream: every run's time (window end, samples) and posteriors, and the stream's own
    events at its settings."""

    times: np.ndarray
    posteriors: np.ndarray
    events: list[Event]


def collect(engine: Engine, stream: streams.LabelledStream, stride: int | None) -> Runs:
    with Stream(engine, DetectorSettings(), stride=stride, posteriors=True) as s:
        for block in stream.chunks():
            s.push(block)
        s.finish()
        times = np.array([t for t, _ in s.posteriors], dtype=np.int64)
        p = np.stack([p for _, p in s.posteriors]) if s.posteriors else np.zeros((0, engine.num_classes))
        return Runs(times, p.astype(np.float32), list(s.events))


def _timed(engine: Engine, events: list[Event]) -> list[scoring.Timed]:
    rate, clip = engine.sample_rate, engine.num_samples
    return [scoring.Timed(e.keyword, scoring.window_start_ms(e.time, clip, rate)) for e in events]


def evaluate(engine: Engine, built: list[streams.LabelledStream], s: Settings) -> dict[str, Any]:
    """The accuracy figures of one model (see the module docstring)."""
    runs = [collect(engine, st, s.stride) for st in built]
    evaluated = [
        det.Evaluated(
            [scoring.Timed(x.keyword, 1000.0 * x.start / st.sample_rate) for x in st.labels], st.seconds
        )
        for st in built
    ]
    default = DetectorSettings().resolved(engine)
    at_default = {"threshold": default.threshold} | det.point(
        evaluated, [_timed(engine, r.events) for r in runs], s.tolerance_ms
    )
    tf = scoring.tensorflow_stats(evaluated[0].labels, _timed(engine, runs[0].events), s.tolerance_ms)
    detectors: dict[float, Detector] = {}

    def detect(threshold: float, i: int) -> list[scoring.Timed]:
        if threshold not in detectors:  # every other key at the engine's default
            detectors[threshold] = Detector(engine, DetectorSettings(threshold=threshold), s.stride)
        return _timed(engine, detectors[threshold].run(runs[i].times, runs[i].posteriors))

    points = det.curve(detect, evaluated, s.thresholds, s.tolerance_ms)
    for d in detectors.values():
        d.close()
    return {
        "network_runs": [int(len(r.times)) for r in runs],
        "tensorflow": tf,
        "default": at_default,
        "det": points,
        "at_1_false_alarm_per_hour": det.operating_point(points, 1.0),
    }


def streams_section(
    built: list[streams.LabelledStream], split: SplitAudio, s: Settings, seed: int
) -> dict[str, Any]:
    """What the streams hold, for bench.json."""
    out = {}
    for name, st, sd in zip(("keywords", "false_alarms"), built, (seed, seed + 1), strict=False):
        out[name] = {
            "seconds": st.seconds,
            "keywords": len(st.labels),
            "non_keywords": st.non_keywords,
            "seed": sd,
        } | ({"notes": st.notes} if st.notes else {})
    hours = sum(st.seconds for st in built) / 3600.0
    return {
        "split": split.name,
        "clips": int(len(split.labels)),
        "hours": hours,
        "one_false_alarm_per_hour": 1.0 / hours,
        **out,
    }


def _stream_args(s: Settings, seconds: float) -> list[str]:
    return ["--stream", "--bench-seconds", f"{seconds:g}", *(["--stride", str(s.stride)] if s.stride else [])]


def _stream_runner(infer: list[str], model: str, clip: str, s: Settings, meta: dict[str, Any]) -> Any:
    def run(repeats: int, warmup: int) -> latency.Samples:
        cmd = [*infer, "--bench", str(repeats), "--warmup", str(warmup), *_stream_args(s, s.cost_seconds)]
        done = latency.run_command([*cmd, model, clip])
        try:
            out = json.loads(done.stdout)
            meta.update(
                {k: out["stream"][k] for k in ("stride", "hop_samples", "network_runs", "audio_samples")}
            )
            return {"stream": [int(t) for t in out["stream_cpu_ns"]]}
        except (ValueError, KeyError, TypeError):
            raise UserError(f"{cmd[0]}: unexpected --bench --stream output {done.stdout[:120]!r}") from None

    return run


def cost(
    infer: Path, models: dict[str, Path], clip: Path, s: Settings, rounds: int, sample_rate: int
) -> dict[str, dict[str, Any]]:
    """CPU time of a stream per model (see the module docstring)."""
    metas = {m: {} for m in models}
    contenders = [
        latency.Contender(
            f"stream {m}",
            "engine",
            m,
            ("stream",),
            _stream_runner([str(infer)], str(p), str(clip), s, metas[m]),
        )
        for m, p in models.items()
    ]
    raw = latency.round_robin(contenders, rounds, COST_REPEATS, 1)
    out = {}
    for c in contenders:
        summary = latency.summarize(raw[c.name]["stream"])
        meta = metas[c.model]
        seconds = meta["audio_samples"] / sample_rate
        hops = meta["audio_samples"] / meta["hop_samples"]
        out[c.model] = {
            "stride": meta["stride"],
            "audio_seconds": seconds,
            "network_runs_per_second": meta["network_runs"] / seconds,
            "cpu_us_per_audio_second": summary["median_us"] / seconds,
            "cpu_us_per_hop": summary["median_us"] / hops,
            "real_time_factor": summary["median_us"] / (seconds * 1e6),
            "round_medians_us_per_audio_second": [r / seconds for r in summary["round_medians_us"]],
            "runs": summary["runs"],
        }
    return out


def qemu_insns(
    qemu: str, plugin: Path, infer: Path, models: dict[str, Path], clip: Path, s: Settings
) -> dict[str, float]:
    """Executed aarch64 instructions per second of audio of each model's stream."""

    def count(model: Path, seconds: float) -> int:
        args = ["--bench", "1", "--warmup", "0", *_stream_args(s, seconds), str(model), str(clip)]
        return arm.qemu_count(qemu, plugin, infer, args)

    return {m: (count(p, 1 + s.cost_seconds) - count(p, 1)) / s.cost_seconds for m, p in models.items()}


@dataclass(frozen=True)
class Qemu:
    """qemu-aarch64, the insn plugin and the aarch64 bifsmn-infer; or why instructions are not counted."""

    qemu: str | None = None
    plugin: Path | None = None
    infer: Path | None = None
    target: str | None = None
    reason: str | None = None


def measure(
    library: Any,
    files: dict[str, Path],
    split: SplitAudio,
    s: Settings,
    seed: int,
    infer: Path,
    clip: Path,
    rounds: int,
    clip_e2e_us: dict[str, float | None],
    qemu: Qemu,
) -> dict[str, Any]:
    """The whole section: streams, then per model accuracy, cost and (under qemu) instructions."""
    models: dict[str, dict[str, Any]] = {}
    built: list[streams.LabelledStream] = []
    with progress("streaming", total=len(files), unit="models") as bar:
        for m, path in files.items():
            with library.load(path) as engine:
                if not built:
                    built = build_streams(split, s, seed, engine.sample_rate)
                    rate, stride = engine.sample_rate, s.stride or default_stride(engine)
                    defaults = DetectorSettings().resolved(engine)
                models[m] = evaluate(engine, built, s)
            bar.advance()
    costs = cost(infer, files, clip, s, rounds, rate)
    insns = qemu_insns(qemu.qemu, qemu.plugin, qemu.infer, files, clip, s) if qemu.reason is None else {}
    for m, row in costs.items():
        e2e = clip_e2e_us.get(m)
        if e2e:
            loop = e2e * 1000.0 / LOOP_PERIOD_MS
            row |= {
                "clip_loop_us_per_audio_second": loop,
                "clip_loop_over_stream": loop / row["cpu_us_per_audio_second"],
            }
        if m in insns:
            row["aarch64_insns_per_audio_second"] = insns[m]
        models[m]["cost"] = row
    return {
        "measured": True,
        "settings": {
            "stride": stride,
            "edge_frames": "audio",
            "detector": {
                k: getattr(defaults, k)
                for k in ("threshold", "average_ms", "refractory_ms", "rearm", "min_count")
            },
            "tolerance_ms": s.tolerance_ms,
            "unknown_percentage": s.unknown_percentage,
            "background_volume": s.background_volume,
            "cost_seconds": s.cost_seconds,
        },
        "streams": streams_section(built, split, s, seed),
        "qemu": {"measured": True, "target": qemu.target, "plugin": str(qemu.plugin)}
        if qemu.reason is None
        else {"measured": False, "reason": qemu.reason},
        "models": models,
    }

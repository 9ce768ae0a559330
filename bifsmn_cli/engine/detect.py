"""`bifsmn detect`: keyword events in long recordings with a .bfsm model, through the C engine's stream.

Files are decoded in Python as `bifsmn predict` decodes clips (WAV or FLAC, any rate, mono or several channels:
resampled and downmixed), but not fitted to a clip: the whole recording goes through one `Stream` (the C
incremental front end, network every `stride` hops, detector), which is finished at the end so that a keyword in
the last second is evaluated too. The events are those `bifsmn-infer --stream` prints for the same samples.
Every file is processed before anything is written, so a bad file leaves no partial output.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bifsmn_cli.audio.wav import to_int16
from bifsmn_cli.engine.binding import Library
from bifsmn_cli.engine.predict import load_audio, open_engine
from bifsmn_cli.engine.stream import DetectorSettings, Event, Stream
from bifsmn_cli.errors import UserError


@dataclass
class Detections:
    """The events of one file; `seconds` is its duration at the model's rate."""

    file: str
    seconds: float
    events: list[Event]
    converted: list[str] = field(default_factory=list)  # "resampled from 44100 Hz", "downmixed"

    def as_dict(self) -> dict[str, Any]:
        return {
            "file": self.file,
            "seconds": round(self.seconds, 6),
            "converted": self.converted,
            "events": [
                {"time": round(e.seconds, 6), "keyword": e.keyword, "score": round(e.score, 6)}
                for e in self.events
            ],
        }


def parse_thresholds(values: list[str]) -> tuple[float | None, dict[str, float]]:
    """`--threshold` values: one plain T (every keyword) and any number of CLASS=T."""
    common, per_class = None, {}
    for v in values:
        name, eq, number = v.rpartition("=")
        try:
            t = float(number)
        except ValueError:
            t = float("nan")
        if not t > 0 or (eq and not name):
            raise UserError(f"--threshold: expected T in (0, 1] or CLASS=T with T > 0, got {v!r}")
        if eq:
            per_class[name] = t
        elif common is not None:
            raise UserError(
                f"--threshold: two common thresholds ({common:g} and {v}); give CLASS=T for one class"
            )
        else:
            common = t
    return common, per_class


def detect(
    model: Path | str,
    files: list[Path | str],
    settings: DetectorSettings | None = None,
    stride: int | None = None,
    edge: str = "audio",
    kernel: str = "auto",
    lib: Library | Path | str | None = None,
) -> list[Detections]:
    """The events of every file, each through a fresh stream."""
    if not files:
        raise UserError("no audio files given: bifsmn detect MODEL.bfsm AUDIO...")
    results = []
    with open_engine(model, kernel, lib) as engine:
        for f in map(Path, files):
            wave, clip = load_audio(f, engine.sample_rate)
            converted = [f"resampled from {clip.resampled_from} Hz"] if clip.resampled_from else []
            converted += ["downmixed"] if clip.downmixed else []
            with Stream(engine, settings, stride=stride, edge=edge) as stream:
                stream.push(to_int16(wave))
                stream.finish()
                events = list(stream.events)
            results.append(Detections(str(f), len(wave) / engine.sample_rate, events, converted))
    return results


def format_text(results: list[Detections]) -> str:
    lines = []
    for r in results:
        extra = f", {', '.join(r.converted)}" if r.converted else ""
        lines.append(f"{r.file}  ({r.seconds:.2f} s{extra}; {len(r.events)} events)")
        lines += [f"  {e.seconds:10.3f} s  {e.keyword:<16} {e.score:.4f}" for e in r.events]
    return "\n".join(lines)


def format_json(results: list[Detections]) -> str:
    return json.dumps([r.as_dict() for r in results], indent=2)

"""DET curves of a streaming keyword detector: the false-rejection rate against false alarms per hour over a sweep
of thresholds, WeKws's compute_det convention (posteriors collected once, the detector's rule rerun at every
threshold, false alarms per hour of audio), here on labelled streams (`scoring.score`).

False alarms are counted on every stream evaluated (a keyword stream's wrong and duplicate detections as well as
the false-alarm stream's), per hour of all of them; keywords are those of the labelled streams. With H hours of
audio, one false alarm is 1 / H per hour: the resolution of every figure below.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from bifsmn_cli.stream_eval.scoring import Score, Timed, score

# thresholds of the sweep: coarse below 0.9, finer towards 1, where a confident (binary) model's low false-alarm
# operating points lie
THRESHOLDS = (
    *(round(0.05 * i, 2) for i in range(2, 18)),
    0.9, 0.92, 0.94, 0.95, 0.96, 0.97, 0.98, 0.985, 0.99, 0.995, 0.998, 0.999, 0.9995, 0.9998, 0.9999,
)  # fmt: skip


@dataclass(frozen=True)
class Evaluated:
    """One stream to score: its labels (empty for a false-alarm stream) and duration."""

    labels: Sequence[Timed]
    seconds: float


def point(
    streams: Sequence[Evaluated], detections: Sequence[Sequence[Timed]], tolerance_ms: float
) -> dict[str, Any]:
    """Found keywords, false alarms (per stream and per hour) and the false-rejection rate of one detector run."""
    scores: list[Score] = [score(s.labels, d, tolerance_ms) for s, d in zip(streams, detections, strict=True)]
    labels = sum(s.labels for s in scores)
    found = sum(s.found for s in scores)
    false_alarms = [s.false_alarms for s in scores]
    hours = sum(s.seconds for s in streams) / 3600.0
    return {
        "keywords": labels,
        "found": found,
        "false_rejection_rate": None if labels == 0 else 1.0 - found / labels,
        "false_alarms": false_alarms,
        "false_alarms_per_hour": sum(false_alarms) / hours if hours > 0 else None,
    }


def curve(
    detect: Callable[[float, int], Sequence[Timed]],
    streams: Sequence[Evaluated],
    thresholds: Sequence[float] = THRESHOLDS,
    tolerance_ms: float = 750.0,
) -> list[dict[str, Any]]:
    """One point per threshold; `detect(threshold, i)` gives the detections on stream i at that threshold."""
    return [
        {"threshold": t} | point(streams, [detect(t, i) for i in range(len(streams))], tolerance_ms)
        for t in sorted(thresholds)
    ]


def operating_point(points: Sequence[dict[str, Any]], max_per_hour: float = 1.0) -> dict[str, Any] | None:
    """The point with the fewest missed keywords among those at most `max_per_hour` false alarms per hour (the
    lowest threshold of equals); None when no threshold of the sweep gets there."""
    ok = [
        p
        for p in points
        if p["false_alarms_per_hour"] is not None and p["false_alarms_per_hour"] <= max_per_hour
    ]
    if not ok:
        return None
    return min(ok, key=lambda p: (p["false_rejection_rate"] or 0.0, p["threshold"]))

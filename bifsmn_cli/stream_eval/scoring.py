"""Detections on a labelled stream, scored two ways.

Times are milliseconds in TensorFlow's convention: a label is the start of its clip in the stream, a detection
the start of the 1-s window that fired (`window_start_ms`: the engine's event times are window ends). A detection
matches the first label, in time order, within `tolerance_ms` of it (TensorFlow's test_streaming_accuracy: 750).

- `tensorflow_stats`: TensorFlow's StreamingAccuracyStats at the end of a stream: a match with the same keyword
  on a label no earlier detection matched is correct, any other match wrong, no match a false positive; matched
  counts every match (so a label matched twice counts twice); each as a percentage of the labels.
- `score`: what a DET curve needs. A label is found when some detection of its keyword matches it; every other
  detection is a false alarm (it matches nothing, matches another keyword's label, or finds a label again), so
  found + false alarms = detections.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Timed:
    """A keyword at a time in milliseconds (a label or a detection)."""

    keyword: str
    ms: float


@dataclass(frozen=True)
class Score:
    labels: int
    found: int
    false_alarms: int

    @property
    def false_rejection_rate(self) -> float | None:
        return None if self.labels == 0 else 1.0 - self.found / self.labels


def window_start_ms(end: int, clip: int, sample_rate: int) -> float:
    """TensorFlow's detection time for an engine event at window end `end` (samples)."""
    return 1000.0 * (end - clip) / sample_rate


def _matches(labels: Sequence[Timed], detections: Sequence[Timed], tolerance_ms: float) -> list[int | None]:
    """For each detection, the index of the first label within the tolerance, or None."""
    order = sorted(range(len(labels)), key=lambda i: labels[i].ms)
    times = [labels[i].ms for i in order]
    out: list[int | None] = []
    for d in detections:
        j = bisect.bisect_left(times, d.ms - tolerance_ms)
        out.append(order[j] if j < len(times) and times[j] <= d.ms + tolerance_ms else None)
    return out


def tensorflow_stats(
    labels: Sequence[Timed], detections: Sequence[Timed], tolerance_ms: float = 750.0
) -> dict[str, float | int | None]:
    """TensorFlow's matched / correct / wrong / false-positive counts and percentages of the labels."""
    correct = wrong = false_positive = matched = 0
    seen: set[int] = set()
    for d, j in zip(detections, _matches(labels, detections, tolerance_ms), strict=True):
        if j is None:
            false_positive += 1
            continue
        matched += 1
        if labels[j].keyword == d.keyword and j not in seen:
            correct += 1
        else:
            wrong += 1
        seen.add(j)
    n = len(labels)
    counts = {
        "labels": n,
        "matched": matched,
        "correct": correct,
        "wrong": wrong,
        "false_positive": false_positive,
    }
    return counts | {
        f"{k}_pct": None if n == 0 else 100.0 * v / n for k, v in counts.items() if k != "labels"
    }


def score(labels: Sequence[Timed], detections: Sequence[Timed], tolerance_ms: float = 750.0) -> Score:
    """Found labels and false alarms (see the module docstring)."""
    found: set[int] = set()
    for d, j in zip(detections, _matches(labels, detections, tolerance_ms), strict=True):
        if j is not None and labels[j].keyword == d.keyword:
            found.add(j)
    return Score(len(labels), len(found), len(detections) - len(found))

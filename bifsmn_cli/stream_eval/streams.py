"""Long labelled test streams, built as TensorFlow's speech_commands `generate_streaming_test_wav.py` builds them.

- Background: one noise segment per clip length (1 s), each clip length + 500 ms long, so neighbours overlap by
  500 ms and cross-fade with linear ramps of 250 ms; a random noise file, a random offset in it and a random
  volume uniform in [0, background_volume) (TensorFlow: 0.1) per segment.
- Words: one per clip length + word gap (1 s + 2 s), at a random offset within the gap, so that one starts every
  1 to 5 s (3 on average) and 1 to 3 s of background separate neighbours on average; each a non-keyword
  (`_unknown_`) with probability `unknown_fraction` (TensorFlow: 30 %), else a keyword chosen uniformly, then a
  random clip of it, mixed at full volume with 500-sample ramps. Only keywords are labelled: (keyword, the
  sample where its clip starts).
- A false-alarm stream is the same with `unknown_fraction` 1: noise and non-keywords only.

A stream is a schedule of draws (all made up front from `seed`, in TensorFlow's order: backgrounds, then
words); `render(start, stop)` mixes any stretch of it, so an hour need not sit in memory, and any cutting into
blocks gives the same samples (each sample sums its segments and words in one fixed order, by start). Mixed samples are
clipped to [-1, 1] and stored as int16.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np

from bifsmn_cli.audio.wav import from_int16, to_int16
from bifsmn_cli.errors import UserError

UNKNOWN = "_unknown_"
CROSSOVER_MS = 500  # background segments overlap by this much
WORD_RAMP_SAMPLES = 500  # TensorFlow's fade in and out of each word


@dataclass(frozen=True)
class Label:
    """A keyword in a stream: its clip starts at sample `start`."""

    keyword: str
    start: int


@dataclass(frozen=True)
class _Mix:
    """One sound mixed into the stream: `source[offset : offset + length]` from sample `at`, times `volume`."""

    at: int
    source: int
    offset: int
    volume: float
    kind: int  # 0 background segment, 1 word


def _envelope(length: int, ramp: int) -> np.ndarray:
    """TensorFlow's mix_in_audio_sample envelope: i / ramp, 1, then (length - i) / ramp."""
    i = np.arange(length, dtype=np.float64)
    env = np.ones(length)
    env[:ramp] = i[:ramp] / ramp
    out = i > length - ramp
    env[out] = (length - i[out]) / ramp
    return env.astype(np.float32)


@dataclass
class LabelledStream:
    """A stream's schedule and its sources; `labels` are its keywords in time order."""

    sample_rate: int
    length: int
    labels: list[Label]
    non_keywords: int
    seed: int
    notes: list[str] = field(default_factory=list)
    _mixes: list[_Mix] = field(default_factory=list, repr=False)  # sorted by `at`
    _starts: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64), repr=False)  # their `at`
    _noises: list[np.ndarray] = field(default_factory=list, repr=False)
    _clips: np.ndarray | None = field(default=None, repr=False)
    _spans: tuple[int, int] = (0, 0)  # samples per background segment, per word
    _envelopes: tuple[np.ndarray, np.ndarray] | None = field(default=None, repr=False)

    @property
    def seconds(self) -> float:
        return self.length / self.sample_rate

    def render(self, start: int = 0, stop: int | None = None) -> np.ndarray:
        """Samples [start, stop) of the stream as int16."""
        stop = self.length if stop is None else min(stop, self.length)
        out = np.zeros(max(0, stop - start), dtype=np.float32)
        starts = self._starts
        first = int(np.searchsorted(starts, start - max(self._spans), side="right"))
        last = int(np.searchsorted(starts, stop, side="left"))
        for m in self._mixes[first:last]:
            span = self._spans[m.kind]
            source = self._noises[m.source] if m.kind == 0 else self._clips[m.source]
            n = min(span, len(source) - m.offset, self.length - m.at)  # cut at the source's and stream's end
            lo, hi = max(start, m.at), min(stop, m.at + n)
            if lo >= hi:
                continue
            piece = source[m.offset + lo - m.at : m.offset + hi - m.at]
            if m.kind == 1:
                piece = from_int16(piece)
            out[lo - start : hi - start] += piece * self._envelopes[m.kind][lo - m.at : hi - m.at] * m.volume
        return to_int16(np.clip(out, -1.0, 1.0))

    def chunks(self, seconds: float = 60.0) -> Iterator[np.ndarray]:
        """The whole stream in blocks of `seconds`."""
        step = max(1, int(seconds * self.sample_rate))
        for start in range(0, self.length, step):
            yield self.render(start, start + step)


def build(
    waves: np.ndarray,
    labels: np.ndarray,
    classes: list[str],
    noises: list[np.ndarray],
    seconds: float,
    seed: int,
    unknown_fraction: float = 0.3,
    background_volume: float = 0.1,
    word_gap_ms: float = 2000.0,
    sample_rate: int = 16000,
) -> LabelledStream:
    """A stream of `seconds` from clips `waves` (int16, one clip length each) with class indices `labels`;
    keywords are the classes whose name does not start with '_', non-keywords the `_unknown_` clips
    (`_silence_` clips are never used). Deterministic for a given seed."""
    rng = np.random.default_rng(seed)
    clip = waves.shape[1]
    length = int(round(seconds * sample_rate))
    labels = np.asarray(labels)
    by_class = {c: np.flatnonzero(labels == i) for i, c in enumerate(classes)}
    keywords = [c for c in classes if not c.startswith("_") and len(by_class[c])]
    unknown = by_class.get(UNKNOWN, np.array([], dtype=np.int64))
    notes = []
    if unknown_fraction < 1 and not keywords:
        raise UserError(
            "streaming: the split has no keyword clips (classes not starting with '_') to build a stream"
        )
    if unknown_fraction > 0 and not len(unknown):
        notes.append(f"no {UNKNOWN} clips in the split: the non-keyword slots stay empty")
    noises = [np.asarray(n, dtype=np.float32) for n in noises if len(n) > 0]
    if not noises:
        notes.append("no background noises: the words lie in digital silence")
    segment = clip + CROSSOVER_MS * sample_rate // 1000
    mixes = []
    for i in range(int(np.ceil(length / clip)) if noises else 0):
        k = int(rng.integers(len(noises)))
        offset = int(rng.integers(max(1, len(noises[k]) - clip)))
        mixes.append(_Mix(i * clip, k, offset, float(rng.uniform(0, background_volume)), 0))
    gap = int(word_gap_ms * sample_rate / 1000)
    stride = clip + gap
    placed, non_keywords = [], 0
    for i in range(length // stride):
        at = i * stride + int(rng.integers(max(1, gap)))
        if rng.random() < unknown_fraction:
            if not len(unknown):
                continue
            mixes.append(_Mix(at, int(rng.choice(unknown)), 0, 1.0, 1))
            non_keywords += 1
        else:
            word = keywords[int(rng.integers(len(keywords)))]
            mixes.append(_Mix(at, int(rng.choice(by_class[word])), 0, 1.0, 1))
            placed.append(Label(word, at))
    mixes.sort(key=lambda m: m.at)  # stable: one fixed order of the sums per sample
    return LabelledStream(
        sample_rate=sample_rate,
        length=length,
        labels=placed,
        non_keywords=non_keywords,
        seed=seed,
        notes=notes,
        _mixes=mixes,
        _starts=np.array([m.at for m in mixes], dtype=np.int64),
        _noises=noises,
        _clips=waves,
        _spans=(segment, clip),
        _envelopes=(
            _envelope(segment, CROSSOVER_MS // 2 * sample_rate // 1000),
            _envelope(clip, WORD_RAMP_SAMPLES),
        ),
    )

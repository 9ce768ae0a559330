"""espeak-ng as a speech source: its English voices and variants, and rendering words as 16 kHz clips.

espeak-ng runs as concurrent subprocesses from threads; each finished clip is one second with the word at its
drawn offset, level and noise floor (`Utterance`), so a corpus made from the same utterances is byte-identical
whatever the number of workers.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from bifsmn_cli.audio.wav import CLIP_SAMPLES, SAMPLE_RATE, from_int16, ordered_map, parse_wav_bytes, resample
from bifsmn_cli.errors import UserError

_CHUNK = 256  # utterances resampled together; bounds memory for any corpus size


def espeak_binary() -> str:
    path = shutil.which("espeak-ng")
    if path is None:
        raise UserError(
            "espeak-ng not found on PATH; the synthetic corpus needs it: `apt-get install espeak-ng` (or `make setup`)"
        )
    return path


def _espeak_table(binary: str, arg: str) -> list[list[str]]:
    out = subprocess.run([binary, arg], capture_output=True, text=True, check=True).stdout
    return [line.split() for line in out.splitlines()[1:] if line.strip()]


def speakers(binary: str) -> list[str]:
    """`voice+variant` for every English espeak-ng voice and every variant, plus each voice unvaried.

    MBROLA voices are left out (they need separately installed diphone databases) and so are variants listed
    among the voices.
    """
    voices = sorted(
        {row[1] for row in _espeak_table(binary, "--voices=en") if not row[4].startswith(("mb/", "!v/"))}
    )
    variants = sorted({row[4].removeprefix("!v/") for row in _espeak_table(binary, "--voices=variant")})
    if not voices:
        raise UserError(
            "espeak-ng lists no English voice (`espeak-ng --voices=en`); reinstall espeak-ng-data"
        )
    return voices + [f"{v}+{var}" for v in voices for var in variants]


@dataclass(frozen=True)
class Utterance:
    """One clip to render: who says what, how, and where it lands in its second."""

    word: str
    speaker: str
    n: int
    rate: int  # words per minute
    pitch: int  # espeak-ng 0-99
    peak: float  # target peak level in (0, 1)
    offset: float  # fraction of the free space before the word
    snr_db: float  # of the added noise floor
    noise_seed: int

    @property
    def relpath(self) -> str:
        return f"{self.word}/{self.speaker}_nohash_{self.n}.wav"


def _render_raw(binary: str, u: Utterance) -> tuple[np.ndarray, int]:
    proc = subprocess.run(
        [binary, "-v", u.speaker, "-s", str(u.rate), "-p", str(u.pitch), "--stdout", "--", u.word],
        capture_output=True,
    )
    try:
        samples, rate = parse_wav_bytes(proc.stdout)
    except ValueError:
        samples = np.zeros(0, np.int16)
        rate = 0
    if proc.returncode != 0 or samples.size == 0:
        reason = proc.stderr.decode(errors="replace").strip() or f"exit code {proc.returncode}"
        raise UserError(f"espeak-ng produced no audio for {u.word!r} with voice {u.speaker}: {reason}")
    return from_int16(samples), rate


def _trim_silence(x: np.ndarray, rate: int) -> tuple[np.ndarray, int]:
    """Cut espeak-ng's leading and trailing silence (10 ms frames more than 40 dB below the loudest)."""
    hop = rate // 100
    frames = x[: len(x) // hop * hop].reshape(-1, hop)
    energy = (frames**2).mean(axis=1)
    loud = np.flatnonzero(energy > energy.max() * 1e-4)
    if loud.size == 0:
        return x, rate
    return x[loud[0] * hop : (loud[-1] + 1) * hop], rate


def _finish(u: Utterance, speech: np.ndarray) -> np.ndarray:
    """Place the word in one second at its offset, set its level, add its noise floor."""
    if len(speech) > CLIP_SAMPLES:  # only at the slowest rates; keep the middle
        cut = (len(speech) - CLIP_SAMPLES) // 2
        speech = speech[cut : cut + CLIP_SAMPLES]
    speech = speech * (u.peak / max(float(np.abs(speech).max()), 1e-6))
    clip = np.zeros(CLIP_SAMPLES, np.float32)
    start = int(u.offset * (CLIP_SAMPLES - len(speech)))
    clip[start : start + len(speech)] = speech
    rms = float(np.sqrt(np.mean(speech**2)))
    noise = np.random.default_rng(u.noise_seed).standard_normal(CLIP_SAMPLES).astype(np.float32)
    return np.clip(clip + noise * rms * 10 ** (-u.snr_db / 20), -1.0, 1.0)


def render(utterances: list[Utterance], workers: int) -> Iterator[tuple[Utterance, np.ndarray]]:
    """Yield each utterance's finished 16 kHz clip, in order.

    espeak-ng runs as concurrent subprocesses from threads; the main thread resamples each chunk of clips as one
    zero-padded batch (one sinc kernel for the whole chunk, instead of one call per clip).
    """
    binary = espeak_binary()
    raws = ordered_map(lambda u: _render_raw(binary, u), utterances, workers, _CHUNK)
    for first in range(0, len(utterances), _CHUNK):
        chunk = utterances[first : first + _CHUNK]
        speech = [_trim_silence(*raw) for raw in (next(raws) for _ in chunk)]
        for u, clip in zip(chunk, _resample_batch(speech), strict=True):
            yield u, _finish(u, clip)


def _resample_batch(speech: list[tuple[np.ndarray, int]]) -> list[np.ndarray]:
    """Resample clips of assorted lengths and rates to 16 kHz, one batch per source rate."""
    out: list[np.ndarray] = [x for x, _ in speech]
    for rate in sorted({r for _, r in speech if r != SAMPLE_RATE}):
        rows = [i for i, (_, r) in enumerate(speech) if r == rate]
        batch = np.zeros((len(rows), max(len(speech[i][0]) for i in rows)), np.float32)
        for row, i in enumerate(rows):
            batch[row, : len(speech[i][0])] = speech[i][0]
        resampled = resample(batch, rate, SAMPLE_RATE)
        for row, i in enumerate(rows):
            out[i] = resampled[row, : -(-len(speech[i][0]) * SAMPLE_RATE // rate)]
    return out

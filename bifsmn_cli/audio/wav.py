"""Clip reading and validation: every clip the toolkit trains on passes through `read_clip`.

Keyword-spotting models see exactly one second at 16 kHz mono; a corpus may hold other rates, stereo files,
truncated or corrupt files. Reading them all through one function gives one place that decides what is
fixable (resample, downmix, pad, trim) and what is bad (reported with a reason and skipped).
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import numpy as np
import soundfile as sf

SAMPLE_RATE = 16000
CLIP_SAMPLES = SAMPLE_RATE  # one second
AUDIO_SUFFIXES = (".wav", ".flac")
# int16 PCM <-> float in [-1, 1): libsndfile's PCM_16 scale, which the C engine's front end uses too.
INT16_SCALE = 32768.0


class BadClip(Exception):
    """A clip that cannot be used; the message is the reason shown in the featurize report."""


@dataclass
class Clip:
    """A decoded clip as float32 mono in [-1, 1] at SAMPLE_RATE, with what had to be fixed on the way."""

    wave: np.ndarray
    resampled_from: int | None = None
    downmixed: bool = False


def resample(wave: np.ndarray, orig_sr: int, new_sr: int) -> np.ndarray:
    """Band-limited resampling (torchaudio's sinc interpolation); imported lazily to keep torch off light paths."""
    import torch
    import torchaudio.functional as AF

    out = AF.resample(torch.from_numpy(np.ascontiguousarray(wave, dtype=np.float32)), orig_sr, new_sr)
    return out.numpy()


def read_clip(path: Path, downmix: bool = False) -> Clip:
    """Decode a WAV or FLAC file; raise BadClip for anything that cannot become a mono 16 kHz clip."""
    try:
        wave, sr = sf.read(str(path), dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, OSError) as exc:
        raise BadClip(f"cannot decode ({str(exc).splitlines()[0]})") from None
    if wave.shape[0] == 0:
        raise BadClip("empty (no samples)")
    if not np.isfinite(wave).all():
        raise BadClip("contains NaN or infinite samples")
    clip = Clip(wave[:, 0])
    if wave.shape[1] > 1:
        if not downmix:
            raise BadClip(
                f"{wave.shape[1]} channels (expected mono; set featurize.downmix: true to average them)"
            )
        clip.wave, clip.downmixed = wave.mean(axis=1), True
    if sr != SAMPLE_RATE:
        clip.wave, clip.resampled_from = resample(clip.wave, sr, SAMPLE_RATE), sr
    return clip


def fit_length(wave: np.ndarray, length: int = CLIP_SAMPLES) -> tuple[np.ndarray, str | None]:
    """Zero-pad a short clip at the end or trim a long one, as TensorFlow's Speech Commands recipe does."""
    if len(wave) < length:
        return np.pad(wave, (0, length - len(wave))), "padded"
    if len(wave) > length:
        return wave[:length], "trimmed"
    return wave, None


def to_int16(wave: np.ndarray) -> np.ndarray:
    """Float [-1, 1] -> int16 with clipping; `from_int16` inverts it exactly as libsndfile reads PCM_16."""
    scaled = np.asarray(wave, dtype=np.float32) * np.float32(INT16_SCALE)
    np.rint(scaled, out=scaled)
    return np.clip(scaled, -32768, 32767, out=scaled).astype(np.int16)


def from_int16(samples: np.ndarray) -> np.ndarray:
    return samples.astype(np.float32) / np.float32(INT16_SCALE)


def write_wav(path: Path, wave: np.ndarray, sample_rate: int = SAMPLE_RATE) -> None:
    """16-bit PCM WAV, the Speech Commands format."""
    sf.write(str(path), to_int16(wave) if wave.dtype != np.int16 else wave, sample_rate, subtype="PCM_16")


def parse_wav_bytes(data: bytes) -> tuple[np.ndarray, int]:
    """Decode a 16-bit PCM WAV from memory, tolerating the placeholder sizes a streaming writer puts in its header.

    espeak-ng `--stdout` writes its header before it knows the length, so the RIFF and data sizes are bogus and
    libsndfile would reject or truncate the stream: read the chunks ourselves and take the data to the end.
    """
    if len(data) < 12 or data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        raise ValueError("not a RIFF/WAVE stream")
    pos, rate, bits = 12, None, None
    while pos + 8 <= len(data):
        chunk, size = data[pos : pos + 4], struct.unpack("<I", data[pos + 4 : pos + 8])[0]
        if chunk == b"fmt ":
            fmt, channels, rate = struct.unpack("<HHI", data[pos + 8 : pos + 16])
            bits = struct.unpack("<H", data[pos + 22 : pos + 24])[0]
            if fmt != 1 or channels != 1 or bits != 16:
                raise ValueError(f"unsupported WAV format {fmt}, {channels} channels, {bits} bits")
        elif chunk == b"data":
            if rate is None:
                raise ValueError("data chunk before fmt chunk")
            body = data[pos + 8 :]
            return np.frombuffer(body[: len(body) // 2 * 2], dtype="<i2").copy(), rate
        pos += 8 + size + (size & 1)
    raise ValueError("no data chunk")


_T = TypeVar("_T")
_R = TypeVar("_R")


def ordered_map(fn: Callable[[_T], _R], items: Iterable[_T], workers: int, chunk: int = 256) -> Iterator[_R]:
    """`map(fn, items)` on `workers` threads, results in order, at most two chunks in flight.

    Decoding (libsndfile) and waiting on child processes release the GIL, so threads give real parallelism
    here; the bound keeps memory flat however far the workers could run ahead of a slower consumer.
    """
    items = iter(items)

    def take() -> list[_T]:
        return [x for _, x in zip(range(chunk), items, strict=False)]

    with ThreadPoolExecutor(max_workers=workers) as pool:
        pending = [pool.submit(fn, x) for x in take()]
        while pending:
            ahead = [pool.submit(fn, x) for x in take()]
            for future in pending:
                yield future.result()
            pending = ahead

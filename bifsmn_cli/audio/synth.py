"""An offline keyword corpus in the exact Speech Commands layout, synthesised with espeak-ng.

It exists so that the whole pipeline (and CI) runs without a 2.4 GB download: `<word>/<speaker>_nohash_<n>.wav`,
16 kHz mono 16-bit, one second each with the word at a random offset, `_background_noise_/`, and
`validation_list.txt` / `testing_list.txt` split by speaker. Speakers are every English espeak-ng voice
combined with every voice variant (`en-gb-x-rp+f3`), each with its own base pitch and rate; every clip then gets
its own rate, pitch, level and a little noise. All random choices are drawn up front from the seed, so the corpus
is byte-identical for a seed on a given espeak-ng installation whatever the number of workers.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bifsmn_cli.audio.noise import GENERATORS, generate_noises
from bifsmn_cli.audio.wav import CLIP_SAMPLES, SAMPLE_RATE, ordered_map, parse_wav_bytes, resample, write_wav
from bifsmn_cli.console import progress
from bifsmn_cli.data.corpus import BACKGROUND_DIR
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


def plan(counts: dict[str, int], voice_pool: list[str], seed: int) -> tuple[list[Utterance], list[str]]:
    """Draw every clip's parameters up front (deterministic), spreading each word's clips over the speakers.

    Returns the utterances and the speakers used. At least ten speakers are used so that even a tiny corpus has
    speakers to put in each split; each speaker has a base rate and pitch so that its clips sound alike.
    """
    rng = np.random.default_rng([seed, 0])
    n_speakers = min(len(voice_pool), max(10, max(counts.values(), default=0)))
    chosen = [voice_pool[i] for i in rng.permutation(len(voice_pool))[:n_speakers]]
    base = {s: (int(rng.integers(130, 200)), int(rng.integers(25, 75))) for s in chosen}
    utterances, said, start = [], {}, 0
    for word, count in counts.items():
        for i in range(count):
            speaker = chosen[(start + i) % n_speakers]
            n = said.get((speaker, word), 0)
            said[(speaker, word)] = n + 1
            rate, pitch = base[speaker]
            utterances.append(
                Utterance(
                    word=word,
                    speaker=speaker,
                    n=n,
                    rate=int(np.clip(rate + rng.integers(-20, 21), 110, 240)),
                    pitch=int(np.clip(pitch + rng.integers(-10, 11), 0, 99)),
                    peak=float(np.exp(rng.uniform(np.log(0.08), np.log(0.9)))),
                    offset=float(rng.uniform()),
                    snr_db=float(rng.uniform(20.0, 45.0)),
                    noise_seed=int(rng.integers(2**31)),
                )
            )
        start += count
    return utterances, chosen


def split_speakers(chosen: list[str], seed: int) -> dict[str, list[str]]:
    """10 % of the speakers for validation and 10 % for testing (at least one each), so no voice crosses splits."""
    order = [chosen[i] for i in np.random.default_rng([seed, 1]).permutation(len(chosen))]
    k = max(1, round(0.1 * len(order)))
    return {"validation": order[:k], "testing": order[k : 2 * k], "train": order[2 * k :]}


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
    return samples.astype(np.float32) / 32768.0, rate


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


def synthesize_corpus(
    target: Path,
    counts: dict[str, int],
    seed: int,
    noise_seconds: float,
    workers: int | None = None,
) -> dict[str, object]:
    """Write a complete Speech Commands-style corpus into `target` (which must not exist yet); return its stats."""
    binary = espeak_binary()
    pool = speakers(binary)
    utterances, chosen = plan(counts, pool, seed)
    splits = split_speakers(chosen, seed)
    target.mkdir(parents=True)
    for word in counts:
        (target / word).mkdir()
    workers = workers or (os.cpu_count() or 1) + 1  # one extra keeps the cores busy while a child starts
    with progress("synthesising clips", len(utterances), "clips") as bar:
        for u, clip in render(utterances, workers):
            write_wav(target / u.relpath, clip)
            bar.advance()
    noise_dir = target / BACKGROUND_DIR
    noise_dir.mkdir()
    for name, wave in generate_noises(noise_seconds, seed).items():
        write_wav(noise_dir / f"{name}.wav", wave)
    for split in ("validation", "testing"):
        members = set(splits[split])
        lines = sorted(u.relpath for u in utterances if u.speaker in members)
        (target / f"{split}_list.txt").write_text("".join(line + "\n" for line in lines))
    (target / "README.txt").write_text(
        "Synthetic keyword corpus generated by bifsmn with espeak-ng "
        f"(seed {seed}); layout and splits follow Speech Commands.\n"
    )
    return {
        "clips": len(utterances),
        "speakers": len(chosen),
        "speakers_available": len(pool),
        "speakers_per_split": {k: len(v) for k, v in splits.items()},
        "noises": list(GENERATORS),
    }

"""Generated background noises for the synthetic corpus's `_background_noise_/` folder.

Speech Commands ships six recordings (white, pink, a running tap, dishes, an exercise bike, a cat); the
augmenter mixes one-second windows of them into training clips and the `_silence_` class is made of them.
These generators give the same variety offline: three stationary coloured noises and three non-stationary
ones (babble-like modulated speech-shaped noise, clattering dishes, a running tap), deterministic per seed.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from bifsmn_cli.audio.wav import SAMPLE_RATE

_PEAK = 0.9  # leave headroom so a noise at full volume does not clip


def _shaped(n: int, rng: np.random.Generator, gain: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
    """White Gaussian noise filtered in the frequency domain by `gain(freqs_hz)`."""
    spectrum = np.fft.rfft(rng.standard_normal(n))
    freqs = np.fft.rfftfreq(n, 1.0 / SAMPLE_RATE)
    return np.fft.irfft(spectrum * gain(freqs), n)


def _normalise(x: np.ndarray, rms: float) -> np.ndarray:
    x = x - x.mean()
    x = x * (rms / max(float(np.sqrt(np.mean(x**2))), 1e-12))
    peak = float(np.abs(x).max())
    return (x * (_PEAK / peak) if peak > _PEAK else x).astype(np.float32)


def white(n: int, rng: np.random.Generator) -> np.ndarray:
    return _normalise(rng.standard_normal(n), 0.2)


def pink(n: int, rng: np.random.Generator) -> np.ndarray:
    """1/f power: -3 dB per octave."""
    return _normalise(_shaped(n, rng, lambda f: 1.0 / np.sqrt(np.maximum(f, 20.0))), 0.2)


def brown(n: int, rng: np.random.Generator) -> np.ndarray:
    """1/f^2 power: the rumble of wind or traffic."""
    return _normalise(_shaped(n, rng, lambda f: 1.0 / np.maximum(f, 20.0)), 0.2)


def _speech_shaped(f: np.ndarray) -> np.ndarray:
    """Roughly the long-term speech spectrum: flat to 500 Hz, falling about 9 dB per octave above."""
    return np.where(f < 80, 0.0, 1.0 / (1.0 + (f / 500.0) ** 1.5))


def babble(n: int, rng: np.random.Generator, talkers: int = 6) -> np.ndarray:
    """Several speech-shaped streams, each switched on and off at syllable rate (3-7 Hz) with pauses."""
    t = np.arange(n) / SAMPLE_RATE
    out = np.zeros(n)
    for _ in range(talkers):
        rate = rng.uniform(3.0, 7.0)
        syllables = np.maximum(0.0, np.sin(2 * np.pi * rate * t + rng.uniform(0, 2 * np.pi))) ** 2
        # Phrases of 1-3 s separated by short pauses, so the talker count changes over time.
        phrase = np.zeros(n)
        pos = int(rng.uniform(0, 1) * SAMPLE_RATE)
        while pos < n:
            length = int(rng.uniform(1.0, 3.0) * SAMPLE_RATE)
            phrase[pos : pos + length] = 1.0
            pos += length + int(rng.uniform(0.2, 1.0) * SAMPLE_RATE)
        out += _shaped(n, rng, _speech_shaped) * syllables * phrase * rng.uniform(0.5, 1.0)
    return _normalise(out, 0.1)


def dishes(n: int, rng: np.random.Generator) -> np.ndarray:
    """Sparse clatter: decaying metallic resonances (2-7 kHz) at random times over a quiet room hum."""
    out = 0.02 * _shaped(n, rng, lambda f: 1.0 / np.maximum(f, 50.0))
    t = np.arange(int(0.25 * SAMPLE_RATE)) / SAMPLE_RATE
    pos = 0
    while True:
        pos += int(rng.exponential(0.35) * SAMPLE_RATE) + 200
        if pos >= n:
            break
        ring = np.zeros_like(t)
        for _ in range(3):
            ring += np.sin(2 * np.pi * rng.uniform(2000, 7000) * t + rng.uniform(0, 2 * np.pi))
        hit = rng.uniform(0.2, 1.0) * ring * np.exp(-t / rng.uniform(0.01, 0.08))
        end = min(n, pos + len(t))
        out[pos:end] += hit[: end - pos]
    return _normalise(out, 0.08)


def running_tap(n: int, rng: np.random.Generator) -> np.ndarray:
    """Band-limited rush (300 Hz - 5 kHz) whose level gurgles (log-normal, below 6 Hz), plus droplet chirps."""
    band = _shaped(n, rng, lambda f: np.where((f > 300) & (f < 5000), 1.0, 0.05))
    slow = _shaped(n, rng, lambda f: np.where(f < 6, 1.0, 0.0))
    out = band * np.exp(0.7 * slow / max(float(np.std(slow)), 1e-12))
    t = np.arange(int(0.03 * SAMPLE_RATE)) / SAMPLE_RATE
    for pos in rng.integers(0, max(1, n - len(t)), size=max(1, n // SAMPLE_RATE * 8)):
        f0 = rng.uniform(800, 2500)
        chirp = np.sin(2 * np.pi * (f0 * t + 0.5 * f0 * 20 * t**2)) * np.exp(-t / 0.008)
        out[pos : pos + len(t)] += rng.uniform(1.0, 4.0) * chirp
    return _normalise(out, 0.15)


GENERATORS: dict[str, Callable[[int, np.random.Generator], np.ndarray]] = {
    "white_noise": white,
    "pink_noise": pink,
    "brown_noise": brown,
    "babble": babble,
    "doing_the_dishes": dishes,
    "running_tap": running_tap,
}
STATIONARY = ("white_noise", "pink_noise", "brown_noise")


def generate_noises(seconds: float, seed: int) -> dict[str, np.ndarray]:
    """Every noise, `seconds` long at 16 kHz, float32; each gets its own stream so adding one changes no other."""
    n = int(round(seconds * SAMPLE_RATE))
    return {
        name: fn(n, np.random.default_rng([seed, 2, i]))
        for i, (name, fn) in enumerate(
            GENERATORS.items()
        )  # the index keeps each stream fixed as names are added
    }

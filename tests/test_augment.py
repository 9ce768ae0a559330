"""Batched waveform augmentation: each transform does what it says, and a seed gives the same batch."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from bifsmn_cli.audio.augment import Augmenter
from bifsmn_cli.audio.config import AugmentConfig
from bifsmn_cli.config import dataclass_from_section
from bifsmn_cli.errors import UserError
from stages.pipeline.sections import AUGMENT_SCHEMA

OFF = dict(noise_prob=0.0, silence_volume=0.0, shift_ms=0.0, gain_min=1.0, gain_max=1.0, speed_prob=0.0)
NOISES = [np.full(40000, 0.25, np.float32), np.full(9000, -0.5, np.float32)]  # one shorter than a clip


def batch(n: int = 8, seed: int = 0) -> torch.Tensor:
    return 0.1 * torch.randn(n, 16000, generator=torch.Generator().manual_seed(seed))


def run(config: AugmentConfig, waves: torch.Tensor, labels: torch.Tensor | None = None, seed: int = 0):
    labels = labels if labels is not None else torch.full((len(waves),), 3)
    return Augmenter(config, NOISES, silence_label=0)(waves, labels, torch.Generator().manual_seed(seed))


def test_same_seed_same_batch_and_defaults():
    waves = batch()
    a, b = run(AugmentConfig(), waves), run(AugmentConfig(), waves)
    assert a.shape == waves.shape and torch.equal(a, b)
    assert not torch.equal(a, run(AugmentConfig(), waves, seed=1))
    assert a.abs().max() <= 1.0
    assert AUGMENT_SCHEMA["noise_prob"].default == 0.8 and AUGMENT_SCHEMA["shift_ms"].default == 100.0
    assert torch.equal(run(AugmentConfig(enabled=False), waves), waves)
    assert torch.equal(run(AugmentConfig(**OFF), waves), waves)


def test_time_shift_is_a_zero_filled_shift_within_range():
    waves = batch(16)
    out = run(AugmentConfig(**{**OFF, "shift_ms": 100.0}), waves)
    shifts = []
    for x, y in zip(waves, out, strict=True):
        for s in range(-1600, 1601):
            expected = torch.zeros_like(x)
            if s >= 0:
                expected[s:] = x[: 16000 - s]
            else:
                expected[:s] = x[-s:]
            if torch.equal(y, expected):
                shifts.append(s)
                break
        else:
            pytest.fail("row is not a shift of its input within +-100 ms")
    assert len(set(shifts)) > 8


def test_gain_stays_in_range():
    waves = batch(32)
    out = run(AugmentConfig(**{**OFF, "gain_min": 0.5, "gain_max": 2.0}), waves)
    ratio = (out / waves)[:, 0]
    assert torch.allclose(out, waves * ratio.unsqueeze(1), atol=1e-6)
    assert ratio.min() >= 0.5 - 1e-6 and ratio.max() <= 2.0 + 1e-6 and ratio.std() > 0.1


def test_noise_mixing_and_silence_always_noised():
    waves = torch.zeros(64, 16000)
    labels = torch.tensor([0, 3] * 32)  # 0 is _silence_
    out = run(AugmentConfig(**{**OFF, "noise_prob": 0.0, "silence_volume": 1.0}), waves, labels)
    assert torch.count_nonzero(out[1::2]) == 0  # noise_prob 0: keyword clips untouched
    assert all(torch.count_nonzero(row) > 0 for row in out[0::2])
    # Noise windows come from the recordings: constants 0.25 (long) or -0.5 (shorter, zero-padded).
    out = run(AugmentConfig(**{**OFF, "noise_prob": 1.0, "noise_volume": 0.4}), waves)
    for row in out:
        first = row[0].item()
        assert 0 < abs(first) <= 0.5 * 0.4
        assert torch.all((row == first) | (row == 0))


def test_speed_perturbation_changes_pitch_and_tempo():
    t = torch.arange(16000) / 16000
    tone = (0.5 * torch.sin(2 * torch.pi * 1000 * t)).repeat(4, 1)
    for factor in (0.9, 1.1):
        out = run(AugmentConfig(**{**OFF, "speed_prob": 1.0, "speed_min": factor, "speed_max": factor}), tone)
        spectrum = torch.fft.rfft(out[:, 4000:12000]).abs()
        assert torch.allclose(spectrum.argmax(dim=1).float() * 2, torch.full((4,), 1000 * factor), atol=4)


def test_config_errors():
    with pytest.raises(UserError, match=r"augment.gain_min: 2 exceeds augment.gain_max \(1\)"):
        Augmenter(AugmentConfig(gain_min=2.0, gain_max=1.0), [])
    with pytest.raises(
        UserError, match=r"augment.speed_min/speed_max: \[1.01, 1.04\] holds no multiple of 0.05"
    ):
        dataclass_from_section(AugmentConfig, {"speed_min": 1.01, "speed_max": 1.04})
    assert AugmentConfig(speed_min=0.9, speed_max=1.1).speed_factors() == [0.9, 0.95, 1.0, 1.05, 1.1]


def test_works_without_noises():
    out = Augmenter(AugmentConfig(), [], silence_label=0)(batch(), torch.zeros(8), torch.Generator())
    assert out.shape == (8, 16000)

"""The front end: the paper's 32x32 log-mel by default, MFCC and Kaldi fbank options, per-clip batching."""

from __future__ import annotations

import pytest
import torch
import torchaudio

from bifsmn_cli.audio.config import FrontEndConfig
from bifsmn_cli.audio.frontend import FrontEnd
from bifsmn_cli.config import dataclass_from_section, validate_section
from bifsmn_cli.errors import UserError
from stages.featurize import SPEC as FEATURIZE


def tones(*freqs: float, amp: float = 0.5) -> torch.Tensor:
    t = torch.arange(16000) / 16000
    return torch.stack([amp * torch.sin(2 * torch.pi * f * t) for f in freqs])


def test_default_is_the_papers_log_mel():
    frontend = FrontEnd()
    waves = tones(300, 1000, 3000) + 0.01 * torch.randn(3, 16000, generator=torch.Generator().manual_seed(0))
    out = frontend(waves)
    assert out.shape == (3, 32, 32) and out.dtype == torch.float32
    assert (frontend.n_features, frontend.frames()) == (32, 32)
    mel = torchaudio.transforms.MelSpectrogram(16000, n_fft=2048, hop_length=512, n_mels=32, normalized=True)
    expected = torchaudio.transforms.AmplitudeToDB()(mel(waves))
    torch.testing.assert_close(out, expected)
    clamped = FrontEnd(FrontEndConfig(top_db=30.0))(waves)
    for i in range(3):
        reference = torchaudio.transforms.AmplitudeToDB(top_db=30.0)(mel(waves[i : i + 1]))
        torch.testing.assert_close(clamped[i : i + 1], reference)
    # Higher tones light higher mel bands.
    peaks = out.mean(dim=2).argmax(dim=1).tolist()
    assert peaks[0] < peaks[1] < peaks[2]


@pytest.mark.parametrize(
    "config, shape",
    [
        (FrontEndConfig(top_db=40.0), (32, 32)),
        (FrontEndConfig(features="mfcc", n_mfcc=13, n_mels=40), (13, 32)),
        (FrontEndConfig(features="mfcc", top_db=60.0), (32, 32)),
        (FrontEndConfig(features="fbank", n_fft=512, win_length=400, hop_length=160, n_mels=40), (40, 98)),
        (FrontEndConfig(n_fft=512, hop_length=160, n_mels=40, f_min=20.0, f_max=7600.0), (40, 101)),
    ],
)
def test_options_shapes_and_clip_independence(config, shape):
    frontend = FrontEnd(config)
    waves = tones(200, 2000) * torch.tensor(
        [[1.0], [0.001]]
    )  # very different levels: a batch-wide clamp shows
    batched = frontend(waves)
    assert batched.shape == (2, *shape) and frontend.frames() == shape[1]
    single = torch.cat([frontend(waves[i : i + 1]) for i in range(2)])
    torch.testing.assert_close(batched, single)
    assert torch.isfinite(batched).all()


def test_config_checks_and_schema():
    with pytest.raises(UserError, match=r"featurize.win_length: 4096 exceeds featurize.n_fft \(2048\)"):
        FrontEnd(FrontEndConfig(win_length=4096))
    with pytest.raises(UserError, match=r"featurize.n_mfcc: 64 exceeds featurize.n_mels \(32\)"):
        dataclass_from_section(FrontEndConfig, {"features": "mfcc", "n_mfcc": 64})
    with pytest.raises(UserError, match=r"featurize.f_max: 100 must exceed featurize.f_min \(200\)"):
        dataclass_from_section(FrontEndConfig, {"f_min": 200.0, "f_max": 100.0})
    resolved = validate_section("featurize", {"n_mels": 20}, FEATURIZE.schema)
    assert dataclass_from_section(FrontEndConfig, resolved) == FrontEndConfig(n_mels=20)
    assert not set(FEATURIZE.schema) & {"sample_rate", "num_samples"}  # the clip format is not a key
    with pytest.raises(UserError, match="featurize.features: expected one of logmel, mfcc, fbank"):
        validate_section("featurize", {"features": "cqt"}, FEATURIZE.schema)
    with pytest.raises(ValueError, match=r"expected waves of shape \(batch, samples\)"):
        FrontEnd()(torch.zeros(16000))

"""The C front end against torchaudio: within 0.01 dB wherever the power is above -80 dB, on noise, a quiet
clip and a synthetic speech-like clip (voiced harmonics under formants, with silence around), for the
project's default settings and for non-default ones; int16 input equals its float conversion."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torchaudio

from bifsmn_cli.audio.config import FrontEndConfig
from bifsmn_cli.audio.frontend import FrontEnd
from bifsmn_cli.audio.wav import INT16_SCALE
from bifsmn_cli.errors import UserError

SR = 16000
TOLERANCE_DB = 0.01
FLOOR_DB = -80.0


def speech_like(seed: int) -> np.ndarray:
    """Glottal pulse train (120-180 Hz, gliding) through three formant resonators, syllable envelope."""
    rng = np.random.default_rng(seed)
    t = np.arange(SR) / SR
    f0 = 120 + 60 * np.sin(2 * np.pi * 1.5 * t + rng.uniform(0, 6))
    phase = np.cumsum(f0) / SR
    pulses = (np.diff(np.floor(phase), prepend=0) > 0).astype(np.float64)
    wave = np.zeros(SR)
    for formant, bw, gain in ((700, 90, 1.0), (1200, 110, 0.6), (2600, 160, 0.3)):
        r = np.exp(-np.pi * bw / SR)
        a1, a2 = 2 * r * np.cos(2 * np.pi * formant / SR), -r * r
        y = np.zeros(SR)
        for i in range(SR):
            y[i] = pulses[i] + a1 * (y[i - 1] if i else 0) + a2 * (y[i - 2] if i > 1 else 0)
        wave += gain * y
    envelope = np.exp(-(((t - 0.5) / 0.18) ** 2))
    wave = wave * envelope + 1e-4 * rng.standard_normal(SR)
    wave[: SR // 8] = 0.0  # digital silence: -100 dB frames
    return (0.5 * wave / np.abs(wave).max()).astype(np.float32)


CLIPS = {
    "noise": lambda: (0.3 * np.random.default_rng(0).standard_normal(SR)).astype(np.float32),
    "quiet": lambda: (3e-4 * np.random.default_rng(1).standard_normal(SR)).astype(np.float32),
    "speech_like": lambda: speech_like(2),
}


def torchaudio_db(wave: np.ndarray, s: FrontEndConfig, dtype: torch.dtype) -> np.ndarray:
    mel = torchaudio.transforms.MelSpectrogram(
        s.sample_rate,
        n_fft=s.n_fft,
        win_length=s.win_length,
        hop_length=s.hop_length,
        f_min=s.f_min,
        f_max=s.f_max,
        n_mels=s.n_mels,
        normalized=s.normalized,
    ).to(dtype)
    power = mel(torch.from_numpy(wave).to(dtype)[None])
    return torchaudio.transforms.AmplitudeToDB("power", s.top_db)(power)[0].numpy()


def assert_close_db(got: np.ndarray, want: np.ndarray) -> None:
    assert got.shape == want.shape
    audible = want > FLOOR_DB
    assert audible.any()
    worst = float(np.abs(got - want)[audible].max())
    assert worst <= TOLERANCE_DB, f"max difference {worst:.4g} dB above {FLOOR_DB} dB"
    # below the floor both sides still agree on where the clamp is
    np.testing.assert_array_equal(got <= -99.999, want <= -99.999)


@pytest.mark.parametrize("clip", CLIPS)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_default_front_end_matches_torchaudio(lib, clip, dtype):
    settings = FrontEndConfig()
    fe = lib.frontend(settings)
    wave = CLIPS[clip]()
    assert_close_db(fe.run(wave), torchaudio_db(wave, settings, dtype))


def test_matches_the_projects_front_end_module(lib):
    """The features the models are trained on (bifsmn_cli.audio.frontend), not only raw torchaudio."""
    cfg = FrontEndConfig()
    wave = speech_like(3)
    want = FrontEnd(cfg)(torch.from_numpy(wave)[None])[0].numpy()
    assert_close_db(lib.frontend(cfg).run(wave), want)


def test_non_default_settings_match(lib):
    cfg = FrontEndConfig(
        n_fft=1024, win_length=800, hop_length=320, n_mels=40, f_min=20.0, f_max=7600.0, top_db=70.0
    )
    fe = lib.frontend(cfg)
    assert fe.n_frames == 1 + SR // 320
    for clip in CLIPS.values():
        wave = clip()
        assert_close_db(fe.run(wave), torchaudio_db(wave, cfg, torch.float64))
    unnormalised = FrontEndConfig(normalized=False)
    wave = CLIPS["quiet"]()
    assert_close_db(lib.frontend(unnormalised).run(wave), torchaudio_db(wave, unnormalised, torch.float64))


def test_int16_input_is_scaled_like_soundfile(lib):
    fe = lib.frontend(FrontEndConfig())
    pcm = np.round(speech_like(4) * 32767).astype(np.int16)
    np.testing.assert_array_equal(fe.run(pcm), fe.run(pcm.astype(np.float32) / INT16_SCALE))


def test_bad_settings_and_lengths_are_refused(lib):
    with pytest.raises(UserError, match="front-end settings"):
        lib.frontend(FrontEndConfig(n_fft=1000))
    fe = lib.frontend(FrontEndConfig())
    with pytest.raises(UserError, match="expects 16000"):
        fe.run(np.zeros(SR - 1, dtype=np.float32))
    with pytest.raises(UserError, match="only 'logmel'"):
        lib.frontend(FrontEndConfig(features="mfcc"))

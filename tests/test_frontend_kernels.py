"""Every front-end kernel this CPU runs (the float32 melspec: ref, avx2, avx512, neon) against torchaudio in
float64, to the tolerance of tests/test_frontend_c.py (0.01 dB above -80 dB), on noise and a tone-plus-noise
clip at the default and at non-default settings; the implementation is forced through BIFSMN_KERNEL."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torchaudio

from bifsmn_cli.audio.frontend import FrontEndConfig
from bifsmn_cli.engine import Library, build_library
from bifsmn_cli.engine.binding import CSRC, IMPLS
from bifsmn_cli.export import FrontendSettings

SR = 16000


@pytest.fixture(scope="module")
def lib() -> Library:
    return Library(build_library(CSRC / "build" / "pytest"))


def clips() -> list[np.ndarray]:
    rng = np.random.default_rng(5)
    t = np.arange(SR) / SR
    tone = 0.4 * np.sin(2 * np.pi * 440 * t) * np.exp(-(((t - 0.6) / 0.2) ** 2))
    return [
        (0.3 * rng.standard_normal(SR)).astype(np.float32),
        (tone + 1e-3 * rng.standard_normal(SR)).astype(np.float32),
    ]


def reference_db(wave: np.ndarray, s: FrontendSettings) -> np.ndarray:
    mel = torchaudio.transforms.MelSpectrogram(
        s.sample_rate,
        n_fft=s.n_fft,
        win_length=s.win_length,
        hop_length=s.hop_length,
        f_min=s.f_min,
        f_max=s.f_max,
        n_mels=s.n_mels,
        normalized=s.normalized,
    ).double()
    power = mel(torch.from_numpy(wave).double()[None])
    return torchaudio.transforms.AmplitudeToDB("power", s.top_db)(power)[0].numpy()


CONFIGS = {
    "default": FrontEndConfig(),
    "other": FrontEndConfig(n_fft=512, win_length=400, hop_length=160, n_mels=40, f_min=20.0, f_max=4000.0),
}


@pytest.mark.parametrize("config", CONFIGS)
@pytest.mark.parametrize("kernel", [k for k in IMPLS if k != "auto"])
def test_kernel_matches_torchaudio(lib, monkeypatch, kernel, config):
    if not lib.kernel_available(kernel):
        pytest.skip(f"{kernel} does not run on this CPU or build")
    monkeypatch.setenv("BIFSMN_KERNEL", kernel)
    settings = FrontendSettings.from_config(CONFIGS[config])
    fe = lib.frontend(vars(settings))
    for wave in clips():
        got, want = fe.run(wave), reference_db(wave, settings)
        audible = want > -80.0
        assert audible.any()
        worst = float(np.abs(got - want)[audible].max())
        assert worst <= 0.01, f"{kernel}: {worst:.4g} dB off torchaudio"

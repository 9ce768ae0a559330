"""Every front-end kernel this CPU runs (the float32 melspec: ref, avx2, avx512, neon) against torchaudio, to the
tolerance of tests/test_frontend_c.py (whose clips and comparison it reuses), at the default and at non-default
settings; the implementation is forced through BIFSMN_KERNEL, which the front end reads at creation."""

from __future__ import annotations

import pytest
import torch
from helpers import CLIPS, assert_close_db, torchaudio_db

from bifsmn_cli.audio.config import FrontEndConfig
from bifsmn_cli.engine.binding import IMPLS

CONFIGS = {
    "default": FrontEndConfig(),
    # half the bins unused (f_max 4000): the kernels skip them
    "other": FrontEndConfig(n_fft=512, win_length=400, hop_length=160, n_mels=40, f_min=20.0, f_max=4000.0),
}


@pytest.mark.parametrize("config", CONFIGS)
@pytest.mark.parametrize("kernel", [k for k in IMPLS if k != "auto"])
def test_kernel_matches_torchaudio(lib, monkeypatch, kernel, config):
    if not lib.kernel_available(kernel):
        pytest.skip(f"{kernel} does not run on this CPU or build")
    monkeypatch.setenv("BIFSMN_KERNEL", kernel)
    settings = CONFIGS[config]
    fe = lib.frontend(settings)
    for clip in CLIPS.values():
        wave = clip()
        assert_close_db(fe.run(wave), torchaudio_db(wave, settings, torch.float64))

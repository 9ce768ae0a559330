"""The C front end against torchaudio: within 0.01 dB wherever the power is above -80 dB, on noise, a quiet
clip and a synthetic speech-like clip (voiced harmonics under formants, with silence around), for the
project's default settings and for non-default ones; int16 input equals its float conversion."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from helpers import CLIPS, SR, assert_close_db, speech_like, torchaudio_db

from bifsmn_cli.audio.config import FrontEndConfig
from bifsmn_cli.audio.frontend import FrontEnd
from bifsmn_cli.audio.wav import INT16_SCALE
from bifsmn_cli.errors import UserError


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

"""The acoustic front end: one-second waveforms -> (n_features, frames) maps, batched on torch.

The default is the BiFSMN paper's: a 32-band mel power spectrogram (n_fft 2048, hop 512, window-normalised)
in decibels, i.e. 32x32 per clip. MFCC and Kaldi-compatible filter banks are options. The same module runs in
`featurize` (clean features for evaluation) and inside training after waveform augmentation, so the two can
never drift apart; `frontend.json` records the settings for the C engine, which must reproduce them.
"""

from __future__ import annotations

import torch
import torchaudio
import torchaudio.compliance.kaldi as kaldi

from bifsmn_cli.audio.config import FrontEndConfig
from bifsmn_cli.audio.wav import INT16_SCALE


class FrontEnd(torch.nn.Module):
    """forward(waves: float (B, samples) in [-1, 1]) -> float (B, n_features, frames); every clip independently."""

    def __init__(self, config: FrontEndConfig | None = None) -> None:
        super().__init__()
        self.config = config = config or FrontEndConfig()
        rate = config.sample_rate
        mel_kwargs = dict(
            n_fft=config.n_fft,
            win_length=config.win_length,
            hop_length=config.hop_length,
            f_min=config.f_min,
            f_max=config.f_max,
            n_mels=config.n_mels,
            normalized=config.normalized,
        )
        if config.features == "logmel":
            self.register_buffer("window", torch.hann_window(config.window), persistent=False)
            fb = torchaudio.functional.melscale_fbanks(
                config.n_fft // 2 + 1, config.f_min, config.mel_f_max, config.n_mels, rate
            )
            self.register_buffer("mel_fb", fb, persistent=False)
        elif config.features == "mfcc":
            self.transform = torchaudio.transforms.MFCC(rate, config.n_mfcc, melkwargs=mel_kwargs)
            # None means no clamp, as for logmel; torchaudio's own default (80 dB) would silently differ.
            self.transform.amplitude_to_DB.top_db = config.top_db

    @property
    def n_features(self) -> int:
        return self.config.n_features

    def frames(self) -> int:
        """Frames per clip, as this front end computes them (Kaldi's fbank has no centred STFT)."""
        with torch.no_grad():
            return int(self.forward(torch.zeros(1, self.config.num_samples)).shape[-1])

    def forward(self, waves: torch.Tensor) -> torch.Tensor:
        if waves.dim() != 2:
            raise ValueError(f"expected waves of shape (batch, samples), got {tuple(waves.shape)}")
        if self.config.features == "fbank":
            return self._fbank(waves)
        if self.config.features == "logmel":
            return self._logmel(waves)
        # A channel axis keeps AmplitudeToDB's top_db clamp per clip (it takes the max over the last three axes).
        return self.transform(waves.unsqueeze(1)).squeeze(1)

    def _logmel(self, waves: torch.Tensor) -> torch.Tensor:
        """torchaudio's MelSpectrogram + AmplitudeToDB, written out: the exact recipe the C engine reproduces.

        Spelled out rather than delegated because torchaudio squares a complex magnitude (|z| then ^2), which
        costs a square root per bin; re^2 + im^2 gives the same power (within float rounding) 40 % faster.
        """
        c = self.config
        spec = torch.stft(
            waves,
            c.n_fft,
            c.hop_length,
            self.window.numel(),
            self.window,
            center=True,
            pad_mode="reflect",
            return_complex=True,
        )
        power = spec.real.square() + spec.imag.square()  # (B, n_fft/2+1, frames)
        if c.normalized:
            power = power / self.window.pow(2).sum()
        mel = torch.matmul(power.transpose(1, 2), self.mel_fb).transpose(1, 2)
        db = 10.0 * torch.log10(mel.clamp(min=1e-10))
        if c.top_db is not None:
            db = torch.maximum(db, db.amax(dim=(1, 2), keepdim=True) - c.top_db)
        return db

    def _fbank(self, waves: torch.Tensor) -> torch.Tensor:
        """Kaldi's fbank works one clip at a time; scaled to int16 range as Kaldi reads WAV files."""
        c = self.config
        frame_length = c.window * 1000.0 / c.sample_rate
        frame_shift = c.hop_length * 1000.0 / c.sample_rate
        feats = [
            kaldi.fbank(
                w.unsqueeze(0) * INT16_SCALE,
                num_mel_bins=c.n_mels,
                frame_length=frame_length,
                frame_shift=frame_shift,
                low_freq=c.f_min,
                high_freq=c.f_max or 0.0,
                dither=0.0,
                sample_frequency=c.sample_rate,
            ).T
            for w in waves
        ]
        return torch.stack(feats)

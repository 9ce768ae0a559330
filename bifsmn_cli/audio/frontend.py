"""The acoustic front end: one-second waveforms -> (n_features, frames) maps, batched on torch.

The default is the BiFSMN paper's: a 32-band mel power spectrogram (n_fft 2048, hop 512, window-normalised)
in decibels, i.e. 32x32 per clip. MFCC and Kaldi-compatible filter banks are options. The same module runs in
`featurize` (clean features for evaluation) and inside training after waveform augmentation, so the two can
never drift apart; `frontend.json` records the settings for the C engine, which must reproduce them.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import torch
import torchaudio
import torchaudio.compliance.kaldi as kaldi

from bifsmn_cli.audio.wav import CLIP_SAMPLES, SAMPLE_RATE
from bifsmn_cli.config import schema_from_dataclass
from bifsmn_cli.errors import UserError


@dataclass(frozen=True)
class FrontEndConfig:
    """The front-end keys of the `featurize:` section."""

    features: str = field(
        default="logmel", metadata={"choices": ("logmel", "mfcc", "fbank"), "help": "feature kind"}
    )
    n_fft: int = field(default=2048, metadata={"min": 16, "max": 16384, "help": "FFT size (samples)"})
    win_length: int | None = field(
        default=None, metadata={"min": 16, "max": 16384, "help": "window length (samples); null: n_fft"}
    )
    hop_length: int = field(default=512, metadata={"min": 1, "max": 16000, "help": "frame shift (samples)"})
    n_mels: int = field(default=32, metadata={"min": 1, "max": 256, "help": "mel bands"})
    n_mfcc: int = field(default=32, metadata={"min": 1, "max": 256, "help": "cepstra kept (features: mfcc)"})
    f_min: float = field(default=0.0, metadata={"min": 0, "max": 8000, "help": "lowest mel frequency (Hz)"})
    f_max: float | None = field(
        default=None, metadata={"min": 1, "max": 8000, "help": "highest mel frequency (Hz); null: 8000"}
    )
    normalized: bool = field(default=True, metadata={"help": "divide the STFT by the window's norm"})
    top_db: float | None = field(
        default=None, metadata={"min": 1, "help": "clamp each clip's dB map this far below its peak"}
    )

    @classmethod
    def from_section(cls, section: dict[str, Any]) -> FrontEndConfig:
        """Pick this config's keys out of the (validated) `featurize:` section and check their combination."""
        config = cls(**{f.name: section[f.name] for f in dataclasses.fields(cls) if f.name in section})
        config.check()
        return config

    def check(self) -> None:
        if self.win_length is not None and self.win_length > self.n_fft:
            raise UserError(f"featurize.win_length: {self.win_length} exceeds featurize.n_fft ({self.n_fft})")
        if self.features == "mfcc" and self.n_mfcc > self.n_mels:
            raise UserError(f"featurize.n_mfcc: {self.n_mfcc} exceeds featurize.n_mels ({self.n_mels})")
        if self.f_max is not None and self.f_max <= self.f_min:
            raise UserError(f"featurize.f_max: {self.f_max:g} must exceed featurize.f_min ({self.f_min:g})")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


FRONTEND_SCHEMA = schema_from_dataclass(FrontEndConfig)


class FrontEnd(torch.nn.Module):
    """forward(waves: float (B, samples) in [-1, 1]) -> float (B, n_features, frames); every clip independently."""

    def __init__(self, config: FrontEndConfig | None = None) -> None:
        super().__init__()
        self.config = config = config or FrontEndConfig()
        config.check()
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
            win_length = config.win_length or config.n_fft
            self.register_buffer("window", torch.hann_window(win_length), persistent=False)
            fb = torchaudio.functional.melscale_fbanks(
                config.n_fft // 2 + 1,
                config.f_min,
                config.f_max or SAMPLE_RATE / 2,
                config.n_mels,
                SAMPLE_RATE,
            )
            self.register_buffer("mel_fb", fb, persistent=False)
        elif config.features == "mfcc":
            self.transform = torchaudio.transforms.MFCC(SAMPLE_RATE, config.n_mfcc, melkwargs=mel_kwargs)
            # None means no clamp, as for logmel; torchaudio's own default (80 dB) would silently differ.
            self.transform.amplitude_to_DB.top_db = config.top_db

    @property
    def n_features(self) -> int:
        return self.config.n_mfcc if self.config.features == "mfcc" else self.config.n_mels

    def frames(self, samples: int = CLIP_SAMPLES) -> int:
        with torch.no_grad():
            return int(self.forward(torch.zeros(1, samples)).shape[-1])

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
        frame_length = (c.win_length or c.n_fft) * 1000.0 / SAMPLE_RATE
        frame_shift = c.hop_length * 1000.0 / SAMPLE_RATE
        feats = [
            kaldi.fbank(
                w.unsqueeze(0) * 32768.0,
                num_mel_bins=c.n_mels,
                frame_length=frame_length,
                frame_shift=frame_shift,
                low_freq=c.f_min,
                high_freq=c.f_max or 0.0,
                dither=0.0,
                sample_frequency=SAMPLE_RATE,
            ).T
            for w in waves
        ]
        return torch.stack(feats)

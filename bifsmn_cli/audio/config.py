"""The audio settings a pipeline names: the feature front end and the training augmentation.

Torch-free, so that reading a pipeline (its schema is derived from these dataclasses) loads no torch.
`FrontEndConfig` is the one type the front-end settings travel as: the `featurize:` keys, featurize's
`frontend.json`, model files, the `.bfsm` header and the C front end all read or write it.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

from bifsmn_cli.audio.wav import CLIP_SAMPLES, SAMPLE_RATE
from bifsmn_cli.errors import UserError

_SPEED_STEP = 20  # speed factors are multiples of 1/20
CLIP_FORMAT = ("sample_rate", "num_samples")  # FrontEndConfig fields that are not `featurize:` keys


@dataclass(frozen=True)
class FrontEndConfig:
    """The feature front end: the `featurize:` keys that shape features, and the clip format they apply to
    (the toolkit's clips are 1 s at 16 kHz; a `.bfsm` file may declare another format)."""

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
    sample_rate: int = SAMPLE_RATE
    num_samples: int = CLIP_SAMPLES

    def __post_init__(self) -> None:
        if self.win_length is not None and self.win_length > self.n_fft:
            raise UserError(f"featurize.win_length: {self.win_length} exceeds featurize.n_fft ({self.n_fft})")
        if self.features == "mfcc" and self.n_mfcc > self.n_mels:
            raise UserError(f"featurize.n_mfcc: {self.n_mfcc} exceeds featurize.n_mels ({self.n_mels})")
        if self.f_max is not None and self.f_max <= self.f_min:
            raise UserError(f"featurize.f_max: {self.f_max:g} must exceed featurize.f_min ({self.f_min:g})")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @property
    def n_features(self) -> int:
        return self.n_mfcc if self.features == "mfcc" else self.n_mels

    @property
    def window(self) -> int:
        return self.win_length or self.n_fft

    @property
    def mel_f_max(self) -> float:
        return self.f_max or self.sample_rate / 2

    def check_engine(self) -> None:
        """The C engine (and the .bfsm header) computes only the log-mel front end."""
        if self.features != "logmel":
            raise UserError(
                f"featurize.features: {self.features!r} cannot be exported; the C engine computes only 'logmel'"
            )

    @property
    def stft_frames(self) -> int:
        """Frames of a centred STFT over one clip (logmel and mfcc; Kaldi's fbank frames differently)."""
        return 1 + self.num_samples // self.hop_length


@dataclass(frozen=True)
class AugmentConfig:
    """The `augment:` section, read by the training stages."""

    enabled: bool = field(default=True, metadata={"help": "apply any augmentation at all"})
    noise_prob: float = field(
        default=0.8, metadata={"min": 0, "max": 1, "help": "share of clips given noise"}
    )
    noise_volume: float = field(default=0.1, metadata={"min": 0, "max": 1, "help": "max noise gain on clips"})
    silence_volume: float = field(
        default=1.0,
        metadata={"min": 0, "max": 1, "help": "max noise gain on _silence_ clips (always noised)"},
    )
    shift_ms: float = field(
        default=100.0, metadata={"min": 0, "max": 500, "help": "max time shift, zero fill"}
    )
    gain_min: float = field(default=0.8, metadata={"min": 0.01, "max": 10, "help": "lowest amplitude scale"})
    gain_max: float = field(
        default=1.25, metadata={"min": 0.01, "max": 10, "help": "highest amplitude scale"}
    )
    speed_prob: float = field(
        default=0.5, metadata={"min": 0, "max": 1, "help": "share of clips sped up/down"}
    )
    speed_min: float = field(default=0.9, metadata={"min": 0.5, "max": 2, "help": "slowest speed factor"})
    speed_max: float = field(default=1.1, metadata={"min": 0.5, "max": 2, "help": "fastest speed factor"})

    def __post_init__(self) -> None:
        for low, high in (("gain_min", "gain_max"), ("speed_min", "speed_max")):
            if getattr(self, low) > getattr(self, high):
                raise UserError(
                    f"augment.{low}: {getattr(self, low):g} exceeds augment.{high} ({getattr(self, high):g})"
                )
        if self.speed_prob > 0 and not self.speed_factors():
            raise UserError(
                f"augment.speed_min/speed_max: [{self.speed_min:g}, {self.speed_max:g}] holds no multiple of 0.05"
            )

    def speed_factors(self) -> list[float]:
        """The speed grid: multiples of 0.05 in [speed_min, speed_max]."""
        low = math.ceil(self.speed_min * _SPEED_STEP - 1e-9)
        high = math.floor(self.speed_max * _SPEED_STEP + 1e-9)
        return [n / _SPEED_STEP for n in range(low, high + 1)]

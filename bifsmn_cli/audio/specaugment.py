"""SpecAugment (Park et al., Interspeech 2019) time and frequency masks on a batch of feature maps.

Masks are filled with each clip's mean value (the features are dB maps, where 0 is not "nothing"). Widths are
drawn uniformly in [0, max width] per mask and clip; positions uniformly where the mask fits. Reproducible
from a torch.Generator; batched (no Python loop per clip).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass(frozen=True)
class SpecAugmentConfig:
    time_masks: int = 0
    time_width: int = 0
    freq_masks: int = 0
    freq_width: int = 0

    @property
    def enabled(self) -> bool:
        return bool(self.time_masks and self.time_width) or bool(self.freq_masks and self.freq_width)


def _masks(batch: int, size: int, count: int, width: int, g: torch.Generator) -> Tensor:
    """(batch, size) bool: the union of `count` random bands of width <= `width` per row."""
    if not count or not width:
        return torch.zeros(batch, size, dtype=torch.bool)
    w = torch.randint(0, width + 1, (batch, count), generator=g)
    start = (torch.rand(batch, count, generator=g) * (size - w + 1)).long()
    pos = torch.arange(size).view(1, 1, size)
    inside = (pos >= start.unsqueeze(2)) & (pos < (start + w).unsqueeze(2))
    return inside.any(dim=1)


def spec_augment(features: Tensor, cfg: SpecAugmentConfig, g: torch.Generator) -> Tensor:
    """features (B, n_features, frames) -> the same with masked bands set to each clip's mean."""
    b, f, t = features.shape
    freq = _masks(b, f, cfg.freq_masks, min(cfg.freq_width, f), g).to(features.device)
    time = _masks(b, t, cfg.time_masks, min(cfg.time_width, t), g).to(features.device)
    mask = freq.unsqueeze(2) | time.unsqueeze(1)
    mean = features.mean(dim=(1, 2), keepdim=True)
    return torch.where(mask, mean, features)

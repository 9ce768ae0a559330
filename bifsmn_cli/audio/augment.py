"""Batched waveform augmentation for training, on torch tensors, reproducible from a torch.Generator.

It follows TensorFlow's Speech Commands recipe (background noise mixed into 80 % of clips at up to 0.1 volume,
`_silence_` clips always get noise at up to full volume, a random time shift of up to +-100 ms with zero fill)
and adds amplitude scaling and speed perturbation. Everything is done for the whole batch at once: a gather for
shift and noise windows, and one polyphase resampler per speed factor on a small grid (factors are multiples of
0.05 so that each resampler's kernel stays short).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
import torchaudio

from bifsmn_cli.audio.config import AugmentConfig
from bifsmn_cli.audio.wav import SAMPLE_RATE


def _fit_center(x: torch.Tensor, length: int) -> torch.Tensor:
    """Crop or zero-pad (B, n) to (B, length) around the centre, so a word near the middle stays in."""
    n = x.shape[-1]
    if n >= length:
        start = (n - length) // 2
        return x[:, start : start + length]
    left = (length - n) // 2
    return torch.nn.functional.pad(x, (left, length - n - left))


def _shift_rows(x: torch.Tensor, shifts: list[int]) -> torch.Tensor:
    """out[b, t] = x[b, t - shifts[b]], zero outside."""
    out = torch.zeros_like(x)
    length = x.shape[1]
    for row, s in enumerate(shifts):
        if abs(s) >= length:
            continue
        if s >= 0:
            out[row, s:] = x[row, : length - s]
        else:
            out[row, : length + s] = x[row, -s:]
    return out


class Augmenter:
    """`augmenter(waves (B, L) float in [-1, 1], labels (B,), generator) -> (B, L)`.

    `noises` are the background recordings (any lengths; shorter than L are zero-padded); `silence_label` is the
    class index of `_silence_`, whose clips always get noise. The same generator state gives the same output.
    """

    def __init__(
        self,
        config: AugmentConfig,
        noises: Sequence[np.ndarray],
        silence_label: int | None = None,
        clip_samples: int = SAMPLE_RATE,
    ) -> None:
        self.config = config
        self.silence_label = silence_label
        lengths = [len(n) for n in noises]
        width = max([clip_samples, *lengths])
        self.noise = torch.zeros(len(noises), width)
        for i, n in enumerate(noises):
            self.noise[i, : len(n)] = torch.from_numpy(np.array(n, dtype=np.float32))
        self.noise_lengths = torch.tensor(lengths, dtype=torch.long)
        self.factors = config.speed_factors() if config.speed_prob > 0 else []
        self.resamplers = {
            f: torchaudio.transforms.Resample(round(SAMPLE_RATE * f), SAMPLE_RATE)
            for f in self.factors
            if f != 1.0
        }
        self.shift = int(round(config.shift_ms * SAMPLE_RATE / 1000))

    def __call__(self, waves: torch.Tensor, labels: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        if not self.config.enabled:
            return waves
        c = self.config
        batch, length = waves.shape
        g = generator
        # Draw every random number up front, in a fixed order, whatever is enabled: same seed, same stream.
        speed_on = torch.rand(batch, generator=g) < c.speed_prob
        speed_pick = torch.randint(max(1, len(self.factors)), (batch,), generator=g)
        shift = torch.randint(-self.shift, self.shift + 1, (batch,), generator=g)
        gain = torch.exp(torch.empty(batch).uniform_(math.log(c.gain_min), math.log(c.gain_max), generator=g))
        noise_pick = torch.randint(max(1, len(self.noise)), (batch,), generator=g)
        noise_at = torch.rand(batch, generator=g)
        noise_on = torch.rand(batch, generator=g) < c.noise_prob
        noise_vol = torch.rand(batch, generator=g)

        device = waves.device
        if self.noise.device != device:  # follow the batch to an accelerator once, not per call
            self.noise = self.noise.to(device)
            self.resamplers = {f: r.to(device) for f, r in self.resamplers.items()}
        x = waves
        if self.resamplers:
            x = x.clone()
            for j, f in enumerate(self.factors):
                rows = (speed_on & (speed_pick == j)).nonzero().squeeze(1).to(device)
                if f != 1.0 and rows.numel():
                    x[rows] = _fit_center(self.resamplers[f](waves[rows]), length)
        # Per-row slice copies and axpys beat (B, L) index gathers several-fold on CPU and need no index tensors.
        out = _shift_rows(x, shift.tolist()) if self.shift else x.clone()
        out.mul_(gain.to(device).unsqueeze(1))
        if len(self.noise):
            room = (self.noise_lengths[noise_pick] - length).clamp(min=0) + 1
            start = (noise_at * room).long()
            volume = noise_vol * c.noise_volume * noise_on
            if self.silence_label is not None:
                volume = torch.where(labels.cpu() == self.silence_label, noise_vol * c.silence_volume, volume)
            for row, (k, s, v) in enumerate(
                zip(noise_pick.tolist(), start.tolist(), volume.tolist(), strict=True)
            ):
                if v:
                    out[row].add_(self.noise[k, s : s + length], alpha=v)
        return out.clamp_(-1.0, 1.0)

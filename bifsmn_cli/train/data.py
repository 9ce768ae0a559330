"""What the training loop is given: the splits as tensors, and the callables that turn waves into a batch.

A split holds labels, optional int16 waves (N, L) and optional clean cached features (N, n_mels, frames). With an
`augment(waves, labels, generator)` callable every training batch is augmented from the waves and turned into
features by `frontend(waves)`; without one, training uses the cached features (computed once with `frontend`
if absent). Validation and test always use clean cached features.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from bifsmn_cli.audio.wav import INT16_SCALE
from bifsmn_cli.errors import UserError

Augment = Callable[[Tensor, Tensor, torch.Generator], Tensor]  # (waves, labels, generator) -> waves
Frontend = Callable[[Tensor], Tensor]  # float waves (B, L) -> features (B, n_mels, frames)


@dataclass
class SplitTensors:
    """One split: labels (N,), optional int16 waves (N, L), optional clean features (N, n_mels, frames)."""

    labels: Tensor
    waves: Tensor | None = None
    features: Tensor | None = None

    def __len__(self) -> int:
        return len(self.labels)


@dataclass
class TrainData:
    train: SplitTensors
    val: SplitTensors
    test: SplitTensors | None = None
    class_names: Sequence[str] = ()


def to_float(waves: Tensor) -> Tensor:
    """int16 waves as floats in [-1, 1) (the scale featurize and the engine use); float waves unchanged."""
    return waves.float() / INT16_SCALE if waves.dtype == torch.int16 else waves.float()


def split_features(split: SplitTensors, frontend: Frontend | None, name: str, chunk: int = 512) -> Tensor:
    """The split's cached features, computed once from its waves if absent."""
    if split.features is not None:
        return split.features
    if split.waves is None or frontend is None:
        raise UserError(f"{name} split: needs cached features, or waves and a frontend to compute them")
    with torch.no_grad():
        return torch.cat([frontend(to_float(w)) for w in split.waves.split(chunk)])

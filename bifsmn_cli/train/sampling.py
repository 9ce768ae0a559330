"""The order of training rows in an epoch, with every `_unknown_` row repeated: a real corpus has few
non-keyword clips (about 900 in the public subset, against ~9,000 keyword clips), and showing each of them more
often raised validation rejection more than a class weight did (measured, see README "Accuracy on real speech")."""

from __future__ import annotations

import torch
from torch import Tensor


def epoch_length(labels: Tensor, unknown: int | None, factor: float) -> int:
    """Rows per epoch: every row once, plus (factor - 1) x the unknown rows, rounded."""
    if factor <= 1 or unknown is None:
        return len(labels)
    return len(labels) + round((factor - 1) * int((labels == unknown).sum()))


def epoch_order(labels: Tensor, unknown: int | None, factor: float, g: torch.Generator) -> Tensor:
    """A random order of the training rows in which each `unknown` row appears floor(factor) times, and a random
    share (factor's fraction) of them once more; a plain permutation when factor is 1."""
    if factor <= 1 or unknown is None:
        return torch.randperm(len(labels), generator=g)
    rows = (labels == unknown).nonzero().squeeze(1)
    whole = int(factor)
    extra = [rows] * (whole - 1)
    n_frac = epoch_length(labels, unknown, factor) - len(labels) - (whole - 1) * len(rows)
    if n_frac:
        extra.append(rows[torch.randperm(len(rows), generator=g)[:n_frac]])
    pool = torch.cat([torch.arange(len(labels)), *extra])
    return pool[torch.randperm(len(pool), generator=g)]

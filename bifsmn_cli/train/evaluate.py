"""Scoring a model on clean features: accuracy, per-class accuracy and the confusion matrix of each variant."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from bifsmn_cli.nn.dfsmn import DFSMN
from bifsmn_cli.train.distributed import sum_over_processes_, world
from bifsmn_cli.train.metrics import accuracy, confusion_matrix, per_class_accuracy


@dataclass
class EvalResult:
    accuracy: float
    per_class: list[float | None]
    confusion: list[list[int]]


@torch.no_grad()
def evaluate(
    model: DFSMN,
    features: Tensor,
    labels: Tensor,
    variants: Sequence[str],
    batch_size: int = 512,
    device: torch.device | str = "cpu",
) -> dict[str, EvalResult]:
    """Each variant's scores on `features`; under torch.distributed each process scores a slice and the confusion
    matrices are summed."""
    rank, n = world()
    was_training = model.training
    model.eval()
    n_cls = model.cfg.num_classes
    confusion = {v: torch.zeros(n_cls, n_cls, dtype=torch.int64) for v in variants}
    try:
        index = torch.arange(rank, len(labels), n)
        for chunk in index.split(batch_size):
            out = model.forward_multi(features[chunk].to(device), variants)
            for v in variants:
                confusion[v] += confusion_matrix(out[v].argmax(dim=1), labels[chunk], n_cls)
    finally:
        model.train(was_training)
    for cm in confusion.values():
        sum_over_processes_(cm)
    return {v: EvalResult(accuracy(cm), per_class_accuracy(cm), cm.tolist()) for v, cm in confusion.items()}

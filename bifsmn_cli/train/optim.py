"""The optimiser and its learning-rate schedule: linear warm-up, then cosine decay or constant."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from bifsmn_cli.train.config import TrainConfig


def param_groups(model: nn.Module, weight_decay: float, lr: float) -> list[dict[str, Any]]:
    """Weight decay only on conv/linear weights: on BN or PReLU it would pull scales and slopes to 0, and a
    zero PReLU slope makes the next binarizer see a constant +1. A module's own parameters train at
    `module.lr_scale` times `lr` when it declares one below 1 (LPB's thresholds: 0.1, as in BiFSMNv2's code)."""
    decay, no_decay, scaled = [], [], {}
    for module in model.modules():
        scale = getattr(module, "lr_scale", 1.0)
        for name, p in module.named_parameters(recurse=False):
            if scale != 1.0:
                scaled.setdefault(scale, []).append(p)
                continue
            is_weight = name == "weight" and isinstance(module, nn.Linear | nn.Conv1d | nn.Conv2d)
            (decay if is_weight else no_decay).append(p)
    groups = [
        {"params": decay, "weight_decay": weight_decay, "lr": lr},
        {"params": no_decay, "weight_decay": 0.0, "lr": lr},
    ]
    return groups + [{"params": ps, "weight_decay": 0.0, "lr": lr * s} for s, ps in sorted(scaled.items())]


def lr_factor(cfg: TrainConfig, steps_per_epoch: int) -> Callable[[int], float]:
    total = cfg.epochs * steps_per_epoch
    warm = min(int(round(cfg.warmup_epochs * steps_per_epoch)), total)

    def factor(step: int) -> float:
        if step < warm:
            return (step + 1) / warm
        if cfg.schedule == "constant":
            return 1.0
        progress = (step - warm) / max(total - warm, 1)
        return 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0)))

    return factor


def make_optimizer(
    model: nn.Module, cfg: TrainConfig, steps_per_epoch: int
) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LambdaLR]:
    groups = param_groups(model, cfg.weight_decay, cfg.lr)
    if cfg.optimizer == "sgd":
        optimizer = torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.momentum > 0)
    else:
        optimizer = torch.optim.AdamW(groups, lr=cfg.lr)
    return optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, lr_factor(cfg, steps_per_epoch))

"""The training loss of one batch, for the teacher and for the distilled thinnable student.

sum over the trained variants v of w_v * (CE_v + alpha * HED_v + kd_weight * KL_v), plus the binarizers' extra
loss (RAD); with HED's fid select, HED_v also holds its logit MSE; one backward. The frozen teacher runs once per batch, in eval mode under no_grad, and its HED targets
serve every variant.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from bifsmn_cli.errors import UserError
from bifsmn_cli.nn.dfsmn import DFSMN
from bifsmn_cli.nn.hed import HED
from bifsmn_cli.train.config import TrainConfig


def kd_loss(logits: Tensor, teacher_logits: Tensor, temperature: float) -> Tensor:
    """Hinton's KL(teacher || student) on softened logits, scaled by T^2 so its gradients keep their size."""
    t = temperature
    return F.kl_div(
        F.log_softmax(logits / t, dim=1),
        F.log_softmax(teacher_logits / t, dim=1),
        log_target=True,
        reduction="batchmean",
    ) * (t * t)


class JointLoss:
    """`loss(student_forward, features, labels)`: the teacher's terms first, then the student's forward pass of
    every variant at once (`student_forward(features)` returns {variant: logits, or (logits, blocks) with HED})."""

    def __init__(
        self,
        model: DFSMN,
        weights: dict[str, float],
        cfg: TrainConfig,
        teacher: DFSMN | None = None,
        hed: HED | None = None,
    ) -> None:
        self.model, self.weights, self.cfg = model, weights, cfg
        self.hed = hed if hed is not None and hed.enabled else None
        self.use_kd = cfg.kd_weight > 0
        if (self.hed is not None or self.use_kd) and teacher is None:
            raise UserError("distillation (HED or kd_weight) needs a teacher model")
        self.teacher = teacher if self.hed is not None or self.use_kd else None
        self.criterion = nn.CrossEntropyLoss(label_smoothing=cfg.label_smoothing)

    @property
    def needs_blocks(self) -> bool:
        """Whether the student must return its block outputs (for HED)."""
        return self.hed is not None

    def to(self, device: torch.device) -> JointLoss:
        """Moves the frozen teacher and the HED filters; the teacher's parameters stop taking gradients."""
        if self.teacher is not None:
            self.teacher.to(device).eval()
            for p in self.teacher.parameters():
                p.requires_grad_(False)
        if self.hed is not None:
            self.hed.to(device)
        return self

    def __call__(self, student_forward: Any, features: Tensor, labels: Tensor) -> Tensor:
        targets = teacher_logits = None
        if self.teacher is not None:
            with torch.no_grad():
                teacher_logits, teacher_blocks = self.teacher(features, return_blocks=True)
            targets = self.hed.targets(teacher_blocks) if self.hed is not None else None
        outputs = student_forward(features)
        loss = labels.new_zeros((), dtype=torch.float32)
        for v, w in self.weights.items():
            if targets is None:
                logits, term = outputs[v], 0.0
            else:
                logits, blocks = outputs[v]
                hed = self.hed(blocks, targets)
                if (logit_term := self.hed.logit_term(logits, teacher_logits)) is not None:
                    hed = hed + logit_term
                term = self.hed.cfg.alpha * hed
            term = term + self.criterion(logits, labels)
            if self.use_kd:
                term = term + self.cfg.kd_weight * kd_loss(logits, teacher_logits, self.cfg.kd_temperature)
            loss = loss + w * term
        extra = self.model.pop_extra_loss()
        return loss if extra is None else loss + extra

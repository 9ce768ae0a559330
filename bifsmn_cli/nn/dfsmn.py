"""The D-FSMN keyword-spotting model: the full-precision teacher and the thinnable binary student.

One definition, configured by `ModelConfig` (config.py), reproduces the official BiFSMN topology at its defaults
(32 mel bins x 32 frames in, 8 blocks, 12 classes; the teacher has 600,252 parameters and 5,431,296 MACs).

API (the exporter depends on it):

    DFSMN(cfg: ModelConfig, binarizer: str | None = None, variants: tuple[str, ...] = ("1x",))
    forward(x: (B, n_mels, frames), variant="1x", return_blocks=False)
        -> logits (B, classes), or (logits, [block outputs (B, backbone, T)]) with return_blocks
    forward_multi(x, variants, return_blocks=False) -> {variant: logits or (logits, blocks)}
        (the shared stem runs once for all variants)

Layout, in execution order (B batch, M n_mels, F frames; H, T the mel and time sizes after the stem's two
stride-2 convolutions, 8 x 8 at defaults; C backbone width 128, D hidden width 256):

    x (B, M, F) -> unsqueeze -> (B, 1, M, F)                 the stem, conv1 .. act_fc1 (`stem_*` keys):
    conv1: nn.Conv2d(1 -> 16, 5x5, stride 2, pad 2)       full precision, always
    bn1: BatchNorm2d, act1
    conv2: QConv2d(16 -> 32, 5x5, stride 2, pad 2)        BINARIZED in the student
    bn2: BatchNorm2d, act2                                  -> (B, 32, H, T)
    reshape to (B, 32*H, T) (feature index = channel*H + mel), transpose -> (B, T, 256)
    fc1: QLinear(256 -> C)                                  BINARIZED; no BN follows
    act_fc1                                                 -> transpose -> (B, C, T)
    blocks[i], i in VARIANT blocks (see variant_blocks):
        memory: QConv1d depthwise (C groups, k = left + right + 1, dilation d, zero pad (left*d, right*d)
                applied AFTER binarizing the input)         BINARIZED
        bn_mem, act_mem;  m = act_mem(bn_mem(memory(x))) + x          (residual 1)
        expand: QConv1d 1x1 (C -> D)                        BINARIZED
        bn_hidden, act_hidden, drop_hidden
        project: QConv1d 1x1 (D -> C)                       BINARIZED
        bn_out[key], act_out[key];  out = act_out(bn_out(project(h))) + m   (residual 2)
        where key = variant_key(variant): each variant owns its last BN and activation, all else is shared;
        block i holds bn_out/act_out only for the variants that run it (block 0 of 8: just '1x')
    flatten (B, C*T) channel-major -> drop -> classifier: nn.Linear(C*T -> classes)   full precision, always

A binarized layer computes `scale_o * conv(sign(x), sign(w)) + bias_o` (see layers.py, binarizers.py and each layer's
`binarizer.weight_parts(weight)`); biases, BN, PReLU and residual additions are real-valued.

Activations: `activation` (ReLU at defaults, as in the official pre-trained teacher) is used by act1, act2,
act_fc1 and act_hidden of the full-precision model; a binarized model uses `student_activation` (PReLU) there,
because a ReLU output is never negative and would binarize to a constant +1. act_mem and act_out use
`block_activation` (PReLU) in both. Dropout (`dropout` for the teacher, `student_dropout` for the student) sits
at drop_hidden and before the classifier.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from bifsmn_cli.errors import UserError
from bifsmn_cli.nn.binarizers import BINARIZERS
from bifsmn_cli.nn.config import ACTIVATIONS, ModelConfig
from bifsmn_cli.nn.layers import QConv1d, QConv2d, QLinear, QuantLayer


def variant_ratio(variant: str) -> float:
    """'0.5x' -> 0.5; UserError for anything that is not '<number>x' in (0, 1]."""
    try:
        ratio = float(variant.removesuffix("x")) if variant.endswith("x") else float("nan")
    except ValueError:
        ratio = float("nan")
    if not 0 < ratio <= 1:
        raise UserError(f"variant {variant!r}: expected a depth ratio such as 1x, 0.5x or 0.25x")
    return ratio


def variant_blocks(variant: str, num_blocks: int) -> list[int]:
    """Indices of the blocks a thin variant runs: ratio 1/s keeps every s-th block (0-based s-1, 2s-1, ...),
    so 0.5x of 8 blocks is [1, 3, 5, 7] and 0.25x is [3, 7], as in the official TBA."""
    stride = round(1 / variant_ratio(variant))
    if abs(stride * variant_ratio(variant) - 1) > 1e-9 or stride > num_blocks:
        raise UserError(f"variant {variant!r}: 1/ratio must be an integer <= num_blocks ({num_blocks})")
    return [i for i in range(num_blocks) if (i + 1) % stride == 0]


VARIANT_BLOCKS: dict[str, list[int]] = {v: variant_blocks(v, 8) for v in ("1x", "0.5x", "0.25x")}


def variant_key(variant: str) -> str:
    """The ModuleDict key of a variant ('0.5x' -> '0_5x'): module names cannot contain dots."""
    return variant.replace(".", "_")


def make_activation(name: str) -> nn.Module:
    """PReLU has one shared slope, as in the official model (this fixes the parameter count)."""
    if name == "relu":
        return nn.ReLU()
    if name == "prelu":
        return nn.PReLU()
    if name == "identity":
        return nn.Identity()
    raise UserError(f"activation {name!r} is unknown; use one of {', '.join(ACTIVATIONS)}")


class DFSMNBlock(nn.Module):
    """One D-FSMN block; see the module docstring for the exact layout."""

    def __init__(
        self, cfg: ModelConfig, binarizer: str | None, variants: Sequence[str], act: str, dropout: float
    ) -> None:
        """`variants`: those that run this block; each gets its own bn_out/act_out."""
        super().__init__()
        c, d = cfg.backbone_size, cfg.hidden_size
        pad = (cfg.memory_left * cfg.dilation, cfg.memory_right * cfg.dilation)
        self.memory = QConv1d(
            c, c, cfg.memory_kernel, groups=c, dilation=cfg.dilation, pad=pad, binarizer=binarizer
        )
        self.bn_mem = nn.BatchNorm1d(c)
        self.act_mem = make_activation(cfg.block_activation)
        self.expand = QConv1d(c, d, 1, binarizer=binarizer)
        self.bn_hidden = nn.BatchNorm1d(d)
        self.act_hidden = make_activation(act)
        self.drop_hidden = nn.Dropout(dropout)
        self.project = QConv1d(d, c, 1, binarizer=binarizer)
        self.bn_out = nn.ModuleDict({variant_key(v): nn.BatchNorm1d(c) for v in variants})
        self.act_out = nn.ModuleDict(
            {variant_key(v): make_activation(cfg.block_activation) for v in variants}
        )

    def forward(self, x: Tensor, key: str = "1x") -> Tensor:
        m = self.act_mem(self.bn_mem(self.memory(x))) + x
        h = self.drop_hidden(self.act_hidden(self.bn_hidden(self.expand(m))))
        return self.act_out[key](self.bn_out[key](self.project(h))) + m


class DFSMN(nn.Module):
    """Teacher (`binarizer=None`) or binary thinnable student; see the module docstring."""

    def __init__(
        self, cfg: ModelConfig, binarizer: str | None = None, variants: Sequence[str] = ("1x",)
    ) -> None:
        super().__init__()
        cfg.validate()
        if binarizer is not None and binarizer not in BINARIZERS:
            raise UserError(f"binarizer {binarizer!r} is unknown; use one of {', '.join(BINARIZERS)}")
        if not variants:
            raise UserError("variants: at least one variant is needed, e.g. 1x")
        self.cfg = cfg
        self.binarizer_name = binarizer
        self.variants = tuple(variants)
        self.variant_block_ids = {v: variant_blocks(v, cfg.num_blocks) for v in self.variants}
        act = cfg.activation if binarizer is None else cfg.student_activation
        dropout = cfg.dropout if binarizer is None else cfg.student_dropout
        ch, k = cfg.stem_channels, cfg.stem_kernel
        mel, _ = cfg.stem_shape()

        self.conv1 = nn.Conv2d(1, ch, k, stride=2, padding=k // 2)
        self.bn1 = nn.BatchNorm2d(ch)
        self.act1 = make_activation(act)
        self.conv2 = QConv2d(ch, 2 * ch, k, stride=2, padding=k // 2, binarizer=binarizer)
        self.bn2 = nn.BatchNorm2d(2 * ch)
        self.act2 = make_activation(act)
        self.fc1 = QLinear(2 * ch * mel, cfg.backbone_size, binarizer=binarizer)
        self.act_fc1 = make_activation(act)
        self.blocks = nn.ModuleList(
            DFSMNBlock(
                cfg, binarizer, [v for v in self.variants if i in self.variant_block_ids[v]], act, dropout
            )
            for i in range(cfg.num_blocks)
        )
        self.drop = nn.Dropout(dropout)
        self.classifier = nn.Linear(cfg.backbone_size * cfg.stem_shape()[1], cfg.num_classes)

    def stem(self, x: Tensor) -> Tensor:
        """(B, n_mels, frames) -> (B, backbone, T): conv1 .. act_fc1, shared by every variant."""
        if x.dim() != 3 or x.shape[1:] != (self.cfg.n_mels, self.cfg.frames):
            raise UserError(
                f"model input: expected (batch, {self.cfg.n_mels}, {self.cfg.frames}) features, got {tuple(x.shape)}"
            )
        h = self.act1(self.bn1(self.conv1(x.unsqueeze(1))))
        h = self.act2(self.bn2(self.conv2(h)))
        b, c, mel, t = h.shape
        h = self.act_fc1(self.fc1(h.reshape(b, c * mel, t).transpose(1, 2)))
        return h.transpose(1, 2).contiguous()

    def forward_multi(
        self, x: Tensor, variants: Sequence[str] | None = None, return_blocks: bool = False
    ) -> dict[str, Any]:
        h = self.stem(x)
        results: dict[str, Any] = {}
        for v in variants or self.variants:
            if v not in self.variant_block_ids:
                raise UserError(f"variant {v!r} is not one of this model's variants {list(self.variants)}")
            key, out, blocks = variant_key(v), h, []
            for i in self.variant_block_ids[v]:
                out = self.blocks[i](out, key)
                if return_blocks:
                    blocks.append(out)
            logits = self.classifier(self.drop(out.flatten(1)))
            results[v] = (logits, blocks) if return_blocks else logits
        return results

    def forward(self, x: Tensor, variant: str = "1x", return_blocks: bool = False) -> Any:
        return self.forward_multi(x, (variant,), return_blocks)[variant]

    def binarized_layers(self) -> list[tuple[str, QuantLayer]]:
        """(name, layer) of every binarized layer, in execution order: conv2, fc1, then per block memory,
        expand, project (26 at defaults). Empty for the full-precision model."""
        return [
            (name, m)
            for name, m in self.named_modules()
            if isinstance(m, QuantLayer) and m.binarizer is not None
        ]

    def pop_extra_loss(self) -> Tensor | None:
        """Sum of the binarizers' extra losses gathered since the last call (RAD), or None."""
        losses = [loss for _, m in self.binarized_layers() if (loss := m.binarizer.pop_loss()) is not None]
        return torch.stack(losses).mean() if losses else None

    def set_epoch(self, epoch: int, total_epochs: int) -> None:
        """Per-epoch annealing hook of the binarizers (IR-Net's EDE)."""
        for _, m in self.binarized_layers():
            m.binarizer.set_progress(epoch, total_epochs)


def load_teacher_into_student(student: DFSMN, teacher_state: Mapping[str, Tensor]) -> list[str]:
    """Initialise a student from a teacher's state dict; returns the student keys left at their own init.

    Every key with the same name and shape is copied (latent binary weights start at the teacher's weights);
    each variant's bn_out/act_out copies the teacher's block BN/activation of variant 1x. Activations the
    teacher lacks (PReLU where the teacher had ReLU) and binarizer state keep their initial values.
    """
    own = student.state_dict()
    teacher_key = variant_key("1x")
    loaded, untouched = {}, []
    for name, value in own.items():
        source = name
        for kind in ("bn_out", "act_out"):
            for v in student.variants:
                marker = f".{kind}.{variant_key(v)}."
                if marker in name:
                    source = name.replace(marker, f".{kind}.{teacher_key}.")
        src = teacher_state.get(source)
        if src is not None and src.shape == value.shape:
            loaded[name] = src.detach().clone()
        else:
            untouched.append(name)
    student.load_state_dict(loaded, strict=False)
    return untouched

"""A `.bfsm` op list run in PyTorch, op by op as csrc/FORMAT.md defines it: the reference the C engine must match
for whatever weights a file holds.

The exported D-FSMN is checked against its PyTorch model; once a file stores its float arrays in fp16 or int8,
its PyTorch counterpart with the same (rounded) weights is this executor of the parsed file (bfsm.parse), which
also measures what a storage changes (bifsmn_cli/export/storage.py). Binary ops compute the +-1 dot product of the
input signs and the weight signs (zero padding contributing 0) as exact integers in float32, then `a * dot + b`
(a multiply, then an add); full-precision ops `W x + bias`; then PReLU (`max(0, v) + slope * min(0, v)`) and the
residual. Tensors are the engine's (time, height, channels) with a batch dimension in front.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from bifsmn_cli.export.bfsm import unpack_signs
from bifsmn_cli.nn.binarizers import sign


class RecordNet(nn.Module):
    """The ops of a parsed .bfsm (`bfsm.parse` / `read_bfsm`) as a module: features (B, mels, frames) -> logits."""

    def __init__(self, parsed: dict[str, Any]) -> None:
        super().__init__()
        self.ops = parsed["ops"]
        self.num_slots = parsed["num_slots"]
        self._w = [self._weight(op) for op in self.ops]

    @staticmethod
    def _weight(op: dict[str, Any]) -> Tensor:
        """Float weights (or +-1 signs) shaped for torch's conv2d / matmul / grouped conv1d."""
        d = op["dims"]
        if op["type"] == "conv2d":
            k = d["kh"] * d["kw"] * d["c_in"]
            w = unpack_signs(op["weight"], k) if op["binary"] else op["weight"]
            return (
                torch.from_numpy(np.ascontiguousarray(w))
                .reshape(d["c_out"], d["kw"], d["kh"], d["c_in"])
                .permute(0, 3, 2, 1)
            )
        if op["type"] == "linear":
            w = unpack_signs(op["weight"], d["k"]) if op["binary"] else op["weight"]
            return torch.from_numpy(np.ascontiguousarray(w))
        w = unpack_signs(op["weight"], d["channels"]).T if op["binary"] else op["weight"]  # (channels, taps)
        return torch.from_numpy(np.ascontiguousarray(w))[:, None, :]

    def step(self, i: int, x: Tensor, res: Tensor | None = None) -> tuple[Tensor, Tensor | None]:
        """Op i on (B, T, H, C) input: (its output, the integer dot products before the affine of a binary op)."""
        op, w, d = self.ops[i], self._w[i], self.ops[i]["dims"]
        x = sign(x) if op["binary"] else x
        if op["type"] == "conv2d":
            y = F.conv2d(x.permute(0, 3, 2, 1), w, stride=(d["sh"], d["sw"]), padding=(d["ph"], d["pw"]))
            y = y.permute(0, 3, 2, 1)
        elif op["type"] == "linear":
            rows = x.reshape(x.shape[0], 1, -1) if op["flatten"] else x.reshape(x.shape[0], x.shape[1], -1)
            y = (rows @ w.T)[:, :, None, :]
        else:
            span = (d["taps"] - 1) * d["dilation"]
            seq = F.pad(x[:, :, 0, :].transpose(1, 2), (d["pad_left"], span - d["pad_left"]))
            y = F.conv1d(seq, w, dilation=d["dilation"], groups=d["channels"]).transpose(1, 2)[:, :, None, :]
        ints = None
        if op["binary"]:
            ints = y
            y = y * torch.from_numpy(op["scale"]) + torch.from_numpy(op["shift"])
        else:
            y = y + torch.from_numpy(op["shift"])
        if op["slope"] is not None:
            y = torch.clamp(y, min=0) + torch.from_numpy(op["slope"]) * torch.clamp(y, max=0)
        if res is not None:
            y = y + res
        return y, ints

    @torch.no_grad()
    def forward(self, features: Tensor) -> Tensor:
        slots: list[Tensor | None] = [None] * self.num_slots
        slots[0] = features.transpose(1, 2)[..., None]  # (B, frames, mels, 1)
        for i, op in enumerate(self.ops):
            res = slots[op["res_slot"]] if op["res_slot"] is not None else None
            slots[op["out_slot"]], _ = self.step(i, slots[op["in_slot"]], res)
        return slots[self.ops[-1]["out_slot"]].reshape(features.shape[0], -1)

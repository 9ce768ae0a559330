"""The quantized layers: convolution and linear layers whose input and weight go through a binarizer.

With `binarizer=None` each is its plain full-precision PyTorch layer, so the teacher and the student share one
model definition (bifsmn_cli.nn.dfsmn). Zero padding is applied after the input is binarized, so padded taps
contribute exactly 0 (not +-1), as the C engine computes them.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from bifsmn_cli.nn.binarizers import Binarizer, make_binarizer


class _Quantized:
    """What the three layers share: their binarizer (None = full precision) and the weight it makes."""

    binarizer: Binarizer | None
    weight: Tensor

    def quantized_weight(self) -> Tensor:
        return self.binarizer.quantize_weight(self.weight) if self.binarizer else self.weight


class QLinear(_Quantized, nn.Linear):
    """nn.Linear whose input and weight go through `binarizer` (None = full precision)."""

    def __init__(self, in_features: int, out_features: int, binarizer: str | None = None) -> None:
        super().__init__(in_features, out_features)
        self.binarizer = make_binarizer(binarizer, in_features, -1) if binarizer else None

    def forward(self, x: Tensor) -> Tensor:
        if self.binarizer is not None:
            x = self.binarizer.quantize_input(x)
        return F.linear(x, self.quantized_weight(), self.bias)


class QConv1d(_Quantized, nn.Conv1d):
    """nn.Conv1d with explicit (left, right) zero padding applied after the input is binarized, so padded
    taps contribute exactly 0 (not +-1), as the engine computes them."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        *,
        groups: int = 1,
        dilation: int = 1,
        pad: tuple[int, int] = (0, 0),
        binarizer: str | None = None,
    ) -> None:
        super().__init__(in_channels, out_channels, kernel_size, groups=groups, dilation=dilation)
        self.pad = pad
        self.binarizer = make_binarizer(binarizer, in_channels, 1) if binarizer else None

    def forward(self, x: Tensor) -> Tensor:
        if self.binarizer is not None:
            x = self.binarizer.quantize_input(x)
        if self.pad != (0, 0):
            x = F.pad(x, self.pad)
        w = self.quantized_weight()
        if self.groups == self.in_channels == self.out_channels and self.stride == (1,):
            # depthwise over a handful of frames: a sum of shifted products trains ~2x faster on CPU than
            # oneDNN's grouped convolution, whose backward dominates the step at these tiny shapes
            d, taps = self.dilation[0], w.shape[-1]
            steps = x.shape[-1] - d * (taps - 1)
            out = sum(w[:, 0, k, None] * x[..., k * d : k * d + steps] for k in range(taps))
            return out if self.bias is None else out + self.bias[:, None]
        return F.conv1d(x, w, self.bias, self.stride, 0, self.dilation, self.groups)


class QConv2d(_Quantized, nn.Conv2d):
    """nn.Conv2d with symmetric zero padding applied after the input is binarized (padded taps are 0)."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        stride: int,
        padding: int,
        binarizer: str | None,
    ) -> None:
        super().__init__(in_channels, out_channels, kernel_size, stride=stride, padding=padding)
        self.binarizer = make_binarizer(binarizer, in_channels, 1) if binarizer else None

    def forward(self, x: Tensor) -> Tensor:
        if self.binarizer is None:
            return super().forward(x)
        x = self.binarizer.quantize_input(x)
        return F.conv2d(
            x, self.quantized_weight(), self.bias, self.stride, self.padding, self.dilation, self.groups
        )


QuantLayer = QLinear | QConv1d | QConv2d  # the layer types a binarizer can sit in

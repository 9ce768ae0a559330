"""Binarizers: how a binarized layer turns its latent real weights and its input into 1-bit values.

Every binarizer is an `nn.Module` owned by one layer (`QConv1d`, `QConv2d`, `QLinear` in layers.py), so it can hold
learnable state (LPB's thresholds) or per-layer losses (RAD). The interface:

- `quantize_input(x)`: the input activations the layer convolves with (values +-1 for sign-based binarizers);
- `quantize_weight(w)`: the weights used in training, exactly `signs * scale` per output channel, with the
  binarizer's surrogate gradient reaching the latent `w`;
- `weight_parts(w) -> (signs, scale)`: the same weights as +-1 signs and a per-output-channel scale `(O,)`,
  without autograd; the exporter packs `signs` and folds `scale` with the following BN;
- `pop_loss()`: an extra training loss gathered since the last call (RAD), or None;
- `set_progress(epoch, total_epochs)`: per-epoch annealing (IR-Net's EDE);
- `lr_scale`: the learning-rate factor the optimiser gives the binarizer's own parameters (LPB: 0.1).

`exportable` is True when inference is exactly `scale_o * sum(sign(w) * sign(x)) + bias_o` with
`sign(0) = +1`, the form the C engine runs. sign(0) = sign(NaN) = +1 everywhere here, as in the engine.

Deliberate fix of the official BiFSMN code: its 1x1 convolutions had one scale per weight, so they were
not binary at all; here every binarized weight tensor has exactly two values {-a_o, +a_o} per output
channel o (a_o = 1 for BNN and RAD, which use no scaling factor).
"""

from __future__ import annotations

import math
from typing import ClassVar

import torch
from torch import Tensor, nn

from bifsmn_cli.errors import UserError


def sign(x: Tensor) -> Tensor:
    """-1 where x < 0 else +1: sign(0) = sign(-0) = sign(NaN) = +1, unlike torch.sign, exactly as the engine's
    bit-packing (an ordered `x < 0` compare) sees them."""
    return (x < 0).to(x.dtype).mul_(-2).add_(1)  # ~3x faster on CPU than torch.where with scalars


class _SignClippedSTE(torch.autograd.Function):
    """sign forward; straight-through backward, zeroed where |x| > clip (BNN's Htanh estimator)."""

    @staticmethod
    def forward(ctx, x: Tensor, clip: float) -> Tensor:  # type: ignore[override]
        ctx.save_for_backward(x.abs() <= clip)  # a bool mask: a quarter of the memory of saving x
        return sign(x)

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, None]:  # type: ignore[override]
        (inside,) = ctx.saved_tensors
        return grad * inside, None


class _SignApprox(torch.autograd.Function):
    """sign forward; Bi-Real's ApproxSign backward: d/dx = max(0, 2 - 2|x|)."""

    @staticmethod
    def forward(ctx, x: Tensor) -> Tensor:  # type: ignore[override]
        ctx.save_for_backward(x)
        return sign(x)

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:  # type: ignore[override]
        (x,) = ctx.saved_tensors
        return grad * (2.0 - 2.0 * x.abs()).clamp_min(0.0)


class _SignEDE(torch.autograd.Function):
    """sign forward; IR-Net's Error Decay Estimator backward: d/dx = k t (1 - tanh^2(t x))."""

    @staticmethod
    def forward(ctx, x: Tensor, k: float, t: float) -> Tensor:  # type: ignore[override]
        ctx.save_for_backward(x)
        ctx.k, ctx.t = k, t
        return sign(x)

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, None, None]:  # type: ignore[override]
        (x,) = ctx.saved_tensors
        return grad * (ctx.k * ctx.t) * (1.0 - torch.tanh(x * ctx.t).square()), None, None


def _zero_with_grad(surrogate: Tensor) -> Tensor:
    """Exactly 0 forward, the gradient of `surrogate` backward: `value + _zero_with_grad(s)` keeps `value` bit-exact
    (unlike `value + s - s.detach()`, which rounds), NaN inputs included."""
    surrogate = surrogate.nan_to_num(0.0)
    return surrogate - surrogate.detach()


def _reduce_dims(w: Tensor) -> tuple[int, ...]:
    return tuple(range(1, w.dim()))


def _scaled_sign_ste(w: Tensor, scale: Tensor) -> Tensor:
    """sign(w) * scale forward; backward the clipped straight-through rule grad * 1{|w| <= 1}, *not* multiplied by
    the scale (the rule of the BiFSMN and Bi-Real authors' code: the latent weights learn at the optimiser's rate
    whatever the size of the scale)."""
    clipped = w.clamp(-1.0, 1.0)
    return (sign(w) * scale).detach() + _zero_with_grad(clipped)


def _per_channel_mean_abs(w: Tensor) -> Tensor:
    """mean |w| per output channel, kept broadcastable; clamped so an all-zero row cannot give 0 * inf."""
    return w.abs().mean(dim=_reduce_dims(w), keepdim=True).clamp_min(1e-8)


class Binarizer(nn.Module):
    """Base class; see the module docstring for the contract."""

    name: ClassVar[str] = ""
    paper: ClassVar[str] = ""
    exportable: ClassVar[bool] = True
    lr_scale: ClassVar[float] = (
        1.0  # learning-rate factor of the binarizer's own parameters (LPB's thresholds)
    )

    def __init__(self, in_channels: int, channel_dim: int) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.channel_dim = channel_dim  # where the input's channels are: 1 for convolutions, -1 for linear

    def quantize_input(self, x: Tensor) -> Tensor:
        return _SignClippedSTE.apply(x, 1.0)

    def quantize_weight(self, w: Tensor) -> Tensor:
        raise NotImplementedError

    @torch.no_grad()
    def weight_parts(self, w: Tensor) -> tuple[Tensor, Tensor]:
        """Exact because every binarizer's weights are two-valued per output channel: |q| is the scale."""
        q = self.quantize_weight(w)
        scale = q.abs().amax(dim=_reduce_dims(q))
        return sign(q), scale

    def pop_loss(self) -> Tensor | None:
        return None

    def set_progress(self, epoch: int, total_epochs: int) -> None:
        """Called at the start of every epoch (0-based)."""

    def extra_repr(self) -> str:
        return f"{self.name}, in_channels={self.in_channels}"


class BiFSMNBinarizer(Binarizer):
    """BiFSMN (Qin et al., IJCAI 2022): sign activations with a clipped straight-through estimator; weights
    sign(w) times a detached mean |w| per output channel, straight-through (clipped at |w| <= 1) to w.

    As in the official code, the gradient to w is not multiplied by the detached scale. Deviations: the scale
    is per output channel for every layer (the official 1x1 convolutions kept real weights) and no mean is
    subtracted from conv weights before the sign.
    """

    name = "bifsmn"
    paper = "Qin et al., BiFSMN: Binary Neural Network for Keyword Spotting, IJCAI 2022"

    def quantize_weight(self, w: Tensor) -> Tensor:
        return _scaled_sign_ste(w, _per_channel_mean_abs(w).detach())


class BNNBinarizer(Binarizer):
    """BNN (Hubara, Courbariaux et al., NeurIPS 2016): sign weights and activations without any scaling
    factor; straight-through estimator cancelled where |x| > 1 (Htanh) for both.

    Deviation: the latent weights are not clipped to [-1, 1] after each step; the cancelled gradient beyond
    |w| > 1 plays that role.
    """

    name = "bnn"
    paper = "Hubara et al., Binarized Neural Networks, NeurIPS 2016"

    def quantize_weight(self, w: Tensor) -> Tensor:
        return _SignClippedSTE.apply(w, 1.0)


class XNORBinarizer(Binarizer):
    """XNOR-Net (Rastegari et al., ECCV 2016): weights alpha_o * sign(w) with alpha_o = mean |w_o|, gradient
    flowing through both the sign (clipped STE) and alpha; activations sign(x) * K with K the mean |x| over
    the input channels at each position.

    Deviations: K multiplies the input per position before the convolution instead of being box-filtered over
    the kernel window afterwards (identical for 1x1 convolutions and linear layers) and is detached.
    Not exportable: K is a real-valued per-position scale the engine does not compute.
    """

    name = "xnor"
    paper = "Rastegari et al., XNOR-Net, ECCV 2016"
    exportable = False

    def quantize_input(self, x: Tensor) -> Tensor:
        k = x.detach().abs().mean(dim=self.channel_dim, keepdim=True)
        return _SignClippedSTE.apply(x, 1.0) * k

    def quantize_weight(self, w: Tensor) -> Tensor:
        return _SignClippedSTE.apply(w, 1.0) * _per_channel_mean_abs(w)


class DoReFaBinarizer(Binarizer):
    """DoReFa-Net at 1 bit (Zhou et al., 2016): weights sign(w) * E(|w|) with one scale per tensor and a
    plain, unscaled straight-through estimator (d/dw = 1, the paper's Eq. 7-8); activations round(clip(x, 0, 1)) in {0, 1}, straight-through inside
    [0, 1]. Not exportable: {0, 1} activations are not the engine's +-1 form.
    """

    name = "dorefa"
    paper = "Zhou et al., DoReFa-Net, arXiv:1606.06160, 2016"
    exportable = False

    def quantize_input(self, x: Tensor) -> Tensor:
        clipped = x.clamp(0.0, 1.0)
        return torch.round(clipped).detach() + _zero_with_grad(clipped)

    def quantize_weight(self, w: Tensor) -> Tensor:
        scale = w.abs().mean().clamp_min(1e-8)
        return (sign(w) * scale).detach() + _zero_with_grad(w)  # sign forward, identity backward


class BiRealBinarizer(Binarizer):
    """Bi-Real Net (Liu et al., ECCV 2018): ApproxSign backward for activations; magnitude-aware weights
    sign(w) * mean |w_o| (detached), straight-through clipped at |w| <= 1 and not scaled, as in the authors' code.

    The real-valued shortcuts Bi-Real adds around each binary convolution are, in D-FSMN, the block's two
    residual connections; no extra shortcut is added (expand/project change the width, so a per-convolution
    identity shortcut does not exist).
    """

    name = "bireal"
    paper = "Liu et al., Bi-Real Net, ECCV 2018"

    def quantize_input(self, x: Tensor) -> Tensor:
        return _SignApprox.apply(x)

    def quantize_weight(self, w: Tensor) -> Tensor:
        return _scaled_sign_ste(w, _per_channel_mean_abs(w).detach())


class IRNetBinarizer(Binarizer):
    """IR-Net (Qin et al., CVPR 2020): Libra-PB balances each output channel's weights (zero mean, unit
    std) before the sign and scales by a power of two 2^round(log2(mean |w_std|)); weights and activations
    use the Error Decay Estimator k t (1 - tanh^2(t x)), with t annealed from 0.1 to 10 over training
    (t = T_min * 10^(e / E * log10(T_max / T_min)), k = max(1 / t, 1)).
    """

    name = "irnet"
    paper = "Qin et al., Forward and Backward Information Retention (IR-Net), CVPR 2020"
    t_min, t_max = 0.1, 10.0

    def __init__(self, in_channels: int, channel_dim: int) -> None:
        super().__init__(in_channels, channel_dim)
        self.t, self.k = self.t_min, 1.0 / self.t_min

    def set_progress(self, epoch: int, total_epochs: int) -> None:
        frac = epoch / max(total_epochs, 1)
        self.t = self.t_min * 10 ** (frac * math.log10(self.t_max / self.t_min))
        self.k = max(1.0 / self.t, 1.0)

    def quantize_input(self, x: Tensor) -> Tensor:
        return _SignEDE.apply(x, self.k, self.t)

    def _balanced(self, w: Tensor) -> tuple[Tensor, Tensor]:
        dims = _reduce_dims(w)
        centred = w - w.mean(dim=dims, keepdim=True)
        # std over a 1-element row is undefined; such a row has a single weight whose sign is all that matters
        std = centred.std(dim=dims, keepdim=True) if w[0].numel() > 1 else torch.ones_like(centred[:, :1])
        balanced = centred / std.clamp_min(1e-8)
        scale = torch.exp2(torch.round(torch.log2(_per_channel_mean_abs(balanced)))).detach()
        return balanced, scale

    def quantize_weight(self, w: Tensor) -> Tensor:
        balanced, scale = self._balanced(w)
        return _SignEDE.apply(balanced, self.k, self.t) * scale


class RADBinarizer(BNNBinarizer):
    """RAD (Ding et al., CVPR 2019): BNN forward/backward (no scaling factors) plus the distribution loss on
    every binarizer's input, per channel with batch mean mu and std sigma, as in the authors' code:
    [min(2 - mu - sigma, 2 + mu - sigma)]_+^2 (gradient mismatch) + [sigma - 4]_+^2 (saturation)
    + [mu^2 - sigma^2]_+ (degeneration), averaged over channels, summed over a layer's calls since the last
    `pop_loss` (one per variant that runs it) and averaged over layers by `DFSMN.pop_extra_loss`.
    """

    name = "rad"
    paper = (
        "Ding et al., Regularizing Activation Distribution for Training Binarized Deep Networks, CVPR 2019"
    )

    def __init__(self, in_channels: int, channel_dim: int) -> None:
        super().__init__(in_channels, channel_dim)
        self._losses: list[Tensor] = []

    def quantize_input(self, x: Tensor) -> Tensor:
        if self.training and x.requires_grad:
            self._losses.append(self._distribution_loss(x))
        return super().quantize_input(x)

    def _distribution_loss(self, x: Tensor) -> Tensor:
        cd = self.channel_dim % x.dim()
        dims = tuple(d for d in range(x.dim()) if d != cd)
        mean = x.mean(dim=dims)
        std = (x.var(dim=dims, unbiased=False) + 1e-10).sqrt()
        mismatch = torch.minimum(2 - mean - std, 2 + mean - std).clamp_min(0).square().mean()
        saturation = (std - 4).clamp_min(0).square().mean()
        degeneration = (mean.square() - std.square()).clamp_min(0).mean()
        return mismatch + saturation + degeneration

    def pop_loss(self) -> Tensor | None:
        if not self._losses:
            return None
        total = torch.stack(self._losses).sum()
        self._losses = []
        return total


class LPBBinarizer(Binarizer):
    """Learning Propagation Binarizer (Qin et al., BiFSMNv2, TNNLS 2023), its 1-bit activation path in full.

    Activations, per input channel c with learnable threshold tau_c, estimator scale alpha_c and shift beta_c:
    forward a = sign(alpha_c (x - tau_c)) - beta_c; backward through clamp(alpha_c (x - tau_c), -1, 1), so
    d a/d x = alpha_c 1{|alpha_c (x - tau_c)| <= 1} = -d a/d tau_c, d a/d alpha_c = (x - tau_c) 1{...} and
    d a/d beta_c = -1. Weights: sign(alpha_w w) * mean |w_o| (detached) with a learnable alpha_w, backward through
    clamp(alpha_w w, -1, 1) and not multiplied by the scale. tau and beta start at U(0, 0.001), alpha at 1, as in
    the official code; they train at `lr_scale` (0.1) times the learning rate, as the official optimiser does.

    Deviations from the official code: alpha is per input channel (the official code has one per layer: the
    same at the start) and the thresholds and alphas get no weight decay; BiFSMNv2's second, real-scaled sign of
    the residual belongs to its dual-scale architecture, not to this binarizer, and is left out (activations
    stay 1-bit). Not exportable: the engine binarizes at threshold 0 and has no per-channel shift.
    """

    name = "lpb"
    paper = "Qin et al., BiFSMNv2: Pushing Binary Neural Networks for Keyword Spotting, TNNLS 2023"
    exportable = False
    lr_scale = 0.1

    def __init__(self, in_channels: int, channel_dim: int) -> None:
        super().__init__(in_channels, channel_dim)
        self.threshold = nn.Parameter(torch.rand(in_channels) * 1e-3)
        self.shift = nn.Parameter(torch.rand(in_channels) * 1e-3)
        self.alpha_input = nn.Parameter(torch.ones(in_channels))
        self.alpha_weight = nn.Parameter(torch.tensor(1.0))

    def _per_channel(self, p: Tensor, x: Tensor) -> Tensor:
        shape = [1] * x.dim()
        shape[self.channel_dim] = self.in_channels
        return p.view(shape)

    def quantize_input(self, x: Tensor) -> Tensor:
        scaled = self._per_channel(self.alpha_input, x) * (x - self._per_channel(self.threshold, x))
        return sign(scaled) + _zero_with_grad(scaled.clamp(-1.0, 1.0)) - self._per_channel(self.shift, x)

    def quantize_weight(self, w: Tensor) -> Tensor:
        scaled = self.alpha_weight * w
        return (sign(scaled) * _per_channel_mean_abs(w)).detach() + _zero_with_grad(scaled.clamp(-1.0, 1.0))


BINARIZERS: dict[str, type[Binarizer]] = {
    cls.name: cls
    for cls in (
        BiFSMNBinarizer,
        BNNBinarizer,
        DoReFaBinarizer,
        XNORBinarizer,
        BiRealBinarizer,
        IRNetBinarizer,
        RADBinarizer,
        LPBBinarizer,
    )
}


def make_binarizer(name: str, in_channels: int, channel_dim: int) -> Binarizer:
    """A fresh binarizer for one layer; UserError for an unknown name."""
    try:
        cls = BINARIZERS[name]
    except KeyError:
        raise UserError(f"binarizer {name!r} is unknown; use one of {', '.join(BINARIZERS)}") from None
    return cls(in_channels, channel_dim)

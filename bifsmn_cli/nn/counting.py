"""Parameters, MACs, binary operations, FLOPs and model size of a DFSMN variant.

Counted by running one dummy clip through the variant with hooks, so the numbers follow the actual layers:
- MACs of a convolution/linear layer: output elements x (input channels / groups x kernel taps) per clip;
  BN, activations, residual additions and biases are not counted (the paper's convention);
- binary ops: the MACs of binarized layers; FLOPs = real MACs + binary ops / 64 (the paper's convention);
- parameters of a variant: those of the modules it runs (a thin variant skips blocks and other variants' BN);
- bytes: fp32 = 4 per parameter; packed = 1 bit per binarized weight, plus 4 bytes per other parameter and
  per output-channel scale of each binarized layer (BN and scale fold into one per-channel affine at export).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import torch
from torch import nn

from bifsmn_cli.nn.dfsmn import DFSMN
from bifsmn_cli.nn.layers import QuantLayer


@dataclass
class LayerCount:
    name: str
    kind: str
    binary: bool
    params: int
    macs: int


@dataclass
class VariantCount:
    variant: str
    params: int
    real_macs: int
    binary_ops: int
    flops: float
    bytes_fp32: int
    bytes_packed: int
    layers: list[LayerCount] = field(default_factory=list)

    @property
    def macs(self) -> int:
        """All multiply-accumulates, binary or not (the full-precision model's MAC count)."""
        return self.real_macs + self.binary_ops

    def as_dict(self) -> dict:
        return {**asdict(self), "macs": self.macs}


def _layer_macs(module: nn.Module, out: torch.Tensor) -> int:
    per_clip = out[0].numel()
    if isinstance(module, nn.Linear):
        return per_clip * module.in_features
    assert isinstance(module, nn.Conv1d | nn.Conv2d)
    return per_clip * (module.in_channels // module.groups) * math.prod(module.kernel_size)


@torch.no_grad()
def count_variant(model: DFSMN, variant: str = "1x") -> VariantCount:
    ran: dict[str, nn.Module] = {}
    macs: dict[str, int] = {}

    def hook(name: str):
        def fn(module: nn.Module, _inp, out) -> None:
            ran[name] = module
            if isinstance(module, nn.Linear | nn.Conv1d | nn.Conv2d):
                macs[name] = _layer_macs(module, out)

        return fn

    handles = [m.register_forward_hook(hook(n)) for n, m in model.named_modules() if n]
    was_training = model.training
    model.eval()
    try:
        cfg = model.cfg
        param = next(model.parameters())
        model(torch.zeros(1, cfg.n_mels, cfg.frames, dtype=param.dtype, device=param.device), variant)
    finally:
        model.train(was_training)
        for h in handles:
            h.remove()

    layers: list[LayerCount] = []
    params = binary_weights = scales = 0
    real_macs = binary_ops = 0
    for name, module in ran.items():
        own = sum(p.numel() for p in module.parameters(recurse=False))
        params += own
        if name not in macs:
            continue
        binary = isinstance(module, QuantLayer) and module.binarizer is not None
        if binary:
            binary_ops += macs[name]
            binary_weights += module.weight.numel()
            scales += module.weight.shape[0]
        else:
            real_macs += macs[name]
        layers.append(LayerCount(name, type(module).__name__, binary, own, macs[name]))
    packed = math.ceil(binary_weights / 8) + 4 * (params - binary_weights + scales)
    return VariantCount(
        variant=variant,
        params=params,
        real_macs=real_macs,
        binary_ops=binary_ops,
        flops=real_macs + binary_ops / 64,
        bytes_fp32=4 * params,
        bytes_packed=packed,
        layers=layers,
    )


def count_all(model: DFSMN) -> dict[str, VariantCount]:
    """count_variant for each of the model's variants."""
    return {v: count_variant(model, v) for v in model.variants}

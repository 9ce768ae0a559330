"""Where training runs: the device, torchrun's process group, and the collectives the loop needs.

The same stage runs unchanged on one process or under `torchrun --nproc_per_node=N` (gloo on CPU, nccl on GPU).
Each process takes an equal slice of every global batch; DistributedDataParallel averages gradients and
BatchNorm statistics are synchronised over the processes (`sync_batchnorm`), so an update equals one process on
the global batch.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor, nn

from bifsmn_cli.errors import UserError
from bifsmn_cli.train.torchrun import process_rank, world_size


def resolve_device(name: str, key: str = "device") -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise UserError(f"{key}: cuda was requested but no CUDA device is available; use auto or cpu")
    return torch.device(name)


@contextlib.contextmanager
def distributed(device: str) -> Iterator[bool]:
    """Join torchrun's process group (gloo on CPU, nccl on GPU) for the block; yields whether this rank writes.

    Joining is also a barrier: rank 0 has prepared the stage directory before any rank touches its state.
    """
    if world_size() <= 1 or dist.is_initialized():
        yield process_rank() == 0
        return
    use_cuda = device == "cuda" or (device == "auto" and torch.cuda.is_available())
    backend = "nccl" if use_cuda else "gloo"
    try:
        dist.init_process_group(backend)
    except (RuntimeError, ValueError) as exc:
        raise UserError(f"cannot join the torchrun process group ({backend}): {exc}") from None
    if use_cuda:
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    try:
        yield dist.get_rank() == 0
    finally:
        dist.destroy_process_group()


def world() -> tuple[int, int]:
    """(rank, number of processes) of the initialised process group, else (0, 1)."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def sum_over_processes_(x: Tensor) -> Tensor:
    """In-place sum of `x` over the processes (a no-op on one)."""
    if world()[1] > 1:
        dist.all_reduce(x)
    return x


def mean_over_processes(value: float) -> float:
    _, n = world()
    return float(sum_over_processes_(torch.tensor([value]))) / n if n > 1 else value


def gather_over_processes(obj: Any) -> list[Any]:
    """Every process's `obj`, in rank order (the one-process list is `[obj]`)."""
    _, n = world()
    if n == 1:
        return [obj]
    gathered: list[Any] = [None] * n
    dist.all_gather_object(gathered, obj)
    return gathered


def barrier() -> None:
    if world()[1] > 1:
        dist.barrier()


class _AllReduceSum(torch.autograd.Function):
    """Sum over processes; the backward sums the gradients of every process the same way."""

    @staticmethod
    def forward(ctx, x: Tensor) -> Tensor:  # type: ignore[override]
        x = x.clone()
        dist.all_reduce(x)
        return x

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:  # type: ignore[override]
        grad = grad.clone()
        dist.all_reduce(grad)
        return grad


def _synced_bn_forward(bn: nn.modules.batchnorm._BatchNorm, x: Tensor) -> Tensor:
    """BatchNorm whose batch statistics cover every process (torch's SyncBatchNorm is GPU-only)."""
    if not bn.training:
        return type(bn).forward(bn, x)
    c = x.shape[1]
    dims = [0, *range(2, x.dim())]
    shape = [1, c] + [1] * (x.dim() - 2)
    total = _AllReduceSum.apply(torch.cat([x.sum(dims), x.new_full((1,), x.numel() // c)]))
    n = total[-1]
    mean = total[:c] / n
    centred = x - mean.view(shape)
    # a second pass for the variance: E[x^2] - mean^2 cancels badly on near-constant channels
    var = _AllReduceSum.apply(centred.square().sum(dims)) / n
    with torch.no_grad():
        bn.running_mean.mul_(1 - bn.momentum).add_(mean, alpha=bn.momentum)
        bn.running_var.mul_(1 - bn.momentum).add_(var * n / (n - 1), alpha=bn.momentum)
        bn.num_batches_tracked.add_(1)
    scale = torch.rsqrt(var + bn.eps) * bn.weight
    return centred * scale.view(shape) + bn.bias.view(shape)


@contextlib.contextmanager
def sync_batchnorm(model: nn.Module) -> Iterator[None]:
    """Within the block, every BatchNorm of `model` normalises over all processes (nothing changes on one)."""
    enabled = world()[1] > 1
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)] if enabled else []
    for bn in bns:
        bn.forward = _synced_bn_forward.__get__(bn)  # instance attribute: removed again below
    try:
        yield
    finally:
        for bn in bns:
            del bn.forward

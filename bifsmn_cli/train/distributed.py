"""Data-parallel training under `torchrun`: the same stage runs unchanged on one process or many."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

import torch
import torch.distributed as dist

from bifsmn_cli.errors import UserError


def process_rank() -> int:
    """This process's rank as torchrun announces it (0 without torchrun)."""
    return int(os.environ.get("RANK", "0"))


def world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


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

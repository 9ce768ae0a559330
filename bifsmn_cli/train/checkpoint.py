"""Training state for resuming: one checkpoint per epoch, every RNG, the best weights so far, and the kill point.

`state_dir/checkpoint.pt` holds the model, optimiser, scheduler, every RNG state (torch, numpy, Python, CUDA
and the data-order and augmentation generators), the history and the best epochs, written atomically after
every epoch; resuming from it ends with bit-identical weights (same device and thread count). A fingerprint of
the settings refuses a checkpoint written by other ones. `best_<kind>.pt` holds the weights of each selection
rule's best epoch (selection.py).
"""

from __future__ import annotations

import dataclasses
import os
import random
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bifsmn_cli.errors import UserError
from bifsmn_cli.fsutil import atomic_path
from bifsmn_cli.nn.dfsmn import DFSMN
from bifsmn_cli.nn.hed import HED
from bifsmn_cli.train.config import TrainConfig

CHECKPOINT = "checkpoint.pt"
# Test hook, "EPOCH:STEP:PATH" (0-based): after that step's update, create PATH and block until killed, so a test
# can SIGKILL training mid-epoch at a known point whatever the machine's speed.
STALL_ENV = "BIFSMN_TEST_STALL"


def stall_point() -> tuple[int, int, Path] | None:
    value = os.environ.get(STALL_ENV)
    if not value:
        return None
    epoch, step, path = value.split(":", 2)
    return int(epoch), int(step), Path(path)


def stall_forever(path: Path) -> None:
    path.touch()
    while True:
        time.sleep(3600)


def best_path(state_dir: Path, kind: str) -> Path:
    return Path(state_dir) / f"best_{kind}.pt"


def fingerprint(model: DFSMN, cfg: TrainConfig, variants: Sequence[str], hed: HED | None, world: int) -> dict:
    """The settings a checkpoint must have been written with to be resumed."""
    return {
        "model": dataclasses.asdict(model.cfg),
        "binarizer": model.binarizer_name,
        "train": dataclasses.asdict(cfg),
        "variants": list(variants),
        "hed": dataclasses.asdict(hed.cfg) if hed is not None else None,
        "world": world,
    }


def rng_state(order: torch.Generator, aug: torch.Generator) -> dict[str, Any]:
    state = {
        "torch": torch.get_rng_state(),
        "numpy": np.random.get_state(),
        "python": random.getstate(),
        "order": order.get_state(),
        "augment": aug.get_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any], order: torch.Generator, aug: torch.Generator) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])
    order.set_state(state["order"])
    aug.set_state(state["augment"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def seed_everything(seed: int) -> None:
    """The global RNGs of a fresh run (dropout, numpy, Python); a resumed run restores them instead."""
    torch.manual_seed(seed)
    np.random.seed(seed)
    random.seed(seed)


def load(path: Path, expected_fingerprint: dict) -> dict[str, Any]:
    """The checkpoint at `path`; a one-line UserError when it is damaged or was written with other settings."""
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:  # torch raises many types for a damaged zip/pickle
        raise UserError(
            f"{path}: corrupt or unreadable checkpoint ({type(exc).__name__}); "
            "rerun with --force to start the stage over"
        ) from None
    if not isinstance(ckpt, dict) or ckpt.get("fingerprint") != expected_fingerprint:
        raise UserError(f"{path}: written with different settings; rerun without resuming (force the stage)")
    return ckpt


def discard(state_dir: Path, kinds: Sequence[str]) -> None:
    """A fresh run must not pick up the checkpoint or the best weights of an older one."""
    for stale in (Path(state_dir) / CHECKPOINT, *(best_path(state_dir, kind) for kind in kinds)):
        stale.unlink(missing_ok=True)


def save(obj: Any, path: Path) -> None:
    # through a Python file object: torch.save to a path reports a full disk as a bare RuntimeError
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        torch.save(obj, fh)

"""What torchrun tells a process through its environment. Torch-free, so that the stage runner can ask which rank
it is (only rank 0 writes manifests) without loading torch."""

from __future__ import annotations

import os


def process_rank() -> int:
    """This process's rank as torchrun announces it (0 without torchrun)."""
    return int(os.environ.get("RANK", "0"))


def world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))

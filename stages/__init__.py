"""The pipeline's stages, one module each, in the order they run."""

from __future__ import annotations

import importlib
from types import ModuleType

# CLI name -> module; the order is the pipeline's order.
STAGES: dict[str, str] = {
    "download": "stages.download",
    "featurize": "stages.featurize",
    "train-teacher": "stages.train_teacher",
    "distill": "stages.distill",
    "thin": "stages.thin",
    "build-kernel": "stages.build_kernel",
    "export": "stages.export",
    "bench": "stages.bench",
}


def stage_module(name: str) -> ModuleType:
    """Import a stage lazily so `bifsmn --help` does not pay for torch."""
    return importlib.import_module(STAGES[name])

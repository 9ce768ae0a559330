"""The stages, by CLI name, in the order they run; each is one module of `stages/` exporting SPEC and run(ctx)."""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import TYPE_CHECKING

from bifsmn_cli.errors import UserError

if TYPE_CHECKING:  # `bifsmn --help` lists the stages without loading the pipeline machinery
    from stages.pipeline.stage import StageSpec

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
    """Import a stage when it is needed: `bifsmn --help` imports none, reading a pipeline only their specs."""
    return importlib.import_module(STAGES[name])


def specs() -> dict[str, StageSpec]:
    return {name: stage_module(name).SPEC for name in STAGES}


def select(start: str | None, stop: str | None) -> list[str]:
    """The stages from `start` to `stop` (both included, default the first and the last), in pipeline order."""
    names = list(STAGES)
    for given in (start, stop):
        if given is not None and given not in STAGES:
            raise UserError(f"unknown stage {given!r}; stages are: {', '.join(names)}")
    i = names.index(start) if start else 0
    j = names.index(stop) if stop else len(names) - 1
    if i > j:
        raise UserError(f"--from {start} comes after --to {stop}")
    return names[i : j + 1]

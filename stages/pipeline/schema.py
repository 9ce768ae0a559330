"""A pipeline file's schema, assembled from the stages' specs and the shared sections, and reading a file with it."""

from __future__ import annotations

from pathlib import Path

from bifsmn_cli.config import Pipeline, Schema, load_pipeline
from stages.pipeline import registry
from stages.pipeline.sections import SHARED


def pipeline_schema() -> dict[str, Schema]:
    """Every section a pipeline file may have: each stage's own and the shared ones they read."""
    sections: dict[str, Schema] = dict(SHARED)
    for spec in registry.specs().values():
        sections[spec.section] = spec.schema
        unknown = [name for name in spec.reads if name not in SHARED]
        assert not unknown, f"stage {spec.name} reads {unknown}, which is no shared section"
    return sections


def load(path: Path, overrides: list[str] | None = None) -> Pipeline:
    """Read, override and validate a pipeline file."""
    return load_pipeline(path, pipeline_schema(), overrides)

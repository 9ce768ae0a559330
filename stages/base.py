"""What every stage is given and declares: its spec (sections read, upstream stages, schema) and its context."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bifsmn_cli.config import Pipeline, Schema
from bifsmn_cli.errors import UserError

MANIFEST = "manifest.json"
STATE_DIR = "state"


@dataclass(frozen=True)
class StageSpec:
    """A stage's declaration.

    `section` is its own config section (schema `schema`); `reads` lists other sections whose values shape its
    output (e.g. `model`), so that changing them makes the stage stale; `needs` lists upstream stages.
    """

    name: str
    schema: Schema
    needs: tuple[str, ...] = ()
    reads: tuple[str, ...] = ()
    extra_sections: dict[str, Schema] = field(default_factory=dict)
    keep_state: bool = False  # keep `state/` after success (e.g. verified downloads worth reusing)
    # Inputs that are not config nor upstream artifacts (build-kernel: the csrc/ tree); its value joins the
    # config hash, so editing them makes the stage stale.
    source_hash: Callable[[], str] | None = None

    @property
    def section(self) -> str:
        return self.name.replace("-", "_")


def stage_dir(workspace: Path, stage: str) -> Path:
    return Path(workspace) / stage


def read_manifest(workspace: Path, stage: str) -> dict[str, Any] | None:
    path = stage_dir(workspace, stage) / MANIFEST
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        return None  # a damaged manifest is no manifest: the stage reruns


@dataclass
class StageContext:
    """Everything a stage's `run` may use: its resolved config, the pipeline, and where to read and write."""

    spec: StageSpec
    pipeline: Pipeline
    config: dict[str, Any]
    out_dir: Path
    state_dir: Path
    resume: bool
    metrics: dict[str, Any] = field(default_factory=dict)
    bulk_dirs: list[str] = field(default_factory=list)

    @property
    def seed(self) -> int:
        return self.pipeline.seed

    def section(self, name: str) -> dict[str, Any]:
        return self.pipeline.section(name)

    def input_dir(self, stage: str) -> Path:
        """The directory of an upstream artifact, or a UserError naming it and the command that makes it."""
        if read_manifest(self.pipeline.workspace, stage) is None:
            raise UserError(
                f"missing artifact {stage_dir(self.pipeline.workspace, stage)} (needed by {self.spec.name}); "
                f"make it with `bifsmn {stage} -c {self.pipeline.path}`"
            )
        return stage_dir(self.pipeline.workspace, stage)

    def input_manifest(self, stage: str) -> dict[str, Any]:
        self.input_dir(stage)
        manifest = read_manifest(self.pipeline.workspace, stage)
        assert manifest is not None
        return manifest

    def mark_bulk(self, relative_dir: str) -> None:
        """Hash a large tree (an extracted corpus) by names and sizes instead of contents."""
        self.bulk_dirs.append(relative_dir)


def not_implemented(stage: str, issue: str) -> None:
    """Stages that have not landed yet fail loudly instead of pretending to succeed."""
    from bifsmn_cli.errors import InternalError

    raise InternalError(f"stage {stage} is not implemented yet ({issue}); nothing was written")

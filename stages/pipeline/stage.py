"""The stage interface: what a stage declares (`StageSpec`) and what its `run` is given (`StageContext`).

A stage reads its own config section and the shared sections it declares, takes its inputs only from the
artifacts of the upstream stages it declares (`ctx.input_file(stage, name)`, checked against the files that
stage declares it writes), and writes its artifacts into `ctx.out_dir`.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bifsmn_cli.config import Pipeline, Schema
from bifsmn_cli.errors import InternalError
from stages.pipeline.manifest import missing_artifact, read_manifest, stage_dir


@dataclass(frozen=True)
class StageSpec:
    """A stage's declaration.

    `schema` is that of its own config section; `reads` lists shared sections whose values shape its output
    (e.g. `model`), so that changing them makes the stage stale; `needs` lists the upstream stages whose
    artifacts it reads; `outputs` the files it writes, relative to its directory: names or glob patterns, and
    `name/` for a whole tree (a corpus).
    """

    name: str
    schema: Schema
    needs: tuple[str, ...] = ()
    reads: tuple[str, ...] = ()
    outputs: tuple[str, ...] = ()
    keep_state: bool = False  # keep `state/` after success (e.g. verified downloads worth reusing)
    # Inputs that are not config nor upstream artifacts (build-kernel: the csrc/ tree); its value joins the
    # config hash, so editing them makes the stage stale.
    source_hash: Callable[[], str] | None = None

    @property
    def section(self) -> str:
        return self.name.replace("-", "_")

    def declares(self, relative: str) -> bool:
        """Whether `relative` (a path under the stage directory, POSIX) is one of the declared outputs."""
        return any(
            relative.startswith(pattern) if pattern.endswith("/") else fnmatch.fnmatchcase(relative, pattern)
            for pattern in self.outputs
        )


@dataclass
class StageContext:
    """Everything a stage's `run` may use: its resolved config, the pipeline, and where to read and write."""

    spec: StageSpec
    pipeline: Pipeline
    config: dict[str, Any]
    out_dir: Path
    state_dir: Path
    resume: bool
    upstream: Mapping[str, StageSpec] = field(default_factory=dict)  # the specs of `spec.needs`
    metrics: dict[str, Any] = field(default_factory=dict)
    bulk_dirs: list[str] = field(default_factory=list)

    @property
    def seed(self) -> int:
        return self.pipeline.seed

    def section(self, name: str) -> dict[str, Any]:
        """A shared section the stage declares it reads (so that changing it makes the stage stale)."""
        if name != self.spec.section and name not in self.spec.reads:
            raise InternalError(f"stage {self.spec.name} reads section {name!r} without declaring it")
        return self.pipeline.section(name)

    def input_dir(self, stage: str) -> Path:
        """The directory of an upstream artifact, or a UserError naming it and the command that makes it."""
        if stage not in self.spec.needs:
            raise InternalError(f"stage {self.spec.name} reads {stage}'s artifact without declaring it")
        if read_manifest(self.pipeline.workspace, stage) is None:
            raise missing_artifact(self.pipeline.workspace, stage, self.spec.name, self.pipeline.path)
        return stage_dir(self.pipeline.workspace, stage)

    def input_file(self, stage: str, name: str) -> Path:
        """One file of an upstream artifact, by the name that stage declares among its outputs."""
        directory = self.input_dir(stage)
        spec = self.upstream.get(stage)
        if spec is None or not spec.declares(name):
            raise InternalError(
                f"stage {self.spec.name} reads {stage}/{name}, which {stage} does not declare"
            )
        return directory / name

    def input_manifest(self, stage: str) -> dict[str, Any]:
        self.input_dir(stage)
        manifest = read_manifest(self.pipeline.workspace, stage)
        assert manifest is not None  # input_dir has just read it, under the workspace lock
        return manifest

    def mark_bulk(self, relative_dir: str) -> None:
        """Hash a large tree (an extracted corpus) by names and sizes instead of contents."""
        self.bulk_dirs.append(relative_dir)

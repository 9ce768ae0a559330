"""Runs stages: staleness, manifests, the workspace lock, and the guarantee that a failed stage is never trusted."""

from __future__ import annotations

import datetime as dt
import json
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bifsmn_cli import __version__
from bifsmn_cli.config import Pipeline
from bifsmn_cli.console import info
from bifsmn_cli.errors import BifsmnError, UserError
from bifsmn_cli.fsutil import (
    WorkspaceLock,
    atomic_write_json,
    describe_os_error,
    is_storage_error,
    sha256_json,
)
from bifsmn_cli.train.torchrun import process_rank
from bifsmn_cli.versions import package_version
from stages.pipeline.manifest import (
    FAILED,
    MANIFEST,
    STATE_DIR,
    fingerprint,
    hash_outputs,
    missing_artifact,
    read_manifest,
    stage_dir,
)
from stages.pipeline.registry import specs, stage_module
from stages.pipeline.stage import StageContext, StageSpec

STATE_HASH = ".config_hash"


def stage_config(spec: StageSpec, pipeline: Pipeline) -> dict[str, Any]:
    """The config that shapes a stage's output: its own section and the shared sections it reads."""
    return {name: pipeline.section(name) for name in (spec.section, *spec.reads)}


def config_hash(spec: StageSpec, config: dict[str, Any]) -> str:
    """The hash that decides staleness: the config, plus the stage's source hash when it declares one."""
    if spec.source_hash is None:
        return sha256_json(config)
    return sha256_json([config, spec.source_hash()])


@dataclass
class Status:
    stage: str
    state: str  # "up to date" | "stale" | "missing" | "failed"
    reason: str = ""


def _changed_keys(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    keys = []
    for section in sorted(set(old) | set(new)):
        a, b = old.get(section, {}), new.get(section, {})
        keys += [f"{section}.{k}" for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]
    return keys


def statuses(pipeline: Pipeline) -> list[Status]:
    """Each stage's state in pipeline order; a stage whose upstream is not up to date is stale too."""
    result: dict[str, Status] = {}
    all_specs = specs()
    for name, spec in all_specs.items():
        manifest = read_manifest(pipeline.workspace, name)
        if manifest is None:
            failed = stage_dir(pipeline.workspace, name) / FAILED
            if failed.exists():
                try:
                    reason = json.loads(failed.read_text()).get("error", "")
                except ValueError:
                    reason = ""
                result[name] = Status(name, "failed", reason)
            elif (stage_dir(pipeline.workspace, name) / STATE_DIR).exists():
                result[name] = Status(name, "missing", "interrupted; rerun resumes it")
            else:
                result[name] = Status(name, "missing", "never run")
            continue
        config = stage_config(spec, pipeline)
        if manifest.get("config_hash") != config_hash(spec, config):
            changed = _changed_keys(manifest.get("config", {}), config)
            reason = "config changed: " + ", ".join(changed[:4]) if changed else "source files changed"
            result[name] = Status(name, "stale", reason)
            continue
        reason = ""
        for need in spec.needs:
            upstream = read_manifest(pipeline.workspace, need)
            if result[need].state != "up to date":
                reason = f"upstream {need} is {result[need].state}"
            elif upstream is None or manifest["inputs"].get(need) != fingerprint(upstream):
                reason = f"input {need} changed"
            if reason:
                break
        result[name] = Status(name, "stale", reason) if reason else Status(name, "up to date")
    return list(result.values())


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


def _prepare_dir(out_dir: Path, state_dir: Path, config_hash: str, force: bool, keep_state: bool) -> None:
    """Distrust the old artifact at once; keep resumable state only if it was made by the same config.

    A `keep_state` stage's state (checksum-verified downloads) stays valid across config changes: only
    `--force` drops it, so changing a mirror URL never throws away a 2.4 GB archive.
    """
    (out_dir / MANIFEST).unlink(missing_ok=True)
    (out_dir / FAILED).unlink(missing_ok=True)
    stamp = state_dir / STATE_HASH
    changed = not stamp.exists() or stamp.read_text() != config_hash
    if state_dir.exists() and (force or (changed and not keep_state)):
        shutil.rmtree(state_dir)
    for child in out_dir.iterdir() if out_dir.exists() else []:
        if child.name != STATE_DIR:
            shutil.rmtree(child) if child.is_dir() and not child.is_symlink() else child.unlink()
    state_dir.mkdir(parents=True, exist_ok=True)
    stamp.write_text(config_hash)


def _context(pipeline: Pipeline, spec: StageSpec, resume: bool) -> StageContext:
    out_dir = stage_dir(pipeline.workspace, spec.name)
    every = specs()
    return StageContext(
        spec,
        pipeline,
        pipeline.section(spec.section),
        out_dir,
        out_dir / STATE_DIR,
        resume=resume,
        upstream={need: every[need] for need in spec.needs},
    )


def run_stage(pipeline: Pipeline, name: str, force: bool = False, resume: bool = False) -> dict[str, Any]:
    """Run one stage and write its manifest last; any failure leaves `failed.json` and no manifest."""
    module = stage_module(name)
    spec: StageSpec = module.SPEC
    out_dir = stage_dir(pipeline.workspace, name)
    state_dir = out_dir / STATE_DIR
    config = stage_config(spec, pipeline)
    hashed = config_hash(spec, config)
    inputs = {}
    for need in spec.needs:
        upstream = read_manifest(pipeline.workspace, need)
        if upstream is None:
            raise missing_artifact(pipeline.workspace, need, name, pipeline.path)
        inputs[need] = fingerprint(upstream)
    try:
        _prepare_dir(out_dir, state_dir, hashed, force, spec.keep_state)
    except OSError as exc:
        raise UserError(
            f"{out_dir}: cannot write the stage directory ({exc.strerror}); check the workspace"
        ) from None
    if resume and not any(p.name != STATE_HASH for p in state_dir.iterdir()):
        raise UserError(
            f"{state_dir}: nothing to resume (no checkpoint from this config); run without --resume"
        )
    ctx = _context(pipeline, spec, resume=not force)
    started, clock = _now(), time.perf_counter()
    info(f"[bold]{name}[/bold] -> {out_dir}")
    try:
        metrics = module.run(ctx) or {}
        outputs = hash_outputs(out_dir, ctx.bulk_dirs, spec.declares, name)
    except BaseException as exc:
        error = describe_os_error(exc, exc.filename or out_dir) if is_storage_error(exc) else exc
        message = str(error) if isinstance(error, BifsmnError) else f"{type(error).__name__}: {error}"
        try:
            atomic_write_json(out_dir / FAILED, {"stage": name, "error": message, "time": _now()})
        except BifsmnError:
            pass  # the disk is what failed; the missing manifest already marks the stage as not done
        if error is not exc:  # a library writing on its own met a full disk: a user error, not a bug
            raise error from None
        raise
    manifest = {
        "stage": name,
        "config": config,
        "config_hash": hashed,
        "inputs": inputs,
        "toolkit_version": __version__,
        "torch_version": package_version("torch"),
        "started": started,
        "finished": _now(),
        "seconds": round(time.perf_counter() - clock, 3),
        "metrics": {**ctx.metrics, **metrics},
        "outputs": outputs,
    }
    if not spec.keep_state:
        shutil.rmtree(state_dir, ignore_errors=True)
    atomic_write_json(out_dir / MANIFEST, manifest)
    return manifest


def run_stages(
    pipeline: Pipeline,
    names: list[str],
    force: bool = False,
    resume: bool = False,
    skip_up_to_date: bool = False,
) -> list[str]:
    """Run stages in order under the workspace lock; returns the names that actually ran."""
    if process_rank() != 0:
        # torchrun's other ranks compute alongside rank 0, which alone owns the lock, directories and manifests
        for name in names:
            module = stage_module(name)
            module.run(_context(pipeline, module.SPEC, resume=not force))
        return list(names)
    ran = []
    with WorkspaceLock(pipeline.workspace):
        for name in names:
            if skip_up_to_date and not force:
                state = {s.stage: s for s in statuses(pipeline)}[name]
                if state.state == "up to date":
                    info(f"[green]{name}[/green]: up to date")
                    continue
            run_stage(pipeline, name, force=force, resume=resume)
            ran.append(name)
    return ran

"""A stage's directory and its manifest: where artifacts live, and what makes a directory trustworthy.

`<workspace>/<stage>/manifest.json` is written last, after every output file; it records the config and its
hash, the fingerprints of the inputs, versions, times, metrics, and the sha256 of every output. A directory
without a manifest is never trusted by a downstream stage; `failed.json` says why a stage failed, and
`state/` holds what a rerun resumes from.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bifsmn_cli.errors import InternalError, UserError
from bifsmn_cli.fsutil import sha256_file, sha256_json

MANIFEST = "manifest.json"
FAILED = "failed.json"
STATE_DIR = "state"


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


def missing_artifact(workspace: Path, stage: str, needed_by: str, pipeline_file: Path) -> UserError:
    return UserError(
        f"missing artifact {stage_dir(workspace, stage)} (needed by {needed_by}); "
        f"make it with `bifsmn {stage} -c {pipeline_file}`"
    )


def fingerprint(manifest: dict[str, Any]) -> str:
    """What downstream stages record of an upstream artifact: its config, inputs and output hashes."""
    return sha256_json([manifest["config_hash"], manifest["inputs"], manifest["outputs"]])


def hash_outputs(
    out_dir: Path, bulk_dirs: list[str], declared: Callable[[str], bool], stage: str
) -> dict[str, str]:
    """sha256 of every output file (bulk trees by names and sizes); a file the stage does not declare is a bug."""
    outputs: dict[str, str] = {}
    bulk = [out_dir / b for b in bulk_dirs]
    for path in sorted(out_dir.rglob("*")):
        rel = path.relative_to(out_dir)
        if rel.parts[0] in (MANIFEST, FAILED, STATE_DIR) or path.is_dir():
            continue
        if any(path.is_relative_to(b) for b in bulk):
            continue
        if not declared(rel.as_posix()):
            raise InternalError(
                f"stage {stage} wrote {out_dir / rel}, which it does not declare among its outputs"
            )
        outputs[str(rel)] = sha256_file(path)
    for b in bulk:
        if not declared(f"{b.relative_to(out_dir).as_posix()}/"):
            raise InternalError(
                f"stage {stage} wrote the tree {b}, which it does not declare among its outputs"
            )
        listing = sorted((str(p.relative_to(b)), p.stat().st_size) for p in b.rglob("*") if p.is_file())
        outputs[str(b.relative_to(out_dir)) + "/"] = "tree:" + sha256_json(listing)
    return outputs

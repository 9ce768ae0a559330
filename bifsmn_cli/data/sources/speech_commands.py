"""The `speech_commands` source: the official archives, fetched with resume and sha256 verification.

v0.01 or v0.02 (and, with `test_set`, v0.02's separate official test set) from TensorFlow's server, a mirror
(`url`) or `$BIFSMN_MIRROR`. Archives are kept in the stage's state directory, so a rerun reuses a verified
one, and extracted safely into `data/` (and `test_data/`).
Speech Commands: Pete Warden, arXiv:1804.03209 (CC BY 4.0).
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from bifsmn_cli.audio.wav import AUDIO_SUFFIXES
from bifsmn_cli.config import Bool, Str
from bifsmn_cli.console import info
from bifsmn_cli.data.archives import fetch as fetch_archive
from bifsmn_cli.data.archives import safe_extract
from bifsmn_cli.data.corpus import CorpusRecord
from bifsmn_cli.errors import UserError

NAME = "speech_commands"
DEFAULT_URL = "http://download.tensorflow.org/data/"
ARCHIVES = {
    "v0.01": (
        "speech_commands_v0.01.tar.gz",
        "743935421bb51cccdb6bdd152e04c5c70274e935c82119ad7faeec31780d811d",
    ),
    "v0.02": (
        "speech_commands_v0.02.tar.gz",
        "af14739ee7dc311471de98f5f9d2c9191b18aedfe957f4a6ff791c709868ff58",
    ),
    "test_v0.02": (
        "speech_commands_test_set_v0.02.tar.gz",
        "cc2a00c1147c2254e9be3fa0f779d8c17421dc349b86366567a8edfa9acd51df",
    ),
}
SCHEMA = {
    "version": Str("v0.02", "Speech Commands release", choices=("v0.01", "v0.02")),
    "test_set": Bool(False, "also fetch v0.02's separate official test set (12-class task)"),
    "url": Str(
        None,
        "mirror directory holding the archives (default: BIFSMN_MIRROR, then TensorFlow's)",
        nullable=True,
    ),
    "sha256": Str(None, "expected sha256 of the main archive (default: the official one)", nullable=True),
    "test_sha256": Str(
        None, "expected sha256 of the test archive (default: the official one)", nullable=True
    ),
}


def fetch(config: dict[str, Any], out_dir: Path, state_dir: Path, seed: int) -> CorpusRecord:
    """Download (or reuse) and extract the archives the config names."""
    c = config
    if c["test_set"] and c["version"] != "v0.02":
        raise UserError("download.test_set: the separate test archive exists only for version v0.02")
    for key in ("sha256", "test_sha256"):
        if c[key] is not None and not re.fullmatch(r"[0-9a-fA-F]{64}", c[key]):
            raise UserError(f"download.{key}: expected 64 hexadecimal digits, got {c[key]!r}")
    base = c["url"] or os.environ.get("BIFSMN_MIRROR") or DEFAULT_URL
    base = base if base.endswith("/") else base + "/"
    name, sha = ARCHIVES[c["version"]]
    wanted = [("data", name, (c["sha256"] or sha).lower())]
    if c["test_set"]:
        name, sha = ARCHIVES["test_v0.02"]
        wanted.append(("test_data", name, (c["test_sha256"] or sha).lower()))
    roots = []
    for target, name, sha in wanted:
        archive = fetch_archive(base + name, state_dir / name, sha)
        files = safe_extract(archive, out_dir / target)
        info(f"{archive.name}: {files} files extracted into {out_dir / target}")
        roots.append(_unwrap(out_dir, target))
    return CorpusRecord(
        NAME,
        root=roots[0],
        test_root=roots[1] if c["test_set"] else None,
        trees=[target for target, _, _ in wanted],
        details={
            "version": c["version"],
            "archives": [{"name": name, "url": base + name, "sha256": sha} for _, name, sha in wanted],
        },
    )


def _unwrap(out_dir: Path, target: str) -> str:
    """The corpus root inside an extracted archive: the archives have no top folder, but a repack may have one."""
    root = out_dir / target
    while True:
        entries = [p for p in root.iterdir() if not p.name.startswith(".")]
        if len(entries) != 1 or not entries[0].is_dir() or entries[0].is_symlink():
            break
        if any(p.suffix.lower() in AUDIO_SUFFIXES for p in entries[0].iterdir()):
            break  # a lone word folder is the corpus, not a wrapper
        root = entries[0]
    return root.relative_to(out_dir).as_posix()

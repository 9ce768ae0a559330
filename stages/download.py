"""The `download` stage: get a corpus in the Speech Commands layout, from one of three sources.

- `speech_commands`: the official archives (v0.01 or v0.02, optionally v0.02's separate test set), fetched with
  resume and sha256 verification into `state/` (kept, so a rerun reuses a verified archive), then extracted
  safely into `data/` (and `test_data/`).
- `synthetic`: an offline corpus made with espeak-ng into `data/` (the quickstart default).
- `folder`: your own recordings, validated and recorded by absolute path (`data` is a link to it, not a copy).

Every source writes `corpus.json`, which is what `featurize` reads.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from bifsmn_cli.audio.wav import AUDIO_SUFFIXES
from bifsmn_cli.config import Bool, Float, Int, List, Str
from bifsmn_cli.console import info
from bifsmn_cli.data.corpus import AUXILIARY_WORDS, COMMAND_WORDS, scan
from bifsmn_cli.errors import UserError
from bifsmn_cli.fsutil import atomic_write_json
from stages.base import StageContext, StageSpec

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
SPEC = StageSpec(
    name="download",
    schema={
        "source": Str(
            "synthetic",
            "speech_commands | synthetic | folder",
            choices=("speech_commands", "synthetic", "folder"),
        ),
        # speech_commands
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
        # folder
        "path": Str(
            None, "corpus folder for source: folder (relative to the current directory)", nullable=True
        ),
        # synthetic
        "words": List("str", list(COMMAND_WORDS), "synthetic: keyword classes"),
        "unknown_words": List("str", list(AUXILIARY_WORDS), "synthetic: other words (the _unknown_ pool)"),
        "clips_per_word": Int(100, "synthetic: clips of each keyword", min=1, max=100000),
        "unknown_clips_per_word": Int(
            None,
            "synthetic: clips of each other word (default: clips_per_word)",
            min=1,
            max=100000,
            nullable=True,
        ),
        "noise_seconds": Float(60.0, "synthetic: length of each generated background noise", min=2, max=600),
    },
    keep_state=True,
)


def run(ctx: StageContext) -> dict[str, Any]:
    source = ctx.config["source"]
    if source == "speech_commands":
        corpus = _speech_commands(ctx)
    elif source == "synthetic":
        corpus = _synthetic(ctx)
    else:
        corpus = _folder(ctx)
    scanned = scan(ctx.out_dir / corpus["root"])
    corpus["words"] = {w: len(p) for w, p in scanned.clips.items()}
    corpus["noises"] = scanned.noises
    atomic_write_json(ctx.out_dir / "corpus.json", corpus)
    return {
        "source": source,
        "words": len(scanned.clips),
        "clips": sum(corpus["words"].values()),
        "noises": len(scanned.noises),
        **{k: v for k, v in corpus.items() if k in ("ms_per_utterance", "speakers")},
    }


def _speech_commands(ctx: StageContext) -> dict[str, Any]:
    from bifsmn_cli.data.download import fetch, safe_extract

    c = ctx.config
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
        archive = fetch(base + name, ctx.state_dir / name, sha)
        files = safe_extract(archive, ctx.out_dir / target)
        info(f"{archive.name}: {files} files extracted into {ctx.out_dir / target}")
        ctx.mark_bulk(target)
        roots.append(_unwrap(ctx.out_dir, target))
    return {
        "source": "speech_commands",
        "version": c["version"],
        "root": roots[0],
        "test_root": roots[1] if c["test_set"] else None,
        "archives": [{"name": name, "url": base + name, "sha256": sha} for _, name, sha in wanted],
    }


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


def _synthetic(ctx: StageContext) -> dict[str, Any]:
    import time

    from bifsmn_cli.audio.synth import synthesize_corpus

    c = ctx.config
    overlap = sorted(set(c["words"]) & set(c["unknown_words"]))
    if overlap:
        raise UserError(
            f"download.unknown_words: {overlap[0]!r} is also in download.words; a word has one role"
        )
    bad = [w for w in c["words"] + c["unknown_words"] if not w or "/" in w or w.startswith(("_", "."))]
    if bad:
        raise UserError(f"download.words: {bad[0]!r} cannot be a folder name (no '/', no leading '_' or '.')")
    unknown_clips = c["unknown_clips_per_word"] or c["clips_per_word"]
    counts = {w: c["clips_per_word"] for w in c["words"]} | {w: unknown_clips for w in c["unknown_words"]}
    started = time.perf_counter()
    stats = synthesize_corpus(ctx.out_dir / "data", counts, ctx.seed, c["noise_seconds"])
    seconds = time.perf_counter() - started
    ctx.mark_bulk("data")
    info(
        f"synthesised {stats['clips']} clips in {seconds:.1f} s ({1000 * seconds / stats['clips']:.1f} ms each)"
    )
    return {
        "source": "synthetic",
        "root": "data",
        "test_root": None,
        "ms_per_utterance": round(1000 * seconds / stats["clips"], 2),
        **stats,
    }


def _folder(ctx: StageContext) -> dict[str, Any]:
    given = ctx.config["path"]
    if not given:
        raise UserError("download.path: required when download.source is folder (the corpus folder)")
    root = Path(given).expanduser().resolve()
    if not root.is_dir():
        raise UserError(f"download.path: {given} ({root}) is not a folder; give the corpus folder")
    scan(root)  # a folder that is not a corpus fails here, before anything is recorded
    link = ctx.out_dir / "data"
    link.symlink_to(root, target_is_directory=True)  # lets the runner fingerprint the tree by names and sizes
    ctx.mark_bulk("data")
    return {"source": "folder", "root": str(root), "test_root": None}

"""The data sources, by the name `download.source` gives them.

A source is a module with `NAME`, `SCHEMA` (its keys of the `download:` section) and
`fetch(config, out_dir, state_dir, seed) -> CorpusRecord`, which puts a corpus in the Speech Commands layout
under `out_dir` (resumable work in `state_dir`) and says where it is.
"""

from __future__ import annotations

from pathlib import Path
from types import ModuleType
from typing import Any

from bifsmn_cli.config import Field, Str
from bifsmn_cli.data.corpus import CorpusRecord
from bifsmn_cli.data.sources import folder, speech_commands, synthetic

SOURCES: dict[str, ModuleType] = {m.NAME: m for m in (speech_commands, synthetic, folder)}
DEFAULT = synthetic.NAME


def schema() -> dict[str, Field]:
    """The `download:` section: `source` and every source's own keys (a key belongs to one source)."""
    fields: dict[str, Field] = {
        "source": Str(DEFAULT, " | ".join(SOURCES), choices=tuple(SOURCES)),
    }
    for source in SOURCES.values():
        shared = sorted(set(fields) & set(source.SCHEMA))
        assert not shared, f"download.{shared[0]} is declared by two sources"
        fields.update(source.SCHEMA)
    return fields


def fetch(config: dict[str, Any], out_dir: Path, state_dir: Path, seed: int) -> CorpusRecord:
    return SOURCES[config["source"]].fetch(config, out_dir, state_dir, seed)

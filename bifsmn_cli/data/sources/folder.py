"""The `folder` source: your own recordings in the Speech Commands layout (WAV or FLAC), used in place.

The folder is validated and recorded by absolute path; `data` in the stage directory is a link to it, not a
copy, so the runner fingerprints the tree by names and sizes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bifsmn_cli.config import Str
from bifsmn_cli.data.corpus import CorpusRecord, scan
from bifsmn_cli.errors import UserError

NAME = "folder"
SCHEMA = {
    "path": Str(None, "corpus folder for source: folder (relative to the current directory)", nullable=True),
}


def fetch(config: dict[str, Any], out_dir: Path, state_dir: Path, seed: int) -> CorpusRecord:
    given = config["path"]
    if not given:
        raise UserError("download.path: required when download.source is folder (the corpus folder)")
    root = Path(given).expanduser().resolve()
    if not root.is_dir():
        raise UserError(f"download.path: {given} ({root}) is not a folder; give the corpus folder")
    scan(root)  # a folder that is not a corpus fails here, before anything is recorded
    (out_dir / "data").symlink_to(root, target_is_directory=True)
    return CorpusRecord(NAME, root=str(root), trees=["data"])

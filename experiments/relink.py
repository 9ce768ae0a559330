"""Point a finished stage's manifest at its upstream's current manifests (ablations only).

usage: python experiments/relink.py WORKSPACE STAGE
Used after an upstream stage was rerun with identical outputs under a config that gained keys (new schema keys
with defaults change its config hash, hence its fingerprint, though the arrays are the same).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from stages.base import read_manifest
from stages.runner import fingerprint, specs

ws, stage = Path(sys.argv[1]), sys.argv[2]
path = ws / stage / "manifest.json"
manifest = json.loads(path.read_text())
for need in specs()[stage].needs:
    manifest["inputs"][need] = fingerprint(read_manifest(ws, need))
path.write_text(json.dumps(manifest, indent=2))
print(f"{path}: inputs now {manifest['inputs']}")

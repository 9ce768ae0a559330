"""Make a workspace whose featurize artifact is another's with some training rows removed (ablations only).

usage: python experiments/derive_featurize.py SRC_WS DST_WS RULE
RULE: hash-testing  drop the training clips that TensorFlow's hash rule (10 % / 10 %) sends to testing, i.e.
      what the shipped `testing_percentage: 10` silently loses (validation stays identical).
The manifest is copied unchanged (the training stages only read the arrays), so the workspace looks up to date.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import numpy as np

from bifsmn_cli.data.corpus import which_set

src, dst, rule = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]
assert rule == "hash-testing"
(dst).mkdir(parents=True, exist_ok=True)
if not (dst / "download").exists():
    (dst / "download").symlink_to(src / "download")
out = dst / "featurize"
out.mkdir(exist_ok=True)
f = src / "featurize"
for p in f.iterdir():
    if not p.name.endswith("_train.npy") and p.name != "names_train.json" and p.is_file():
        shutil.copy2(p, out / p.name)
names = json.loads((f / "names_train.json").read_text())
keep = np.array([n.startswith("_silence_") or which_set(n, 10.0, 10.0) != "testing" for n in names])
print(f"dropping {int((~keep).sum())} of {len(names)} training rows")
for kind in ("waves", "labels", "features"):
    arr = np.load(f / f"{kind}_train.npy", mmap_mode="r")
    np.save(out / f"{kind}_train.npy", np.ascontiguousarray(arr[keep]))
(out / "names_train.json").write_text(json.dumps([n for n, k in zip(names, keep, strict=True) if k]))

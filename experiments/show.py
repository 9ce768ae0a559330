"""Print a run's per-epoch validation metrics (from its live checkpoint or its finished history.json).

usage: python experiments/show.py WORKSPACE [STAGE]   (STAGE: train-teacher | distill, default: the latest)
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

ws = Path(sys.argv[1])
stages = [sys.argv[2]] if len(sys.argv) > 2 else ["distill", "train-teacher"]
for stage in stages:
    d = ws / stage
    if not d.is_dir() or d.is_symlink():
        continue
    if (d / "history.json").exists():
        history = json.loads((d / "history.json").read_text())
    elif (d / "state/checkpoint.pt").exists():
        import torch

        history = torch.load(d / "state/checkpoint.pt", map_location="cpu", weights_only=False)["history"]
    else:
        continue
    print(f"{ws.name} {stage}")
    for h in history:
        cells = []
        for v, m in h.get("val_metrics", {}).items():
            cells.append(
                f"{v} acc {100 * m['accuracy']:.2f} bal {100 * m['balanced_accuracy']:.2f} "
                f"unk {100 * (m['unknown_recall'] or 0):.1f} FA {100 * (m['false_accept'] or 0):.1f} "
                f"sil {100 * (m['silence_recall'] or 0):.1f}"
            )
        print(
            f"  ep {h['epoch'] + 1:3d} loss {h['train_loss']:.3f} {h['seconds']:.0f}s | " + " | ".join(cells)
        )
    if len(history) >= 3 and history[-1].get("val_metrics"):
        for v in history[-1]["val_metrics"]:
            last = [h["val_metrics"][v] for h in history[-3:]]

            def mean(k: str, last: list = last) -> float:
                return 100 * sum(m[k] or 0 for m in last) / len(last)

            print(
                f"  last-3 mean {v}: acc {mean('accuracy'):.2f} bal {mean('balanced_accuracy'):.2f} "
                f"unk {mean('unknown_recall'):.1f} FA {mean('false_accept'):.1f} sil {mean('silence_recall'):.1f}"
            )
    if (d / "metrics.json").exists():
        m = json.loads((d / "metrics.json").read_text())
        print(f"  best epoch {m['best_epoch']} ({m['selection']})")
        for v, r in m["validation"].items():
            pc = " ".join(f"{k[:5]} {100 * x:.1f}" for k, x in r["per_class"].items() if x is not None)
            print(
                f"  {v}: acc {100 * r['accuracy']:.2f} bal {100 * r['balanced_accuracy']:.2f} "
                f"unk {100 * r['unknown_recall']:.1f} FA {100 * r['false_accept']:.1f} "
                f"sil {100 * r['silence_recall']:.1f} | {pc}"
            )
    break

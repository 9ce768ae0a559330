#!/usr/bin/env bash
# Reproduce the BiFSMN paper's ablations on any pipeline's data set:
#   Table 1: vanilla binarization, plain distillation, HED, HED + TBA
#   Table 2: every binarizer (with HED + TBA)
#   Table 3: the thin variants (1x / 0.5x / 0.25x) of the full method
# Usage: pipelines/reproduce.sh PIPELINE.yaml [--set section.key=value ...]
# Every experiment reruns `distill` and `thin` in the pipeline's workspace (download, featurize and the
# teacher are made once and reused); results go to <workspace>/reproduce/table{1,2,3}.md.
set -euo pipefail
[ $# -ge 1 ] || { echo "usage: $0 PIPELINE.yaml [--set k=v ...]" >&2; exit 1; }
config=$1; shift
bifsmn=${BIFSMN:-bifsmn}
command -v "$bifsmn" >/dev/null || bifsmn="$(dirname "$0")/../.venv/bin/bifsmn"
workspace=$("$bifsmn" --quiet status -c "$config" "$@" 2>&1 | sed -n 's/.*(\(.*\)).*/\1/p' | head -n 1)
out="$workspace/reproduce"
mkdir -p "$out/runs"
"$bifsmn" run -c "$config" "$@" --to train-teacher

experiment() {  # NAME -- extra --set arguments: distill + thin, then keep thin/variants.json as NAME.json
  local name=$1; shift
  echo "== $name"
  "$bifsmn" run -c "$config" "$@" --from distill --to thin
  cp "$workspace/thin/variants.json" "$out/runs/$name.json"
}

one=(--set 'distill.variants=[1x]' --set 'thin.deploy=[1x]')
experiment vanilla "$@" "${one[@]}" --set distill.hed_select=none --set distill.kd_weight=0 --set distill.init_from_teacher=false
experiment plain "$@" "${one[@]}" --set distill.hed_select=plain
experiment hed "$@" "${one[@]}" --set distill.hed_select=high
experiment hed_tba "$@" --set distill.hed_select=high
for b in bnn dorefa xnor bireal irnet rad lpb; do
  experiment "binarizer_$b" "$@" --set distill.binarizer=$b --set 'thin.deploy=[1x]' || echo "binarizer $b failed" >&2
done
python3 - "$out" <<'PY'
import json, sys
from pathlib import Path
out = Path(sys.argv[1])
def rows(name):
    path = out / "runs" / f"{name}.json"
    return {r["variant"]: r for r in json.loads(path.read_text())["variants"]} if path.exists() else {}
def acc(r):
    a = r.get("test_accuracy") if r.get("test_accuracy") is not None else r.get("val_accuracy")
    return "n/a" if a is None else f"{100 * a:.2f}"
t1 = ["| method | 1x accuracy % |", "|---|---|"]
for name, label in (("vanilla", "vanilla binarization"), ("plain", "plain distillation"), ("hed", "HED"), ("hed_tba", "HED + TBA")):
    t1.append(f"| {label} | {acc(rows(name).get('1x', {}))} |")
teacher = rows("hed_tba").get("teacher", {})
t1.append(f"| full-precision teacher | {acc(teacher)} |")
t2 = ["| binarizer | 1x accuracy % |", "|---|---|", f"| bifsmn | {acc(rows('hed_tba').get('1x', {}))} |"]
for b in ("bnn", "dorefa", "xnor", "bireal", "irnet", "rad", "lpb"):
    t2.append(f"| {b} | {acc(rows('binarizer_' + b).get('1x', {}))} |")
t3 = ["| variant | accuracy % | FLOPs | size (bytes) |", "|---|---|---|---|"]
for v, r in rows("hed_tba").items():
    t3.append(f"| {v} | {acc(r)} | {r['flops']:,.0f} | {r['bytes']:,} |")
for i, t in enumerate((t1, t2, t3), 1):
    (out / f"table{i}.md").write_text("\n".join(t) + "\n")
    print("\n".join(t) + "\n")
PY

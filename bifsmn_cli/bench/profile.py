"""Where one network's time and instructions go, per kind of plan step (csrc/README.md, "Profiling").

The engine runs a plan of steps, each of a kind: `input` (the features transposed into the first conv's
padded input), `conv2d` / `linear` / `dwconv1d` (full precision) and `bconv2d` / `blinear` / `bdwconv1d` (binary,
fused). So that the next bottleneck is visible:

- x86 time: `bifsmn-infer --profile N` times the network and, alternating run by run, every kind's steps alone
  on the buffers the clip's run left. A kind's share is its median time over the sum of the kinds' medians
  (the shares add up to 1); the network's own median is beside it, and the difference is what the steps do
  not account for (the call, caches warmed by the neighbouring steps).
- aarch64 instructions: under qemu-aarch64 with the insn plugin, `--profile R --profile-kind KIND` runs only that
  kind's steps R times after one clip's run, so (count(1 + extra) - count(1)) / extra is one pass of that kind,
  loading and the clip's run cancelling (arm.qemu_per_run). Shares are over the sum of the kinds' counts;
  the network's count from `--bench` (arm.qemu_counts) is beside it.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import numpy as np

from bifsmn_cli.bench import arm
from bifsmn_cli.errors import UserError


def parse_profile(text: str, source: str) -> dict[str, Any]:
    """`bifsmn-infer --profile` JSON -> {"net_us", "kinds_us", "kinds": {kind: {"steps", "median_us",
    "share"}}}; kinds in plan order."""
    try:
        out = json.loads(text)
        kinds = {k: (int(v["steps"]), np.median(np.asarray(v["ns"], dtype=np.float64)) / 1e3)
                 for k, v in out["kinds"].items()}  # fmt: skip
        net = float(np.median(np.asarray(out["net_ns"], dtype=np.float64)) / 1e3)
    except (ValueError, KeyError, TypeError):
        raise UserError(
            f"{source}: unexpected --profile output {text[:120]!r}; rebuild it (bifsmn build-kernel)"
        ) from None
    total = sum(us for _, us in kinds.values())
    return {
        "net_us": net,
        "kinds_us": float(total),
        "kinds": {
            k: {"steps": steps, "median_us": float(us), "share": float(us / total) if total > 0 else 0.0}
            for k, (steps, us) in kinds.items()
        },
    }


def host_profile(infer: Path, model: Path, clip: Path, runs: int, warmup: int) -> dict[str, Any]:
    """The x86 (this machine's) time profile of `model`, from `runs` alternated runs."""
    cmd = [str(infer), "--profile", str(runs), "--warmup", str(warmup), str(model), str(clip)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no message"])[-1]
        raise UserError(f"{' '.join(cmd)}: exit {done.returncode}: {last}")
    return {"runs": runs, "warmup": warmup} | parse_profile(done.stdout, str(infer))


def qemu_profile(
    qemu: str, plugin: Path, infer: Path, model: Path, clip: Path, kinds: list[str], extra: int
) -> dict[str, Any]:
    """Executed aarch64 instructions of one pass of each kind's steps, and each kind's share of their sum."""
    counts = {}
    for kind in kinds:

        def count(runs: int, kind: str = kind) -> int:
            args = ["--profile", str(runs), "--warmup", "0", "--profile-kind", kind, str(model), str(clip)]
            return arm.qemu_count(qemu, plugin, infer, args)

        counts[kind] = arm.qemu_per_run(count, extra)
    total = sum(counts.values())
    return {
        "kinds_insns": total,
        "kinds": {k: {"insns": n, "share": n / total if total > 0 else 0.0} for k, n in counts.items()},
    }


def table_rows(profile: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per kind (x86 kinds first, in plan order): steps, x86 µs and share, aarch64 insns and share."""
    x86 = profile.get("x86", {})
    a64 = profile.get("aarch64", {})
    kinds = list(x86.get("kinds", {})) + [k for k in a64.get("kinds", {}) if k not in x86.get("kinds", {})]
    rows = []
    for k in kinds:
        t, n = x86.get("kinds", {}).get(k, {}), a64.get("kinds", {}).get(k, {})
        rows.append(
            {
                "kind": k,
                "steps": t.get("steps"),
                "x86_us": t.get("median_us"),
                "x86_share": t.get("share"),
                "aarch64_insns": n.get("insns"),
                "aarch64_share": n.get("share"),
            }
        )
    return rows

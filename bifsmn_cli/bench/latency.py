"""Latency of one 1-s clip, batch 1, one thread: contenders timed in round-robin rounds.

Every contender times the network alone (features in, scores out) and, when it has one, front end + network
(PCM in), the two alternating run by run. A round gives each contender `warmup` untimed runs then `repeats`
timed ones; the order of contenders rotates from round to round, so slow drift on a shared machine (another
process, thermal or clock changes) spreads over all of them instead of favouring whoever ran first. Speed-ups
are the median of per-round ratios from the same run, with their spread beside them.

The C engine is timed inside `bifsmn-infer --bench` (CLOCK_MONOTONIC around each call, no Python in the
loop), on this machine or through a prefix (ssh to a board); PyTorch and onnxruntime are timed in-process
with perf_counter_ns around each call.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from bifsmn_cli.errors import UserError

PATHS = ("net", "e2e")
Samples = dict[str, list[int]]  # path -> nanoseconds per run


@dataclass
class Contender:
    """One thing to time. `run(repeats, warmup)` returns nanoseconds per timed run for each of its paths."""

    name: str
    kind: str  # "engine" | "pytorch" | "onnxruntime"
    model: str  # "1x", "0.5x", "0.25x" or "teacher"
    paths: tuple[str, ...]
    run: Callable[[int, int], Samples]
    meta: dict[str, Any] = field(default_factory=dict)


def run_command(cmd: Sequence[str], timeout: float = 600) -> subprocess.CompletedProcess:
    """A measuring command (bifsmn-infer, maybe under qemu or ssh); a UserError with its last line on failure."""
    try:
        done = subprocess.run(list(cmd), capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise UserError(f"{' '.join(cmd)}: no answer within {timeout:.0f} s") from None
    except OSError as exc:
        raise UserError(f"{cmd[0]}: cannot run ({exc.strerror})") from None
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no message"])[-1]
        raise UserError(f"{' '.join(cmd)}: exit {done.returncode}: {last}")
    return done


def infer_runner(
    infer: Sequence[str],
    model: str,
    clip: str,
    kernel: str = "auto",
    meta: dict[str, Any] | None = None,
    timeout: float = 600,
) -> Callable[[int, int], Samples]:
    """Times a .bfsm with `bifsmn-infer --bench`; `infer` is the command (maybe behind ssh) and the paths
    are as that command sees them. The kernels the engine chose are recorded in `meta["resolved_kernel"]`."""

    def run(repeats: int, warmup: int) -> Samples:
        cmd = [*infer, "--bench", str(repeats), "--warmup", str(warmup), "--kernel", kernel, model, clip]
        done = run_command(cmd, timeout)
        try:
            out = json.loads(done.stdout)
            samples = {p: [int(t) for t in out[f"{p}_ns"]] for p in PATHS}
            if meta is not None:
                meta["resolved_kernel"] = str(out["kernel"])
            return samples
        except (ValueError, KeyError, TypeError):
            raise UserError(
                f"{cmd[0]}: unexpected --bench output {done.stdout[:120]!r}; rebuild it (bifsmn build-kernel)"
            ) from None

    return run


def python_runner(net: Callable[[], Any], e2e: Callable[[], Any] | None) -> Callable[[int, int], Samples]:
    """Times Python callables the way bifsmn-infer times the engine: net and e2e alternating per run."""

    def run(repeats: int, warmup: int) -> Samples:
        times: Samples = {"net": []} if e2e is None else {"net": [], "e2e": []}
        clock = time.perf_counter_ns
        for i in range(warmup + repeats):
            t0 = clock()
            net()
            t1 = clock()
            if e2e is not None:
                e2e()
                t2 = clock()
            if i >= warmup:
                times["net"].append(t1 - t0)
                if e2e is not None:
                    times["e2e"].append(t2 - t1)
        return times

    return run


def round_robin(
    contenders: list[Contender],
    rounds: int,
    repeats: int,
    warmup: int,
    progress: Callable[[str], None] | None = None,
) -> dict[str, dict[str, list[list[int]]]]:
    """name -> path -> one list of nanoseconds per round."""
    result: dict[str, dict[str, list[list[int]]]] = {c.name: {p: [] for p in c.paths} for c in contenders}
    for r in range(rounds):
        shift = r % len(contenders)
        for c in contenders[shift:] + contenders[:shift]:
            if progress is not None:
                progress(f"round {r + 1}/{rounds}: {c.name}")
            samples = c.run(repeats, warmup)
            for p in c.paths:
                result[c.name][p].append(samples[p])
    return result


def summarize(per_round: list[list[int]]) -> dict[str, Any]:
    """Median, p90, min and mean in microseconds over every run of every round, and each round's median."""
    flat = np.concatenate([np.asarray(r, dtype=np.float64) for r in per_round]) / 1e3
    return {
        "median_us": float(np.median(flat)),
        "p90_us": float(np.percentile(flat, 90)),
        "min_us": float(flat.min()),
        "mean_us": float(flat.mean()),
        "runs": int(flat.size),
        "round_medians_us": [float(np.median(np.asarray(r)) / 1e3) for r in per_round],
    }


def speedup(baseline: dict[str, Any], contender: dict[str, Any]) -> dict[str, float]:
    """baseline time / contender time. `ratio` is the median of the per-round ratios (each from medians timed
    minutes apart at most, so slow drift cancels); the ratio of the overall medians and the per-round range
    are beside it."""
    rounds = [b / c for b, c in zip(baseline["round_medians_us"], contender["round_medians_us"], strict=True)]
    return {
        "ratio": float(np.median(rounds)),
        "ratio_of_medians": baseline["median_us"] / contender["median_us"],
        "round_min": min(rounds),
        "round_max": max(rounds),
    }


def clip_file(path: Path, pcm: np.ndarray) -> Path:
    """The clip bifsmn-infer reads: one test clip as 16-bit WAV."""
    from bifsmn_cli.audio.wav import write_wav

    write_wav(path, np.asarray(pcm, dtype=np.int16))
    return path

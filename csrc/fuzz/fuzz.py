"""Fuzz the C engine with libFuzzer (its parsers, and the streaming API under random chunking): build the `fuzz`
preset, write seed inputs, run each target.

    python csrc/fuzz/fuzz.py --seconds 600              # what `make fuzz` runs (FUZZ_SECONDS)
    python csrc/fuzz/fuzz.py --seconds 30 --out /tmp/f  # a short run with its corpus elsewhere

Seeds are valid inputs made here, so the fuzzer starts deep inside the formats: tiny .bfsm models written by
the Python exporter (a binary student at two widths and a full-precision teacher) and WAV files (mono,
stereo, WAVE_FORMAT_EXTENSIBLE, extra odd-sized chunks, and two formats the reader must reject), and stream
scripts (settings, then chunks of noise, tones, silence and clicks; see fuzz_stream.c). The corpus
each run grows is kept in <out>/corpus/<target> and seeds the next run; a crashing input is written to
<out>/crashes/. Fix the bug, then add the input to csrc/fuzz/regressions/<target>/, which ctest replays.
"""

from __future__ import annotations

import argparse
import json
import re
import struct
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

FUZZ_DIR = Path(__file__).resolve().parent
CSRC = FUZZ_DIR.parent
sys.path.insert(0, str(CSRC.parent))  # run as a script from anywhere: the bifsmn_cli package is beside csrc/

from bifsmn_cli.audio.config import FrontEndConfig  # noqa: E402
from bifsmn_cli.engine import build  # noqa: E402

TARGETS = ("loader", "wav", "stream")
PRESET = "fuzz"
# The seed models' front end: small, so that a run through the whole network takes microseconds.
SEED_FRONTEND = FrontEndConfig(
    sample_rate=8000,
    num_samples=1920,
    n_fft=256,
    win_length=200,
    hop_length=128,
    n_mels=8,
    f_min=20.0,
    f_max=4000.0,
    normalized=True,
    top_db=80.0,
)
SEED_CLASSES = ["yes", "no", "_unknown_"]


def write_seeds(target: str, dest: Path) -> list[Path]:
    """Valid (and a few nearly valid) inputs for `target` in `dest`."""
    dest.mkdir(parents=True, exist_ok=True)
    return {"loader": _model_seeds, "wav": _wav_seeds, "stream": _stream_seeds}[target](dest)


def _model_seeds(dest: Path) -> list[Path]:
    import torch

    from bifsmn_cli.export.lowering import export_student, export_teacher
    from bifsmn_cli.nn.config import ModelConfig
    from bifsmn_cli.nn.dfsmn import DFSMN

    torch.manual_seed(0)
    cfg = ModelConfig(
        n_mels=8,
        frames=16,
        num_classes=len(SEED_CLASSES),
        num_blocks=2,
        stem_channels=2,
        stem_kernel=3,
        backbone_size=8,
        hidden_size=16,
        memory_left=1,
        memory_right=1,
    )
    student = DFSMN(cfg, "bifsmn", ("1x", "0.5x")).eval()
    paths = []
    for variant in ("1x", "0.5x"):
        paths.append(dest / f"student-{variant}.bfsm")
        export_student(student, variant, SEED_CLASSES, SEED_FRONTEND, paths[-1])
    for storage in ("fp16", "int8"):  # .bfsm version 2's smaller float storages
        paths.append(dest / f"student-1x-{storage}.bfsm")
        export_student(student, "1x", SEED_CLASSES, SEED_FRONTEND, paths[-1], storage=storage)
    paths.append(dest / "teacher.bfsm")
    export_teacher(DFSMN(cfg).eval(), SEED_CLASSES, SEED_FRONTEND, paths[-1])
    return paths


def _wav_seeds(dest: Path) -> list[Path]:
    import numpy as np
    import soundfile as sf

    t = np.arange(400) / 8000.0
    tone = (0.5 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    written = {
        "mono.wav": (tone, "WAV", "PCM_16"),
        "stereo.wav": (np.stack([tone[:200], -tone[:200]], axis=1), "WAV", "PCM_16"),
        "extensible.wav": (tone[:100], "WAVEX", "PCM_16"),
        "float.wav": (tone[:50], "WAV", "FLOAT"),  # rejected: not PCM
        "u8.wav": (tone[:50], "WAV", "PCM_U8"),  # rejected: 8-bit
    }
    paths = []
    for name, (data, fmt, subtype) in written.items():
        paths.append(dest / name)
        sf.write(paths[-1], data, 8000, format=fmt, subtype=subtype)
    # A LIST chunk of odd size (so a pad byte follows) between fmt and data, as some editors write.
    pcm = (tone[:64] * 32767).astype("<i2").tobytes()
    fmt = struct.pack("<HHIIHH", 1, 1, 8000, 16000, 2, 16)
    chunks = b"fmt " + struct.pack("<I", len(fmt)) + fmt + b"LIST\x05\x00\x00\x00INFOx\x00"
    chunks += b"data" + struct.pack("<I", len(pcm)) + pcm
    paths.append(dest / "list-chunk.wav")
    paths[-1].write_bytes(b"RIFF" + struct.pack("<I", 4 + len(chunks)) + b"WAVE" + chunks)
    return paths


def _stream_seeds(dest: Path) -> list[Path]:
    """fuzz_stream.c's input: a settings byte, then (length: u16, kind, level) chunk records."""
    scripts = {
        "one-big-chunk": (0x00, [(20000, 1, 200)]),
        "single-samples": (0x19, [(1, 1, 90)] * 40 + [(6000, 2, 150)]),
        "mixed-kinds": (0x5A, [(513, 3, 0), (7, 1, 255), (4000, 2, 60), (1023, 4, 9), (9000, 1, 30)]),
        "raw-bytes": (0xA3, [(300, 0, 0)]),
    }
    paths = []
    for name, (settings, chunks) in scripts.items():
        body = bytes([settings]) + b"".join(struct.pack("<HBB", *c) for c in chunks)
        if name == "raw-bytes":
            body += bytes(range(256)) * 2
        paths.append(dest / f"{name}.bin")
        paths[-1].write_bytes(body)
    return paths


def build_fuzzers(build_dir: Path, jobs: int = 2) -> dict[str, Path]:
    """Configure and build the `fuzz` preset in build_dir (a UserError when the compiler lacks libFuzzer)."""
    build_dir.mkdir(parents=True, exist_ok=True)
    log = build_dir / "fuzz-build.log"
    log.unlink(missing_ok=True)
    build.configure(PRESET, build_dir, log)
    build.build(build_dir, log, jobs, targets=[f"fuzz_{t}" for t in TARGETS])
    return {t: build_dir / f"fuzz_{t}" for t in TARGETS}


@dataclass
class FuzzRun:
    """What one libFuzzer run did; `crashes` lists the inputs it wrote (empty when it found nothing)."""

    target: str
    seconds: float
    execs: int
    execs_per_second: int
    coverage: int
    features: int
    corpus_units: int
    new_units: int
    peak_rss_mb: int
    exit_code: int
    log: str
    crashes: list[str] = field(default_factory=list)


def run_target(
    target: str,
    binary: Path,
    out: Path,
    seeds: Path,
    *,
    seconds: int | None = None,
    runs: int | None = None,
    extra_args: list[str] | None = None,
) -> FuzzRun:
    """Fuzz one target from its kept corpus, the seeds and the regression inputs, for `seconds`, or for exactly
    `runs` executions from a fixed seed: the same work, hence the same outcome, on any machine at any load."""
    if (seconds is None) == (runs is None):
        raise ValueError("give exactly one of seconds and runs")
    budget = [f"-max_total_time={seconds}"] if runs is None else [f"-runs={runs}", "-seed=1"]
    corpus = out / "corpus" / target
    crashes = out / "crashes"
    logs = out / "logs"
    for d in (corpus, crashes, logs):
        d.mkdir(parents=True, exist_ok=True)
    log = logs / f"{target}.log"
    cmd = [
        str(binary),
        *budget,
        "-timeout=25",
        "-print_final_stats=1",
        f"-dict={FUZZ_DIR / f'{target}.dict'}",
        f"-artifact_prefix={crashes}/{target}-",
        *(extra_args or []),
        str(corpus),  # new inputs go to the first directory
        str(seeds),
        str(FUZZ_DIR / "regressions" / target),
    ]
    started = time.perf_counter()
    with open(log, "w") as fh:
        result = subprocess.run(cmd, stdout=fh, stderr=subprocess.STDOUT)
    elapsed = round(time.perf_counter() - started, 1)
    text = log.read_text(errors="replace")

    def stat(name: str) -> int:
        m = re.search(rf"stat::{name}:\s*(\d+)", text)
        return int(m.group(1)) if m else 0

    cov = re.findall(r"cov: (\d+) ft: (\d+)", text)
    return FuzzRun(
        target=target,
        seconds=elapsed,
        execs=stat("number_of_executed_units"),
        execs_per_second=stat("average_exec_per_sec"),
        coverage=int(cov[-1][0]) if cov else 0,
        features=int(cov[-1][1]) if cov else 0,
        corpus_units=sum(1 for p in corpus.iterdir() if p.is_file()),
        new_units=stat("new_units_added"),
        peak_rss_mb=stat("peak_rss_mb"),
        exit_code=result.returncode,
        log=str(log),
        crashes=re.findall(r"Test unit written to (\S+)", text) if result.returncode else [],
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=600, help="fuzzing time per target")
    parser.add_argument(
        "--out", type=Path, default=CSRC / "build" / "fuzz", help="build, corpus and crash dir"
    )
    parser.add_argument("--targets", nargs="+", choices=TARGETS, default=list(TARGETS))
    parser.add_argument("--jobs", type=int, default=2, help="parallel compile jobs")
    args = parser.parse_args(argv)
    from bifsmn_cli.errors import UserError

    try:
        binaries = build_fuzzers(args.out / "cmake", args.jobs)
    except UserError as exc:
        print(f"fuzz: {exc}", file=sys.stderr)
        return 2
    runs = []
    for target in args.targets:
        seeds = args.out / "seeds" / target
        write_seeds(target, seeds)
        run = run_target(target, binaries[target], args.out, seeds, seconds=args.seconds)
        runs.append(run)
        verdict = f"CRASH -> {', '.join(run.crashes) or run.log}" if run.exit_code else "no crash"
        print(
            f"{target}: {run.execs} executions in {run.seconds} s ({run.execs_per_second}/s), "
            f"cov {run.coverage}, corpus {run.corpus_units} (+{run.new_units}): {verdict}"
        )
    (args.out / "summary.json").write_text(json.dumps([asdict(r) for r in runs], indent=2) + "\n")
    return 1 if any(r.exit_code for r in runs) else 0


if __name__ == "__main__":
    sys.exit(main())

"""The `bench` stage: accuracy, latency, kernel throughput, ARM figures, size and cost of every exported model,
measured in one run and written as bench/bench.json, bench/report.md and PNG plots.

Everything is measured in this run (bifsmn_cli/bench/suite.py) or read from upstream artifacts (thin's FLOPs,
build-kernel's llvm-mca estimates); a figure whose input is missing (no aarch64 build, no qemu plugin it can
build, no board) is recorded as not measured with the reason. The QEMU insn plugin is found in the per-user cache
or built there once (bifsmn_cli/bench/qemu_plugin.py) unless bench.qemu_plugin names one. The figures' meaning and formulas are in bifsmn_cli/bench/.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from bifsmn_cli.bench import arm, plots, report
from bifsmn_cli.config import Bool, Float, Int, List, Str
from bifsmn_cli.console import console, info, is_quiet
from bifsmn_cli.data import packed
from bifsmn_cli.engine.binding import IMPLS, Library
from bifsmn_cli.errors import UserError
from bifsmn_cli.fsutil import atomic_write_json, atomic_write_text
from bifsmn_cli.nn.config import TEACHER
from bifsmn_cli.stream_eval.det import THRESHOLDS
from stages.pipeline.stage import StageContext, StageSpec

if TYPE_CHECKING:
    from bifsmn_cli.bench.suite import Inputs

SPLITS = ("auto", "testing", "validation")

SPEC = StageSpec(
    name="bench",
    schema={
        "rounds": Int(20, "round-robin rounds of the latency contenders", min=1),
        "repeats": Int(25, "timed runs per contender and path in each round", min=1),
        "warmup": Int(5, "untimed runs per contender before its timed runs in each round", min=0),
        "kernels": List("str", ["auto"], "engine kernels timed: " + ", ".join(IMPLS), choices=tuple(IMPLS)),
        "pytorch": Bool(True, "time the teacher in PyTorch eager (one thread)"),
        "onnxruntime": Bool(True, "time teacher.onnx in onnxruntime (one thread) when it was exported"),
        "kernel_shapes": List("int", [256, 512], "square GEMM sizes timed besides the model's layers", min=1),
        "kernel_samples": Int(7, "timing samples per GEMM shape and implementation", min=1),
        "qemu": Bool(
            True, "count executed aarch64 instructions under qemu-aarch64 (an aarch64 build-kernel target)"
        ),
        "qemu_plugin": Str(
            None,
            "QEMU insn plugin (libinsn.so) to count with; default: the per-user cached one, built once from "
            "Debian's qemu source when missing",
            nullable=True,
        ),
        "profile": Str(
            None,
            "the model profiled per op kind (x86 time, aarch64 instructions); default: the first variant",
            nullable=True,
        ),
        "profile_runs": Int(500, "alternated runs of the x86 profile (0: no profile)", min=0),
        "device": Str(
            None, "ssh://user@host[:port] of an aarch64 board to time the engine on", nullable=True
        ),
        # streaming keyword detection (bifsmn_cli/bench/streaming.py)
        "streaming": Bool(
            True, "evaluate every model as a streaming detector (bench.json's streaming section)"
        ),
        "streaming_split": Str(
            "auto", "clips of the streams: auto (the bench's split), testing or validation", choices=SPLITS
        ),
        "streaming_seconds": Float(600.0, "length of the keyword stream (TensorFlow: 600)", min=1.0),
        "streaming_false_alarm_seconds": Float(
            3600.0, "length of the stream of noise and non-keywords only (0: none)", min=0.0
        ),
        "streaming_unknown_percentage": Float(
            30.0, "non-keyword share of the keyword stream", min=0, max=100
        ),
        "streaming_background_volume": Float(0.1, "highest background noise volume", min=0, max=1),
        "streaming_tolerance_ms": Float(
            750.0, "a detection matches a label this close (TensorFlow: 750)", min=0
        ),
        "streaming_stride": Int(
            None, "hops between network runs (null: the engine's default)", min=1, nullable=True
        ),
        "streaming_thresholds": List(
            "float", list(THRESHOLDS), "the DET curve's thresholds, in (0, 1]", min=1e-6, max=1.0
        ),
        "streaming_cost_seconds": Float(
            10.0, "audio per timed stream push (bifsmn-infer --bench --stream)", min=1.0
        ),
    },
    needs=("featurize", "train-teacher", "thin", "export", "build-kernel"),
    outputs=("bench.json", "report.md", "*.png"),
)


def run(ctx: StageContext) -> dict[str, Any]:
    import torch

    from bifsmn_cli.bench import suite

    c = ctx.config
    inp = _inputs(ctx)
    for k in c["kernels"]:
        if k != "auto" and not inp.library.kernel_available(k):
            available = [i for i in IMPLS if inp.library.kernel_available(i)]
            raise UserError(
                f"bench.kernels: {k} does not run on this CPU (available: {', '.join(available)})"
            )
    if c["profile"] is not None and c["profile"] not in inp.models:
        raise UserError(
            f"bench.profile: {c['profile']!r} is not an exported model (one of {', '.join(inp.models)})"
        )
    plugin = _qemu_plugin(c["qemu_plugin"])
    device = arm.parse_device(c["device"]) if c["device"] else None
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # every contender runs on one core
    try:
        results = suite.measure(inp, c, plugin, device, ctx.state_dir, ctx.seed)
    finally:
        torch.set_num_threads(threads)
    atomic_write_json(ctx.out_dir / "bench.json", results)
    written = plots.write_all(results, ctx.out_dir)
    atomic_write_text(ctx.out_dir / "report.md", report.markdown(results, written))
    if not is_quiet():
        console.print(report.headline_table(results))
    return report.metrics(results)


def _inputs(ctx: StageContext) -> Inputs:
    """Every upstream artifact bench measures, resolved once."""
    from bifsmn_cli.bench.suite import Inputs
    from bifsmn_cli.nn.model_file import load_model

    featurized = ctx.input_dir("featurize")
    index = json.loads(ctx.input_file("export", "exported.json").read_text())
    split = "testing"
    data = packed.load_split(featurized, split)
    if len(data) == 0:
        split, data = "validation", packed.load_split(featurized, "validation")
        info("the test split is empty: accuracy is measured on the validation split")
    if len(data) == 0:
        raise UserError(f"{featurized}: the test and validation splits are empty; nothing to measure on")
    rows = json.loads(ctx.input_file("thin", "variants.json").read_text())["variants"]
    classes = packed.load_classes(featurized)
    teacher_file = ctx.input_file("train-teacher", "teacher.pt")
    models = list(index["models"])  # deployed variants, then the teacher
    torch_models = {
        m: load_model(
            teacher_file if m == TEACHER else ctx.input_file("thin", f"models/{m}.pt"),
            expect_classes=len(classes),
        )
        for m in models
    }
    return Inputs(
        export_dir=ctx.input_dir("export"),
        index=index,
        models=models,
        classes=classes,
        split=split,
        features=np.array(data.features, dtype=np.float32),  # in memory and writable, for torch
        waves=data.waves,
        labels=np.asarray(data.labels, dtype=np.int64),
        teacher_file=teacher_file,
        complexity={r["variant"]: r for r in rows},
        kernel_dir=ctx.input_dir("build-kernel"),
        kernel_metrics=ctx.input_manifest("build-kernel")["metrics"],
        torch_models=torch_models,
        library=_host_library(ctx),
        stream_audio=_stream_audio(ctx, split, data, classes) if ctx.config["streaming"] else None,
    )


def _stream_audio(ctx: StageContext, split: str, data: packed.PackedSplit, classes: list[str]) -> Any:
    """The clips and noises the streaming evaluation builds its streams from."""
    from bifsmn_cli.bench.streaming import SplitAudio

    featurized = ctx.input_dir("featurize")
    name = ctx.config["streaming_split"]
    if name != "auto" and name != split:
        split, data = name, packed.load_split(featurized, name)
        if len(data) == 0:
            raise UserError(f"bench.streaming_split: the {name} split of {featurized} is empty")
    noises = (
        list(packed.load_noises(featurized).values()) if (featurized / packed.NOISES_FILE).is_file() else []
    )
    return SplitAudio(split, data.waves, np.asarray(data.labels), classes, noises)


def _host_library(ctx: StageContext) -> Library:
    path = ctx.input_file("build-kernel", "host/libbifsmn.so")
    if not path.is_file():
        raise UserError(
            f"{path}: missing; bench runs the host engine: add host to build_kernel.targets and rerun build-kernel"
        )
    return Library(path)


def _qemu_plugin(value: str | None) -> Path | None:
    if value is None:
        return None
    path = Path(value).expanduser()
    if not path.is_file():
        raise UserError(
            f"bench.qemu_plugin: {path}: no such file; build QEMU's insn plugin (tests/plugin/insn.c) "
            "or remove the key"
        )
    return path

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
from bifsmn_cli.config import Bool, Int, List, Str
from bifsmn_cli.console import console, info, is_quiet
from bifsmn_cli.data import packed
from bifsmn_cli.engine.binding import IMPLS, Library
from bifsmn_cli.errors import UserError
from bifsmn_cli.fsutil import atomic_write_json, atomic_write_text
from bifsmn_cli.nn.config import TEACHER
from stages.pipeline.stage import StageContext, StageSpec

if TYPE_CHECKING:
    from bifsmn_cli.bench.suite import Inputs

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
    )


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

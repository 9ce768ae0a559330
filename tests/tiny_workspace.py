"""A tiny pipeline workspace made directly with the library, for the export and bench stage tests.

featurize (a few random clips and their real log-mel features), train-teacher, distill and thin (tiny
randomly initialised D-FSMNs with non-trivial BatchNorm, scored as thin scores them), and build-kernel (the host engine built into
csrc/build/pytest, shared with the engine tests, plus a canned aarch64 mca.json). Each directory gets a
minimal manifest, which is all the runner checks of an upstream stage.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import torch
from helpers import BUILD_DIR, VARIANTS, randomise

from bifsmn_cli.audio.config import FrontEndConfig
from bifsmn_cli.audio.frontend import FrontEnd
from bifsmn_cli.audio.wav import from_int16
from bifsmn_cli.data import packed
from bifsmn_cli.engine.build import build_library
from bifsmn_cli.nn.config import ModelConfig
from bifsmn_cli.nn.dfsmn import DFSMN
from bifsmn_cli.nn.model_file import fixed_depth, save_model
from bifsmn_cli.train import thin_scores
from stages.pipeline import runner, schema

CLASSES = ["yes", "no", "_unknown_"]
CFG = ModelConfig(num_classes=3, num_blocks=4, stem_channels=4, backbone_size=32, hidden_size=48)


# build-kernel's mca.json layout (bifsmn_cli.engine.mca.estimate), with round numbers to check arithmetic. The tiny
# students run depth-1 fused GEMMs in both forms, a depth-2 conv (no loop of its own here: the general kernel's
# step loop stands for it) and 5-tap depthwise convs.
def _loop(scope: str, work: int, rate: float) -> dict:
    return {"scope": scope, "instructions": 64, "bit_macs_per_iteration": work,
            "cpus": {"cortex-a53": {"bit_macs_per_cycle": rate}}}  # fmt: skip


MCA = {
    "source": "libbifsmn.a",
    "llvm_mca": "16.0.6",
    "iterations": 1000,
    "kernels": {
        "bfuse_gemm_kw1_threshold": _loop("group", 1024, 32.0),
        "bfuse_gemm_kw1_float": _loop("group", 1024, 16.0),
        "bfuse_gemm_kwany_step": _loop("step", 2048, 64.0),
        "bfuse_dwconv_taps5": _loop("time step", 80, 1.0),
        "sgemm": {"cpus": {"cortex-a53": {"macs_per_cycle": 2.0}}},
    },
}


def _manifest(directory: Path, stage: str, metrics: dict | None = None) -> None:
    manifest = {
        "stage": stage,
        "config": {},
        "config_hash": stage,
        "inputs": {},
        "outputs": {},
        "metrics": metrics or {},
    }
    (directory / "manifest.json").write_text(json.dumps(manifest))


def write_featurize(ws: Path, clips: int = 8) -> None:
    out = ws / "featurize"
    out.mkdir(parents=True)
    rng = np.random.default_rng(0)
    frontend = FrontEnd(FrontEndConfig())
    for split in ("train", "validation", "testing"):
        waves = (rng.standard_normal((clips, 16000)) * 2000).astype(np.int16)
        with torch.no_grad():
            features = frontend(torch.from_numpy(from_int16(waves))).numpy()
        labels = rng.integers(0, len(CLASSES), clips)
        packed.save_split(out, split, waves, labels, features, [f"clip{i}.wav" for i in range(clips)])
    packed.save_classes(out, CLASSES)
    packed.save_noises(out, {"hiss": (0.5 * rng.standard_normal(3 * 16000)).astype(np.float32)})
    packed.save_frontend(out, FrontEndConfig(), (32, 32))
    _manifest(out, "featurize")


def write_models(ws: Path, binarizer: str = "bifsmn") -> None:
    fe = FrontEndConfig()
    torch.manual_seed(0)
    teacher = randomise(DFSMN(CFG), 1)
    student = randomise(DFSMN(CFG, binarizer, VARIANTS), 2)
    for stage, name, model in (("train-teacher", "teacher.pt", teacher), ("distill", "student.pt", student)):
        (ws / stage).mkdir(parents=True)
        save_model(ws / stage / name, model, CLASSES, fe)
        _manifest(ws / stage, stage)
    thin = ws / "thin"
    (thin / "models").mkdir(parents=True)
    featurized = ws / "featurize"  # write_featurize comes first
    val, test = packed.load_split(featurized, "validation"), packed.load_split(featurized, "testing")
    rows = thin_scores.score(teacher, student, val, test, list(CLASSES))
    for v in VARIANTS:
        save_model(thin / "models" / f"{v}.pt", fixed_depth(student, v), CLASSES, fe, {"variant": v})
    (thin / "variants.json").write_text(json.dumps({"deployed": list(VARIANTS), "variants": rows}))
    _manifest(thin, "thin")


def write_build_kernel(ws: Path) -> None:
    lib = build_library(BUILD_DIR)
    out = ws / "build-kernel"
    (out / "host").mkdir(parents=True)
    (out / "aarch64").mkdir()
    shutil.copy2(lib, out / "host" / "libbifsmn.so")
    shutil.copy2(BUILD_DIR / "bifsmn-infer", out / "host" / "bifsmn-infer")
    (out / "aarch64" / "mca.json").write_text(json.dumps(MCA))
    compiler = {"id": "GNU", "version": "test", "path": "cc"}
    _manifest(
        out,
        "build-kernel",
        {"targets": {"host": {"compiler": compiler, "flags": "-O3"}, "aarch64": {"compiler": compiler}}},
    )


def pipeline_file(tmp: Path, ws: Path, extra: str = "") -> Path:
    path = tmp / "tiny.yaml"
    path.write_text(
        f"name: tiny\nworkspace: {ws}\n"
        "export:\n  check_clips: 4\n"
        "bench:\n  rounds: 2\n  repeats: 5\n  warmup: 1\n  kernel_shapes: [64]\n  kernel_samples: 2\n"
        "  streaming_seconds: 30\n  streaming_false_alarm_seconds: 30\n  streaming_cost_seconds: 1\n"
        "  streaming_thresholds: [0.5, 0.8, 0.99]\n" + extra
    )
    return path


def upstream_of_export(tmp: Path) -> Path:
    """`tmp/ws` holding every stage export needs (the check then uses build-kernel's host library, as in a real
    pipeline); returns the pipeline file."""
    ws = tmp / "ws"
    write_featurize(ws)
    write_models(ws)
    write_build_kernel(ws)
    return pipeline_file(tmp, ws)


def run(path: Path, stage: str, overrides: list[str] | None = None) -> dict:
    """Run one stage through the runner (manifest, failure handling) and return its manifest."""
    return runner.run_stage(schema.load(path, overrides or []), stage)

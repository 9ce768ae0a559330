"""The engine's forward plan (csrc/src/plan.c) against its own ops run one by one: a run fuses every binary
layer's output transform into its kernel, writes only what later layers read, gives binarised-only outputs
as popcount thresholds and packs signs in the producing kernel, all of which must change no bit of the
result; and `bifsmn-infer --profile` times each kind of step on its own."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from helpers import BUILD_DIR, TINY_CLASSES, VARIANTS, randomise

from bifsmn_cli.audio.config import FrontEndConfig
from bifsmn_cli.engine.binding import Engine
from bifsmn_cli.export.bfsm import read_bfsm
from bifsmn_cli.export.lowering import export_student, export_teacher
from bifsmn_cli.nn.config import ModelConfig
from bifsmn_cli.nn.dfsmn import DFSMN

CLASSES = TINY_CLASSES
# Two widths: one off every word and tile size (conv2 K = 150, fc1 K = 96, backbone 48, hidden 80), one on them
# (conv1 16 channels of one input, the byte-run im2col of conv2, 16-output NEON tiles).
CONFIGS = {
    "odd": ModelConfig(num_classes=5, num_blocks=4, stem_channels=6, backbone_size=48, hidden_size=80),
    "even": ModelConfig(num_classes=5, num_blocks=4, stem_channels=8, backbone_size=64, hidden_size=128),
}


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("plan")
    paths = {}
    for name, cfg in CONFIGS.items():
        torch.manual_seed(0)
        student = randomise(DFSMN(cfg, "bifsmn", VARIANTS), 0, negative_gammas=0.3, negative_slopes=True)
        for v in VARIANTS:
            paths[f"{name}-{v}"] = out / f"{name}-{v}.bfsm"
            export_student(student, v, CLASSES, FrontEndConfig(), paths[f"{name}-{v}"])
        torch.manual_seed(1)
        paths[f"{name}-teacher"] = out / f"{name}-teacher.bfsm"
        export_teacher(
            randomise(DFSMN(cfg), 1, negative_gammas=0.3, negative_slopes=True),
            CLASSES,
            FrontEndConfig(),
            paths[f"{name}-teacher"],
        )
    return paths


def op_by_op(engine: Engine, ops: list[dict], features: np.ndarray) -> np.ndarray:
    """The network as a chain of bifsmn_op_run calls over the file's slots."""
    slots: dict[int, np.ndarray] = {0: np.ascontiguousarray(features.T[:, :, None])}
    for i, op in enumerate(ops):
        res = slots[op["res_slot"]] if op["res_slot"] is not None else None
        slots[op["out_slot"]] = engine.run_op(i, slots[op["in_slot"]], res)[0]
    return slots[ops[-1]["out_slot"]].reshape(-1)


@pytest.mark.parametrize("name", [f"{c}-{v}" for c in CONFIGS for v in (*VARIANTS, "teacher")])
def test_the_plan_gives_exactly_the_ops_one_by_one(lib, models, name):
    ops = read_bfsm(models[name])["ops"]
    feats = 15 * np.random.default_rng(7).standard_normal((3, 32, 32)).astype(np.float32) - 40
    impls = [i for i in ("ref", "avx2", "avx512", "neon") if lib.kernel_available(i)]
    for impl in impls:
        with Engine.load(models[name], lib, kernel=impl) as engine:
            for f in feats:
                np.testing.assert_array_equal(engine.run_features(f), op_by_op(engine, ops, f), err_msg=impl)


def kinds_of(ops: list[dict]) -> dict[str, int]:
    counts = {"input": 1}
    for op in ops:
        kind = ("b" if op["binary"] else "") + op["type"]
        counts[kind] = counts.get(kind, 0) + 1
    return counts


def test_profile_times_every_kind_of_step(lib, models, tmp_path):
    tool = str(BUILD_DIR / "bifsmn-infer")
    clip = tmp_path / "clip.wav"
    sf.write(clip, (0.1 * np.random.default_rng(2).standard_normal(16000) * 32767).astype(np.int16), 16000)
    for name in ("even-1x", "even-teacher"):
        path = models[name]
        done = subprocess.run(
            [tool, "--profile", "3", "--warmup", "1", str(path), str(clip)], capture_output=True, text=True
        )
        assert done.returncode == 0, done.stderr
        report = json.loads(done.stdout)
        assert report["runs"] == 3 and len(report["net_ns"]) == 3 and min(report["net_ns"]) > 0
        want = kinds_of(read_bfsm(path)["ops"])
        assert {k: v["steps"] for k, v in report["kinds"].items()} == want
        assert all(len(v["ns"]) == 3 and min(v["ns"]) > 0 for v in report["kinds"].values())
    one = subprocess.run(
        [tool, "--profile", "2", "--profile-kind", "blinear", str(models["even-1x"]), str(clip)],
        capture_output=True,
        text=True,
    )
    assert one.returncode == 0, one.stderr
    report = json.loads(one.stdout)
    assert list(report["kinds"]) == ["blinear"] and "net_ns" not in report
    bad = subprocess.run(
        [tool, "--profile", "2", "--profile-kind", "blinear", str(models["even-teacher"]), str(clip)],
        capture_output=True,
        text=True,
    )
    assert bad.returncode == 2 and "no step of kind 'blinear'" in bad.stderr
    alone = subprocess.run(
        [tool, "--profile-kind", "blinear", str(models["even-1x"]), str(clip)], capture_output=True, text=True
    )
    assert alone.returncode == 2 and "--profile-kind needs --profile N" in alone.stderr
    usage = subprocess.run(
        [tool, "--profile", "0", str(models["even-1x"]), str(clip)], capture_output=True, text=True
    )
    assert usage.returncode == 2 and "--profile needs a positive integer" in usage.stderr

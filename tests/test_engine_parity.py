"""The C engine against PyTorch on a small randomly initialised D-FSMN (BatchNorm statistics and PReLU slopes
randomised so that folding is exercised): every op alone (binary integers bit-exact, floats to rounding),
whole-model scores within 1e-4 relative with the same top class, for each student width and the teacher, on
every kernel implementation this CPU runs; the PCM path; and the bifsmn-infer tool."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
import torch.nn.functional as F
from helpers import BUILD_DIR, TINY_CFG, TINY_CLASSES, VARIANTS, dB_features, tiny_student, tiny_teacher
from torch import Tensor, nn

from bifsmn_cli.audio.config import FrontEndConfig
from bifsmn_cli.audio.frontend import FrontEnd
from bifsmn_cli.audio.wav import INT16_SCALE
from bifsmn_cli.engine.binding import Engine
from bifsmn_cli.errors import UserError
from bifsmn_cli.export.lowering import export_student, export_teacher
from bifsmn_cli.nn.binarizers import sign
from bifsmn_cli.nn.dfsmn import DFSMN, variant_key

MODELS = [*VARIANTS, "teacher"]


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> dict[str, tuple[DFSMN, str, Path]]:
    """name -> (PyTorch model, variant, .bfsm path)."""
    out = tmp_path_factory.mktemp("bfsm")
    student, teacher = tiny_student(), tiny_teacher()
    models = {}
    for v in VARIANTS:
        export_student(student, v, TINY_CLASSES, FrontEndConfig(), out / f"{v}.bfsm")
        models[v] = (student, v, out / f"{v}.bfsm")
    export_teacher(teacher, TINY_CLASSES, FrontEndConfig(), out / "teacher.bfsm")
    models["teacher"] = (teacher, "1x", out / "teacher.bfsm")
    return models


# ------------------------------------------------------------------ PyTorch view of each op, in engine layout
# Engine tensors are (time, height, channels); PyTorch's are (1, channels, height, time) or (1, channels, time).


def _to2d(x: np.ndarray) -> Tensor:
    return torch.from_numpy(x).permute(2, 1, 0)[None]


def _from2d(y: Tensor) -> np.ndarray:
    return y[0].permute(2, 1, 0).numpy()


def _toseq(x: np.ndarray) -> Tensor:
    return torch.from_numpy(x[:, 0, :].T.copy())[None]


def _fromseq(y: Tensor) -> np.ndarray:
    return y[0].T[:, None, :].numpy()


def torch_ops(model: DFSMN, variant: str) -> list[tuple[Callable, nn.Module | None]]:
    """Per engine op: (float forward on engine-layout input and residual, its binarized layer or None)."""
    m, key = model, variant_key(variant)

    def fc1(x: np.ndarray, r: None) -> np.ndarray:
        t, h, c = x.shape  # features of a frame in PyTorch order: channel * H + mel
        flat = torch.from_numpy(x.transpose(0, 2, 1).reshape(1, t, c * h).copy())
        return m.act_fc1(m.fc1(flat))[0][:, None, :].numpy()

    ops: list[tuple[Callable, nn.Module | None]] = [
        (lambda x, r: _from2d(m.act1(m.bn1(m.conv1(_to2d(x))))), None),
        (lambda x, r: _from2d(m.act2(m.bn2(m.conv2(_to2d(x))))), m.conv2),
        (fc1, m.fc1),
    ]
    for i in m.variant_block_ids[variant]:
        b = m.blocks[i]
        ops += [
            (lambda x, r, b=b: _fromseq(b.act_mem(b.bn_mem(b.memory(_toseq(x)))) + _toseq(r)), b.memory),
            (lambda x, r, b=b: _fromseq(b.act_hidden(b.bn_hidden(b.expand(_toseq(x))))), b.expand),
            (
                lambda x, r, b=b: _fromseq(b.act_out[key](b.bn_out[key](b.project(_toseq(x)))) + _toseq(r)),
                b.project,
            ),
        ]
    ops.append((lambda x, r: m.classifier(_toseq(x).flatten(1)).numpy()[None], None))
    return ops


def torch_ints(layer: nn.Module, x: np.ndarray) -> np.ndarray:
    """The +-1 dot products a binarized layer computes on x (engine layout), padded taps contributing 0."""
    signs = layer.binarizer.weight_parts(layer.weight)[0].double()
    if isinstance(layer, nn.Conv2d):
        y = _from2d(F.conv2d(sign(_to2d(x)).double(), signs, stride=layer.stride, padding=layer.padding))
    elif isinstance(layer, nn.Linear):
        t, h, c = x.shape
        y = (sign(torch.from_numpy(x.transpose(0, 2, 1).reshape(t, c * h).copy())).double() @ signs.T).numpy()
        y = y[:, None, :]
    elif layer.groups > 1:
        xs = F.pad(sign(_toseq(x)).double(), layer.pad)
        y = _fromseq(F.conv1d(xs, signs, dilation=layer.dilation, groups=layer.groups))
    else:
        y = (sign(torch.from_numpy(x[:, 0, :])).double() @ signs[:, :, 0].T).numpy()[:, None, :]
    assert np.array_equal(y, np.round(y))
    return y.astype(np.int32)


@pytest.mark.parametrize("name", MODELS)
def test_every_op_matches_pytorch(lib, exported, name):
    model, variant, path = exported[name]
    rng = np.random.default_rng(0)
    with Engine.load(path, lib) as engine, torch.no_grad():
        ops = torch_ops(model, variant)
        assert engine.num_ops == len(ops)
        for i, (forward, layer) in enumerate(ops):
            info = engine.op_info(i)
            assert info["binary"] == (layer is not None and name != "teacher")
            x = rng.standard_normal(info["in_shape"]).astype(np.float32)
            r = rng.standard_normal(info["out_shape"]).astype(np.float32) if info["has_residual"] else None
            if info["type"] == "dwconv1d":
                r = x  # the memory's residual is its own input
            out, ints = engine.run_op(i, x, r)
            want = forward(x, r)
            scale = max(1.0, float(np.abs(want).max()))
            np.testing.assert_allclose(
                out, want, rtol=1e-5, atol=1e-5 * scale, err_msg=f"op {i} ({info['type']})"
            )
            if info["binary"]:
                np.testing.assert_array_equal(ints, torch_ints(layer, x), err_msg=f"op {i} integers")


@pytest.mark.parametrize("name", MODELS)
def test_scores_match_pytorch(lib, exported, name):
    model, variant, path = exported[name]
    feats = dB_features(8, seed=1)
    with torch.no_grad():
        want = model(feats, variant).numpy()
    with Engine.load(path, lib) as engine:
        assert engine.variant == ("fp" if name == "teacher" else variant)
        assert engine.classes == TINY_CLASSES and engine.binary == (name != "teacher")
        got = np.stack([engine.run_features(f) for f in feats.numpy()])
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4 * float(np.abs(want).max()))
    np.testing.assert_array_equal(got.argmax(1), want.argmax(1))


@pytest.mark.parametrize("name", MODELS)
def test_kernel_implementations_agree(lib, exported, name):
    _, _, path = exported[name]
    impls = [i for i in ("ref", "avx2", "avx512", "neon") if lib.kernel_available(i)]
    if len(impls) < 2:
        pytest.skip("only the reference kernels run on this CPU")
    feats = dB_features(2, seed=2).numpy()
    x = np.random.default_rng(3).standard_normal((16, 16, TINY_CFG.stem_channels)).astype(np.float32)
    results = {}
    for impl in impls:
        with Engine.load(path, lib, kernel=impl) as engine:
            assert engine.kernel == impl
            scores = np.stack([engine.run_features(f) for f in feats])
            results[impl] = (scores, engine.run_op(1, x)[1])
    ref_scores, ref_ints = results["ref"]
    for impl, (scores, ints) in results.items():
        np.testing.assert_allclose(scores, ref_scores, rtol=1e-5, atol=1e-5 * float(np.abs(ref_scores).max()))
        if ints is not None:
            np.testing.assert_array_equal(ints, ref_ints, err_msg=impl)


def test_environment_variable_forces_a_kernel(lib, exported, monkeypatch):
    _, _, path = exported["1x"]
    monkeypatch.setenv("BIFSMN_KERNEL", "ref")
    with Engine.load(path, lib) as engine:
        assert engine.kernel == "ref"
    monkeypatch.setenv("BIFSMN_KERNEL", "sse9")
    with pytest.raises(UserError, match="BIFSMN_KERNEL=sse9: expected one of"):
        Engine.load(path, lib)
    missing = [i for i in ("avx2", "avx512", "neon") if not lib.kernel_available(i)]
    monkeypatch.setenv("BIFSMN_KERNEL", missing[0])
    with pytest.raises(UserError, match="not available on this CPU"):
        Engine.load(path, lib)


def speech_pcm(seed: int, n: int = 16000) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(n) / 16000
    wave = np.sin(2 * np.pi * (200 + 300 * t) * t) * np.exp(
        -(((t - 0.5) / 0.2) ** 2)
    ) + 0.02 * rng.standard_normal(n)
    return np.round(0.4 * wave * 32767).astype(np.int16)


def test_pcm_path_equals_front_end_then_network(lib, exported):
    pcm = speech_pcm(4)
    for name in ("0.5x", "teacher"):
        model, variant, path = exported[name]
        with Engine.load(path, lib) as engine:
            feats = engine.features_pcm(pcm)
            np.testing.assert_array_equal(engine.run_pcm(pcm), engine.run_features(feats))
        python_feats = FrontEnd(FrontEndConfig())(torch.from_numpy(pcm / INT16_SCALE).float()[None])
        np.testing.assert_allclose(feats, python_feats[0].numpy(), atol=0.01)
    teacher, _, path = exported["teacher"]
    with torch.no_grad(), Engine.load(path, lib) as engine:
        want = teacher(python_feats).numpy()[0]
        np.testing.assert_allclose(
            engine.run_pcm(pcm), want, rtol=1e-3, atol=1e-3 * float(np.abs(want).max())
        )


def test_infer_tool_classifies_clips(lib, exported, tmp_path):
    _, _, path = exported["0.25x"]
    full, short = speech_pcm(5), speech_pcm(6, 11000)
    sf.write(tmp_path / "full.wav", full, 16000, subtype="PCM_16")
    sf.write(tmp_path / "short.wav", short, 16000, subtype="PCM_16")
    sf.write(tmp_path / "stereo.wav", np.stack([full, full], 1), 16000, subtype="PCM_16")
    tool = str(BUILD_DIR / "bifsmn-infer")
    clips = [str(tmp_path / f) for f in ("full.wav", "short.wav", "stereo.wav")]
    result = subprocess.run([tool, "--json", "--top", "2", str(path), *clips], capture_output=True, text=True)
    assert result.returncode == 1, result.stderr  # the stereo clip fails, the others are still classified
    report = json.loads(result.stdout)
    assert [r["file"] for r in report] == clips
    assert "channel" in report[2]["error"]
    with Engine.load(path, lib) as engine:
        best_full = TINY_CLASSES[int(engine.run_pcm(full).argmax())]
        for entry, pcm in zip(report[:2], (full, np.pad(short, (0, 16000 - short.size))), strict=True):
            logits = engine.run_pcm(pcm)
            top = np.argsort(-logits)[:2]
            assert [t["class"] for t in entry["top"]] == [TINY_CLASSES[i] for i in top]
            np.testing.assert_allclose([t["logit"] for t in entry["top"]], logits[top], rtol=1e-5, atol=1e-5)
            probs = np.exp(logits - logits.max()) / np.exp(logits - logits.max()).sum()
            np.testing.assert_allclose([t["score"] for t in entry["top"]], probs[top], atol=1e-5)
    text = subprocess.run([tool, str(path), clips[0]], capture_output=True, text=True)
    assert text.returncode == 0 and clips[0] in text.stdout and best_full in text.stdout
    bad = subprocess.run([tool, str(tmp_path / "full.wav"), clips[0]], capture_output=True, text=True)
    assert bad.returncode == 1 and "bad magic" in bad.stderr
    usage = subprocess.run([tool, "--top", "zero", str(path), clips[0]], capture_output=True, text=True)
    assert usage.returncode == 2 and "--top" in usage.stderr

"""`bifsmn predict`: scores from the C engine through the CLI (JSON and text), clips that need resampling,
downmixing or padding, and one-line errors for bad files."""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf
from helpers import BUILD_DIR, VARIANTS, assert_user_error, invoke_cli
from tiny_workspace import CFG, CLASSES

from bifsmn_cli.audio.config import FrontEndConfig
from bifsmn_cli.audio.wav import to_int16
from bifsmn_cli.engine.binding import Engine, Library
from bifsmn_cli.engine.build import build_library
from bifsmn_cli.engine.predict import predict
from bifsmn_cli.export.lowering import export_student
from bifsmn_cli.nn.dfsmn import DFSMN


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    out = tmp_path_factory.mktemp("predict")
    lib = build_library(BUILD_DIR)
    path = out / "model_1x.bfsm"
    export_student(DFSMN(CFG, "bifsmn", VARIANTS).eval(), "1x", CLASSES, FrontEndConfig(), path)
    rng = np.random.default_rng(1)
    clips = []
    for i in range(2):
        clip = out / f"clip{i}.wav"
        sf.write(clip, to_int16(0.1 * rng.standard_normal(16000)), 16000, subtype="PCM_16")
        clips.append(clip)
    return path, clips, lib


@pytest.fixture(autouse=True)
def engine_lib(model, monkeypatch):
    monkeypatch.setenv("BIFSMN_LIB", str(model[2]))


def test_json_scores_are_the_engines(model):
    path, clips, lib = model
    result = invoke_cli("predict", str(path), *map(str, clips), "--json", "--top", "2")
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    assert [o["file"] for o in out] == [str(c) for c in clips]
    with Engine.load(path, Library(lib)) as engine:
        for o, clip in zip(out, clips, strict=True):
            logits = engine.run_pcm(sf.read(clip, dtype="int16")[0])
            best = np.argsort(-logits)[:2]
            assert [t["class"] for t in o["top"]] == [CLASSES[i] for i in best]
            assert [t["logit"] for t in o["top"]] == pytest.approx(logits[best].tolist(), rel=1e-6)
            probs = np.exp(logits - logits.max()) / np.exp(logits - logits.max()).sum()
            assert [t["score"] for t in o["top"]] == pytest.approx(probs[best].tolist(), rel=1e-5)
            assert o["fitted"] is None


def test_text_output(model):
    path, clips, _ = model
    result = invoke_cli("predict", str(path), str(clips[0]))
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert lines[0] == str(clips[0]) and len(lines) == 4  # the clip, then the default top 3
    assert {line.split()[0] for line in lines[1:]} == set(CLASSES)


def test_stereo_short_clip_at_another_rate(model, tmp_path):
    path, _, _ = model
    clip = tmp_path / "stereo.wav"
    sf.write(clip, np.zeros((8000, 2), np.int16) + 100, 8000, subtype="PCM_16")
    (p,) = predict(path, [clip], top=1)
    assert p.fitted is None and len(p.top) == 1  # 1 s at 8 kHz resamples to exactly 1 s at 16 kHz
    short = tmp_path / "short.wav"
    sf.write(short, np.zeros(8000, np.int16), 16000, subtype="PCM_16")
    assert predict(path, [short])[0].fitted == "padded"


def test_bad_files(model, tmp_path):
    path, clips, _ = model
    junk = tmp_path / "junk.wav"
    junk.write_bytes(b"not audio at all")
    assert_user_error(invoke_cli("predict", str(path), str(tmp_path / "missing.wav")), "missing.wav")
    assert_user_error(invoke_cli("predict", str(path), str(junk)), "junk.wav", "cannot decode")
    assert_user_error(invoke_cli("predict", str(clips[0]), str(clips[0])), "clip0.wav", "not a .bfsm")
    assert_user_error(invoke_cli("predict", str(tmp_path / "none.bfsm"), str(clips[0])), "none.bfsm")
    assert_user_error(invoke_cli("predict", str(path), str(clips[0]), "--top", "0"), "--top")
    assert_user_error(invoke_cli("predict", str(path), str(clips[0]), "--kernel", "fast"), "kernel 'fast'")

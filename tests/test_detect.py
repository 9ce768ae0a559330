"""`bifsmn detect`: events of long recordings through the C stream, as `bifsmn-infer --stream` prints them for the
same samples (its end-of-input finish included); files at another rate or with two channels converted as
predict converts clips; text, JSON and --out; one-line errors and nothing written when a file is bad."""

from __future__ import annotations

import json
import subprocess

import numpy as np
import pytest
import soundfile as sf
from helpers import BUILD_DIR, BUSY, BUSY_ARGS, assert_user_error, busy_signal, invoke_cli, stream_model

from bifsmn_cli.audio.wav import from_int16, to_int16
from bifsmn_cli.engine.binding import Engine, Library
from bifsmn_cli.engine.build import build_library
from bifsmn_cli.engine.detect import detect, parse_thresholds
from bifsmn_cli.engine.predict import load_audio
from bifsmn_cli.engine.stream import Stream
from bifsmn_cli.errors import UserError

RATE = 16000


def long_signal(seconds: float, seed: int) -> np.ndarray:
    return from_int16(busy_signal(seconds, seed))


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    out = tmp_path_factory.mktemp("detect")
    lib = build_library(BUILD_DIR)
    model = stream_model(out / "model_1x.bfsm")
    wav = out / "long.wav"
    sf.write(wav, to_int16(long_signal(12.0, 0)), RATE, subtype="PCM_16")
    flac = out / "stereo_44k.flac"  # two channels at 44.1 kHz: downmixed and resampled
    x = np.interp(np.arange(6 * 44100) / 44100, np.arange(6 * RATE) / RATE, long_signal(6.0, 1))
    sf.write(flac, np.stack([x, 0.5 * x], axis=1), 44100, subtype="PCM_16")
    return model, wav, flac, lib


@pytest.fixture(autouse=True)
def engine_lib(setup, monkeypatch):
    monkeypatch.setenv("BIFSMN_LIB", str(setup[3]))


def test_events_are_bifsmn_infer_streams(setup):
    model, wav, _, _ = setup
    done = subprocess.run(
        [BUILD_DIR / "bifsmn-infer", "--stream", *BUSY_ARGS, model, wav], capture_output=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    want = [json.loads(line) for line in done.stdout.decode().splitlines()]
    assert len(want) >= 5 and want[-1]["time"] > 0
    result = invoke_cli("detect", str(model), str(wav), *BUSY_ARGS, "--json")
    assert result.returncode == 0, result.stderr
    (got,) = json.loads(result.stdout)
    assert got["file"] == str(wav) and got["seconds"] == 12.0 and got["converted"] == []
    assert [(e["time"], e["keyword"]) for e in got["events"]] == [(w["time"], w["keyword"]) for w in want]
    np.testing.assert_allclose([e["score"] for e in got["events"]], [w["score"] for w in want], atol=2e-6)
    text = invoke_cli("detect", str(model), str(wav), *BUSY_ARGS)
    lines = text.stdout.strip().splitlines()
    assert lines[0] == f"{wav}  (12.00 s; {len(want)} events)" and len(lines) == 1 + len(want)
    first = lines[1].split()
    assert first[0] == f"{want[0]['time']:.3f}" and first[2] == want[0]["keyword"]


def test_converted_file_and_out(setup, tmp_path):
    model, wav, flac, lib = setup
    (r,) = detect(model, [flac], BUSY, stride=2)
    assert r.converted == ["resampled from 44100 Hz", "downmixed"] and r.seconds == pytest.approx(6.0)
    with Engine.load(model, Library(lib)) as engine, Stream(engine, BUSY, stride=2) as s:
        s.push(to_int16(load_audio(flac, RATE)[0]))
        s.finish()
        assert r.events == s.events and len(s.events) >= 2
    out = tmp_path / "events.json"
    result = invoke_cli("detect", str(model), str(wav), str(flac), *BUSY_ARGS, "--json", "--out", str(out))
    assert result.returncode == 0 and result.stdout == "", result.stderr
    written = json.loads(out.read_text())
    assert [w["file"] for w in written] == [str(wav), str(flac)]
    assert [e["keyword"] for e in written[1]["events"]] == [e.keyword for e in r.events]


def test_thresholds():
    assert parse_thresholds([]) == (None, {})
    assert parse_thresholds(["0.9", "yes=0.7", "_silence_=0.95"]) == (0.9, {"yes": 0.7, "_silence_": 0.95})
    for bad in ("0", "x", "=0.5", "yes=", "yes=-1", "nan"):
        with pytest.raises(UserError, match=f"--threshold: expected T in .*, got '{bad}'"):
            parse_thresholds([bad])
    with pytest.raises(UserError, match="two common thresholds"):
        parse_thresholds(["0.9", "0.8"])


def test_bad_input_one_line_nothing_written(setup, tmp_path):
    model, wav, _, _ = setup
    junk = tmp_path / "junk.wav"
    junk.write_bytes(b"not audio at all")
    out = tmp_path / "events.txt"
    result = invoke_cli("detect", str(model), str(wav), str(junk), "--out", str(out))
    assert_user_error(result, "junk.wav", "cannot decode")
    assert not out.exists() and result.stdout == ""  # the good first file left nothing behind
    assert_user_error(invoke_cli("detect", str(model), str(tmp_path / "missing.wav")), "missing.wav")
    assert_user_error(invoke_cli("detect", str(tmp_path / "none.bfsm"), str(wav)), "none.bfsm")
    assert_user_error(invoke_cli("detect", str(wav), str(wav)), "long.wav", "not a .bfsm")
    assert_user_error(
        invoke_cli("detect", str(model), str(wav), "--threshold", "maybe=0.5"), "no class 'maybe'"
    )
    assert_user_error(invoke_cli("detect", str(model), str(wav), "--threshold", "1.5"), "threshold: 1.5")
    assert_user_error(invoke_cli("detect", str(model), str(wav), "--stride", "0"), "stride: 0 hops")
    assert_user_error(invoke_cli("detect", str(model), str(wav), "--rearm", "2"), "rearm: 2")
    assert_user_error(invoke_cli("detect", str(model), str(wav), "--edge", "mirror"), "edge: expected")
    assert_user_error(
        invoke_cli("detect", str(model), str(wav), "--out", str(tmp_path / "no" / "x.json")), "--out: "
    )
    empty = tmp_path / "empty.wav"
    sf.write(empty, np.zeros(0, np.int16), RATE, subtype="PCM_16")
    assert_user_error(invoke_cli("detect", str(model), str(empty)), "empty.wav", "empty")

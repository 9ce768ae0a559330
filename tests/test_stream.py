"""The streaming engine (csrc/src/stream.c, detector.c) through its binding (bifsmn_cli.engine.stream) and
`bifsmn-infer --stream`, on a small random-weight D-FSMN at the project's default front end (2048-point FFT,
hop 512, 32 frames):

- the same events and posteriors for pushes of 1, 7, 512 and all samples, in both edge modes;
- finish evaluates the end of the audio (a window only it runs fires), exactly as pushing silence would;
- every run's posteriors are the softmax of the network's scores on the features the stream holds;
- the incremental features equal the clip front end's where a frame does not reach past the window (all of them
  with edge="reflect");
- the detector fires the same keyword twice when it is spoken twice (TensorFlow's rule would not);
- the CLI on a WAV file and on raw PCM through a real pipe gives the binding's events; bad input (another rate,
  stereo, an odd byte count, a terminal, bad options) gets one line and an exit status, a closed output pipe
  a clean end; --bench --stream reports the cost;
- the stream API and the CLI under ASan + UBSan (the host-debug preset), with the C test of csrc/tests/.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from helpers import BUILD_DIR, BUSY, BUSY_ARGS, STREAM_CLASSES, busy_signal, stream_model

from bifsmn_cli.audio.config import FrontEndConfig
from bifsmn_cli.engine import build as engine_build
from bifsmn_cli.engine.binding import Engine
from bifsmn_cli.engine.stream import Detector, DetectorSettings, Stream
from bifsmn_cli.errors import UserError
from bifsmn_cli.export.lowering import export_student
from bifsmn_cli.nn.config import ModelConfig
from bifsmn_cli.nn.dfsmn import DFSMN

CLASSES = STREAM_CLASSES
RATE, CLIP, HOP = 16000, 16000, 512


@pytest.fixture(scope="module")
def model_path(lib, tmp_path_factory) -> Path:
    """The model file; asking for `lib` first builds the engine and bifsmn-infer from the current sources."""
    return stream_model(tmp_path_factory.mktemp("stream") / "tiny_1x.bfsm")


@pytest.fixture
def engine(lib, model_path) -> Engine:
    with lib.load(model_path) as e:
        yield e


def run_stream(engine: Engine, x: np.ndarray, chunk: int | None, finish: bool = False, **kwargs) -> Stream:
    s = Stream(engine, posteriors=True, **kwargs)
    step = chunk or x.size
    for i in range(0, x.size, step):
        s.push(x[i : i + step])
    if finish:
        s.finish()
    return s


@pytest.mark.parametrize("edge", ["audio", "reflect"])
def test_same_events_and_posteriors_whatever_the_chunking(engine, edge):
    x = busy_signal(4.0)
    whole = run_stream(engine, x, None, detector=BUSY, stride=2, edge=edge)
    assert len(whole.events) >= 3 and len(whole.posteriors) > 50
    times = [t for t, _ in whole.posteriors]
    assert np.all(np.diff(times) == 2 * HOP) and times[0] > 0
    for chunk in (1, 7, 512):
        part = run_stream(engine, x, chunk, detector=BUSY, stride=2, edge=edge)
        assert part.position == x.size
        assert part.events == whole.events, chunk
        assert [t for t, _ in part.posteriors] == times
        np.testing.assert_array_equal(
            np.stack([p for _, p in part.posteriors]), np.stack([p for _, p in whole.posteriors])
        )


def test_finish_evaluates_the_end_of_the_audio(engine):
    """3 s of silence ending in a 0.3-s noise burst: the random model's "no" passes 0.6 only in a window that
    reaches past the audio, so it fires only when the stream is finished; finish equals pushing silence, runs
    up to the first window ending half a clip past the audio, and does not depend on the chunking."""
    rng = np.random.default_rng(0)
    x = np.zeros(3 * RATE, np.int16)
    x[-4800:] = np.clip(0.3 * rng.standard_normal(4800) * 32767, -32768, 32767).astype(np.int16)
    only_no = DetectorSettings(thresholds={"no": 0.6}, average_ms=0.0)
    s = run_stream(engine, x, None, detector=only_no, stride=4)
    assert s.events == [] and s.posteriors[-1][0] <= x.size - s.latency
    pushed = len(s.posteriors)
    fired = s.finish()
    assert [e.keyword for e in fired] == ["no"] and fired[0].time > x.size
    times = [t for t, _ in s.posteriors]
    assert times[-1] >= x.size + CLIP // 2 > times[-2] and len(times) > pushed
    assert s.position == x.size and s.finish() == [] and len(s.posteriors) == len(times)
    with pytest.raises(UserError, match="stream push: "):
        s.push(x[:10])
    # the same as pushing the silence, and as finishing after pushes of 7 samples
    silent = run_stream(
        engine, np.concatenate([x, np.zeros(CLIP, np.int16)]), None, detector=only_no, stride=4
    )
    assert silent.events == s.events
    np.testing.assert_array_equal(
        np.stack([p for _, p in silent.posteriors[: len(times)]]), np.stack([p for _, p in s.posteriors])
    )
    pieces = run_stream(engine, x, 7, finish=True, detector=only_no, stride=4)
    assert pieces.events == s.events and [t for t, _ in pieces.posteriors] == times
    s.reset()
    assert s.push(x) == [] and s.position == x.size


def softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z.astype(np.float64) - z.max())
    return e / e.sum()


@pytest.mark.parametrize("edge", ["audio", "reflect"])
def test_posteriors_and_features_match_the_clip_engine(engine, edge):
    """Pushed one run period at a time, the last posteriors are the network's on the held features, and those
    equal the clip front end's on the window's audio (interior frames; all frames with reflect padding)."""
    x, stride = busy_signal(3.0, seed=1), 3
    s = Stream(engine, stride=stride, edge=edge, posteriors=True)
    period, n_frames = stride * HOP, engine.feature_shape[1]
    edges = [t for t in range(n_frames) if t * HOP - 1024 < 0 or t * HOP + 1024 > CLIP]
    assert edges == [0, 1, 30, 31]
    differ = 0
    for i in range(0, x.size - period + 1, period):
        s.push(x[i : i + period])
        if not s.posteriors:
            continue
        end, p = s.posteriors[-1]
        assert 0 <= i + period - end - s.latency < HOP  # end + latency, up to the hop grid
        held = s.features()
        np.testing.assert_allclose(softmax(engine.run_features(held)), p, atol=1e-6)
        audio = np.concatenate([np.zeros(max(0, CLIP - end), np.int16), x[max(0, end - CLIP) : end]])
        clip = engine.features_pcm(audio)
        interior = [t for t in range(n_frames) if t not in edges]
        np.testing.assert_array_equal(held[:, interior], clip[:, interior])
        if edge == "reflect":
            np.testing.assert_array_equal(held, clip)
        else:
            differ += int(np.any(held[:, edges] != clip[:, edges]))
    assert len(s.posteriors) > 20
    if edge == "audio":
        assert differ > len(s.posteriors) // 2  # real neighbouring audio, not the mirrored clip
    assert s.latency == (896 if edge == "audio" else 0)


def test_top_db_clamps_each_window_like_a_clip(lib, tmp_path):
    """A model whose front end clamps at max - top_db: the stream clamps each window, so with reflect-padded
    edges its features are the clip front end's, clamp included."""
    torch.manual_seed(4)
    cfg = ModelConfig(
        num_classes=len(CLASSES), num_blocks=1, stem_channels=2, backbone_size=16, hidden_size=16
    )
    path = tmp_path / "top_db.bfsm"
    export_student(DFSMN(cfg, "bifsmn", ("1x",)).eval(), "1x", CLASSES, FrontEndConfig(top_db=30.0), path)
    x = busy_signal(2.5, seed=5)
    with lib.load(path) as e:
        s = Stream(e, stride=8, edge="reflect", posteriors=True)
        period, compared, clamped = 8 * HOP, 0, 0
        for i in range(0, x.size - period + 1, period):
            s.push(x[i : i + period])
            if s.posteriors and s.posteriors[-1][0] >= CLIP:  # a window of pushed audio only
                end, held = s.posteriors[-1][0], s.features()
                np.testing.assert_array_equal(held, e.features_pcm(x[end - CLIP : end]))
                compared += 1
                clamped += int(np.isclose(held.min(), held.max() - 30.0, atol=1e-4))
        assert compared >= 5 and clamped > 0
    with pytest.raises(UserError, match="expected int16 PCM samples, got float32"):
        s.push(np.zeros(4, np.float32))


def test_the_same_keyword_spoken_twice_fires_twice(engine):
    """yes - pause - yes: two events (TensorFlow's RecognizeCommands would fire once: same label); a dip
    that does not fall below rearm * threshold gives none; the refractory time holds a different keyword."""
    d = Detector(engine, DetectorSettings(threshold=0.8, average_ms=0.0, refractory_ms=300.0, rearm=0.5))
    rows = {"yes": [0.95, 0, 0, 0.05, 0], "no": [0, 0.95, 0, 0.05, 0], "pause": [0.05, 0, 0, 0.95, 0]}
    dip = [0.5, 0, 0, 0.5, 0]  # yes averages 0.5 >= rearm * threshold = 0.4: a disarmed yes stays disarmed
    script = ["yes", "yes", "pause", "pause", "yes", "no", "no", "no", "pause", dip, "yes", dip, "yes"]
    posteriors = np.array([rows[r] if isinstance(r, str) else r for r in script], dtype=np.float32)
    times = 2048 * (1 + np.arange(len(script)))  # stride 4: 128 ms apart
    events = d.run(times, posteriors)
    # yes; the pause re-arms it: yes again; "no" waits out the 300 ms refractory (runs 5, 6: 128, 256 ms);
    # the dip after the last yes does not re-arm it
    assert [(e.keyword, e.time) for e in events] == [
        ("yes", 2048),
        ("yes", 10240),
        ("no", 16384),
        ("yes", 22528),
    ]
    assert all(abs(e.score - 0.95) < 1e-6 for e in events)


def write_wav(path: Path, x: np.ndarray, rate: int = RATE, channels: int = 1) -> Path:
    data = np.stack([x] * channels, axis=1) if channels > 1 else x
    sf.write(path, data, rate, subtype="PCM_16")
    return path


def infer(*args: str | Path, stdin: bytes | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        [BUILD_DIR / "bifsmn-infer", *map(str, args)], input=stdin, capture_output=True, timeout=timeout
    )


def lines(out: bytes) -> list[dict]:
    return [json.loads(line) for line in out.decode().splitlines()]


def test_cli_on_a_file_and_on_a_pipe_gives_the_bindings_events(engine, model_path, tmp_path):
    x = busy_signal(5.0, seed=2)
    wav = write_wav(tmp_path / "long.wav", x)
    finished = run_stream(engine, x, None, finish=True, detector=BUSY, stride=2)
    want = finished.events  # the end of the input finishes the stream
    assert len(want) >= 3
    done = infer("--stream", *BUSY_ARGS, model_path, wav)
    assert done.returncode == 0 and done.stderr == b"", done.stderr
    got = lines(done.stdout)
    assert [set(e) for e in got] == [{"time", "keyword", "score"}] * len(want)
    assert [(round(e["time"] * RATE), e["keyword"]) for e in got] == [(e.time, e.keyword) for e in want]
    np.testing.assert_allclose([e["score"] for e in got], [e.score for e in want], atol=1e-6)
    # raw PCM through a real pipe, written in uneven pieces (odd sizes split samples across reads)
    proc = subprocess.Popen(
        [BUILD_DIR / "bifsmn-infer", "--stream", *BUSY_ARGS, model_path, "-"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    raw, rng, i = x.astype("<i2").tobytes(), np.random.default_rng(0), 0
    while i < len(raw):
        step = int(rng.integers(1, 5000))
        proc.stdin.write(raw[i : i + step])
        proc.stdin.flush()
        i += step
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0 and err == b"", err
    assert out == done.stdout
    posteriors = lines(infer("--stream", "--posteriors", *BUSY_ARGS, model_path, wav).stdout)
    runs = [p for p in posteriors if "posteriors" in p]
    assert [round(p["time"] * RATE) for p in runs] == [t for t, _ in finished.posteriors]
    assert runs[-1]["time"] * RATE >= x.size + CLIP // 2 and set(runs[0]["posteriors"]) == set(CLASSES)
    assert len(posteriors) - len(runs) == len(want)


def assert_one_line(done: subprocess.CompletedProcess, status: int, *fragments: str) -> None:
    err = done.stderr.decode()
    assert done.returncode == status, (done.returncode, err)
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    for fragment in fragments:
        assert fragment in err, (fragment, err)


def test_cli_bad_input_gets_one_line(model_path, tmp_path):
    x = busy_signal(1.0)
    slow = write_wav(tmp_path / "8k.wav", x[::2], rate=8000)
    assert_one_line(
        infer("--stream", model_path, slow), 1, f"{slow}: 1 channel(s) at 8000 Hz", "needs mono at 16000"
    )
    stereo = write_wav(tmp_path / "stereo.wav", x, channels=2)
    assert_one_line(infer("--stream", model_path, stereo), 1, "2 channel(s) at 16000 Hz")
    odd = x.astype("<i2").tobytes() + b"\x01"
    assert_one_line(
        infer("--stream", model_path, "-", stdin=odd), 1, "-: the input ended inside a sample", "32001 bytes"
    )
    assert_one_line(infer("--stream", model_path, tmp_path / "missing.wav"), 1, "missing.wav")
    for args, fragment in [
        (["--stride", "0"], "--stride needs a positive number of hops, got '0'"),
        (["--threshold", "1.5"], "--threshold needs a number in (0, 1] or CLASS=T, got '1.5'"),
        (["--threshold", "maybe=0.5"], "no class 'maybe' (classes: yes, no, up, _silence_, _unknown_)"),
        (["--edge", "sideways"], "--edge needs audio or reflect, got 'sideways'"),
        (["--rearm", "x"], "--rearm needs a number in [0, 1], got 'x'"),
    ]:
        assert_one_line(infer("--stream", *args, model_path, "-", stdin=b""), 2, fragment)
    assert_one_line(infer("--stream", "--rearm"), 2, "--rearm needs a value")
    two = infer("--stream", model_path, slow, slow)
    assert two.returncode == 2 and b"--stream takes one input" in two.stderr
    empty = infer("--stream", model_path, "-", stdin=b"")
    assert empty.returncode == 0 and empty.stdout == b"" and empty.stderr == b""


def test_cli_terminal_input_and_closed_output(model_path, tmp_path):
    main, secondary = os.openpty()
    try:
        done = subprocess.run(
            [BUILD_DIR / "bifsmn-infer", "--stream", model_path, "-"],
            stdin=secondary,
            capture_output=True,
            timeout=60,
        )
    finally:
        os.close(main)
        os.close(secondary)
    assert_one_line(done, 2, "standard input is a terminal", "arecord -t raw -f S16_LE -r 16000 -c 1")
    # a reader that goes away after one line: a quiet, successful end, not a crash or a hang
    wav = write_wav(tmp_path / "long.wav", busy_signal(20.0))
    proc = subprocess.Popen(
        [BUILD_DIR / "bifsmn-infer", "--stream", "--posteriors", "--stride", "1", model_path, wav],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert json.loads(proc.stdout.readline())["time"] > 0
    proc.stdout.close()
    assert proc.wait(timeout=60) == 0
    assert proc.stderr.read() == b""


def test_bench_stream_reports_the_cost_of_a_stream(model_path, tmp_path):
    wav = write_wav(tmp_path / "clip.wav", busy_signal(1.0))
    done = infer(
        "--bench", "3", "--warmup", "1", "--stream", "--bench-seconds", "2", "--stride", "4", model_path, wav
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    stream = report["stream"]
    per_hop, rtf = stream.pop("cpu_ns_per_hop"), stream.pop("real_time_factor")
    assert stream == {
        "stride": 4,
        "edge_frames": "audio",
        "sample_rate": RATE,
        "audio_samples": 2 * RATE,
        "hop_samples": HOP,
        "network_runs": len(range(4 * HOP, 2 * RATE + 1, 4 * HOP)),
        "latency_samples": 896,
    }
    cpu = sorted(report["stream_cpu_ns"])
    assert len(report["stream_ns"]) == len(cpu) == 3 and cpu[0] > 0
    assert per_hop == pytest.approx(cpu[1] / (2 * RATE / HOP), rel=1e-3)
    assert rtf == pytest.approx(cpu[1] / 2e9, rel=1e-2)


def test_bad_settings_through_the_binding(engine):
    with pytest.raises(UserError, match=r"stream settings: stride: 0 hops is outside \[1, 2048\]"):
        Stream(engine, stride=0)
    with pytest.raises(UserError, match="thresholds: .* has no class 'maybe'"):
        Stream(engine, DetectorSettings(thresholds={"maybe": 0.5}))
    with pytest.raises(UserError, match="stream settings: rearm: 2 is outside"):
        Stream(engine, DetectorSettings(rearm=2.0))
    with pytest.raises(UserError, match="edge: expected one of audio, reflect"):
        Stream(engine, edge="mirror")
    s = Stream(engine)
    s.close()
    with pytest.raises(UserError, match="the stream is closed"):
        s.push(np.zeros(10, np.int16))


def test_stream_under_asan_and_ubsan(model_path, tmp_path):
    """The host-debug preset (ASan + UBSan, no recovery): the C stream test, and bifsmn-infer --stream on a
    file and on an uneven pipe in both edge modes, with the release build's output."""
    build_dir, log = tmp_path / "debug", tmp_path / "build.log"
    engine_build.configure("host-debug", build_dir, log)
    engine_build.build(build_dir, log, 2, targets=["bifsmn-infer", "test_stream"])
    c_test = subprocess.run([build_dir / "test_stream"], capture_output=True, text=True, timeout=300)
    assert c_test.returncode == 0 and "test_stream: all checks passed" in c_test.stdout, c_test.stderr[-3000:]
    x = busy_signal(3.0, seed=4)
    wav = write_wav(tmp_path / "s.wav", x)
    for edge in ("audio", "reflect"):
        args = ["--stream", "--posteriors", "--edge", edge, *BUSY_ARGS, str(model_path)]
        want = infer(*args, wav).stdout
        for source, stdin in ((wav, None), ("-", x.astype("<i2").tobytes())):
            done = subprocess.run(
                [build_dir / "bifsmn-infer", *args, str(source)],
                input=stdin,
                capture_output=True,
                timeout=300,
            )
            assert done.returncode == 0 and done.stderr == b"", done.stderr.decode()[-3000:]
            assert done.stdout == want

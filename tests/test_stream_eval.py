"""Streaming evaluation (bifsmn_cli/stream_eval, bifsmn_cli/bench/streaming.py) on synthetic data:

- the stream builder: TensorFlow's word schedule (one word per 3 s, at a random offset in the first 2), labels at
  the clips' starts, 30 % non-keywords, no silence clips, background volume bounds, deterministic per seed, the
  same samples however a stream is rendered in blocks;
- TensorFlow's matched / correct / wrong / false-positive figures and our found / false-alarm counts on a
  hand-made label and detection list with known values;
- false alarms per hour, the DET curve and its 1-per-hour point from the C detector on a synthetic posterior
  sequence with known answers;
- bench's streaming section on a tiny model: its figures consistent with each other (the default threshold's
  events are the sweep's at that threshold), the cost from bifsmn-infer --bench --stream.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from helpers import BUILD_DIR

from bifsmn_cli.audio.config import FrontEndConfig
from bifsmn_cli.bench import streaming
from bifsmn_cli.engine.stream import Detector, DetectorSettings
from bifsmn_cli.errors import UserError
from bifsmn_cli.export.lowering import export_student
from bifsmn_cli.nn.config import ModelConfig
from bifsmn_cli.nn.dfsmn import DFSMN
from bifsmn_cli.stream_eval import det, scoring, streams

RATE = 16000
CLASSES = ["_silence_", "_unknown_", "yes", "no"]
CODES = {"_silence_": 4000, "_unknown_": 3000, "yes": 1000, "no": 2000}  # each clip a constant sample value


def coded_clips() -> tuple[np.ndarray, np.ndarray]:
    labels = np.array([0, 1, 1, 2, 2, 2, 3, 3])
    waves = np.stack([np.full(RATE, CODES[CLASSES[i]], np.int16) for i in labels])
    return waves, labels


def test_stream_schedule_labels_and_non_keywords():
    waves, labels = coded_clips()
    s = streams.build(waves, labels, CLASSES, [], seconds=3000, seed=5)
    x = s.render()
    assert x.size == 3000 * RATE and s.notes == ["no background noises: the words lie in digital silence"]
    words = len(s.labels) + s.non_keywords
    assert words == 1000  # one per 3 s
    assert 0.25 < s.non_keywords / words < 0.35  # 30 %
    for label in s.labels:  # in its slot, its clip's samples right after the fade-in
        assert label.start % (3 * RATE) < 2 * RATE
        assert x[label.start + 1000] == CODES[label.keyword] and x[label.start - 1] == 0
    assert {lb.keyword for lb in s.labels} == {"yes", "no"}
    values = set(np.unique(x).tolist())
    assert CODES["_unknown_"] in values and CODES["_silence_"] not in values
    assert np.count_nonzero(x == CODES["_unknown_"]) > s.non_keywords * 15000  # unlabelled, but mixed in
    same = streams.build(waves, labels, CLASSES, [], seconds=3000, seed=5)
    assert same.labels == s.labels and np.array_equal(same.render(), x)
    assert streams.build(waves, labels, CLASSES, [], seconds=3000, seed=6).labels != s.labels
    fa = streams.build(waves, labels, CLASSES, [], seconds=300, seed=5, unknown_fraction=1.0)
    assert fa.labels == [] and fa.non_keywords == 100


def test_background_volume_and_blocks():
    waves, labels = coded_clips()
    ones = [np.ones(5 * RATE, np.float32), -np.ones(3 * RATE, np.float32)]
    s = streams.build(waves[:1], labels[:1], CLASSES, ones, seconds=60, seed=1, unknown_fraction=1.0)
    assert s.labels == [] and s.non_keywords == 0  # only a silence clip: nothing placed
    assert s.notes == ["no _unknown_ clips in the split: the non-keyword slots stay empty"]
    # overlapping segments (1.5 s every 1 s) each contribute at most the volume bound
    x = s.render()
    assert 0 < np.abs(x).max() <= 2 * 0.1 * 32768 + 1
    per_second = [np.abs(x[i * RATE + 6000 : i * RATE + 14000]).max() for i in range(60)]
    assert len(set(per_second)) > 30  # a random volume per segment
    block = np.concatenate([s.render(i, i + 7 * RATE + 13) for i in range(0, x.size, 7 * RATE + 13)])
    assert np.array_equal(block, x) and np.array_equal(np.concatenate(list(s.chunks(11.0))), x)
    with pytest.raises(UserError, match="no keyword clips"):
        streams.build(waves[:2], labels[:2], CLASSES, ones, seconds=60, seed=1)


def test_tensorflow_stats_and_score_by_hand():
    T = scoring.Timed
    labels = [T("yes", 1000), T("no", 4000), T("yes", 7000), T("up", 10000)]
    detections = [
        T("yes", 1200),
        T("yes", 1500),
        T("yes", 4300),
        T("no", 4600),
        T("yes", 6250),
        T("up", 8000),
    ]
    detections.append(T("up", 9300))
    tf = scoring.tensorflow_stats(labels, detections, 750.0)
    # 1200 correct; 1500 the same label again: wrong; 4300 the wrong keyword; 4600 a label already matched:
    # wrong; 6250 exactly at the tolerance: correct; 8000 nothing within 750 ms: false positive; 9300 correct
    assert tf == {
        "labels": 4,
        "matched": 6,
        "correct": 3,
        "wrong": 3,
        "false_positive": 1,
        "matched_pct": 150.0,
        "correct_pct": 75.0,
        "wrong_pct": 75.0,
        "false_positive_pct": 25.0,
    }
    s = scoring.score(labels, detections, 750.0)
    assert (s.labels, s.found, s.false_alarms, s.false_rejection_rate) == (4, 4, 3, 0.0)  # "no" at 4600 finds
    assert scoring.score(labels, detections, 250.0) == scoring.Score(4, 1, 6)  # only 1200 is that close
    # the first label within the tolerance is the match, even when a later one has the detection's keyword
    assert scoring.score([T("yes", 1800), T("no", 3000)], [T("no", 2500)], 750.0) == scoring.Score(2, 0, 1)
    assert scoring.tensorflow_stats([], detections)["correct_pct"] is None
    assert scoring.window_start_ms(48000, 16000, 16000) == 2000.0


@pytest.fixture(scope="module")
def engine(lib, tmp_path_factory):
    torch.manual_seed(0)
    cfg = ModelConfig(
        num_classes=len(CLASSES), num_blocks=1, stem_channels=2, backbone_size=16, hidden_size=16
    )
    path = tmp_path_factory.mktemp("stream_eval") / "tiny.bfsm"
    export_student(DFSMN(cfg, "bifsmn", ("1x",)).eval(), "1x", CLASSES, FrontEndConfig(), path)
    with lib.load(path) as e:
        yield e


def test_det_curve_on_a_known_posterior_sequence(engine):
    """Keyword stream (60 s): yes at 10 s (peak 0.95), no at 20 s (0.7), yes at 30 s (never), an unlabelled yes
    peak (0.85) at 45 s; false-alarm stream (60 s): a no peak (0.6). One run every 128 ms; a peak is the one run
    whose window starts at its time. 2 minutes of audio: one false alarm is 30 per hour."""
    period = 4 * 512

    def sequence(peaks: dict[float, tuple[str, float]]) -> tuple[np.ndarray, np.ndarray]:
        times = np.arange(1, 60 * RATE // period + 1, dtype=np.int64) * period
        p = np.tile(np.array([0.96, 0.0, 0.02, 0.02], np.float32), (len(times), 1))
        for start, (word, score) in peaks.items():
            i = int(np.searchsorted(times, start * RATE + RATE))  # the window [start, start + 1 s)
            p[i] = 0.0
            p[i, CLASSES.index(word)], p[i, 0] = score, 1.0 - score
        return times, p

    runs = [
        sequence({10.0: ("yes", 0.95), 20.0: ("no", 0.7), 45.0: ("yes", 0.85)}),
        sequence({30.0: ("no", 0.6)}),
    ]
    labels = [scoring.Timed("yes", 10000.0), scoring.Timed("no", 20000.0), scoring.Timed("yes", 30000.0)]
    evaluated = [det.Evaluated(labels, 60.0), det.Evaluated([], 60.0)]

    def detect(threshold: float, i: int) -> list[scoring.Timed]:
        d = Detector(engine, DetectorSettings(threshold=threshold, average_ms=0.0), 4)
        return [
            scoring.Timed(e.keyword, scoring.window_start_ms(e.time, RATE, RATE)) for e in d.run(*runs[i])
        ]

    points = det.curve(detect, evaluated, [0.99, 0.5, 0.65, 0.8, 0.9], tolerance_ms=750.0)
    got = [(p["threshold"], p["found"], p["false_alarms"], p["false_alarms_per_hour"]) for p in points]
    assert got == [
        (0.5, 2, [1, 1], 60.0),
        (0.65, 2, [1, 0], 30.0),
        (0.8, 1, [1, 0], 30.0),
        (0.9, 1, [0, 0], 0.0),
        (0.99, 0, [0, 0], 0.0),
    ]
    assert [p["false_rejection_rate"] for p in points] == pytest.approx([1 / 3, 1 / 3, 2 / 3, 2 / 3, 1.0])
    assert det.operating_point(points, 1.0)["threshold"] == 0.9
    assert det.operating_point(points, 30.0)["threshold"] == 0.65  # fewest missed, then the lowest threshold
    assert det.operating_point(points[:3], 1.0) is None


def test_bench_section_on_a_tiny_model(engine, tmp_path):
    """measure() on a 30-s keyword stream and a 30-s false-alarm stream: counts add up, the sweep at the default
    threshold reproduces the stream's own events, the cost comes from bifsmn-infer."""
    rng = np.random.default_rng(0)
    labels = np.array([0, 1, 1, 2, 2, 3, 3, 3])
    waves = (rng.standard_normal((len(labels), RATE)) * 3000).astype(np.int16)
    split = streaming.SplitAudio(
        "validation", waves, labels, CLASSES, [rng.standard_normal(3 * RATE).astype(np.float32)]
    )
    s = streaming.Settings(seconds=30, false_alarm_seconds=30, thresholds=(0.3, 0.8, 0.99), cost_seconds=1)
    clip = tmp_path / "clip.wav"
    from bifsmn_cli.bench.latency import clip_file

    clip_file(clip, waves[2])
    files = {"1x": engine.source}
    out = streaming.measure(
        engine.lib,
        files,
        split,
        s,
        3,
        BUILD_DIR / "bifsmn-infer",
        clip,
        2,
        {"1x": 100.0},
        streaming.Qemu(reason="off"),
    )
    assert (
        out["measured"]
        and out["settings"]["stride"] == 3
        and out["qemu"] == {"measured": False, "reason": "off"}
    )
    k = out["streams"]
    assert k["split"] == "validation" and k["hours"] == pytest.approx(60 / 3600)
    assert k["keywords"]["seconds"] == 30 and k["keywords"]["keywords"] + k["keywords"]["non_keywords"] == 10
    assert k["false_alarms"]["keywords"] == 0 and k["false_alarms"]["non_keywords"] == 10
    r = out["models"]["1x"]
    assert r["network_runs"][0] >= 30 * RATE // 2048
    at_08 = next(p for p in r["det"] if p["threshold"] == 0.8)
    assert {k: v for k, v in r["default"].items() if k != "threshold"} == {
        k: v for k, v in at_08.items() if k != "threshold"
    }
    assert r["default"]["keywords"] == k["keywords"]["keywords"]
    tf = r["tensorflow"]
    assert (
        tf["correct"] + tf["wrong"] + tf["false_positive"]
        == r["default"]["found"] + sum(r["default"]["false_alarms"]) - r["default"]["false_alarms"][1]
    )
    c = r["cost"]
    assert c["stride"] == 3 and c["audio_seconds"] == 1.0 and c["runs"] == 2 * streaming.COST_REPEATS
    assert c["cpu_us_per_audio_second"] > 0 and c["real_time_factor"] == pytest.approx(
        c["cpu_us_per_audio_second"] / 1e6
    )
    assert c["clip_loop_us_per_audio_second"] == pytest.approx(100.0 * 1000 / 30)

"""Keyword-spotting metrics on a tiny confusion matrix whose values are worked out by hand."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from bifsmn_cli.bench.accuracy import compare
from bifsmn_cli.train.metrics import balanced_accuracy, kws_metrics

NAMES = ["_silence_", "_unknown_", "yes", "no"]
# rows = true, columns = predicted
CM = torch.tensor(
    [
        [9, 1, 0, 0],  # silence: 9/10, nothing fires a keyword
        [1, 4, 3, 2],  # unknown: 4/10 rejected, 5 fire a keyword
        [0, 2, 17, 1],  # yes: 17/20
        [0, 0, 10, 30],  # no: 30/40
    ]
)


def test_kws_metrics_known_values():
    m = kws_metrics(CM, NAMES)
    assert m["accuracy"] == pytest.approx(60 / 80)
    assert m["balanced_accuracy"] == pytest.approx((0.9 + 0.4 + 0.85 + 0.75) / 4)
    assert m["unknown_recall"] == pytest.approx(0.4)
    assert m["silence_recall"] == pytest.approx(0.9)
    assert m["false_accept"] == pytest.approx(5 / 20)
    assert m["unknown_false_accept"] == pytest.approx(5 / 10)
    assert m["per_class"] == pytest.approx({"_silence_": 0.9, "_unknown_": 0.4, "yes": 0.85, "no": 0.75})


def test_absent_class_is_skipped():
    cm = CM.clone()
    cm[0] = 0  # no silence clips
    assert balanced_accuracy(cm) == pytest.approx((0.4 + 0.85 + 0.75) / 3)
    m = kws_metrics(cm, NAMES)
    assert m["silence_recall"] is None
    assert m["false_accept"] == pytest.approx(5 / 10)


def test_task_without_rejection_classes():
    m = kws_metrics(CM, ["a", "b", "c", "d"], silence="_silence_", unknown="_unknown_")
    assert m["unknown_recall"] is None and m["false_accept"] is None


class _Echo(torch.nn.Module):
    """A 'model' whose top class is the first feature value of each clip."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.one_hot(x[:, 0, 0].long(), len(NAMES)).float()


class _EchoEngine:
    """A stand-in engine: top class from the first feature value, and from the first PCM sample end to end."""

    def run_features(self, f: np.ndarray) -> np.ndarray:
        return np.eye(len(NAMES))[int(f[0, 0])]

    def run_pcm(self, w: np.ndarray) -> np.ndarray:
        return np.eye(len(NAMES))[int(w[0])]


def test_bench_accuracy_reports_the_engine_e2e_rejection():
    labels = np.array([0, 1, 1, 1, 2, 3])
    predicted_features = np.array([0, 1, 1, 1, 2, 3])  # PyTorch and the engine on features: all right
    predicted_pcm = np.array([2, 1, 3, 1, 2, 2])  # end to end: silence fires yes, one unknown fires no
    features = np.zeros((6, 2, 2), np.float32)
    features[:, 0, 0] = predicted_features
    waves = np.zeros((6, 4), np.int16)
    waves[:, 0] = predicted_pcm
    r = compare(_Echo(), _EchoEngine(), features, waves, labels, NAMES)
    assert r["pytorch"] == r["engine"] == 1.0 and r["engine_e2e"] == pytest.approx(3 / 6)
    assert r["e2e_unknown_recall"] == pytest.approx(2 / 3)
    assert r["e2e_silence_recall"] == 0.0
    assert r["e2e_false_accept"] == pytest.approx(2 / 4)
    assert r["e2e_balanced_accuracy"] == pytest.approx((0 + 2 / 3 + 1 + 0) / 4)

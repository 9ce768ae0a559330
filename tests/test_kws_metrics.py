"""Keyword-spotting metrics on a tiny confusion matrix whose values are worked out by hand."""

from __future__ import annotations

import pytest
import torch

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

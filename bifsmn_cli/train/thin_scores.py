"""The thin variants side by side: each variant of a thinnable student (and the teacher) scored on validation
and test, with its parameters, MACs, binary operations, FLOPs and packed size, and the accuracy-against-FLOPs
plot. Choosing the deployable variants from these rows is the thin stage's rule."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from bifsmn_cli.data.packed import PackedSplit
from bifsmn_cli.figures import pyplot, save_png
from bifsmn_cli.nn.config import TEACHER
from bifsmn_cli.nn.counting import count_variant
from bifsmn_cli.nn.dfsmn import DFSMN
from bifsmn_cli.train.evaluate import evaluate
from bifsmn_cli.train.metrics import kws_summary


def _tensors(split: PackedSplit) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.from_numpy(split.features.copy()), torch.from_numpy(split.labels.astype("int64"))


def score(
    teacher: DFSMN, student: DFSMN, val: PackedSplit, test: PackedSplit, classes: list[str]
) -> list[dict[str, Any]]:
    """One row per model: the teacher, then every variant of the student, with validation's keyword-spotting
    figures (`kws_summary`: balanced accuracy, non-keyword recall, false accepts) beside the accuracies (test
    accuracy None without a test split)."""
    val_t, test_t = _tensors(val), _tensors(test)
    rows = []
    for name, model, variants in ((TEACHER, teacher, ["1x"]), ("student", student, list(student.variants))):
        val_acc = evaluate(model, *val_t, variants)
        test_acc = evaluate(model, *test_t, variants) if len(test_t[1]) else None
        for v in variants:
            count = count_variant(model, v)
            rows.append(
                {
                    "variant": TEACHER if name == TEACHER else v,
                    "val_accuracy": val_acc[v].accuracy,
                    **{
                        f"val_{k}": m
                        for k, m in kws_summary(val_acc[v].confusion, classes).items()
                        if k != "accuracy"
                    },
                    "test_accuracy": test_acc[v].accuracy if test_acc else None,
                    "params": count.params,
                    "real_macs": count.real_macs,
                    "binary_ops": count.binary_ops,
                    "flops": count.flops,
                    "bytes": count.bytes_fp32 if name == TEACHER else count.bytes_packed,
                }
            )
    return rows


def plot(rows: list[dict[str, Any]], path: Path) -> None:
    """Accuracy (test when there is a test split) against FLOPs, log scale, written atomically as PNG."""
    fig, ax = pyplot().subplots(figsize=(6, 4))
    for r in rows:
        accuracy = 100 * (r["test_accuracy"] if r["test_accuracy"] is not None else r["val_accuracy"])
        ax.scatter(r["flops"], accuracy, s=40, marker="s" if r["variant"] == TEACHER else "o")
        ax.annotate(r["variant"], (r["flops"], accuracy), textcoords="offset points", xytext=(5, 5))
    ax.set_xscale("log")
    ax.set_xlabel("FLOPs per 1-s clip (real MACs + binary ops / 64)")
    ax.set_ylabel("accuracy (%)")
    ax.set_title("accuracy against FLOPs")
    ax.grid(True, alpha=0.3)
    fig.tight_layout()
    save_png(fig, path)

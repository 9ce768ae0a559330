"""Classification metrics and the two plots a training stage writes (matplotlib, Agg backend, no display)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from bifsmn_cli.data.corpus import SILENCE, UNKNOWN
from bifsmn_cli.figures import pyplot, save_png


def confusion_matrix(predictions: Tensor, labels: Tensor, num_classes: int) -> Tensor:
    """(num_classes, num_classes) int64 counts; row = true class, column = predicted class."""
    flat = labels.long().cpu() * num_classes + predictions.long().cpu()
    return torch.bincount(flat, minlength=num_classes * num_classes).reshape(num_classes, num_classes)


def accuracy(confusion: Tensor) -> float:
    total = int(confusion.sum())
    return float(confusion.diagonal().sum()) / total if total else 0.0


def per_class_accuracy(confusion: Tensor) -> list[float | None]:
    """Recall of each class; None for a class absent from the labels."""
    support = confusion.sum(dim=1)
    return [float(confusion[i, i]) / int(n) if n else None for i, n in enumerate(support.tolist())]


def balanced_accuracy(confusion: Tensor) -> float:
    """Mean recall over the classes present in the labels: every class counts alike, however rare."""
    recalls = [r for r in per_class_accuracy(confusion) if r is not None]
    return sum(recalls) / len(recalls) if recalls else 0.0


def unknown_class(class_names: Sequence[str]) -> int | None:
    """The index of `_unknown_` among the classes, or None for a task without one."""
    return list(class_names).index(UNKNOWN) if UNKNOWN in class_names else None


def kws_metrics(
    confusion: Tensor, class_names: Sequence[str], silence: str = SILENCE, unknown: str = UNKNOWN
) -> dict[str, Any]:
    """What a keyword spotter's user feels: accuracy, balanced accuracy, per-class recall, how often a
    non-keyword is rejected (`unknown_recall`) and how often a non-keyword or silence fires a keyword
    (`false_accept`: predicted as any keyword class, over all non-keyword and silence clips; the same over
    non-keyword clips alone is `unknown_false_accept`). Absent classes give None."""
    names = list(class_names)
    recalls = per_class_accuracy(confusion)
    keyword = torch.tensor([n not in (silence, unknown) for n in names])
    rejectors = [names.index(n) for n in (silence, unknown) if n in names]

    def fired(rows: list[int]) -> float | None:
        block = confusion[rows]
        total = int(block.sum())
        return float(block[:, keyword].sum()) / total if total else None

    u = names.index(unknown) if unknown in names else None
    s = names.index(silence) if silence in names else None
    return {
        "accuracy": accuracy(confusion),
        "balanced_accuracy": balanced_accuracy(confusion),
        "unknown_recall": recalls[u] if u is not None else None,
        "silence_recall": recalls[s] if s is not None else None,
        "false_accept": fired(rejectors) if rejectors else None,
        "unknown_false_accept": fired([u]) if u is not None else None,
        "per_class": dict(zip(names, recalls, strict=True)),
    }


def kws_summary(confusion: Sequence[Sequence[int]], class_names: Sequence[str]) -> dict[str, float | None]:
    """`kws_metrics` of a confusion matrix given as lists, without the per-class recalls: one epoch's line."""
    metrics = kws_metrics(torch.tensor(confusion), class_names)
    del metrics["per_class"]
    return metrics


def plot_confusion(confusion: Tensor, class_names: Sequence[str], path: Path, title: str = "") -> None:
    """Row-normalised confusion matrix with counts, written atomically as PNG."""
    plt = pyplot()

    cm = confusion.double()
    norm = cm / cm.sum(dim=1, keepdim=True).clamp_min(1)
    n = len(class_names)
    fig, ax = plt.subplots(figsize=(1.0 + 0.55 * n, 0.8 + 0.5 * n))
    ax.imshow(norm.numpy(), cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(n), class_names, rotation=60, ha="right")
    ax.set_yticks(range(n), class_names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    for i in range(n):
        for j in range(n):
            if confusion[i, j]:
                color = "white" if norm[i, j] > 0.5 else "black"
                ax.text(j, i, int(confusion[i, j]), ha="center", va="center", fontsize=7, color=color)
    ax.set_title(title or f"accuracy {accuracy(confusion):.2%}")
    fig.tight_layout()
    save_png(fig, path, dpi=110)


def plot_history(history: Sequence[Mapping[str, Any]], path: Path, title: str = "") -> None:
    """Training loss and validation accuracy per variant against the epoch, written atomically as PNG."""
    plt = pyplot()

    epochs = [h["epoch"] + 1 for h in history]
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 4))
    ax_loss.plot(epochs, [h["train_loss"] for h in history], marker=".")
    ax_loss.set_xlabel("epoch")
    ax_loss.set_ylabel("training loss")
    ax_loss.grid(alpha=0.3)
    variants = list(history[0]["val_accuracy"]) if history else []
    for v in variants:
        ax_acc.plot(epochs, [100 * h["val_accuracy"][v] for h in history], marker=".", label=v)
    ax_acc.set_xlabel("epoch")
    ax_acc.set_ylabel("validation accuracy (%)")
    ax_acc.grid(alpha=0.3)
    if variants:
        ax_acc.legend()
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    save_png(fig, path, dpi=110)

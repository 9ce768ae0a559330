"""Classification metrics and the two plots a training stage writes (matplotlib, Agg backend, no display)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

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

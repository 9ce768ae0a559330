"""The training loop (checkpoint, resume, data parallel), metrics and plots."""

from bifsmn_cli.train.loop import (
    EvalResult,
    Split,
    TrainConfig,
    TrainData,
    TrainResult,
    evaluate,
    resolve_device,
    train,
)
from bifsmn_cli.train.metrics import (
    accuracy,
    confusion_matrix,
    per_class_accuracy,
    plot_confusion,
    plot_history,
)

__all__ = [
    "EvalResult",
    "Split",
    "TrainConfig",
    "TrainData",
    "TrainResult",
    "accuracy",
    "confusion_matrix",
    "evaluate",
    "per_class_accuracy",
    "plot_confusion",
    "plot_history",
    "resolve_device",
    "train",
]

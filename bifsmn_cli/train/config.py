"""The settings of a training run (the `train_teacher:` and `distill:` sections); torch-free, so that reading a
pipeline (its schema is derived from this dataclass) loads no torch."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class TrainConfig:
    epochs: int = field(default=30, metadata={"min": 1, "help": "passes over the training set"})
    batch_size: int = field(default=96, metadata={"min": 2, "help": "global batch size"})
    optimizer: str = field(
        default="sgd", metadata={"choices": ("sgd", "adamw"), "help": "sgd (momentum) or adamw"}
    )
    lr: float = field(default=0.02, metadata={"min": 0.0, "help": "peak learning rate"})
    momentum: float = field(default=0.9, metadata={"min": 0.0, "max": 1.0, "help": "SGD momentum (Nesterov)"})
    weight_decay: float = field(
        default=1e-4, metadata={"min": 0.0, "help": "on conv/linear weights only (not BN, bias, PReLU)"}
    )
    schedule: str = field(
        default="cosine", metadata={"choices": ("cosine", "constant"), "help": "lr after warm-up"}
    )
    warmup_epochs: float = field(default=1.0, metadata={"min": 0.0, "help": "linear warm-up length"})
    label_smoothing: float = field(
        default=0.0, metadata={"min": 0.0, "max": 0.5, "help": "cross-entropy smoothing"}
    )
    grad_clip: float = field(
        default=5.0, metadata={"min": 0.0, "help": "max gradient norm; 0 disables clipping"}
    )
    variant_weights: list[float] = field(
        default_factory=list, metadata={"help": "loss weight per trained variant; empty = the depth ratios"}
    )
    kd_weight: float = field(
        default=0.0,
        metadata={
            "min": 0.0,
            "help": "weight of the teacher-logit distillation (KL) added to each variant's CE",
        },
    )
    kd_temperature: float = field(
        default=1.0, metadata={"min": 0.1, "help": "softmax temperature of that KL"}
    )
    select: str = field(
        default="balanced_accuracy",
        metadata={
            "choices": ("accuracy", "balanced_accuracy"),
            "help": "validation metric of the 1x variant that picks the best epoch (balanced: rejection counts "
            "as much as each keyword, so a rarer class cannot be traded for 0.1 point of accuracy)",
        },
    )
    select_tolerance: float = field(
        default=0.01,
        metadata={
            "min": 0.0,
            "max": 1.0,
            "help": "an epoch with ordered variants (1x >= 0.5x >= 0.25x) is preferred only within this of the best",
        },
    )
    oversample_unknown: float = field(
        default=1.0,
        metadata={"min": 1.0, "help": "times each _unknown_ clip appears per epoch (2.5 = 2 or 3)"},
    )
    spec_time_masks: int = field(default=0, metadata={"min": 0, "help": "SpecAugment time masks per clip"})
    spec_time_width: int = field(default=0, metadata={"min": 0, "help": "max frames per time mask"})
    spec_freq_masks: int = field(
        default=0, metadata={"min": 0, "help": "SpecAugment frequency masks per clip"}
    )
    spec_freq_width: int = field(default=0, metadata={"min": 0, "help": "max bins per frequency mask"})
    eval_batch_size: int = field(default=512, metadata={"min": 1, "help": "batch size of evaluation"})
    seed: int = field(default=0, metadata={"help": "seed of data order, augmentation and dropout"})
    device: str = field(
        default="auto", metadata={"choices": ("auto", "cpu", "cuda"), "help": "where to train"}
    )
    # Not a setting: where these settings live for the user (the pipeline section), named by error messages.
    key_prefix: str = "TrainConfig"

    def key(self, name: str) -> str:
        return f"{self.key_prefix}.{name}"

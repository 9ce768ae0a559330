"""The neural-network settings a pipeline names: the model, HED and the binarizer names.

Torch-free, so that reading a pipeline (its schema is derived from these) loads no torch; the modules that
build the networks (dfsmn.py, hed.py, binarizers.py) take these configs.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from bifsmn_cli.config import dataclass_from_section
from bifsmn_cli.errors import UserError

ACTIVATIONS = ("relu", "prelu", "identity")
# The registry's names (bifsmn_cli.nn.binarizers.BINARIZERS), in its order; a test keeps the two equal.
BINARIZER_NAMES = ("bifsmn", "bnn", "dorefa", "xnor", "bireal", "irnet", "rad", "lpb")
# What the full-precision teacher is called beside the student's variants (1x, 0.5x, ...) in tables and indexes.
TEACHER = "teacher"


@dataclass
class ModelConfig:
    """The D-FSMN hyper-parameters; the defaults are the official BiFSMN model."""

    n_mels: int = field(default=32, metadata={"min": 4, "help": "mel bins of the input features"})
    frames: int = field(default=32, metadata={"min": 4, "help": "frames of the input features"})
    num_classes: int = field(default=12, metadata={"min": 2, "help": "output classes"})
    num_blocks: int = field(default=8, metadata={"min": 1, "help": "D-FSMN blocks"})
    stem_channels: int = field(default=16, metadata={"min": 1, "help": "conv1 channels (conv2 has twice)"})
    stem_kernel: int = field(default=5, metadata={"min": 1, "help": "kernel size of the two stem convs"})
    backbone_size: int = field(default=128, metadata={"min": 1, "help": "memory (backbone) width"})
    hidden_size: int = field(default=256, metadata={"min": 1, "help": "hidden width inside a block"})
    memory_left: int = field(default=2, metadata={"min": 0, "help": "past taps of the memory conv"})
    memory_right: int = field(default=2, metadata={"min": 0, "help": "future taps of the memory conv"})
    dilation: int = field(default=1, metadata={"min": 1, "help": "dilation of the memory conv"})
    activation: str = field(
        default="relu", metadata={"choices": ACTIVATIONS, "help": "stem/fc1/hidden activation (teacher)"}
    )
    student_activation: str = field(
        default="prelu", metadata={"choices": ACTIVATIONS, "help": "the same positions in a binarized model"}
    )
    block_activation: str = field(
        default="prelu", metadata={"choices": ACTIVATIONS, "help": "memory and block-output activation"}
    )
    dropout: float = field(default=0.2, metadata={"min": 0.0, "max": 0.9, "help": "teacher dropout"})
    student_dropout: float = field(default=0.0, metadata={"min": 0.0, "max": 0.9, "help": "student dropout"})

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ModelConfig:
        """Build and validate a config from a mapping (a model file's); UserError names the bad key."""
        cfg = dataclass_from_section(cls, d, unknown="model")
        cfg.validate()
        return cfg

    def validate(self) -> None:
        for f in dataclasses.fields(self):
            value, meta = getattr(self, f.name), f.metadata
            if "choices" in meta and value not in meta["choices"]:
                raise UserError(
                    f"model.{f.name}: expected one of {', '.join(meta['choices'])}, got {value!r}"
                )
            if "min" in meta and value < meta["min"]:
                raise UserError(f"model.{f.name}: expected a value >= {meta['min']}, got {value!r}")
            if "max" in meta and value > meta["max"]:
                raise UserError(f"model.{f.name}: expected a value <= {meta['max']}, got {value!r}")
        if min(self.stem_shape()) < 1:
            raise UserError(
                f"model: n_mels={self.n_mels}, frames={self.frames} are too small for two stride-2 "
                f"{self.stem_kernel}x{self.stem_kernel} convolutions"
            )

    @property
    def memory_kernel(self) -> int:
        return self.memory_left + self.memory_right + 1

    def stem_shape(self) -> tuple[int, int]:
        """(mel, time) sizes after the stem's two stride-2 convolutions: (8, 8) at defaults."""
        k, p = self.stem_kernel, self.stem_kernel // 2

        def out(n: int) -> int:
            return (n + 2 * p - k) // 2 + 1

        return out(out(self.n_mels)), out(out(self.frames))


HED_MODES = (
    "zero",
    "symmetric",
    "reflect",
    "periodic",
    "constant",
    "periodization",
)  # pywt's signal extensions
HED_SELECTS = ("high", "low", "plain", "fid", "none")


@dataclass
class HEDConfig:
    """High-frequency Enhancement Distillation (bifsmn_cli.nn.hed); distill's `hed_*` keys."""

    select: str = field(
        default="high",
        metadata={
            "choices": HED_SELECTS,
            "help": "which teacher part is enhanced (fid: BiFSMNv2's bands matched apart)",
        },
    )
    wavelet: str = field(default="haar", metadata={"help": "any pywavelets discrete wavelet, e.g. haar, db2"})
    mode: str = field(default="zero", metadata={"choices": HED_MODES, "help": "signal extension of the DWT"})
    alpha: float = field(default=0.01, metadata={"min": 0.0, "help": "weight of the HED loss"})

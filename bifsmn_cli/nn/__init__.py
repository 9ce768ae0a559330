"""Neural-network library: the D-FSMN model, binarizers, HED distillation and operation counting."""

from bifsmn_cli.nn.binarizers import BINARIZERS, Binarizer, make_binarizer, sign
from bifsmn_cli.nn.counting import VariantCount, count_all, count_variant
from bifsmn_cli.nn.dfsmn import (
    DFSMN,
    VARIANT_BLOCKS,
    ModelConfig,
    load_teacher_into_student,
    variant_blocks,
    variant_key,
)
from bifsmn_cli.nn.hed import HED, HEDConfig, Wavelet2D, match_blocks

__all__ = [
    "BINARIZERS",
    "DFSMN",
    "HED",
    "VARIANT_BLOCKS",
    "Binarizer",
    "HEDConfig",
    "ModelConfig",
    "VariantCount",
    "Wavelet2D",
    "count_all",
    "count_variant",
    "load_teacher_into_student",
    "make_binarizer",
    "match_blocks",
    "sign",
    "variant_blocks",
    "variant_key",
]

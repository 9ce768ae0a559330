"""The `distill` stage: the 1-bit thinnable student, trained from the teacher with HED."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bifsmn_cli.config import Bool, Float, List, Str
from bifsmn_cli.console import info
from bifsmn_cli.errors import UserError
from bifsmn_cli.nn.config import BINARIZER_NAMES, HED_MODES, HED_SELECTS, HEDConfig, ModelConfig
from stages.pipeline.sections import TRAIN_SCHEMA
from stages.pipeline.stage import StageContext, StageSpec

MODEL_FILE = "student.pt"
SPEC = StageSpec(
    name="distill",
    schema={
        **TRAIN_SCHEMA,
        "binarizer": Str("bifsmn", "binarization method", choices=BINARIZER_NAMES),
        "variants": List("str", ["1x", "0.5x", "0.25x"], "thin variants trained jointly (TBA)"),
        "init_from_teacher": Bool(True, "start the latent weights from the teacher's"),
        "hed_select": Str(
            "high",
            "HED: which part of the teacher is enhanced; fid: BiFSMNv2's frequency-independent distillation",
            choices=HED_SELECTS,
        ),
        "hed_alpha": Float(0.01, "HED loss weight", min=0),
        "hed_wavelet": Str("haar", "HED: any pywavelets discrete wavelet"),
        "hed_mode": Str("zero", "HED: signal extension of the DWT", choices=HED_MODES),
    },
    needs=("featurize", "train-teacher"),
    reads=("model", "augment"),
    outputs=(MODEL_FILE, "metrics.json", "history.json", "history.png", "confusion_*.png"),
)


def run(ctx: StageContext) -> dict[str, Any]:
    from bifsmn_cli.nn.dfsmn import load_teacher_into_student
    from bifsmn_cli.nn.hed import HED
    from bifsmn_cli.nn.model_file import load_model
    from stages.shared import training

    c = ctx.config
    loaded = training.load_data(ctx)
    teacher_path = ctx.input_file("train-teacher", "teacher.pt")
    teacher = load_model(teacher_path, expect_classes=len(loaded.classes)).model
    student = training.new_model(ctx, loaded, binarizer=c["binarizer"], variants=tuple(c["variants"]))
    if c["init_from_teacher"]:
        untouched = load_teacher_into_student(student, teacher.state_dict())
        info(f"student initialised from the teacher ({len(untouched)} tensors kept their own init)")
    hed = HED(
        HEDConfig(select=c["hed_select"], wavelet=c["hed_wavelet"], mode=c["hed_mode"], alpha=c["hed_alpha"])
    )
    _check_teacher(teacher_path, teacher.cfg, student.cfg, hed.enabled)
    return training.fit(
        ctx,
        student,
        loaded,
        training.train_config(ctx),
        "student",
        MODEL_FILE,
        teacher=teacher,
        hed=hed,
        variants=tuple(c["variants"]),
    )


def _check_teacher(path: Path, t: ModelConfig, s: ModelConfig, hed: bool) -> None:
    """The teacher runs on the student's input and HED compares their block outputs: a teacher trained with
    another `model` or `featurize` section (a stale train-teacher) would otherwise fail deep inside training."""
    checks = [("input (mels, frames)", (t.n_mels, t.frames), (s.n_mels, s.frames))]
    if hed:
        checks += [
            ("backbone width", t.backbone_size, s.backbone_size),
            ("block time steps", t.stem_shape()[1], s.stem_shape()[1]),
        ]
    for what, theirs, ours in checks:
        if theirs != ours:
            raise UserError(
                f"{path}: the teacher's {what} {theirs} differs from the student's {ours}; retrain the teacher "
                "with this pipeline (bifsmn train-teacher --force)"
            )

"""The `train-teacher` stage: the full-precision D-FSMN that the binary student learns from."""

from __future__ import annotations

from typing import Any

from stages.pipeline.sections import TRAIN_SCHEMA
from stages.pipeline.stage import StageContext, StageSpec

MODEL_FILE = "teacher.pt"
SPEC = StageSpec(
    name="train-teacher",
    schema=TRAIN_SCHEMA,
    needs=("featurize",),
    reads=("model", "augment"),
    outputs=(MODEL_FILE, "metrics.json", "history.json", "history.png", "confusion_*.png"),
)


def run(ctx: StageContext) -> dict[str, Any]:
    from stages.shared import training

    loaded = training.load_data(ctx)
    model = training.new_model(ctx, loaded)
    return training.fit(ctx, model, loaded, training.train_config(ctx), "teacher", MODEL_FILE)

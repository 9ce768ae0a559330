"""The `train-teacher` stage: the full-precision D-FSMN that the binary student learns from."""

from __future__ import annotations

from typing import Any

from stages import training
from stages.base import StageContext, StageSpec

SPEC = StageSpec(
    name="train-teacher",
    schema=training.TRAIN_SCHEMA,
    needs=("featurize",),
    reads=("model", "augment"),
    extra_sections=training.SHARED_SECTIONS,
)

MODEL_FILE = "teacher.pt"


def run(ctx: StageContext) -> dict[str, Any]:
    loaded = training.load_data(ctx)
    cfg = training.train_config(ctx, ctx.config)
    model = training.new_model(ctx, loaded)
    return training.fit(ctx, model, loaded, cfg, "teacher", MODEL_FILE)

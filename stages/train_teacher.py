"""The `train-teacher` stage: the full-precision D-FSMN that the binary student learns from."""

from __future__ import annotations

from typing import Any

from bifsmn_cli.nn.checkpoint import save_model
from bifsmn_cli.train.distributed import distributed
from bifsmn_cli.train.loop import train
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
    with distributed(cfg.device) as writer, training.EpochProgress(cfg.epochs, "teacher") as bar:
        result = train(
            model,
            loaded.data,
            cfg,
            ctx.state_dir,
            resume=ctx.resume,
            augment=loaded.augment,
            frontend=loaded.frontend,
            progress=bar,
        )
        if not writer:
            return {}
        metrics = training.write_results(ctx, result, loaded.classes, "teacher")
        save_model(
            ctx.out_dir / MODEL_FILE, model.cpu(), loaded.classes, loaded.frontend_cfg.to_dict(), metrics
        )
    return metrics

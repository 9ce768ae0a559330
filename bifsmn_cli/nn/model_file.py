"""Trained-model files: the weights together with everything needed to rebuild and feed the model.

A model file carries its architecture, binarizer, variants, class names and front-end settings, so `export`,
`bench` and `predict` never need the pipeline that trained it, and a file from another architecture is refused
with a clear message instead of a wall of `load_state_dict` key errors.
"""

from __future__ import annotations

import dataclasses
import io
from pathlib import Path
from typing import Any

import torch

from bifsmn_cli.audio.config import FrontEndConfig
from bifsmn_cli.config import dataclass_from_section
from bifsmn_cli.errors import UserError
from bifsmn_cli.fsutil import atomic_write_bytes
from bifsmn_cli.nn.config import ModelConfig
from bifsmn_cli.nn.dfsmn import DFSMN, variant_blocks, variant_key

FORMAT = "bifsmn-model/1"


@dataclasses.dataclass
class ModelFile:
    model: DFSMN
    classes: list[str]
    frontend: FrontEndConfig
    metrics: dict[str, Any]


def save_model(
    path: Path,
    model: DFSMN,
    classes: list[str],
    frontend: FrontEndConfig,
    metrics: dict[str, Any] | None = None,
) -> None:
    buffer = io.BytesIO()
    torch.save(
        {
            "format": FORMAT,
            "model_config": dataclasses.asdict(model.cfg),
            "binarizer": model.binarizer_name,
            "variants": list(model.variants),
            "classes": list(classes),
            "frontend": frontend.to_dict(),
            "metrics": metrics or {},
            "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        },
        buffer,
    )
    atomic_write_bytes(path, buffer.getvalue())


def load_model(path: Path, expect_classes: int | None = None) -> ModelFile:
    """Rebuild a saved model; every way a file can be wrong is a one-line UserError naming it."""
    path = Path(path)
    try:
        blob = torch.load(path, map_location="cpu", weights_only=False)
    except FileNotFoundError:
        raise UserError(f"{path}: model file not found") from None
    except Exception as exc:  # torch raises many types for a damaged zip/pickle
        raise UserError(
            f"{path}: corrupt or unreadable model file ({type(exc).__name__}); retrain or re-export"
        ) from None
    if not isinstance(blob, dict) or blob.get("format") != FORMAT:
        raise UserError(f"{path}: not a bifsmn model file (expected format {FORMAT})")
    try:
        cfg = ModelConfig.from_dict(blob["model_config"])
        model = DFSMN(cfg, binarizer=blob["binarizer"], variants=tuple(blob["variants"]))
        model.load_state_dict(blob["state_dict"])
        frontend = dataclass_from_section(FrontEndConfig, blob["frontend"])
    except UserError:
        raise
    except (KeyError, RuntimeError, TypeError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0][:160]
        raise UserError(f"{path}: weights do not fit the architecture it declares ({first})") from None
    classes = list(blob["classes"])
    if expect_classes is not None and len(classes) != expect_classes:
        raise UserError(
            f"{path}: model has {len(classes)} classes but the data has {expect_classes}; "
            "retrain it on this task (check featurize.task / words)"
        )
    model.eval()
    return ModelFile(model, classes, frontend, dict(blob.get("metrics", {})))


def fixed_depth(model: DFSMN, variant: str) -> DFSMN:
    """A plain model with only the blocks (and per-variant BN/activation) that `variant` runs, as its 1x.

    This is the deployable form of one thin variant: export and the engine then deal with a single depth.
    """
    blocks = variant_blocks(variant, model.cfg.num_blocks)
    cfg = dataclasses.replace(model.cfg, num_blocks=len(blocks))
    thin = DFSMN(cfg, binarizer=model.binarizer_name, variants=("1x",))
    source = model.state_dict()
    mine, theirs = variant_key("1x"), variant_key(variant)
    state = {}
    for name in thin.state_dict():
        src = name
        if name.startswith("blocks."):
            _, index, rest = name.split(".", 2)
            rest = rest.replace(f"_out.{mine}.", f"_out.{theirs}.")
            src = f"blocks.{blocks[int(index)]}.{rest}"
        state[name] = source[src]
    thin.load_state_dict(state)
    return thin.eval()

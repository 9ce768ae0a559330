"""Accuracy of a model on one split, in PyTorch and in the C engine (on the same features, and end to end
from PCM through the engine's own front end), with the clip-by-clip agreement of the two."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from bifsmn_cli.engine.binding import Engine
from bifsmn_cli.train.metrics import confusion_matrix, kws_summary


@torch.no_grad()
def torch_predictions(model: torch.nn.Module, features: np.ndarray, batch: int = 512) -> np.ndarray:
    model.eval()
    out = [
        model(torch.from_numpy(np.ascontiguousarray(features[i : i + batch], dtype=np.float32))).argmax(1)
        for i in range(0, len(features), batch)
    ]
    return torch.cat(out).numpy()


def engine_predictions(
    engine: Engine, features: np.ndarray, waves: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """(top class from the stored features, top class from the PCM samples)."""
    by_features = np.array([engine.run_features(f).argmax() for f in features], dtype=np.int64)
    by_pcm = np.array([engine.run_pcm(w).argmax() for w in waves], dtype=np.int64)
    return by_features, by_pcm


def compare(
    model: torch.nn.Module,
    engine: Engine,
    features: np.ndarray,
    waves: np.ndarray,
    labels: np.ndarray,
    classes: list[str],
) -> dict[str, Any]:
    """Accuracies (fractions), the engine's agreement with PyTorch's top class, and the keyword-spotting figures
    (`kws_summary`: balanced accuracy, non-keyword recall, false accepts) of the engine end to end from PCM, which
    is what a user of the exported model gets."""
    reference = torch_predictions(model, features)
    by_features, by_pcm = engine_predictions(engine, features, waves)
    confusion = confusion_matrix(torch.from_numpy(by_pcm), torch.tensor(labels), len(classes))
    e2e = kws_summary(confusion.tolist(), classes)
    return {
        "clips": int(len(labels)),
        "pytorch": float((reference == labels).mean()),
        "engine": float((by_features == labels).mean()),
        "engine_e2e": float((by_pcm == labels).mean()),
        "agreement": float((by_features == reference).mean()),
        "agreement_e2e": float((by_pcm == reference).mean()),
        **{f"e2e_{k}": v for k, v in e2e.items() if k != "accuracy"},
    }

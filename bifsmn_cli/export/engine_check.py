"""An exported `.bfsm` run in the C engine against its PyTorch model on the same clips.

On the stored features (the network alone) the engine's logits are compared with PyTorch's, clip by clip, relative
to the clip's largest logit; the PCM path (the engine's own front end, then the network) is compared on the top
class. A pre-sign activation within rounding of 0 can flip one bit of a clip, so a caller allows a few
mismatched clips, while an export or engine bug moves nearly every clip.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from bifsmn_cli.engine.binding import Engine, Library


def compare_with_pytorch(
    lib: Library,
    model_file: Path | bytes,
    model: torch.nn.Module,
    features: np.ndarray,
    waves: np.ndarray,
    tolerance: float,
) -> dict[str, Any]:
    """{clips, kernel, max_rel_err, top_agree, pcm_top_agree, mismatched_clips} of `model_file` (a .bfsm path or
    its bytes) against `model`: a clip is mismatched when its top class differs or a logit differs by more than
    `tolerance` relative to its largest logit."""
    with torch.no_grad():
        want = model(torch.from_numpy(features)).numpy()
    loaded = Engine.from_bytes(model_file, lib) if isinstance(model_file, bytes) else lib.load(model_file)
    with loaded as engine:
        got = np.stack([engine.run_features(f) for f in features])
        pcm_top = np.array([engine.run_pcm(w).argmax() for w in waves])
        kernel = engine.kernel
    per_clip = np.abs(got - want).max(1) / np.maximum(np.abs(want).max(1), 1e-12)
    return {
        "clips": len(features),
        "kernel": kernel,
        "max_rel_err": float(per_clip.max()),
        "top_agree": float((got.argmax(1) == want.argmax(1)).mean()),
        "pcm_top_agree": float((pcm_top == want.argmax(1)).mean()),
        "mismatched_clips": int(((per_clip > tolerance) | (got.argmax(1) != want.argmax(1))).sum()),
    }

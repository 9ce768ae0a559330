"""`teacher.onnx`: the full-precision teacher for ONNX runtimes, checked in onnxruntime against PyTorch.

Only the teacher is exported: ONNX has no 1-bit operators, so a binarized student would run as float
convolutions and say nothing about binary inference (that is what the .bfsm engine is for).
"""

from __future__ import annotations

import importlib.util
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from bifsmn_cli.errors import InternalError, UserError
from bifsmn_cli.fsutil import atomic_path

OPSET = 17


def onnx_available() -> bool:
    """True when both onnx and onnxruntime are importable (the optional `onnx` extra)."""
    return all(importlib.util.find_spec(m) is not None for m in ("onnx", "onnxruntime"))


def export_teacher_onnx(
    model: nn.Module, path: Path | str, batch: int = 4, tolerance: float = 1e-4
) -> dict[str, Any]:
    """Export a DFSMN teacher as ONNX (dynamic batch; input `features` (B, n_mels, frames) in dB, output
    `logits`), then run onnxruntime on random features and compare with PyTorch.

    Returns {"path", "opset", "max_abs_diff"}; InternalError when the two disagree by more than `tolerance`
    relative to the largest logit.
    """
    if getattr(model, "binarizer_name", None) is not None:
        raise UserError("teacher.onnx: only the full-precision teacher is exported to ONNX")
    if not onnx_available():
        raise UserError("ONNX export needs onnx and onnxruntime: pip install 'bifsmn[onnx]'")
    import onnx
    import onnxruntime as ort

    cfg = model.cfg
    model = model.eval()
    features = (
        torch.randn(batch, cfg.n_mels, cfg.frames, generator=torch.Generator().manual_seed(0)) * 20 - 40
    )
    path = Path(path)
    with atomic_path(path) as tmp, warnings.catch_warnings():
        # The TorchScript exporter warns about constant folding of Slice and its own deprecation: not actionable.
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model,
            (features,),
            str(tmp),
            input_names=["features"],
            output_names=["logits"],
            dynamic_axes={"features": {0: "batch"}, "logits": {0: "batch"}},
            opset_version=OPSET,
            dynamo=False,
        )
        onnx.checker.check_model(str(tmp))
        session = ort.InferenceSession(str(tmp), providers=["CPUExecutionProvider"])
        got = session.run(["logits"], {"features": features.numpy()})[0]
    with torch.no_grad():
        want = model(features).numpy()
    diff = float(np.abs(got - want).max())
    if diff > tolerance * max(1.0, float(np.abs(want).max())):
        raise InternalError(f"{path}: onnxruntime differs from PyTorch by {diff:.3g}")
    return {"path": str(path), "opset": OPSET, "max_abs_diff": diff}

"""The `export` stage: what a device runs, each file checked against PyTorch before anything downstream uses it.

For every deployed variant (thin/variants.json) `model_<v>.bfsm` and its C-header form `model_<v>.h`; the
teacher as `teacher.bfsm` (the engine's full-precision mode: the fair speed baseline for `bench`) and as
`teacher.onnx` when onnx and onnxruntime are installed (the exporter checks it in onnxruntime). The student
files are written from the thinnable student (distill) so that each records its own variant name and block
ids; the engine check compares them with the deployable fixed-depth models of `thin`, which have the same
weights. `exported.json` lists every file for `bench`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bifsmn_cli.config import Bool, Float, Int
from bifsmn_cli.console import info, warn
from bifsmn_cli.data import packed
from bifsmn_cli.engine.binding import LIB_NAME, Library
from bifsmn_cli.engine.predict import engine_library
from bifsmn_cli.errors import BifsmnError, InternalError, UserError
from bifsmn_cli.export import (
    export_student,
    export_teacher,
    export_teacher_onnx,
    onnx_available,
    write_c_header,
)
from bifsmn_cli.fsutil import atomic_write_json
from bifsmn_cli.nn.binarizers import BINARIZERS
from bifsmn_cli.nn.checkpoint import load_model
from stages.base import StageContext, StageSpec, read_manifest, stage_dir
from stages.distill import MODEL_FILE as STUDENT_FILE
from stages.thin import MODELS_DIR
from stages.train_teacher import MODEL_FILE as TEACHER_FILE

SPEC = StageSpec(
    name="export",
    schema={
        "onnx": Bool(True, "also write teacher.onnx when onnx and onnxruntime are installed"),
        "check": Bool(True, "run every .bfsm in the C engine on validation clips and compare with PyTorch"),
        "check_clips": Int(16, "validation clips of the engine check", min=1),
        "check_tolerance": Float(
            1e-3, "largest engine-vs-PyTorch logit difference allowed, relative to the largest logit", min=0
        ),
    },
    needs=("featurize", "train-teacher", "distill", "thin"),
)

INDEX = "exported.json"
TEACHER = "teacher"


def bfsm_name(model: str) -> str:
    return "teacher.bfsm" if model == TEACHER else f"model_{model}.bfsm"


def _check_binarizer(path: Path, name: str | None) -> None:
    """Fail before writing anything when the engine cannot run the student's binarizer."""
    if name is None:
        raise UserError(f"{path}: the student has no binarizer; rerun `bifsmn distill`")
    if not BINARIZERS[name].exportable:
        runnable = ", ".join(n for n, b in BINARIZERS.items() if b.exportable)
        raise UserError(
            f"{path}: binarizer {name!r} cannot run in the C engine (it computes only sign(x) with "
            f"sign(w) * scale); retrain with distill.binarizer set to one of {runnable}"
        )


def _engine_library(ctx: StageContext) -> tuple[Library | None, str]:
    """A host libbifsmn for the check: build-kernel's when it exists, else any existing build, else one built
    into the state dir. (None, reason) when none can be had: the check is then skipped, not faked."""
    workspace = ctx.pipeline.workspace
    built = stage_dir(workspace, "build-kernel") / "host" / LIB_NAME
    try:
        if read_manifest(workspace, "build-kernel") is not None and built.is_file():
            lib = Library(built)
        else:
            lib = engine_library(build_dir=ctx.state_dir / "engine")
        return lib, str(lib.path)
    except BifsmnError as exc:
        return None, f"no engine library ({exc})"


def _check(
    lib: Library, path: Path, model: torch.nn.Module, features: np.ndarray, waves: np.ndarray, tol: float
) -> dict[str, Any]:
    """Engine scores against PyTorch's on the same features (the model alone), plus the engine's own front end."""
    with torch.no_grad():
        want = model(torch.from_numpy(features)).numpy()
    with lib.load(path) as engine:
        got = np.stack([engine.run_features(f) for f in features])
        pcm_top = np.array([engine.run_pcm(w).argmax() for w in waves])
        kernel = engine.kernel
    per_clip = np.abs(got - want).max(1) / np.maximum(np.abs(want).max(1), 1e-12)
    mismatched = int(((per_clip > tol) | (got.argmax(1) != want.argmax(1))).sum())
    result = {
        "clips": len(features),
        "kernel": kernel,
        "max_rel_err": float(per_clip.max()),
        "top_agree": float((got.argmax(1) == want.argmax(1)).mean()),
        "pcm_top_agree": float((pcm_top == want.argmax(1)).mean()),
        "mismatched_clips": mismatched,
    }
    # A pre-sign activation within rounding of 0 can flip one bit and move a clip's logits: rare and isolated.
    # A real export or engine bug (layout, folding) moves nearly every clip, so a few mismatches are tolerated.
    if mismatched > len(features) // 8:
        raise InternalError(
            f"{path}: the C engine disagrees with PyTorch on {mismatched} of {len(features)} clips (top class "
            f"or relative logit error above export.check_tolerance {tol:g}; worst {per_clip.max():.2g})"
        )
    return result


def run(ctx: StageContext) -> dict[str, Any]:
    c = ctx.config
    featurized = ctx.input_dir("featurize")
    classes = packed.load_classes(featurized)
    thin_dir = ctx.input_dir("thin")
    deployed = json.loads((thin_dir / "variants.json").read_text())["deployed"]
    student_path = ctx.input_dir("distill") / STUDENT_FILE
    student = load_model(student_path, expect_classes=len(classes))
    _check_binarizer(student_path, student.model.binarizer_name)
    teacher = load_model(ctx.input_dir("train-teacher") / TEACHER_FILE, expect_classes=len(classes))

    index: dict[str, Any] = {"models": {}, "onnx": None, "check": None}
    references: dict[str, torch.nn.Module] = {}
    for v in deployed:
        path = ctx.out_dir / bfsm_name(v)
        written = export_student(student.model, v, classes, student.frontend, path)
        header = path.with_suffix(".h")
        write_c_header(path, header, symbol="bifsmn_model_" + v.replace(".", "_"))
        index["models"][v] = {
            "file": path.name,
            "header": header.name,
            "bytes": written["bytes"],
            "header_bytes": header.stat().st_size,
            "ops": written["ops"],
            "binary": True,
        }
        references[v] = load_model(thin_dir / MODELS_DIR / f"{v}.pt", expect_classes=len(classes)).model
    written = export_teacher(teacher.model, classes, teacher.frontend, ctx.out_dir / bfsm_name(TEACHER))
    index["models"][TEACHER] = {
        "file": bfsm_name(TEACHER),
        "bytes": written["bytes"],
        "ops": written["ops"],
        "binary": False,
    }
    references[TEACHER] = teacher.model

    if not c["onnx"]:
        index["onnx"] = {"written": False, "reason": "export.onnx is false"}
    elif not onnx_available():
        index["onnx"] = {
            "written": False,
            "reason": "onnx/onnxruntime not installed (pip install 'bifsmn[onnx]')",
        }
    else:
        result = export_teacher_onnx(teacher.model, ctx.out_dir / "teacher.onnx")
        index["onnx"] = {
            "written": True,
            "file": "teacher.onnx",
            "bytes": (ctx.out_dir / "teacher.onnx").stat().st_size,
            "max_abs_diff": result["max_abs_diff"],
            "opset": result["opset"],
        }

    if c["check"]:
        index["check"] = _check_all(ctx, references, featurized)
    else:
        index["check"] = {"checked": False, "reason": "export.check is false"}
    atomic_write_json(ctx.out_dir / INDEX, index)

    sizes = ", ".join(f"{m} {e['bytes']:,} B" for m, e in index["models"].items())
    info(
        f"exported {sizes}"
        + (f", teacher.onnx {index['onnx']['bytes']:,} B" if index["onnx"]["written"] else "")
    )
    metrics: dict[str, Any] = {f"bytes_{m}": e["bytes"] for m, e in index["models"].items()}
    metrics["deployed"] = deployed
    metrics["onnx"] = index["onnx"]
    metrics["check"] = index["check"]
    return metrics


def _check_all(ctx: StageContext, references: dict[str, torch.nn.Module], featurized: Path) -> dict[str, Any]:
    lib, where = _engine_library(ctx)
    if lib is None:
        warn(f"engine check skipped: {where}")
        return {"checked": False, "reason": where}
    val = packed.load_split(featurized, "validation")
    if len(val) == 0:
        return {"checked": False, "reason": "the validation split is empty"}
    pick = np.linspace(0, len(val) - 1, min(ctx.config["check_clips"], len(val))).round().astype(int)
    features = np.ascontiguousarray(val.features[pick], dtype=np.float32)
    waves = np.ascontiguousarray(val.waves[pick], dtype=np.int16)
    models = {
        m: _check(lib, ctx.out_dir / bfsm_name(m), model, features, waves, ctx.config["check_tolerance"])
        for m, model in references.items()
    }
    worst = max(r["max_rel_err"] for r in models.values())
    info(f"engine check ({where}): every model matches PyTorch, max relative logit error {worst:.2g}")
    return {"checked": True, "library": where, "models": models}

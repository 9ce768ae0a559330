"""The `export` stage: what a device runs, each file checked against PyTorch before anything downstream uses it.

For every deployed variant (thin/variants.json) `model_<v>.bfsm` and its C-header form `model_<v>.h`, its float
arrays stored as `export.fp_storage` says (bifsmn_cli/export/storage.py: auto takes the smallest storage that
changes no top-1 decision on the validation split, measured in the reference executor); the
teacher as `teacher.bfsm` (the engine's full-precision mode: the fair speed baseline for `bench`) and as
`teacher.onnx` when onnx and onnxruntime are installed (the exporter checks it in onnxruntime). The student
files are written from the thinnable student (distill) so that each records its own variant name and block
ids; the engine check compares them with the deployable fixed-depth models of `thin`, which have the same
weights (a student stored in fp16 or int8: with PyTorch running the file's own rounded weights, the reference
executor), in build-kernel's host library: a declared input, so the check always runs the engine built from the
current sources (the runner makes export stale when build-kernel is). `exported.json` lists every file for
`bench`, the storage measurements and what the check compared.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from bifsmn_cli.config import Bool, Float, Int, Str
from bifsmn_cli.console import info, warn
from bifsmn_cli.data import packed
from bifsmn_cli.engine.binding import Library
from bifsmn_cli.errors import InternalError, UserError
from bifsmn_cli.fsutil import atomic_write_json
from bifsmn_cli.nn.config import TEACHER
from stages.pipeline.stage import StageContext, StageSpec

INDEX = "exported.json"
SPEC = StageSpec(
    name="export",
    schema={
        "onnx": Bool(True, "also write teacher.onnx when onnx and onnxruntime are installed"),
        "fp_storage": Str(
            "auto",
            "storage of the students' full-precision arrays: fp32, fp16, int8 (weights int8 per output channel, "
            "vectors fp16), or auto: per array, the smallest that keeps fp_storage_agreement of the validation "
            "decisions (bifsmn_cli/export/storage.py)",
            choices=("auto", "fp32", "fp16", "int8"),
        ),
        "fp_storage_agreement": Float(
            1.0,
            "auto: least top-1 agreement with float32 on the validation clips a rounding must keep (1: no change)",
            min=0,
            max=1,
        ),
        "fp_storage_clips": Int(1000, "validation clips (evenly spaced) the storages are measured on", min=1),
        "check": Bool(True, "run every .bfsm in the C engine on validation clips and compare with PyTorch"),
        "check_clips": Int(16, "validation clips of the engine check", min=1),
        "check_tolerance": Float(
            1e-3, "largest engine-vs-PyTorch logit difference allowed, relative to the largest logit", min=0
        ),
        "check_max_mismatch": Float(
            0.125,
            "fraction of the checked clips allowed to disagree (top class, or logits beyond check_tolerance): "
            "a pre-sign activation within rounding of 0 can flip one bit of a clip, while an export or engine "
            "bug moves nearly every clip",
            min=0,
            max=1,
        ),
    },
    needs=("featurize", "train-teacher", "distill", "thin", "build-kernel"),
    outputs=("model_*.bfsm", "model_*.h", "teacher.bfsm", "teacher.onnx", INDEX),
)


def bfsm_name(model: str) -> str:
    return "teacher.bfsm" if model == TEACHER else f"model_{model}.bfsm"


def _check_binarizer(path: Path, name: str | None) -> None:
    """Fail before writing anything when the engine cannot run the student's binarizer."""
    from bifsmn_cli.nn.binarizers import BINARIZERS

    if name is None:
        raise UserError(f"{path}: the student has no binarizer; rerun `bifsmn distill`")
    if not BINARIZERS[name].exportable:
        runnable = ", ".join(n for n, b in BINARIZERS.items() if b.exportable)
        raise UserError(
            f"{path}: binarizer {name!r} cannot run in the C engine (it computes only sign(x) with "
            f"sign(w) * scale); retrain with distill.binarizer set to one of {runnable}"
        )


def run(ctx: StageContext) -> dict[str, Any]:
    from bifsmn_cli.export import storage
    from bifsmn_cli.export.bfsm import encode, write_bfsm, write_c_header
    from bifsmn_cli.export.lowering import export_teacher, student_record
    from bifsmn_cli.export.onnx_export import export_teacher_onnx, onnx_available
    from bifsmn_cli.nn.model_file import load_model

    c = ctx.config
    featurized = ctx.input_dir("featurize")
    classes = packed.load_classes(featurized)
    deployed = json.loads(ctx.input_file("thin", "variants.json").read_text())["deployed"]
    student_path = ctx.input_file("distill", "student.pt")
    student = load_model(student_path, expect_classes=len(classes))
    _check_binarizer(student_path, student.model.binarizer_name)
    teacher = load_model(ctx.input_file("train-teacher", "teacher.pt"), expect_classes=len(classes))

    index: dict[str, Any] = {"models": {}, "onnx": None, "check": None}
    val = packed.load_split(featurized, "validation")
    pick = np.linspace(0, len(val) - 1, min(c["fp_storage_clips"], len(val))).round().astype(int)
    clips = np.array(val.features[pick], dtype=np.float32) if len(val) else None
    index["storage"] = {
        "requested": c["fp_storage"],
        "min_agreement": c["fp_storage_agreement"],
        "split": "validation",
        "clips": 0 if clips is None else len(clips),
        "models": {},
    }
    references, stored = {}, {}
    for v in deployed:
        path = ctx.out_dir / bfsm_name(v)
        record = student_record(student.model, v, classes, student.frontend)
        if clips is None:  # nothing to measure on: auto keeps float32
            mode = "fp32" if c["fp_storage"] == "auto" else c["fp_storage"]
            chosen, measured = storage.quantize(record, mode), None
        else:
            chosen, measured = storage.measure(record, clips, c["fp_storage"], c["fp_storage_agreement"])
        index["storage"]["models"][v] = measured
        written = write_bfsm(chosen, path)
        label = storage.label(chosen)
        stored[v] = (label, encode(record))
        header = path.with_suffix(".h")
        write_c_header(path, header, symbol="bifsmn_model_" + v.replace(".", "_"))
        index["models"][v] = {
            "file": path.name,
            "header": header.name,
            "bytes": written["bytes"],
            "header_bytes": header.stat().st_size,
            "ops": written["ops"],
            "binary": True,
            "fp_storage": label,
        }
        fixed = ctx.input_file("thin", f"models/{v}.pt")
        references[v] = load_model(fixed, expect_classes=len(classes)).model
    written = export_teacher(teacher.model, classes, teacher.frontend, ctx.out_dir / bfsm_name(TEACHER))
    index["models"][TEACHER] = {
        "file": bfsm_name(TEACHER),
        "bytes": written["bytes"],
        "ops": written["ops"],
        "binary": False,
        "fp_storage": "fp32",  # the full-precision reference stays float32
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
        index["check"] = _check_all(ctx, references, featurized, stored)
    else:
        index["check"] = {"checked": False, "reason": "export.check is false"}
    atomic_write_json(ctx.out_dir / INDEX, index)

    info(_storage_line(index["storage"]))
    sizes = ", ".join(f"{m} {e['bytes']:,} B ({e['fp_storage']})" for m, e in index["models"].items())
    info(
        f"exported {sizes}"
        + (f", teacher.onnx {index['onnx']['bytes']:,} B" if index["onnx"]["written"] else "")
    )
    metrics: dict[str, Any] = {f"bytes_{m}": e["bytes"] for m, e in index["models"].items()}
    metrics["deployed"] = deployed
    metrics["fp_storage"] = {m: e["fp_storage"] for m, e in index["models"].items()}
    metrics["onnx"] = index["onnx"]
    metrics["check"] = index["check"]
    return metrics


def _storage_line(s: dict[str, Any]) -> str:
    """One line per run: each storage's size and top-1 agreement with float32 on validation, and the choice."""
    if not s["clips"]:
        return "fp_storage: the validation split is empty, so nothing was measured (auto keeps fp32)"
    per = []
    for v, m in s["models"].items():
        options = ", ".join(
            f"{k} {r['bytes']:,} B {100 * r['top1_agreement']:.1f} %" for k, r in m["options"].items()
        )
        chosen = m["chosen"]
        per.append(f"{v}: {chosen['bytes']:,} B {100 * chosen['top1_agreement']:.1f} % chosen ({options})")
    return (
        f"fp_storage {s['requested']}, top-1 agreement with fp32 on {s['clips']} validation clips: "
        + "; ".join(per)
    )


def _engine_library(ctx: StageContext) -> Library:
    """build-kernel's host libbifsmn: built from the sources this workspace's build-kernel manifest hashes."""
    built = ctx.input_file("build-kernel", "host/libbifsmn.so")
    if not built.is_file():
        raise UserError(
            f"{built}: missing; the engine check runs build-kernel's host library: add host to "
            "build_kernel.targets, or set export.check: false"
        )
    return Library(built)


def _check_all(
    ctx: StageContext, references: dict[str, Any], featurized: Path, stored: dict[str, tuple[str, bytes]]
) -> dict[str, Any]:
    """Every exported file in the engine against its PyTorch reference, within export.check_* (see engine_check).
    A student stored in fp16 or int8 (`stored`: its storage and its float32 form) is checked twice: its float32
    form against the PyTorch model (the lowering, as for every file), and the file itself against PyTorch running
    the file's own rounded weights (the reference executor: the engine's dequantisation)."""
    from bifsmn_cli.export.bfsm import read_bfsm
    from bifsmn_cli.export.engine_check import compare_with_pytorch
    from bifsmn_cli.export.reference import RecordNet

    lib = _engine_library(ctx)
    val = packed.load_split(featurized, "validation")
    if len(val) == 0:
        warn("engine check skipped: the validation split is empty")
        return {"checked": False, "reason": "the validation split is empty"}
    c = ctx.config
    tol, max_mismatch = c["check_tolerance"], c["check_max_mismatch"]
    pick = np.linspace(0, len(val) - 1, min(c["check_clips"], len(val))).round().astype(int)
    features = np.ascontiguousarray(val.features[pick], dtype=np.float32)
    waves = np.ascontiguousarray(val.waves[pick], dtype=np.int16)
    limit = int(max_mismatch * len(features))

    def checked(source: Path | bytes, model: Any, path: Path, what: str) -> dict[str, Any]:
        result = compare_with_pytorch(lib, source, model, features, waves, tol)
        result["max_mismatched_clips"] = limit
        if result["mismatched_clips"] > limit:
            raise InternalError(
                f"{path}: the C engine disagrees with PyTorch on {result['mismatched_clips']} of {len(features)} "
                f"clips ({what}; top class or relative logit error above export.check_tolerance {tol:g}; worst "
                f"{result['max_rel_err']:.2g}), more than export.check_max_mismatch {max_mismatch:g} allows"
            )
        return result

    models = {}
    for m, model in references.items():
        path = ctx.out_dir / bfsm_name(m)
        storage, fp32 = stored.get(m, ("fp32", b""))
        if storage == "fp32":
            models[m] = checked(path, model, path, "the file")
            continue
        models[m] = checked(fp32, model, path, "its float32 form")
        within = checked(
            path, RecordNet(read_bfsm(path)), path, f"the file, against its own {storage} weights"
        )
        models[m]["stored"] = {"fp_storage": storage, **within}
    per_model = "; ".join(
        f"{m} {r['clips'] - r['mismatched_clips']}/{r['clips']} agree "
        f"({100 * (1 - r['mismatched_clips'] / r['clips']):.1f} %), max relative logit error "
        f"{r['max_rel_err']:.2g}"
        + (
            f", as stored ({r['stored']['fp_storage']}) against PyTorch with its weights: "
            f"{r['stored']['clips'] - r['stored']['mismatched_clips']}/{r['stored']['clips']}, "
            f"{r['stored']['max_rel_err']:.2g}"
            if "stored" in r
            else ""
        )
        for m, r in models.items()
    )
    info(
        f"engine check against PyTorch on {len(pick)} validation clips (top class and logits within "
        f"{c['check_tolerance']:g}; library {lib.path}): {per_model}"
    )
    return {"checked": True, "library": str(lib.path), "models": models}

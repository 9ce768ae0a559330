"""The experiments behind the paper's Tables 1-3: their rows, the settings each row states, the budgets, and the
workspaces they run in.

Every row is its own workspace `<root>/rows/<row>/` whose download, featurize, train-teacher and build-kernel are
links to `<root>/shared/` (made once), so a row is the stages from distill on (`bifsmn reproduce` runs them):
the stage manifests make a finished row up to date (skipped) and an interrupted one resume from its checkpoint. A row names every setting
that could differ between methods (binarizer, trained variants, logit distillation, HED/FID, initialisation)
rather than inheriting it from the pipeline; everything else (data, model, optimiser, epochs) comes from the
pipeline and the budget and is the same for every row, which the tables check from the manifests.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bifsmn_cli.config import apply_overrides, read_yaml
from bifsmn_cli.errors import UserError
from bifsmn_cli.fsutil import atomic_write_text

# The stages a row shares with the others (links into <root>/shared), in pipeline order.
SHARED_STAGES = ("download", "featurize", "train-teacher", "build-kernel")
THIN_VARIANTS = ["1x", "0.5x", "0.25x"]

# Budgets: overrides applied to every row alike. `quick` keeps the pipeline's own recipe with 30 teacher and 6
# distill epochs, sized for about 2 hours of sc_real_10 on 2 cores: its three-variant distill epochs took 75-96 s
# in earlier runs here (their manifests), a 1x-only epoch is estimated at ~50 s and a teacher epoch took ~35 s,
# so 11 1x rows, 3 three-variant rows, the teachers, featurize and the engine build come to ~110 minutes.
# `full` is the paper's recipe (BiFSMN, IJCAI 2022, Sec. 4, as in pipelines/speech_commands_v1_12.yaml: SGD,
# momentum 0.9, cosine, weight decay 1e-4, batch 96, 300 epochs; lr 0.05 for the teacher, 0.005 distilled).
BUDGETS: dict[str, dict[str, Any]] = {
    "quick": {"train_teacher.epochs": 30, "distill.epochs": 6},
    "full": {
        **{
            f"{s}.{k}": v
            for s in ("train_teacher", "distill")
            for k, v in {
                "epochs": 300,
                "batch_size": 96,
                "optimizer": "sgd",
                "momentum": 0.9,
                "weight_decay": 1.0e-4,
                "schedule": "cosine",
            }.items()
        },
        "train_teacher.lr": 0.05,
        "distill.lr": 0.005,
    },
}
# What every row runs besides training: thin keeps the variants the row trained, the engine is built for the
# host only, and bench times the engine alone (no streaming, PyTorch or ONNX figures).
COMMON: dict[str, Any] = {
    "thin.select": "variant",
    "build_kernel.targets": ["host"],
    "export.onnx": False,
    "bench.streaming": False,
    "bench.pytorch": False,
    "bench.onnxruntime": False,
    "bench.rounds": 5,
    "bench.repeats": 20,
    "bench.warmup": 3,
    "bench.kernel_shapes": [64],
    "bench.kernel_samples": 1,
}
# The full-precision teacher's settings do not vary; these are the student's, stated by every row.
METHOD = {
    "binarizer": "bifsmn",
    "variants": ["1x"],
    "kd_weight": 0.0,
    "kd_temperature": 2.0,
    "hed_select": "none",
    "hed_alpha": 0.01,
    "init_from_teacher": True,
}
# BiFSMN_S (the paper's small model): 32 memory (backbone) and 64 hidden channels, about 0.05 M parameters.
SMALL_MODEL = {"model.backbone_size": 32, "model.hidden_size": 64}


@dataclass(frozen=True)
class Row:
    """One experiment: a name (its workspace), a label, the student settings it states, extra overrides (a model
    of its own, which then trains its own teacher) and whether it is timed in the engine."""

    name: str
    label: str
    method: dict[str, Any]
    extra: dict[str, Any] = field(default_factory=dict)
    latency: bool = False

    @property
    def settings(self) -> dict[str, Any]:
        """Every distill setting a row states, the defaults of METHOD filled in."""
        return {**METHOD, **self.method}

    @property
    def own_teacher(self) -> bool:
        return any(k.startswith("model.") for k in self.extra)

    def overrides(self) -> dict[str, Any]:
        s = self.settings
        return {
            **{f"distill.{k}": v for k, v in s.items()},
            "thin.deploy": list(s["variants"]),
            **self.extra,
        }


def _row(name: str, label: str, **method: Any) -> Row:
    return Row(name, label, method)


TBA = {"variants": THIN_VARIANTS}
LOGIT = {"kd_weight": 1.0}
ROWS: dict[str, Row] = {
    r.name: r
    for r in (
        # Table 1: one change per row, from vanilla binarization to the full method, then BiFSMNv2's two methods
        _row("vanilla", "vanilla binarization (no distillation)"),
        _row("logit", "+ logit distillation", **LOGIT),
        _row("plain", "+ plain feature distillation", **LOGIT, hed_select="plain"),
        _row("hed", "+ HED (instead of plain)", **LOGIT, hed_select="high"),
        Row("hed_tba", "+ TBA = BiFSMN", {**LOGIT, "hed_select": "high", **TBA}, latency=True),
        _row("fid_tba", "BiFSMNv2's FID instead of HED", **LOGIT, hed_select="fid", **TBA),
        _row("fid_tba_lpb", "+ BiFSMNv2's LPB binarizer", **LOGIT, hed_select="fid", binarizer="lpb", **TBA),
        # Table 2: every binarizer on the plain network (1x, no distillation), the recipe of the vanilla row
        *(
            _row(f"bin_{b}", b, binarizer=b)
            for b in ("bnn", "dorefa", "xnor", "bireal", "irnet", "rad", "lpb")
        ),
        # Table 3: the small model, with the full method and a teacher of its own size
        Row("small_hed_tba", "BiFSMN_S", {**LOGIT, "hed_select": "high", **TBA}, SMALL_MODEL, latency=True),
    )
}
TABLE1 = ("vanilla", "logit", "plain", "hed", "hed_tba", "fid_tba", "fid_tba_lpb")
TABLE2 = {  # method label -> row (the BiFSMN binarizer's row with this recipe is Table 1's vanilla row)
    "BNN": "bin_bnn",
    "DoReFa": "bin_dorefa",
    "XNOR": "bin_xnor",
    "Bi-Real": "bin_bireal",
    "IR-Net": "bin_irnet",
    "RAD": "bin_rad",
    "BiFSMN binarizer": "vanilla",
    "BiFSMNv2 LPB": "bin_lpb",
}
TABLE3 = ("hed_tba", "small_hed_tba")


def format_value(value: Any) -> str:
    """A value as `--set` parses it back (YAML 1.2 flow style)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return (
            "[" + ",".join(format_value(v) for v in value) + "]"
        )  # no space: `$(cat row.args)` keeps it whole
    return str(value)


def set_args(overrides: dict[str, Any]) -> list[str]:
    """`section.key=value` strings, as `--set` takes them."""
    return [f"{k}={format_value(v)}" for k, v in overrides.items()]


def workspace_of(pipeline: Path, overrides: list[str]) -> Path:
    """The pipeline's workspace after the user's `--set`s, as the toolkit resolves it (from the current
    directory), read without validating the stage sections."""
    doc = read_yaml(pipeline)
    if not isinstance(doc, dict):
        raise UserError(f"{pipeline}: expected a mapping at the top level, got {type(doc).__name__}")
    apply_overrides(doc, overrides)
    if not doc.get("workspace"):
        raise UserError(f"workspace: missing in {pipeline}; every pipeline names its run and its workspace")
    return Path(str(doc["workspace"])).expanduser().resolve()


def root_of(workspace: Path, budget: str) -> Path:
    if budget not in BUDGETS:
        raise UserError(f"--budget: expected one of {', '.join(BUDGETS)}, got {budget!r}")
    return workspace / "reproduce" / budget


def budget_args(budget: str) -> list[str]:
    return set_args({**BUDGETS[budget], **COMMON})


@dataclass(frozen=True)
class Planned:
    """A row ready to run: its workspace, its `--set` overrides and the stages it runs."""

    row: Row
    workspace: Path
    overrides: list[str]
    first: str
    last: str


def prepare(root: Path, latency: bool, common: list[str]) -> list[Planned]:
    """Make each row's workspace (links to the shared stages; `row.args`: `common`, the budget's and the user's
    overrides, then the row's, as `--set` arguments, so one row can be rerun by hand with `bifsmn run -c
    PIPELINE $(cat row.args)`) and return the rows in table order."""
    plan = []
    for row in ROWS.values():
        ws = root / "rows" / row.name
        ws.mkdir(parents=True, exist_ok=True)
        linked = [s for s in SHARED_STAGES if not (row.own_teacher and s == "train-teacher")]
        for stage in linked:
            link = ws / stage
            target = os.path.relpath(root / "shared" / stage, ws)
            if link.is_symlink() and os.readlink(link) == target:
                continue
            if link.exists() or link.is_symlink():
                raise UserError(f"{link}: expected a link to {target}; remove it and rerun")
            link.symlink_to(target, target_is_directory=True)
        overrides = [f"workspace={ws}", *set_args(row.overrides())]
        atomic_write_text(ws / "row.args", "".join(f"--set {o}\n" for o in [*common, *overrides]))
        first = "train-teacher" if row.own_teacher else "distill"
        last = "bench" if row.latency and latency else "thin"
        plan.append(Planned(row, ws, overrides, first, last))
    return plan

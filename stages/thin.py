"""The `thin` stage: every thin variant of the student scored and costed, and the deployable ones picked."""

from __future__ import annotations

from typing import Any

from bifsmn_cli.config import Float, List, Str
from bifsmn_cli.console import info
from bifsmn_cli.data import packed
from bifsmn_cli.errors import UserError
from bifsmn_cli.fsutil import atomic_write_json, atomic_write_text
from bifsmn_cli.nn.config import TEACHER
from stages.pipeline.stage import StageContext, StageSpec

SPEC = StageSpec(
    name="thin",
    schema={
        "select": Str(
            "variant",
            "variant: the `deploy` list; max_flops: most accurate within the budget; "
            "min_accuracy: cheapest reaching it (both on validation)",
            choices=("variant", "max_flops", "min_accuracy"),
        ),
        "deploy": List("str", ["1x", "0.5x", "0.25x"], "variants to deploy (select: variant)"),
        "max_flops": Float(None, "FLOPs budget per clip (select: max_flops)", min=0, nullable=True),
        "min_accuracy": Float(
            None, "validation accuracy floor in [0, 1] (select: min_accuracy)", min=0, max=1, nullable=True
        ),
    },
    needs=("featurize", "train-teacher", "distill"),
    outputs=("variants.json", "table.md", "accuracy_vs_flops.png", "models/*.pt"),
)


def choose(rows: list[dict[str, Any]], config: dict[str, Any]) -> list[str]:
    """The variants to deploy, by the `select` rule; validation accuracy decides, never test."""
    students = [r for r in rows if r["variant"] != TEACHER]
    select = config["select"]
    if select == "variant":
        known = {r["variant"] for r in students}
        for v in config["deploy"]:
            if v not in known:
                raise UserError(f"thin.deploy: {v!r} is not a trained variant ({', '.join(sorted(known))})")
        return list(config["deploy"])
    limit = config[select]
    if limit is None:
        raise UserError(f"thin.{select}: required when thin.select is {select}")
    if select == "max_flops":
        fits = [r for r in students if r["flops"] <= limit]
        if not fits:
            cheapest = min(r["flops"] for r in students)
            raise UserError(
                f"thin.max_flops: no variant fits {limit:g} FLOPs (the cheapest needs {cheapest:g})"
            )
        return [max(fits, key=lambda r: (r["val_accuracy"], -r["flops"]))["variant"]]
    fits = [r for r in students if r["val_accuracy"] >= limit]
    if not fits:
        best = max(r["val_accuracy"] for r in students)
        raise UserError(
            f"thin.min_accuracy: no variant reaches {limit:g} on validation (the best has {best:.4f})"
        )
    return [min(fits, key=lambda r: (r["flops"], -r["val_accuracy"]))["variant"]]


def _table(rows: list[dict[str, Any]], chosen: list[str]) -> str:
    def pct(x: float | None) -> str:
        return "n/a" if x is None else f"{100 * x:.2f}"

    lines = [
        "| variant | deployed | val acc % | val balanced % | val non-keyword recall % | val false accepts % "
        "| test acc % | params | real MACs | binary ops | FLOPs | size (bytes) |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['variant']} | {'yes' if r['variant'] in chosen else ''} | {pct(r['val_accuracy'])} | "
            f"{pct(r['val_balanced_accuracy'])} | {pct(r['val_unknown_recall'])} | {pct(r['val_false_accept'])} | "
            f"{pct(r['test_accuracy'])} | {r['params']:,} | {r['real_macs']:,} | {r['binary_ops']:,} | "
            f"{r['flops']:,.0f} | {r['bytes']:,} |"
        )
    return "\n".join(lines) + "\n"


def run(ctx: StageContext) -> dict[str, Any]:
    from bifsmn_cli.nn.model_file import fixed_depth, load_model, save_model
    from bifsmn_cli.train import thin_scores

    featurized = ctx.input_dir("featurize")
    classes = packed.load_classes(featurized)
    student = load_model(ctx.input_file("distill", "student.pt"), expect_classes=len(classes))
    teacher = load_model(ctx.input_file("train-teacher", "teacher.pt"), expect_classes=len(classes))
    rows = thin_scores.score(
        teacher.model,
        student.model,
        packed.load_split(featurized, "validation"),
        packed.load_split(featurized, "testing"),
        classes,
    )
    chosen = choose(rows, ctx.config)
    for v in chosen:
        save_model(
            ctx.out_dir / "models" / f"{v}.pt",
            fixed_depth(student.model, v),
            classes,
            student.frontend,
            {"variant": v, "binarizer": student.model.binarizer_name},
        )
    atomic_write_json(ctx.out_dir / "variants.json", {"deployed": chosen, "variants": rows})
    atomic_write_text(ctx.out_dir / "table.md", _table(rows, chosen))
    thin_scores.plot(rows, ctx.out_dir / "accuracy_vs_flops.png")
    info(_table(rows, chosen))
    metrics: dict[str, Any] = {"deployed": chosen}
    for r in rows:
        for key in (
            "val_accuracy",
            "val_balanced_accuracy",
            "val_unknown_recall",
            "val_false_accept",
            "test_accuracy",
        ):
            metrics[f"{key}_{r['variant']}"] = r[key]
        metrics[f"flops_{r['variant']}"] = r["flops"]
    return metrics

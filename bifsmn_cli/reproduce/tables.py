"""Tables 1-3 assembled from the rows' artifacts (thin/variants.json, distill's manifest, bench/bench.json) and
written as Markdown and JSON beside the paper's published figures.

Nothing is typed in: accuracies, costs and latencies are read from the rows' stage outputs, the recipe shared by
the rows and what changes between them from their distill manifests (so a confound shows in the table instead of
hiding in a script). The paper's figures are those the repository records (bifsmn_cli.bench.report.PAPER: the
headline claims of the BiFSMN paper); a method whose published accuracy the repository does not record has an
empty paper cell, said so in the notes, rather than a number quoted from memory.
"""

from __future__ import annotations

import datetime as dt
import json
import shlex
from pathlib import Path
from typing import Any

from bifsmn_cli.bench.machine import describe
from bifsmn_cli.bench.report import PAPER
from bifsmn_cli.fsutil import atomic_write_json, atomic_write_text
from bifsmn_cli.nn.config import TEACHER
from bifsmn_cli.reproduce.plan import METHOD, ROWS, TABLE1, TABLE2, TABLE3, format_value

NOT_RUN = "not run"
NOT_TIMED = "not timed (--no-latency)"
TABLE3_LABELS = {"hed_tba": "BiFSMN", "small_hed_tba": "BiFSMN_S"}
PAPER_NOTE = (
    "paper: the figures of Qin et al. (BiFSMN, IJCAI 2022) that this repository records "
    "(bifsmn_cli/bench/report.py PAPER), measured on Speech Commands V1-12 and a Cortex-A53 board, so context "
    "rather than targets; '-' = the paper's per-method accuracy is not recorded here (not quoted from memory)."
)


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


class RowResult:
    """What one row's workspace holds: its thin scores per variant, distill config and engine latencies."""

    def __init__(self, ws: Path) -> None:
        self.ws = ws
        # only a finished thin stage (its manifest is written last) is read
        scores = (
            _read_json(ws / "thin" / "variants.json") if (ws / "thin" / "manifest.json").exists() else None
        )
        self.variants = {r["variant"]: r for r in scores["variants"]} if scores else {}
        distill = _read_json(ws / "distill" / "manifest.json") or {}
        self.config: dict[str, Any] = distill.get("config", {})
        bench = _read_json(ws / "bench" / "bench.json") if (ws / "bench" / "manifest.json").exists() else None
        self.latency_us = {
            c["model"]: c["net"]["median_us"]
            for c in (bench or {}).get("latency", {}).get("contenders", [])
            if c["kind"] == "engine" and c.get("net")
        }

    @property
    def done(self) -> bool:
        return bool(self.variants)


def _split(rows: list[RowResult]) -> str:
    """The split every accuracy is read on: testing where it has clips, else validation."""
    scored = [r for row in rows for r in row.variants.values()]
    return "testing" if scored and all(r.get("test_accuracy") is not None for r in scored) else "validation"


def _accuracy(score: dict[str, Any] | None, split: str) -> float | None:
    if score is None:
        return None
    return score["test_accuracy"] if split == "testing" else score["val_accuracy"]


def _pct(x: float | None) -> str:
    return NOT_RUN if x is None else f"{100 * x:.2f}"


def _flatten(config: dict[str, Any]) -> dict[str, Any]:
    return {f"{s}.{k}": v for s, section in config.items() for k, v in section.items()}


def _recipe(rows: list[RowResult], stated: set[str]) -> tuple[dict[str, Any], list[str]]:
    """The distill/model/augment settings all rows share, and one warning per setting that differs between
    rows although no row states it (a confound)."""
    flat = [_flatten(r.config) for r in rows if r.config]
    if not flat:
        return {}, []
    keys = sorted(set().union(*flat))
    shared = {k: flat[0].get(k) for k in keys if all(f.get(k) == flat[0].get(k) for f in flat)}
    confounds = [
        f"warning: {k} differs between rows without being part of their method (a confound)"
        for k in keys
        if k not in shared and k not in stated
    ]
    return shared, confounds


def _changes(previous: RowResult | None, row: RowResult) -> str:
    """The distill keys in which a row's manifest differs from the row above (computed, not declared)."""
    if previous is None or not previous.config or not row.config:
        return ""
    a, b = _flatten(previous.config), _flatten(row.config)
    return ", ".join(f"{k}={format_value(b.get(k))}" for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k))


def _method_cells(name: str) -> dict[str, Any]:
    s = ROWS[name].settings
    cells = {k: format_value(s[k]) for k in ("binarizer", "kd_weight", "hed_select", "init_from_teacher")}
    return {**cells, "variants": " ".join(s["variants"])}


def _markdown(table: dict[str, Any]) -> str:
    cols = table["columns"]
    lines = [f"# {table['title']}", ""]
    versions = ", ".join(f"{k} {v}" for k, v in table["versions"].items())
    lines += [
        f"- command: `{table['command']}`",
        f"- date: {table['date']}",
        f"- machine: {table['machine']}",
    ]
    lines.append(f"- versions: {versions}")
    lines.append(f"- budget: {table['budget']}; accuracy on the {table['split']} split")
    shared = ", ".join(f"{k}={format_value(v)}" for k, v in table["recipe"].items())
    lines += [f"- the same in every row: {shared}" if shared else "- recipe: no row has run yet", ""]
    lines.append("| " + " | ".join(label for _, label in cols) + " |")
    lines.append("|" + "---|" * len(cols))
    for row in table["rows"]:
        lines.append("| " + " | ".join(str(row["cells"].get(key, "")) for key, _ in cols) + " |")
    lines.append("")
    lines += [f"{n}\n" for n in table["notes"]]
    return "\n".join(lines)


def _paper_drop(name: str) -> str:
    """The paper's headline accuracy claim, on the full method's 1x row only."""
    return f"drop < {PAPER['accuracy_drop_below_pct']:g} (V1-12)" if name == "hed_tba" else "-"


def table1(
    results: dict[str, RowResult], split: str, _untimed: str
) -> tuple[list[tuple[str, str]], list[dict], list[str]]:
    cols = [
        ("method", "method"),
        ("binarizer", "binarizer"),
        ("variants", "trained variants"),
        ("kd_weight", "kd_weight"),
        ("hed_select", "hed_select"),
        ("init_from_teacher", "init from teacher"),
        ("changed", "changed from the row above (manifests)"),
        ("accuracy", f"1x accuracy % ({split})"),
        ("balanced", "1x val balanced %"),
        ("drop", "drop vs FP (points)"),
        ("paper", "paper"),
    ]
    rows, previous = [], None
    teacher = next((r.variants.get(TEACHER) for r in results.values() if r.done), None)
    rows.append(_score_row("full-precision teacher", TEACHER, teacher, split, {"paper": "-"}))
    for name in TABLE1:
        res = results[name]
        cells = {"method": ROWS[name].label, **_method_cells(name), "changed": _changes(previous, res)}
        cells["paper"] = _paper_drop(name)
        rows.append(_score_row(ROWS[name].label, name, res.variants.get("1x"), split, cells, teacher))
        previous = res
    notes = [
        "Each row changes one thing from the row above: logit distillation (KL, kd_weight, temperature "
        f"{METHOD['kd_temperature']}), then block distillation of the plain teacher features, then HED's "
        "high-frequency enhancement instead, then TBA (1x, 0.5x, 0.25x trained jointly); BiFSMNv2's "
        "frequency-independent distillation (fid: low and high parts matched apart, plus its logit MSE, at "
        "hed_alpha) replaces HED, then its LPB binarizer replaces BiFSMN's. BiFSMNv2's dual-scale thinnable "
        "activations are not implemented."
    ]
    return cols, rows, notes


def _score_row(
    label: str, name: str, score: dict | None, split: str, cells: dict, teacher: dict | None = None
) -> dict[str, Any]:
    """A table row of one model's scores; with `teacher`, its accuracy drop from the teacher in points."""
    acc = _accuracy(score, split)
    balanced = None if score is None else score.get("val_balanced_accuracy")
    cells = {"method": label, **cells, "accuracy": _pct(acc), "balanced": _pct(balanced)}
    if teacher is not None or name == TEACHER:
        base = _accuracy(teacher, split)
        cells["drop"] = "" if name == TEACHER else (_pct(base - acc) if None not in (acc, base) else NOT_RUN)
    return {"row": name, "accuracy": acc, "val_balanced_accuracy": balanced, "cells": cells}


def table2(
    results: dict[str, RowResult], split: str, _untimed: str
) -> tuple[list[tuple[str, str]], list[dict], list[str]]:
    from bifsmn_cli.nn.binarizers import BINARIZERS

    cols = [
        ("method", "method"),
        ("binarizer", "binarizer"),
        ("exportable", "runs in the engine"),
        ("accuracy", f"1x accuracy % ({split})"),
        ("balanced", "1x val balanced %"),
        ("drop", "drop vs FP (points)"),
        ("paper", "paper"),
    ]
    teacher = next((r.variants.get(TEACHER) for r in results.values() if r.done), None)
    rows = [_score_row("full-precision teacher", TEACHER, teacher, split, {"paper": "-"})]
    for label, name in TABLE2.items():
        b = ROWS[name].settings["binarizer"]
        cells = {"binarizer": b, "exportable": "yes" if BINARIZERS[b].exportable else "no", "paper": "-"}
        rows.append(_score_row(label, name, results[name].variants.get("1x"), split, cells, teacher))
    full = _accuracy(results["hed_tba"].variants.get("1x"), split)
    notes = [
        "Every binarizer with the same recipe: the plain D-FSMN at 1x, no distillation (kd_weight 0, "
        "hed_select none), initialised from the teacher; the BiFSMN binarizer's row is Table 1's vanilla row. "
        f"For reference (another recipe), the full BiFSMN (HED + TBA, Table 1) reaches {_pct(full)} % at 1x."
    ]
    return cols, rows, notes


def table3(
    results: dict[str, RowResult], split: str, untimed: str
) -> tuple[list[tuple[str, str]], list[dict], list[str]]:
    cols = [
        ("method", "model"),
        ("variant", "variant"),
        ("accuracy", f"accuracy % ({split})"),
        ("balanced", "val balanced %"),
        ("params", "params"),
        ("flops", "FLOPs"),
        ("bytes", "size (bytes)"),
        ("latency", "engine µs (network)"),
        ("speedup", "vs engine FP teacher"),
        ("paper", "paper speed-up (A53)"),
    ]
    rows, shapes = [], []
    for name in TABLE3:
        res = results[name]
        label = TABLE3_LABELS[name]
        model = res.config.get("model", {})
        if model:
            shapes.append(
                f"{label} {model['num_blocks']} blocks, {model['backbone_size']} memory, {model['hidden_size']} hidden"
            )
        for v in [TEACHER, *ROWS[name].settings["variants"]]:
            score = res.variants.get(v)
            lat = res.latency_us.get(v)
            base = res.latency_us.get(TEACHER)
            cells = {
                "variant": "full precision" if v == TEACHER else v,
                "params": f"{score['params']:,}" if score else NOT_RUN,
                "flops": f"{score['flops']:,.0f}" if score else NOT_RUN,
                "bytes": f"{score['bytes']:,}" if score else NOT_RUN,
                "latency": f"{lat:.1f}" if lat is not None else untimed,
                "speedup": f"{base / lat:.1f}x" if lat and base else untimed,
                "paper": f"{PAPER['speedup_cortex_a53'][v]:g}x"
                if name == "hed_tba" and v in PAPER["speedup_cortex_a53"]
                else "-",
            }
            row = _score_row(label, f"{name}:{v}", score, split, cells)
            row.update(latency_us=lat, flops=score and score["flops"], params=score and score["params"])
            rows.append(row)
    notes = [
        f"{'; '.join(shapes) or 'BiFSMN and BiFSMN_S'} (BiFSMN_S distilled from a full-precision teacher of "
        "its own size, same recipe), each trained with HED + TBA; FLOPs = real MACs + "
        "binary operations / 64 (the paper's convention); engine latency: median of the C engine's network "
        "time per clip on one core of this machine (bench), the full-precision row being the engine's float "
        f"mode. Paper speed-ups: {PAPER['source']}, measured on a Cortex-A53 board."
    ]
    return cols, rows, notes


TABLES = {
    1: ("Table 1: ablation, vanilla binarization to BiFSMN (and BiFSMNv2's methods)", table1),
    2: ("Table 2: binarization methods on the plain D-FSMN, same recipe", table2),
    3: ("Table 3: thinnable variants and BiFSMN_S, accuracy against cost", table3),
}


def write_tables(root: Path, budget: str, command: list[str], latency: bool = True) -> list[Path]:
    """Assemble the three tables from the rows under `root/rows` and write table{1,2,3}.md/.json in `root`;
    `latency` False: Table 3's engine columns say the run did not time them."""
    results = {name: RowResult(root / "rows" / name) for name in ROWS}
    split = _split([r for r in results.values() if r.done])
    machine = describe()
    head = {
        "command": shlex.join(command),
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": f"{machine['cpu_model']}, {machine['logical_cpus']} logical CPUs, {machine['os']}",
        "versions": {k: v for k, v in machine["versions"].items() if v},
        "budget": budget,
        "split": split,
    }
    written = []
    for number, (title, build) in TABLES.items():
        cols, rows, notes = build(results, split, NOT_RUN if latency else NOT_TIMED)
        names = {r["row"].split(":")[0] for r in rows} - {TEACHER}
        stated = {k for n in names for k in ROWS[n].overrides()}
        recipe, confounds = _recipe([results[n] for n in names], stated)
        table = {
            "table": number,
            "title": title,
            **head,
            "recipe": recipe,
            "columns": [{"key": k, "label": label} for k, label in cols],
            "rows": rows,
            "notes": [*confounds, *notes, PAPER_NOTE],
        }
        md = _markdown({**table, "columns": cols})
        atomic_write_json(root / f"table{number}.json", table)
        atomic_write_text(root / f"table{number}.md", md)
        written += [root / f"table{number}.md", root / f"table{number}.json"]
    return written

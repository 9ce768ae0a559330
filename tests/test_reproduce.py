"""Reproducing the paper's tables: rows that change one thing at a time, tables assembled from the artifacts (a
confound shows), and pipelines/reproduce.sh end to end on a tiny corpus: every row and a number in every cell,
and a second run that skips what is done."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import assert_user_error, invoke_cli, write_corpus

from bifsmn_cli.reproduce import tables
from bifsmn_cli.reproduce.plan import METHOD, ROWS, TABLE1, TABLE2, TABLE3

REPO = Path(__file__).resolve().parents[1]
NUMERIC = ("accuracy", "balanced", "drop", "params", "flops", "bytes", "latency", "speedup")


def _differences(a: str, b: str) -> dict[str, tuple]:
    sa, sb = ROWS[a].settings, ROWS[b].settings
    return {k: (sa[k], sb[k]) for k in sa if sa[k] != sb[k]}


def test_table1_changes_one_setting_per_row_and_every_row_states_them_all():
    for name in ROWS:
        assert set(ROWS[name].overrides()) >= {f"distill.{k}" for k in METHOD} | {"thin.deploy"}
    changes = [_differences(a, b) for a, b in zip(TABLE1[:-1], TABLE1[1:], strict=True)]
    assert changes == [
        {"kd_weight": (0.0, 1.0)},
        {"hed_select": ("none", "plain")},
        {"hed_select": ("plain", "high")},
        {"variants": (["1x"], ["1x", "0.5x", "0.25x"])},
        {"hed_select": ("high", "fid")},
        {"binarizer": ("bifsmn", "lpb")},
    ]
    assert ROWS["vanilla"].settings["init_from_teacher"] is True  # vanilla differs by distillation only


def test_table2_binarizers_share_the_vanilla_recipe():
    binarizers = set()
    for name in TABLE2.values():
        assert set(_differences("vanilla", name)) <= {"binarizer"}
        binarizers.add(ROWS[name].settings["binarizer"])
    assert binarizers == {"bnn", "dorefa", "xnor", "bireal", "irnet", "rad", "bifsmn", "lpb"}
    small = ROWS["small_hed_tba"]
    assert small.own_teacher and small.extra == {"model.backbone_size": 32, "model.hidden_size": 64}
    assert not _differences("hed_tba", "small_hed_tba")


def _fake_row(root: Path, name: str, variants: list[str], lr: float = 0.002, latency: bool = False) -> None:
    """A row workspace holding what the tables read: thin's scores, distill's manifest, bench's latencies."""
    ws = root / "rows" / name
    for stage in ("thin", "distill", "bench"):
        (ws / stage).mkdir(parents=True, exist_ok=True)
    scores = [
        {"variant": v, "val_accuracy": 0.5 + 0.01 * i, "val_balanced_accuracy": 0.4, "test_accuracy": None}
        | {"params": 1000 * (i + 1), "flops": 2000.0 * (i + 1), "bytes": 300 * (i + 1)}
        for i, v in enumerate(["teacher", *variants])
    ]
    (ws / "thin" / "variants.json").write_text(json.dumps({"deployed": variants, "variants": scores}))
    (ws / "thin" / "manifest.json").write_text("{}")
    s = ROWS[name].settings
    distill = {**s, "lr": lr, "epochs": 6}
    (ws / "distill" / "manifest.json").write_text(json.dumps({"config": {"distill": distill, "model": {}}}))
    if latency:
        contenders = [
            {"kind": "engine", "model": v, "net": {"median_us": us}}
            for v, us in (("teacher", 200.0), ("1x", 50.0), ("0.5x", 40.0), ("0.25x", 25.0))
        ]
        (ws / "bench" / "bench.json").write_text(json.dumps({"latency": {"contenders": contenders}}))
        (ws / "bench" / "manifest.json").write_text("{}")


def test_tables_from_artifacts_show_latency_and_confounds(tmp_path):
    for name, row in ROWS.items():
        lr = 0.005 if name == "bin_xnor" else 0.002  # a setting no row states differs: a confound
        _fake_row(tmp_path, name, row.settings["variants"], lr, latency=row.latency)
    tables.write_tables(tmp_path, "quick", ["bifsmn", "reproduce"])
    t3 = json.loads((tmp_path / "table3.json").read_text())
    by_row = {r["row"]: r for r in t3["rows"]}
    assert by_row["hed_tba:1x"]["latency_us"] == 50.0
    assert by_row["hed_tba:0.25x"]["cells"]["speedup"] == "8.0x"
    assert by_row["hed_tba:0.25x"]["cells"]["paper"] == "22.3x"
    assert by_row["small_hed_tba:teacher"]["cells"]["latency"] == "200.0"
    t2 = json.loads((tmp_path / "table2.json").read_text())
    assert any("distill.lr differs between rows" in n for n in t2["notes"])
    t1 = json.loads((tmp_path / "table1.json").read_text())
    assert not any("confound" in n for n in t1["notes"])
    assert t1["recipe"]["distill.lr"] == 0.002 and t1["split"] == "validation"
    drops = {r["row"]: r["cells"]["drop"] for r in t1["rows"]}
    assert drops["teacher"] == "" and drops["vanilla"] == "-1.00"  # fake scores: teacher 50 %, every 1x 51 %
    assert [r["row"] for r in t1["rows"]] == ["teacher", *TABLE1]
    md = (tmp_path / "table1.md").read_text()
    assert "- command: `bifsmn reproduce`" in md and "distill.lr=0.002" in md


def test_a_row_not_run_says_so(tmp_path):
    _fake_row(tmp_path, "vanilla", ["1x"])
    tables.write_tables(tmp_path, "quick", ["x"], latency=False)
    t2 = json.loads((tmp_path / "table2.json").read_text())
    cells = {r["row"]: r["cells"] for r in t2["rows"]}
    assert cells["vanilla"]["accuracy"] == "51.00" and cells["bin_bnn"]["accuracy"] == tables.NOT_RUN
    t3 = json.loads((tmp_path / "table3.json").read_text())
    assert {r["cells"]["latency"] for r in t3["rows"]} == {tables.NOT_TIMED}


def test_bad_budget_is_one_line(tmp_path):
    config = tmp_path / "p.yaml"
    config.write_text(f"name: t\nworkspace: {tmp_path / 'ws'}\n")
    assert_user_error(
        invoke_cli("reproduce", "-c", str(config), "--budget", "huge"), "--budget: expected one of"
    )
    assert not (tmp_path / "ws").exists()


@pytest.mark.slow
def test_reproduce_sh_end_to_end_on_a_tiny_corpus(tmp_path):
    """Every row at one epoch (the engine not timed: Table 3's latency assembly is tested above), every cell a
    number; a rerun runs only what was removed."""
    speakers = tuple(f"{i:08x}" for i in range(8))
    write_corpus(tmp_path / "corpus", words=("yes", "no", "up", "down"), speakers=speakers, noises=("white",))
    (tmp_path / "tiny.yaml").write_text(
        "name: tiny\nworkspace: ws\nseed: 0\ndownload: {source: folder, path: corpus}\n"
        "featurize: {task: words, words: [yes, no, up]}\n"
        "model: {num_blocks: 4, backbone_size: 16, hidden_size: 24, stem_channels: 4}\n"
        "train_teacher: {batch_size: 8}\ndistill: {batch_size: 8}\n"
    )
    command = [
        str(REPO / "pipelines" / "reproduce.sh"),
        "tiny.yaml",
        "--no-latency",
        "--set",
        "train_teacher.epochs=1",
        "--set",
        "distill.epochs=1",
    ]
    env = {**os.environ, "PYTHON": sys.executable, "OMP_NUM_THREADS": "1"}

    def run() -> subprocess.CompletedProcess:
        result = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)
        assert result.returncode == 0, result.stderr[-3000:]
        return result

    run()
    root = tmp_path / "ws" / "reproduce" / "quick"
    expected_rows = {
        1: ["teacher", *TABLE1],
        2: ["teacher", *TABLE2.values()],
        3: [f"{n}:{v}" for n in TABLE3 for v in ("teacher", "1x", "0.5x", "0.25x")],
    }
    for number, rows in expected_rows.items():
        table = json.loads((root / f"table{number}.json").read_text())
        assert [r["row"] for r in table["rows"]] == rows
        assert not any("confound" in n for n in table["notes"])
        assert table["recipe"]["distill.epochs"] == 1 and table["split"] == "testing"
        for r in table["rows"]:
            untimed = ("latency", "speedup") + (("drop",) if r["row"] == "teacher" else ())
            for key in NUMERIC:
                if key in r["cells"] and key not in untimed:
                    assert re.fullmatch(r"-?[\d,.]+x?", r["cells"][key]), (
                        number,
                        r["row"],
                        key,
                        r["cells"][key],
                    )
        md = (root / f"table{number}.md").read_text()
        assert md.count("\n| ") == len(rows) + 1  # the header and one line per row
    t1 = json.loads((root / "table1.json").read_text())
    changed = [r["cells"]["changed"] for r in t1["rows"][2:]]
    assert changed[0] == "distill.kd_weight=1.0" and changed[3].startswith("distill.variants=")
    assert ROWS["small_hed_tba"].own_teacher and (root / "rows" / "small_hed_tba" / "train-teacher").is_dir()
    assert not (root / "rows" / "small_hed_tba" / "train-teacher").is_symlink()
    args = (root / "rows" / "hed_tba" / "row.args").read_text().splitlines()
    assert "--set distill.variants=[1x,0.5x,0.25x]" in args and "--set distill.kd_weight=1.0" in args
    assert args.index("--set distill.epochs=1") < args.index(f"--set workspace={root / 'rows' / 'hed_tba'}")

    # resuming: a finished row is skipped; a row whose thin output was lost reruns that stage only
    manifests = sorted(root.glob("rows/*/*/manifest.json"))
    before = {m: m.read_text() for m in manifests}
    lost = root / "rows" / "bin_rad" / "thin" / "manifest.json"
    lost.unlink()
    run()
    assert lost.exists()
    assert [m for m in manifests if m != lost and m.read_text() != before[m]] == []

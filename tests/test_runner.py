"""The stage runner: manifests, staleness propagation, failure, resumable state and the workspace lock."""

from __future__ import annotations

import dataclasses
import json
import sys
import types
from pathlib import Path

import pytest

from bifsmn_cli.config import Int, load_pipeline
from bifsmn_cli.errors import InternalError, UserError
from bifsmn_cli.fsutil import WorkspaceLock, atomic_path, atomic_write_json
from stages.pipeline import registry, runner, schema
from stages.pipeline.manifest import fingerprint
from stages.pipeline.stage import StageSpec


def _make_stage(name: str, needs: tuple[str, ...], calls: list[str]) -> types.ModuleType:
    module = types.ModuleType(f"fake_{name}")
    module.SPEC = StageSpec(name=name, schema={"size": Int(1, min=1)}, needs=needs, outputs=("out.json",))

    def run(ctx):
        calls.append(name)
        if ctx.config["size"] == 99:
            raise UserError("size 99 is cursed")
        for need in needs:
            ctx.input_dir(need)
        atomic_write_json(ctx.out_dir / "out.json", {"size": ctx.config["size"], "seed": ctx.seed})
        (ctx.state_dir / "ckpt").write_text("x")
        return {"size": ctx.config["size"]}

    module.run = run
    sys.modules[module.__name__] = module
    return module


@pytest.fixture
def fake(monkeypatch, tmp_path):
    calls: list[str] = []
    mods = {
        "a": _make_stage("a", (), calls),
        "b": _make_stage("b", ("a",), calls),
        "c": _make_stage("c", ("b",), calls),
    }
    table = {name: mod.__name__ for name, mod in mods.items()}
    monkeypatch.setattr(registry, "STAGES", table)
    path = tmp_path / "p.yaml"
    path.write_text(f"name: t\nworkspace: {tmp_path / 'ws'}\n")

    def load(*overrides: str):
        return load_pipeline(path, schema.pipeline_schema(), list(overrides))

    return load, calls, tmp_path / "ws"


def states(pipeline) -> dict[str, str]:
    return {s.stage: s.state for s in runner.statuses(pipeline)}


def test_manifest_and_up_to_date(fake):
    load, calls, ws = fake
    p = load()
    assert states(p) == {"a": "missing", "b": "missing", "c": "missing"}
    runner.run_stages(p, ["a", "b", "c"], skip_up_to_date=True)
    manifest = json.loads((ws / "b" / "manifest.json").read_text())
    assert manifest["stage"] == "b" and manifest["config"] == {"b": {"size": 1}}
    assert set(manifest["outputs"]) == {"out.json"} and len(manifest["outputs"]["out.json"]) == 64
    assert manifest["metrics"] == {"size": 1} and manifest["inputs"]["a"] == fingerprint(
        json.loads((ws / "a" / "manifest.json").read_text())
    )
    assert not (ws / "b" / "state").exists(), "resumable state is dropped once the stage finished"
    assert states(p) == {"a": "up to date", "b": "up to date", "c": "up to date"}
    runner.run_stages(p, ["a", "b", "c"], skip_up_to_date=True)
    assert calls == ["a", "b", "c"]


def test_change_makes_downstream_stale_not_upstream(fake):
    load, calls, _ = fake
    runner.run_stages(load(), ["a", "b", "c"])
    changed = load("b.size=2")
    status = {s.stage: s for s in runner.statuses(changed)}
    assert status["a"].state == "up to date"
    assert status["b"].state == "stale" and "b.size" in status["b"].reason
    assert status["c"].state == "stale" and "upstream b" in status["c"].reason
    runner.run_stages(changed, ["a", "b", "c"], skip_up_to_date=True)
    assert calls == ["a", "b", "c", "b", "c"]
    runner.run_stages(load(), ["a", "b"], skip_up_to_date=True)
    assert states(load())["c"] == "stale"
    assert "input b changed" in runner.statuses(load())[2].reason


def test_failure_leaves_no_manifest(fake):
    load, _, ws = fake
    runner.run_stages(load(), ["a"])
    with pytest.raises(UserError, match="cursed"):
        runner.run_stages(load("a.size=99"), ["a"])
    assert not (ws / "a" / "manifest.json").exists() and not (ws / "a" / "out.json").exists()
    status = runner.statuses(load("a.size=99"))[0]
    assert status.state == "failed" and "cursed" in status.reason


def test_missing_upstream_names_the_command(fake):
    load, _, ws = fake
    with pytest.raises(UserError) as err:
        runner.run_stages(load(), ["b"])
    assert f"missing artifact {ws / 'a'}" in str(err.value) and "`bifsmn a -c" in str(err.value)


def test_resume_requires_state(fake):
    load, _, _ = fake
    with pytest.raises(UserError, match="nothing to resume"):
        runner.run_stages(load(), ["a"], resume=True)


def test_lock_refuses_a_second_writer(fake):
    load, _, ws = fake
    with WorkspaceLock(ws):
        with pytest.raises(UserError, match="is in use by bifsmn process"):
            runner.run_stages(load(), ["a"])


def test_select_and_unknown_stage():
    assert registry.select("featurize", "distill") == ["featurize", "train-teacher", "distill"]
    with pytest.raises(UserError, match="unknown stage 'x'"):
        registry.select("x", None)


def test_atomic_path_leaves_nothing_on_failure(tmp_path: Path):
    target = tmp_path / "f.bin"
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_bytes(b"half")
            raise RuntimeError("killed")
    assert list(tmp_path.iterdir()) == []


def test_source_hash_makes_the_stage_stale(fake, monkeypatch):
    """A stage declaring `source_hash` (build-kernel: the csrc/ tree) goes stale when only its sources change."""
    load, calls, _ = fake
    source = {"hash": "v1"}
    spec = registry.stage_module("b").SPEC
    monkeypatch.setattr(
        sys.modules["fake_b"], "SPEC", dataclasses.replace(spec, source_hash=lambda: source["hash"])
    )
    runner.run_stages(load(), ["a", "b", "c"])
    assert states(load()) == {"a": "up to date", "b": "up to date", "c": "up to date"}
    source["hash"] = "v2"
    status = {s.stage: s for s in runner.statuses(load())}
    assert status["a"].state == "up to date"
    assert (status["b"].state, status["b"].reason) == ("stale", "source files changed")
    assert status["c"].state == "stale" and "upstream b" in status["c"].reason
    runner.run_stages(load(), ["a", "b", "c"], skip_up_to_date=True)
    assert calls == ["a", "b", "c", "b", "c"] and states(load())["c"] == "up to date"


def test_keep_state_survives_a_config_change_but_not_force(fake, monkeypatch):
    load, _, ws = fake
    module = sys.modules["fake_a"]
    monkeypatch.setattr(module, "SPEC", dataclasses.replace(module.SPEC, keep_state=True))
    runner.run_stages(load(), ["a"])
    assert (ws / "a" / "state" / "ckpt").exists()
    (ws / "a" / "state" / "archive.tar.gz").write_text("verified")
    runner.run_stages(load("a.size=2"), ["a"])
    assert (ws / "a" / "state" / "archive.tar.gz").exists()
    runner.run_stages(load("a.size=2"), ["a"], force=True)
    assert not (ws / "a" / "state" / "archive.tar.gz").exists()


def test_a_stage_reads_and_writes_only_what_it_declares(fake, monkeypatch):
    """Inputs come from declared upstream stages and their declared files, sections from the spec; a file the
    stage does not declare fails the stage (a bug: exit 2), leaving failed.json and no manifest."""
    load, _, ws = fake
    runner.run_stages(load(), ["a"])
    module = sys.modules["fake_b"]
    for bad, message in (
        (lambda ctx: ctx.input_file("a", "secret.json"), "reads a/secret.json, which a does not declare"),
        (lambda ctx: ctx.input_dir("c"), "reads c's artifact without declaring it"),
        (lambda ctx: ctx.section("c"), "reads section 'c' without declaring it"),
        (lambda ctx: (ctx.out_dir / "stray.txt").write_text("x"), "stray.txt, which it does not declare"),
    ):
        monkeypatch.setattr(module, "run", bad)
        with pytest.raises(InternalError, match=message):
            runner.run_stages(load(), ["b"])
        assert not (ws / "b" / "manifest.json").exists() and (ws / "b" / "failed.json").exists()
    monkeypatch.setattr(module, "run", lambda ctx: {"read": ctx.input_file("a", "out.json").read_text()})
    assert runner.run_stages(load(), ["b"]) == ["b"]
    assert json.loads(json.loads((ws / "b" / "manifest.json").read_text())["metrics"]["read"])["size"] == 1

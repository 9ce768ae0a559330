"""The export stage on a tiny workspace: every file, its format and size, the engine check against PyTorch,
and the one-line error for a student whose binarizer the engine cannot run."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from helpers import VARIANTS, assert_user_error, invoke_cli
from tiny_workspace import (
    pipeline_file,
    run,
    upstream_of_export,
    write_build_kernel,
    write_featurize,
    write_models,
)

from bifsmn_cli.errors import UserError
from bifsmn_cli.export.bfsm import read_bfsm
from bifsmn_cli.export.onnx_export import onnx_available
from bifsmn_cli.nn.dfsmn import variant_blocks
from bifsmn_cli.nn.model_file import load_model, save_model

pytestmark = pytest.mark.slow  # each test builds a workspace and runs export end to end


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("export")
    path = upstream_of_export(tmp)
    return path, tmp / "ws" / "export", run(path, "export")


def test_every_model_is_written_and_readable(exported):
    _, out, manifest = exported
    index = json.loads((out / "exported.json").read_text())
    assert list(index["models"]) == [*VARIANTS, "teacher"]
    for v in VARIANTS:
        record = read_bfsm(out / f"model_{v}.bfsm")
        assert record["binary"] and record["variant"] == v and record["classes"] == ["yes", "no", "_unknown_"]
        assert record["blocks"] == variant_blocks(v, 4)
        header = (out / f"model_{v}.h").read_text()
        symbol = "bifsmn_model_" + v.replace(".", "_")
        assert f"{symbol}_data[{(out / f'model_{v}.bfsm').stat().st_size}]" in header
    teacher = read_bfsm(out / "teacher.bfsm")
    assert not teacher["binary"] and teacher["variant"] == "fp" and teacher["blocks"] == [0, 1, 2, 3]
    assert (out / "teacher.onnx").is_file() == onnx_available()
    assert set(manifest["outputs"]) >= {"model_1x.bfsm", "model_1x.h", "teacher.bfsm", "exported.json"}


def test_sizes_in_metrics(exported):
    _, out, manifest = exported
    m = manifest["metrics"]
    for name in (*VARIANTS, "teacher"):
        file = out / ("teacher.bfsm" if name == "teacher" else f"model_{name}.bfsm")
        assert m[f"bytes_{name}"] == file.stat().st_size > 0
    assert m["bytes_0.25x"] < m["bytes_0.5x"] < m["bytes_1x"] < m["bytes_teacher"]
    if onnx_available():
        assert m["onnx"]["written"] and m["onnx"]["bytes"] == (out / "teacher.onnx").stat().st_size
        assert m["onnx"]["max_abs_diff"] < 1e-3


def test_engine_check_against_pytorch(exported):
    _, out, manifest = exported
    check = manifest["metrics"]["check"]
    assert check["checked"] and check["library"].endswith("build-kernel/host/libbifsmn.so")
    assert set(check["models"]) == {*VARIANTS, "teacher"}
    for result in check["models"].values():
        assert result["clips"] == 4 and result["top_agree"] == 1.0 and result["mismatched_clips"] == 0
        assert result["max_rel_err"] < 1e-4


def test_check_and_onnx_can_be_turned_off(exported):
    path, out, _ = exported
    manifest = run(path, "export", ["export.check=false", "export.onnx=false"])
    assert manifest["metrics"]["check"] == {"checked": False, "reason": "export.check is false"}
    assert manifest["metrics"]["onnx"]["written"] is False and not (out / "teacher.onnx").exists()


def test_check_reports_what_it_compared_and_enforces_its_tolerance(exported, tmp_path):
    """A reference that really differs from the exported file (thin's 1x with a shifted classifier bias)
    disagrees on every clip: the check fails naming its key, unless check_max_mismatch allows it, and then
    reports exactly how many clips agreed."""
    path, out, _ = exported
    ws = tmp_path / "ws"
    shutil.copytree(out.parent, ws, ignore=shutil.ignore_patterns("export"))
    config = pipeline_file(tmp_path, ws)
    reference = ws / "thin" / "models" / "1x.pt"
    loaded = load_model(reference)
    with torch.no_grad():
        loaded.model.classifier.bias.copy_(torch.arange(3.0) * 1e3)  # class 2 always wins in PyTorch only
    save_model(reference, loaded.model, loaded.classes, loaded.frontend)
    result = invoke_cli("-q", "export", "-c", str(config))
    assert result.returncode == 2, result.stderr
    assert "model_1x.bfsm: the C engine disagrees with PyTorch on" in result.stderr
    assert "export.check_max_mismatch 0.125" in result.stderr
    manifest = run(config, "export", ["export.check_max_mismatch=1.0"])
    check = manifest["metrics"]["check"]["models"]
    assert check["1x"]["clips"] == 4 and check["1x"]["max_mismatched_clips"] == 4
    assert check["1x"]["mismatched_clips"] == 4 and check["1x"]["max_rel_err"] > 0.1
    assert check["0.5x"]["mismatched_clips"] == 0 and check["0.5x"]["top_agree"] == 1.0


def test_check_needs_build_kernels_host_library(tmp_path):
    """The check never falls back to some other libbifsmn lying around (a test build, an old release): it runs
    build-kernel's, which the runner keeps in step with the sources, or refuses."""
    ws = tmp_path / "ws"
    write_featurize(ws, clips=2)
    write_models(ws)
    config = pipeline_file(tmp_path, ws)
    assert_user_error(
        invoke_cli("-q", "export", "-c", str(config)), f"missing artifact {ws / 'build-kernel'}"
    )
    write_build_kernel(ws)
    (ws / "build-kernel" / "host" / "libbifsmn.so").unlink()
    assert_user_error(
        invoke_cli("-q", "export", "-c", str(config)),
        "build-kernel/host/libbifsmn.so: missing",
        "build_kernel.targets",
        "export.check: false",
    )


def test_binarizer_the_engine_cannot_run(tmp_path):
    ws = tmp_path / "ws"
    write_featurize(ws, clips=2)
    write_models(ws, binarizer="xnor")
    write_build_kernel(ws)
    result = invoke_cli("-q", "export", "-c", str(pipeline_file(tmp_path, ws)))
    assert_user_error(result, "student.pt", "'xnor'", "distill.binarizer")
    assert not list((ws / "export").glob("*.bfsm")) and (ws / "export" / "failed.json").is_file()


def test_storage_is_measured_chosen_and_checked(exported):
    """auto: each student's storage chosen on the validation clips (no decision changed), recorded per file; a
    rounded file is checked twice (its float32 form against the PyTorch model, itself against PyTorch running its
    own weights). fp32 and int8 on request, with their sizes."""
    path, out, manifest = exported
    index = json.loads((out / "exported.json").read_text())
    s = index["storage"]
    assert (s["requested"], s["min_agreement"], s["split"], s["clips"]) == ("auto", 1.0, "validation", 8)
    check = manifest["metrics"]["check"]["models"]
    for v in VARIANTS:
        m = s["models"][v]
        assert m["chosen"]["top1_agreement"] == 1.0 and m["chosen"]["changed_clips"] == 0
        assert m["chosen"]["bytes"] == index["models"][v]["bytes"] <= m["options"]["fp32"]["bytes"]
        assert set(m["options"]) == {"fp32", "fp16", "int8"}
        label = index["models"][v]["fp_storage"]
        assert label in ("fp32", "fp16", "int8", "mixed") and manifest["metrics"]["fp_storage"][v] == label
        if label != "fp32":
            assert check[v]["stored"]["fp_storage"] == label and check[v]["stored"]["mismatched_clips"] == 0
    assert index["models"]["teacher"]["fp_storage"] == "fp32" and "stored" not in check["teacher"]
    fp32 = run(path, "export", ["export.fp_storage=fp32", "export.onnx=false"])
    sizes = {v: fp32["metrics"][f"bytes_{v}"] for v in VARIANTS}
    for v in VARIANTS:
        assert {op["weight_storage"] for op in read_bfsm(out / f"model_{v}.bfsm")["ops"]} == {"fp32"}
        assert "stored" not in fp32["metrics"]["check"]["models"][v]
    int8 = run(path, "export", ["export.fp_storage=int8", "export.onnx=false"])
    for v in VARIANTS:
        ops = read_bfsm(out / f"model_{v}.bfsm")["ops"]
        assert {op["weight_storage"] for op in ops if not op["binary"]} == {"int8"}
        assert {op["vector_storage"] for op in ops} == {"fp16"}
        assert int8["metrics"][f"bytes_{v}"] < sizes[v] and int8["metrics"]["fp_storage"][v] == "int8"
        assert int8["metrics"]["check"]["models"][v]["stored"]["mismatched_clips"] == 0
    with pytest.raises(UserError, match="export.fp_storage"):
        run(path, "export", ["export.fp_storage=bf16"])

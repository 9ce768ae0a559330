"""The build-kernel stage: a real host build through the CLI (artifacts, metrics, staleness on C changes),
its user errors (missing cross toolchain, failing ctest, bad targets), and a small aarch64 cross build."""

from __future__ import annotations

import json
import re
import shutil
import struct
import subprocess

import pytest
from helpers import assert_user_error, run_cli

from bifsmn_cli.engine import build
from bifsmn_cli.engine.binding import IMPLS, Library
from bifsmn_cli.engine.mca import MCA_NAMES, find_tool
from bifsmn_cli.errors import UserError
from stages.pipeline import runner, schema

HOST_FILES = {"libbifsmn.so", "libbifsmn.a", "bifsmn-infer", "bifsmn.h", "build.log", "ctest.log"}
EM_AARCH64 = 183


def _pipeline(tmp_path, body: str = "build_kernel:\n  targets: [host]\n"):
    path = tmp_path / "p.yaml"
    path.write_text(f"name: bk\nworkspace: {tmp_path / 'ws'}\n{body}")
    return path


@pytest.fixture(scope="module")
def host_build(tmp_path_factory):
    """One host build shared by the tests below (a build and its ctest take a few seconds)."""
    tmp = tmp_path_factory.mktemp("bk")
    path = _pipeline(tmp)
    result = run_cli("build-kernel", "-c", str(path))
    assert result.returncode == 0, result.stderr
    out = tmp / "ws" / "build-kernel"
    return path, out, json.loads((out / "manifest.json").read_text()), result.stderr


@pytest.mark.slow
def test_host_artifacts(host_build):
    _, out, manifest, stderr = host_build
    assert {p.name for p in (out / "host").iterdir()} == HOST_FILES
    assert set(manifest["outputs"]) == {f"host/{name}" for name in HOST_FILES}
    assert not (out / "state").exists(), "build trees are dropped once the stage succeeded"
    lib = Library(out / "host" / "libbifsmn.so")
    assert lib.kernel_available("ref")
    infer = subprocess.run([out / "host" / "bifsmn-infer", "--help"], capture_output=True, text=True)
    assert infer.returncode == 0 and "usage: bifsmn-infer" in infer.stdout
    assert "host: " in stderr and "tests passed" in stderr


@pytest.mark.slow
def test_host_metrics(host_build):
    _, out, manifest, _ = host_build
    m = manifest["metrics"]
    assert m["source_hash"] == build.source_hash()
    assert m["cmake"] == build.cmake_version(build.find_cmake())
    host = m["targets"]["host"]
    assert host["preset"] == "host-release" and host["build_type"] == "Release" and host["cross"] is False
    assert host["compiler"]["id"] in ("GNU", "Clang") and re.fullmatch(
        r"\d+\.\d+(\.\d+)?", host["compiler"]["version"]
    )
    assert "-O3" in host["flags"] and "-std=c11" in host["flags"]
    if m["host_cpu"]["arch"] == "x86_64":
        assert "-mavx2" in host["file_flags"]["kernels/bgemm/bgemm_avx2.c"]
    tests = host["tests"]
    assert tests["failed"] == 0 and tests["passed"] == tests["total"] >= 3
    assert {"kernels", "frontend", "loader", "fuzz_regressions_loader", "fuzz_regressions_wav"} <= set(
        tests["tests"]
    )
    assert all(t["status"] == "run" for t in tests["tests"].values())
    ctest_log = (out / "host" / "ctest.log").read_text()
    assert f"100% tests passed out of {tests['total']}" in ctest_log
    # Two detections agree: the library's own cpuid dispatch and /proc/cpuinfo.
    lib = Library(out / "host" / "libbifsmn.so")
    assert host["engine_kernels"] == [k for k in IMPLS if k != "auto" and lib.kernel_available(k)]
    features = m["host_cpu"]["features"]
    if "avx2" in host["engine_kernels"]:
        assert features["avx2"] and features["fma"]
    if "avx512" in host["engine_kernels"]:
        assert features["avx512f"] and features["avx512bw"] and features["avx512vpopcntdq"]


@pytest.mark.slow
def test_up_to_date_until_sources_change(host_build, monkeypatch):
    path, _, manifest, _ = host_build
    status = run_cli("status", "-c", str(path))
    assert re.search(r"build-kernel\s.*up to date", status.stderr), status.stderr
    pipeline = schema.load(path)
    assert {s.stage: s.state for s in runner.statuses(pipeline)}["build-kernel"] == "up to date"
    monkeypatch.setattr(build, "source_hash", lambda root=None: "edited")
    stale = {s.stage: s for s in runner.statuses(pipeline)}["build-kernel"]
    assert (stale.state, stale.reason) == ("stale", "source files changed")


def _csrc_copy(tmp_path):
    copy = tmp_path / "csrc"
    shutil.copytree(build.CSRC, copy, ignore=shutil.ignore_patterns("build", ".*"))
    return copy


def test_source_hash_follows_sources_only(tmp_path):
    copy = _csrc_copy(tmp_path)
    first = build.source_hash(copy)
    (copy / "build" / "x").mkdir(parents=True)
    (copy / "build" / "x" / "CMakeCache.txt").write_text("anything")
    (copy / "NOTES.md").write_text("prose does not change the build")
    assert build.source_hash(copy) == first
    loader = copy / "src" / "loader.c"
    loader.write_text(loader.read_text() + "\n/* edited */\n")
    assert build.source_hash(copy) != first


@pytest.mark.slow
def test_failing_ctest_names_tests_and_log(tmp_path, monkeypatch):
    """A copy of csrc/ with one failing test: the stage fails, naming the test and the log, and leaves no manifest."""
    copy = _csrc_copy(tmp_path)
    with open(copy / "CMakeLists.txt", "a") as fh:
        fh.write("\nadd_test(NAME always_fails COMMAND ${CMAKE_COMMAND} -E false)\n")
    monkeypatch.setattr(build, "CSRC", copy)
    pipeline = schema.load(_pipeline(tmp_path))
    with pytest.raises(UserError) as err:
        runner.run_stages(pipeline, ["build-kernel"])
    log = tmp_path / "ws" / "build-kernel" / "host" / "ctest.log"
    assert re.search(
        rf"build-kernel host: 1 of \d+ tests failed \(always_fails\); see {re.escape(str(log))}$",
        str(err.value),
    )
    assert "always_fails (Failed)" in log.read_text()
    assert not (tmp_path / "ws" / "build-kernel" / "manifest.json").exists()
    assert {s.stage: s.state for s in runner.statuses(pipeline)}["build-kernel"] == "failed"


def test_missing_cross_toolchain_names_the_packages(tmp_path):
    path = _pipeline(tmp_path, "build_kernel:\n  targets: [host, aarch64]\n")
    empty = tmp_path / "bin"
    empty.mkdir()
    result = run_cli("-q", "build-kernel", "-c", str(path), env={"PATH": str(empty)})
    assert_user_error(result, "build_kernel.targets: host needs cc", "sudo apt-get install gcc")
    (empty / "cc").symlink_to(shutil.which("cc") or "/usr/bin/cc")
    result = run_cli("-q", "build-kernel", "-c", str(path), env={"PATH": str(empty)})
    assert_user_error(
        result,
        "aarch64 needs aarch64-linux-gnu-gcc, qemu-aarch64",
        "gcc-aarch64-linux-gnu qemu-user",
        "make setup",
    )


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("[]", "build_kernel.targets: empty"),
        ("[host, host]", "lists a target twice"),
        ("[arm]", "build_kernel.targets[0]: expected one of host, host-debug, aarch64"),
    ],
)
def test_bad_targets(tmp_path, value, message):
    result = run_cli(
        "-q", "build-kernel", "-c", str(_pipeline(tmp_path)), "--set", f"build_kernel.targets={value}"
    )
    assert_user_error(result, message)


CROSS_TOOLS = ("aarch64-linux-gnu-gcc", "qemu-aarch64")


@pytest.mark.skipif(
    any(shutil.which(t) is None for t in CROSS_TOOLS) or find_tool(MCA_NAMES) is None,
    reason="needs gcc-aarch64-linux-gnu, qemu-user and llvm-16 (make setup)",
)
@pytest.mark.slow
def test_aarch64_cross_build_and_mca(tmp_path):
    """Small on purpose: build (no ctest, that is several seconds under qemu) and llvm-mca on one CPU."""
    body = "build_kernel:\n  targets: [aarch64]\n  run_tests: false\n  mca_cpus: [cortex-a53]\n"
    result = run_cli("build-kernel", "-c", str(_pipeline(tmp_path, body)))
    assert result.returncode == 0, result.stderr
    out = tmp_path / "ws" / "build-kernel"
    infer = out / "aarch64" / "bifsmn-infer"
    header = infer.read_bytes()[:20]
    assert header[:4] == b"\x7fELF" and struct.unpack_from("<H", header, 18)[0] == EM_AARCH64
    ran = subprocess.run(["qemu-aarch64", infer, "--help"], capture_output=True, text=True)
    assert ran.returncode == 0 and "usage: bifsmn-infer" in ran.stdout
    target = json.loads((out / "manifest.json").read_text())["metrics"]["targets"]["aarch64"]
    assert target["cross"] and "tests" not in target and "engine_kernels" not in target
    assert (
        target["compiler"]["path"].endswith("aarch64-linux-gnu-gcc") and "-static" in target["linker_flags"]
    )
    mca = json.loads((out / "aarch64" / "mca.json").read_text())
    # the loops the network runs: the fused GEMM of the D-FSMN's depths (2 and 4 words) and the 5-tap memory conv
    for name in ("bfuse_gemm_kw2_threshold", "bfuse_gemm_kw4_float", "bfuse_dwconv_taps5"):
        rate = mca["kernels"][name]["cpus"]["cortex-a53"]["bit_macs_per_cycle"]
        assert rate > 0 and target["mca"][name] == {"unit": "bit_macs_per_cycle", "cortex-a53": rate}
    assert target["mca"]["sgemm"]["unit"] == "macs_per_cycle" and "bgemm" not in mca["kernels"]

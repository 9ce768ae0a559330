"""The bench stage on a tiny workspace with few repetitions: bench.json's schema and every figure present and
positive (no timing thresholds), the report and plots, the ARM sections (llvm-mca arithmetic from a canned
mca.json, "not measured" reasons), the qemu instruction-count differencing, and the user errors."""

from __future__ import annotations

import json
import os
import shutil
import stat
from pathlib import Path

import pytest
from helpers import VARIANTS
from tiny_workspace import (
    MCA,
    run,
    upstream_of_export,
)

from bifsmn_cli.bench import arm, latency, machine, streaming
from bifsmn_cli.errors import UserError
from bifsmn_cli.export.onnx_export import onnx_available
from stages.pipeline import schema

MODELS = [*VARIANTS, "teacher"]
ROUNDS, REPEATS = 2, 5  # tiny_workspace.pipeline_file's bench section
PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def benched(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("bench")
    ws = tmp / "ws"
    path = upstream_of_export(tmp)
    run(path, "export")
    manifest = run(path, "bench")
    out = tmp / "result"  # a copy: the tests below rerun bench in the same workspace, which clears its dir
    shutil.copytree(ws / "bench", out)
    return path, out, json.loads((out / "bench.json").read_text()), manifest


@pytest.mark.slow
def test_schema(benched):
    _, _, b, _ = benched
    assert b["schema"] == "bifsmn-bench/1"
    assert set(b) >= {
        "units",
        "machine",
        "config",
        "split",
        "accuracy",
        "latency",
        "kernels",
        "arm",
        "storage",
        "streaming",
    }
    assert set(b) >= {"complexity", "paper"}
    assert b["split"] == {"name": "testing", "clips": 8}
    m = b["machine"]
    assert m["cpu_model"] and m["arch"] and m["versions"]["torch"] and m["engine"]["compiler"]["id"] == "GNU"
    assert "ref" in m["engine"]["kernels"] and m["engine"]["auto"] in m["engine"]["kernels"]
    assert b["config"]["rounds"] == ROUNDS and b["config"]["kernels"] == ["auto"]


@pytest.mark.slow
def test_accuracy_in_both_runtimes(benched):
    _, _, b, _ = benched
    acc = b["accuracy"]["models"]
    assert list(acc) == MODELS
    for a in acc.values():
        assert a["clips"] == 8
        assert all(0 <= a[k] <= 1 for k in ("pytorch", "engine", "engine_e2e"))
        assert a["agreement"] == 1.0 and a["engine"] == a["pytorch"]


@pytest.mark.slow
def test_latency_figures(benched):
    _, _, b, _ = benched
    lat = b["latency"]
    names = [c["name"] for c in lat["contenders"]]
    expected = [f"engine {m}" for m in MODELS] + ["pytorch teacher"]
    expected += ["onnxruntime teacher"] if onnx_available() else []
    assert names == expected
    for c in lat["contenders"]:
        paths = ("net",) if c["kind"] == "onnxruntime" else ("net", "e2e")
        for p in paths:
            s = c[p]
            assert s["runs"] == ROUNDS * REPEATS and len(s["round_medians_us"]) == ROUNDS
            assert 0 < s["min_us"] <= s["median_us"] <= s["p90_us"] and s["mean_us"] > 0
    pairs = {(s["contender"], s["baseline"], s["path"]) for s in lat["speedups"]}
    for v in VARIANTS:
        assert {(f"engine {v}", "engine teacher", "net"), (f"engine {v}", "pytorch teacher", "e2e")} <= pairs
    for s in lat["speedups"]:
        assert s["ratio"] > 0 and 0 < s["round_min"] <= s["round_max"]


@pytest.mark.slow
def test_kernel_throughput_figures(benched):
    _, _, b, _ = benched
    k = b["kernels"]
    assert "ref" in k["implementations"] and k["peak"]["estimated"]
    assert k["peak"]["float32_gflops"] > 0 and k["peak"]["binary_gbit_macs"] > 0
    names = [s["name"] for s in k["shapes"]]
    assert names[-1] == "square 64" and any(n.startswith("conv2d") for n in names)
    assert any(n.startswith("linear") for n in names)
    for s in k["shapes"]:
        for impl in k["implementations"]:
            assert s["bgemm"][impl]["gbit_macs_per_s"] > 0 and s["bgemm"][impl]["fraction_of_peak"] > 0
        for impl in [*k["implementations"], "pytorch"]:
            assert s["sgemm"][impl]["gflops_per_s"] > 0 and s["sgemm"][impl]["fraction_of_peak"] > 0
        assert s["binary_vs_float_mac_ratio"] > 0
    assert all(v > 0 for v in k["call_overhead_us"].values())


@pytest.mark.slow
def test_arm_sections(benched):
    _, _, b, _ = benched
    a = b["arm"]
    core = a["mca"]["targets"]["aarch64"]["cores"]["cortex-a53"]
    bits = MCA["kernels"]["bgemm"]["cpus"]["cortex-a53"]["bit_macs_per_cycle"]
    macs = MCA["kernels"]["sgemm"]["cpus"]["cortex-a53"]["macs_per_cycle"]
    assert core["binary_vs_float_mac_ratio"] == bits / macs
    c = b["complexity"]
    teacher_cycles = (c["teacher"]["real_macs"] + c["teacher"]["binary_ops"]) / macs
    for v in VARIANTS:
        want = teacher_cycles / (c[v]["real_macs"] / macs + c[v]["binary_ops"] / bits)
        assert core["network_speedup_estimate"][v] == pytest.approx(want)
    assert a["qemu"] == {"measured": False, "reason": "bench.qemu_plugin is not set"}
    assert a["device"] == {"measured": False, "reason": "bench.device is not set"}


@pytest.mark.slow
def test_storage_and_complexity(benched):
    _, _, b, _ = benched
    s = b["storage"]
    assert all(s["teacher"][k] > 0 for k in ("checkpoint_bytes", "state_dict_bytes", "fp32_weights_bytes"))
    for v in VARIANTS:
        r = s["variants"][v]
        assert (
            r["bfsm_bytes"] > 0
            and r["teacher_bfsm_over_bfsm"] == s["teacher"]["bfsm_bytes"] / r["bfsm_bytes"]
        )
        assert r["state_dict_over_bfsm"] > 1 and r["fp32_weights_over_packed_estimate"] > 1
    for m in MODELS:
        assert b["complexity"][m]["flops"] > 0 and b["complexity"][m]["params"] > 0
    assert (
        b["complexity"]["0.25x"]["flops"]
        < b["complexity"]["1x"]["flops"]
        < b["complexity"]["teacher"]["flops"]
    )


@pytest.mark.slow
def test_report_plots_and_metrics(benched):
    _, out, b, manifest = benched
    report = (out / "report.md").read_text()
    for heading in (
        "## Headline",
        "## Accuracy",
        "## Latency",
        "## Kernel throughput",
        "## ARM",
        "## Storage",
        "## Streaming keyword detection",
    ):
        assert heading in report
    assert "not measured: bench.device is not set" in report and "paper" in report.lower()
    pngs = ("latency.png", "accuracy_vs_flops.png", "accuracy_vs_latency.png", "kernel_throughput.png")
    for png in (*pngs, "streaming_det.png"):
        assert (out / png).read_bytes().startswith(PNG) and f"]({png})" in report
    m = manifest["metrics"]
    for v in VARIANTS:
        assert m[f"speedup_net_{v}"] > 0 and m[f"storage_ratio_{v}"] > 1 and m[f"latency_net_us_{v}"] > 0
    assert m["accuracy_teacher"] == b["accuracy"]["models"]["teacher"]["engine"]
    st = b["streaming"]["models"]
    for model in MODELS:
        assert m[f"stream_frr_{model}"] == st[model]["default"]["false_rejection_rate"]
        assert m[f"stream_cpu_us_per_s_{model}"] == st[model]["cost"]["cpu_us_per_audio_second"] > 0


@pytest.mark.slow
def test_streaming_section(benched):
    """On the tiny workspace's random models (so the figures are consistent, not good): streams of the test
    split, every model's accuracy, DET points at the configured thresholds and cost."""
    _, _, b, _ = benched
    st = b["streaming"]
    assert st["measured"] and st["settings"]["stride"] == 3 and st["qemu"]["measured"] is False
    k = st["streams"]
    assert k["split"] == "testing" and k["clips"] == 8 and k["hours"] == pytest.approx(60 / 3600)
    assert (
        k["keywords"]["keywords"] + k["keywords"]["non_keywords"] == 10 and k["false_alarms"]["keywords"] == 0
    )
    assert list(st["models"]) == MODELS
    for r in st["models"].values():
        assert [p["threshold"] for p in r["det"]] == [0.5, 0.8, 0.99]
        assert all(0 <= p["false_rejection_rate"] <= 1 and p["false_alarms_per_hour"] >= 0 for p in r["det"])
        assert r["default"]["keywords"] == k["keywords"]["keywords"] and r["cost"]["runs"] > 0
        assert set(r["tensorflow"]) >= {"matched_pct", "correct_pct", "wrong_pct", "false_positive_pct"}


@pytest.mark.parametrize(
    ("override", "fragment"),
    [
        ("bench.qemu_plugin=/nonexistent/libinsn.so", "bench.qemu_plugin: /nonexistent/libinsn.so"),
        ("bench.device=http://board", "bench.device: expected ssh://user@host[:port]"),
        ("bench.kernels=[neon]", "bench.kernels: neon does not run on this CPU"),
    ],
)
@pytest.mark.slow
def test_user_errors(benched, override, fragment):
    path, _, _, _ = benched
    if "neon" in override and machine.describe()["arch"] in ("aarch64", "arm64"):
        pytest.skip("neon runs here")
    with pytest.raises(UserError, match=fragment.replace("[", r"\[").replace("]", r"\]")):
        run(path, "bench", [override])


FAKE_SSH = """#!/bin/sh
# ssh stand-in: drops the options and the destination, runs the command here; the board says it is aarch64.
while [ $# -gt 0 ]; do case "$1" in -o|-p) shift 2;; -*) shift;; *) break;; esac; done
shift
[ "$*" = "uname -m" ] && { echo aarch64; exit 0; }
exec sh -c "$*"
"""
FAKE_SCP = """#!/bin/sh
# scp stand-in: copies the files into the directory after "destination:".
files=; while [ $# -gt 1 ]; do case "$1" in -o|-P) shift 2;; -*) shift;; *) files="$files $1"; shift;; esac; done
cp $files "${1#*:}"
"""


@pytest.mark.slow
def test_board_over_ssh(benched, tmp_path, monkeypatch):
    """The board path end to end with ssh/scp stand-ins running here, and the host binary standing in for
    build-kernel's aarch64 one: copy, round-robin timing, parsing, speed-ups, clean-up."""
    path, _, _, _ = benched
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, text in (("ssh", FAKE_SSH), ("scp", FAKE_SCP)):
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    ws = schema.load(path).workspace
    shutil.copy2(
        ws / "build-kernel" / "host" / "bifsmn-infer", ws / "build-kernel" / "aarch64" / "bifsmn-infer"
    )
    before = set(Path("/tmp").glob("bifsmn-bench.*"))
    overrides = ["bench.device=ssh://me@board:2200", "bench.pytorch=false", "bench.onnxruntime=false"]
    run(path, "bench", [*overrides, "bench.kernel_shapes=[]"])
    d = json.loads((ws / "bench" / "bench.json").read_text())["arm"]["device"]
    assert d["measured"] and d["target"] == "aarch64" and d["board"]["arch"] == "aarch64"
    assert d["board"]["url"] == "ssh://me@board:2200"
    assert [c["name"] for c in d["contenders"]] == [f"engine {m}" for m in MODELS]
    assert all(c["net"]["runs"] == ROUNDS * REPEATS and c["e2e"]["median_us"] > 0 for c in d["contenders"])
    assert {(s["contender"], s["path"]) for s in d["speedups"]} == {
        (f"engine {v}", p) for v in VARIANTS for p in ("net", "e2e")
    }
    assert set(Path("/tmp").glob("bifsmn-bench.*")) == before  # the board's temporary directory is gone
    assert "### Board latency" in (ws / "bench" / "report.md").read_text()


def test_qemu_instruction_differencing(tmp_path):
    """A stand-in for qemu-aarch64 + the insn plugin: N --bench runs cost 5000 (loading) + N x per-run."""
    fake = tmp_path / "qemu"
    fake.write_text(
        "#!/bin/sh\n"
        'runs=0; path=; while [ $# -gt 0 ]; do case "$1" in --bench) runs=$2;; --bench-path) path=$2;; esac; '
        "shift; done\n"
        'per=100; [ "$path" = e2e ] && per=350\n'
        'echo "insns: $((5000 + runs * per))" >&2\n'
    )
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    counts = arm.qemu_counts(
        str(fake), tmp_path / "p.so", tmp_path / "infer", {"1x": tmp_path / "m"}, tmp_path / "c"
    )
    assert counts == {"1x": {"net_insns": 100.0, "e2e_insns": 350.0, "frontend_insns": 250.0}}


def test_qemu_stream_instruction_differencing(tmp_path):
    """The same stand-in for a stream: S seconds pushed cost 5000 + S x 1000 instructions."""
    fake = tmp_path / "qemu"
    fake.write_text(
        "#!/bin/sh\n"
        'sec=0; while [ $# -gt 0 ]; do case "$1" in --bench-seconds) sec=$2;; esac; shift; done\n'
        'echo "insns: $((5000 + sec * 1000))" >&2\n'
    )
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    s = streaming.Settings(cost_seconds=4)
    got = streaming.qemu_insns(
        str(fake), tmp_path / "p.so", tmp_path / "infer", {"1x": tmp_path / "m"}, tmp_path / "c", s
    )
    assert got == {"1x": 1000.0}


def test_device_url():
    d = arm.parse_device("ssh://pi@board.local:2222")
    assert (d.destination, d.port) == ("pi@board.local", 2222)
    assert d.ssh()[-3:] == ["-p", "2222", "pi@board.local"]
    assert arm.parse_device("ssh://board").destination == "board"
    with pytest.raises(UserError, match="bench.device"):
        arm.parse_device("board")


def test_summaries_and_peak():
    a = latency.summarize([[1000, 2000, 3000], [4000, 5000, 6000]])
    assert (a["median_us"], a["min_us"], a["round_medians_us"]) == (3.5, 1.0, [2.0, 5.0])
    b = latency.summarize([[500, 1000, 1500], [1000, 2500, 3000]])
    s = latency.speedup(a, b)
    assert s == {"ratio": 2.0, "ratio_of_medians": 3.5 / 1.25, "round_min": 2.0, "round_max": 2.0}
    widths = machine.vector_widths({"avx2", "fma"}, "x86_64")
    assert widths == {"float_bits": 256, "popcount_bits": 256}
    p = machine.peak(2000.0, widths)
    assert p["float32_gflops"] == 2.0 * 8 * 2 * 2 and p["binary_gbit_macs"] == 2.0 * 256
    assert machine.vector_widths({"avx512f", "avx512_vpopcntdq"}, "x86_64")["popcount_bits"] == 512
    assert machine.peak(None, widths)["estimated"] is False

"""The bench stage on a tiny workspace with few repetitions: bench.json's schema and every figure present and
positive (no timing thresholds), the report and plots, the ARM sections (llvm-mca arithmetic from a canned
mca.json, "not measured" reasons), the qemu instruction-count differencing, and the user errors."""

from __future__ import annotations

import json
import os
import re
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

from bifsmn_cli.bench import arm, binary_layers, latency, machine, profile, streaming
from bifsmn_cli.errors import UserError
from bifsmn_cli.export.bfsm import read_bfsm
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
    # float32 storage: the engine runs exactly the PyTorch weights, so accuracy parity below is exact (what a
    # rounded storage changes is measured by export itself: test_export_stage, test_storage)
    run(path, "export", ["export.fp_storage=fp32"])
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
    """The llvm-mca figures: each variant's binary layers weigh the canned loops they run (a missing loop stands
    in by the general kernel's), the network estimate adds the real MACs at the float rate."""
    path, _, b, _ = benched
    a = b["arm"]
    core = a["mca"]["targets"]["aarch64"]["cores"]["cortex-a53"]
    rates = {
        n: k["cpus"]["cortex-a53"]["bit_macs_per_cycle"] for n, k in MCA["kernels"].items() if n != "sgemm"
    }
    macs = MCA["kernels"]["sgemm"]["cpus"]["cortex-a53"]["macs_per_cycle"]
    assert core["sgemm_macs_per_cycle"] == macs
    c = b["complexity"]
    teacher_cycles = (c["teacher"]["real_macs"] + c["teacher"]["binary_ops"]) / macs
    export = schema.load(path).workspace / "export"
    for v in VARIANTS:
        layers = binary_layers.binary_layers(read_bfsm(export / f"model_{v}.bfsm"))
        assert sum(x["bit_macs"] for x in layers) == c[v]["binary_ops"]
        assert {x["kernel"] for x in layers} == {
            "bfuse_gemm_kw2_threshold",  # conv2: its output only feeds fc1's signs
            "bfuse_gemm_kw1_float",  # fc1 and the projections: residuals
            "bfuse_gemm_kw1_threshold",  # the expansions
            "bfuse_dwconv_taps5",
        }
        cycles = sum(x["bit_macs"] / rates.get(x["kernel"], rates["bfuse_gemm_kwany_step"]) for x in layers)
        e = core["variants"][v]
        assert e["bfuse_bit_macs_per_cycle"] == pytest.approx(c[v]["binary_ops"] / cycles)
        assert e["binary_vs_float_mac_ratio"] == pytest.approx(c[v]["binary_ops"] / cycles / macs)
        assert e["network_speedup_estimate"] == pytest.approx(
            teacher_cycles / (c[v]["real_macs"] / macs + cycles)
        )
        assert e["loops"] == sorted(set(rates) - {"bfuse_gemm_kw2_threshold"})
    loops = a["mca"]["targets"]["aarch64"]["loops"]
    assert loops["bfuse_gemm_kwany_step"] == {
        "scope": "step", "instructions": 64, "bit_macs_per_iteration": 2048, "bit_macs_per_cycle": {"cortex-a53": 64.0}
    }  # fmt: skip
    assert a["qemu"] == {"measured": False, "reason": "build-kernel's aarch64 target has no bifsmn-infer"}
    assert a["device"] == {"measured": False, "reason": "bench.device is not set"}


def test_mca_figures_say_what_is_missing():
    mca = {
        "kernels": {
            "sgemm": MCA["kernels"]["sgemm"],
            "bfuse_gemm_kw1_float": MCA["kernels"]["bfuse_gemm_kw1_float"],
        }
    }
    layers = {
        "1x": [
            {"kernel": "bfuse_dwconv_taps9", "bit_macs": 10},
            {"kernel": "bfuse_gemm_kw1_float", "bit_macs": 10},
        ]
    }
    fig = arm.mca_figures(mca, {}, layers)
    assert fig["cores"]["cortex-a53"]["variants"]["1x"] == {
        "reason": "no llvm-mca loop for bfuse_dwconv_taps9"
    }
    old = {
        "kernels": {"bgemm": {}, "sgemm": MCA["kernels"]["sgemm"]}
    }  # a build-kernel from before the fused kernels
    assert arm.mca_figures(old, {}, layers) == {
        "measured": False, "reason": "mca.json lacks the fused binary or the sgemm loops; rerun build-kernel"
    }  # fmt: skip


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
        assert r["fp_storage"] == "fp32"
        assert r["fp32_weights_over_bfsm"] == s["teacher"]["fp32_weights_bytes"] / r["bfsm_bytes"]
    assert s["teacher"]["bfsm_fp_storage"] == "fp32"
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
        (
            "bench.profile=2x",
            "bench.profile: '2x' is not an exported model (one of 1x, 0.5x, 0.25x, teacher)",
        ),
    ],
)
@pytest.mark.slow
def test_user_errors(benched, override, fragment):
    path, _, _, _ = benched
    if "neon" in override and machine.describe()["arch"] in ("aarch64", "arm64"):
        pytest.skip("neon runs here")
    with pytest.raises(UserError, match=re.escape(fragment)):
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
    try:
        run(path, "bench", [*overrides, "bench.kernel_shapes=[]", "bench.qemu=false", "bench.profile_runs=0"])
    finally:
        (ws / "build-kernel" / "aarch64" / "bifsmn-infer").unlink()
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


FAKE_QEMU = """#!/bin/sh
# qemu-aarch64 + insn plugin stand-in: Debian's version; N runs cost 5000 (loading) + N x per-run, per-run 100 for
# the network, 350 front end + network, 10 x the length of a profiled kind's name.
[ "$1" = --version ] && { echo "qemu-aarch64 version 7.2.22 (Debian 1:7.2+dfsg-7+deb12u18+b3)"; exit 0; }
runs=0; per=0
while [ $# -gt 0 ]; do case "$1" in
  --bench|--profile) runs=$2; shift;;
  --bench-path) if [ "$2" = net ]; then per=100; else per=350; fi; shift;;
  --profile-kind) per=$(($(printf %s "$2" | wc -c) * 10)); shift;;
esac; shift; done
echo "insns: $((5000 + runs * per))" >&2
"""


@pytest.mark.slow
def test_instruction_counts_and_profile(benched, tmp_path, monkeypatch):
    """bench.qemu_plugin unset: the plugin found in the per-user cache (XDG_CACHE_HOME), the counts and the
    per-kind profile differenced from a qemu stand-in; the x86 profile from the real host engine."""
    path, _, _, _ = benched
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "qemu-aarch64").write_text(FAKE_QEMU)
    (bin_dir / "qemu-aarch64").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    plugin = (
        tmp_path
        / "cache"
        / "bifsmn"
        / "qemu-plugins"
        / "7.2.22-debian-1_7.2+dfsg-7+deb12u18+b3"
        / "libinsn.so"
    )
    plugin.parent.mkdir(parents=True)
    plugin.write_bytes(b"\x7fELF")
    ws = schema.load(path).workspace
    aarch64 = ws / "build-kernel" / "aarch64" / "bifsmn-infer"
    shutil.copy2(ws / "build-kernel" / "host" / "bifsmn-infer", aarch64)
    try:
        run(path, "bench", ["bench.pytorch=false", "bench.onnxruntime=false", "bench.kernel_shapes=[]"])
    finally:
        aarch64.unlink()
    b = json.loads((ws / "bench" / "bench.json").read_text())
    q = b["arm"]["qemu"]
    assert q["measured"] and q["plugin"] == str(plugin) and not q["plugin_built"] and q["target"] == "aarch64"
    assert q["models"] == {
        m: {"net_insns": 100.0, "e2e_insns": 350.0, "frontend_insns": 250.0} for m in MODELS
    }
    assert q["teacher_over_model"]["1x"] == {"net": 1.0, "e2e": 1.0}
    p = b["profile"]
    assert p["measured"] and p["model"] == "1x"
    kinds = ["input", "conv2d", "bconv2d", "blinear", "bdwconv1d", "linear"]
    x86 = p["x86"]
    assert list(x86["kinds"]) == kinds and x86["runs"] == 500 and x86["net_us"] > 0
    steps = {k: v["steps"] for k, v in x86["kinds"].items()}
    assert steps == {"input": 1, "conv2d": 1, "bconv2d": 1, "blinear": 1 + 2 * 4, "bdwconv1d": 4, "linear": 1}
    assert sum(v["share"] for v in x86["kinds"].values()) == pytest.approx(1.0)
    assert x86["kinds_us"] == pytest.approx(sum(v["median_us"] for v in x86["kinds"].values()))
    a64 = p["aarch64"]
    assert a64["measured"] and a64["kinds_insns"] == sum(10.0 * len(k) for k in kinds)
    assert a64["kinds"]["bdwconv1d"] == {"insns": 90.0, "share": 90.0 / a64["kinds_insns"]}
    report = (ws / "bench" / "report.md").read_text()
    assert "## Profile per op kind" in report and "| bdwconv1d | 4 |" in report
    assert f"with the insn plugin {plugin};" in report


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


def test_profile_shares_and_bad_output():
    text = json.dumps(
        {"net_ns": [9000, 11000, 10000], "kinds": {"input": {"steps": 1, "ns": [1000, 3000, 2000]},
                                                  "blinear": {"steps": 9, "ns": [6000, 6000, 9000]}}}
    )  # fmt: skip
    p = profile.parse_profile(text, "infer")
    assert p == {
        "net_us": 10.0,
        "kinds_us": 8.0,
        "kinds": {"input": {"steps": 1, "median_us": 2.0, "share": 0.25},
                  "blinear": {"steps": 9, "median_us": 6.0, "share": 0.75}},
    }  # fmt: skip
    rows = profile.table_rows({"x86": p, "aarch64": {"kinds": {"blinear": {"insns": 30.0, "share": 1.0}}}})
    assert rows == [
        {
            "kind": "input",
            "steps": 1,
            "x86_us": 2.0,
            "x86_share": 0.25,
            "aarch64_insns": None,
            "aarch64_share": None,
        },
        {
            "kind": "blinear",
            "steps": 9,
            "x86_us": 6.0,
            "x86_share": 0.75,
            "aarch64_insns": 30.0,
            "aarch64_share": 1.0,
        },
    ]
    with pytest.raises(UserError, match=r"infer: unexpected --profile output .*rebuild it"):
        profile.parse_profile('{"net_ns": []}', "infer")

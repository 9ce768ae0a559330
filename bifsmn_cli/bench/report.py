"""bench.json -> report.md (tables readable on their own), the console's headline table and manifest metrics.

The paper's figures appear beside ours where they compare, always labelled as the paper's: they were measured
on other data (Speech Commands V1-12) and hardware (a Cortex-A53 board), so they are context, not targets.
"""

from __future__ import annotations

from typing import Any

from rich import box
from rich.table import Table

from bifsmn_cli.bench import profile
from bifsmn_cli.nn.config import TEACHER

PAPER = {
    "source": "Qin et al., BiFSMN: Binary Neural Network for Keyword Spotting, IJCAI 2022",
    "accuracy_drop_below_pct": 3.0,  # 1x student vs full precision, Speech Commands V1-12
    "speedup_cortex_a53": {"1x": 10.9, "0.5x": 15.5, "0.25x": 22.3},  # vs the full-precision network
    "storage_saving": 15.5,
}
# bench.json's units, by key (or key suffix); ratios are plain numbers (x times)
UNITS = {
    "accuracy": "fraction of clips in [0, 1] (pytorch, engine, engine_e2e, agreement, agreement_e2e)",
    "*_us": "microseconds",
    "*_ms": "milliseconds",
    "*_mhz": "MHz",
    "*_bytes": "bytes",
    "gbit_macs_per_s": "1e9 binary multiply-accumulates (XNOR-popcount bit pairs) per second",
    "gflops_per_s": "1e9 float32 operations per second (2 per multiply-accumulate)",
    "float32_gflops / binary_gbit_macs": "estimated per-core peak, same units as above",
    "*_per_cycle": "operations per CPU cycle (bit-MACs, MACs or FLOPs as named)",
    "*_insns": "executed aarch64 instructions per inference (profile: per pass of a kind's steps)",
    "share": "a kind's fraction of the profiled total, in [0, 1]",
    "params / real_macs / binary_ops / flops": "counts per 1-s clip (FLOPs = real MACs + binary ops / 64)",
    "ratio / *_over_* / *_estimate / fraction_of_peak": "dimensionless ratios",
}


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{100 * x:.2f}"


def _us(x: float | None) -> str:
    return "n/a" if x is None else f"{x:,.1f}"


def _x(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.2f}x"


def _table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def engine_contender(results: dict[str, Any], model: str) -> dict[str, Any] | None:
    """The model's engine contender with the first configured kernel."""
    first = results["config"]["kernels"][0]
    for c in results["latency"]["contenders"]:
        if c["kind"] == "engine" and c["model"] == model and c.get("kernel") == first:
            return c
    return None


def _speedup(
    results: dict[str, Any], model: str, baseline_kind: str, path: str = "net"
) -> dict[str, Any] | None:
    first = results["config"]["kernels"][0]
    for s in results["latency"]["speedups"]:
        base = next(c for c in results["latency"]["contenders"] if c["name"] == s["baseline"])
        if s["model"] == model and s["path"] == path and base["kind"] == baseline_kind:
            if baseline_kind != "engine" or base.get("kernel") == first:
                return s
    return None


def headline_rows(results: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per exported model: accuracy in both runtimes, cost, size, engine latency and speed-up."""
    rows = []
    acc = results["accuracy"]["models"]
    for m, a in acc.items():
        engine = engine_contender(results, m) or {}
        speed = _speedup(results, m, "engine")
        size = (
            results["storage"]["teacher"]["bfsm_bytes"]
            if m == TEACHER
            else (results["storage"]["variants"][m]["bfsm_bytes"])
        )
        rows.append(
            {
                "model": m,
                "pytorch": a["pytorch"],
                "engine": a["engine"],
                "flops": results["complexity"][m]["flops"],
                "bytes": size,
                "net_us": engine.get("net", {}).get("median_us"),
                "e2e_us": engine.get("e2e", {}).get("median_us"),
                "speedup": 1.0 if m == TEACHER else (speed["ratio"] if speed else None),
                "paper_speedup": PAPER["speedup_cortex_a53"].get(m),
            }
        )
    return rows


def headline_table(results: dict[str, Any]) -> Table:
    """Compact enough for an 80-column terminal: MFLOPs, KiB; the speed-up is the engine's fp teacher over the
    model, network alone, on this machine."""
    host = results["machine"]
    table = Table(
        title=f"bifsmn bench: {results['split']['name']} split, {host['cpu_model']}, one thread",
        box=box.SIMPLE_HEAD,
        pad_edge=False,
    )
    for col in ("model", "torch %", "engine %", "MFLOPs", "KiB", "net µs", "e2e µs", "vs fp", "paper"):
        table.add_column(col, justify="left" if col == "model" else "right")
    for r in headline_rows(results):
        table.add_row(
            r["model"], _pct(r["pytorch"]), _pct(r["engine"]), f"{r['flops'] / 1e6:.3f}", f"{r['bytes'] / 1024:.1f}",
            _us(r["net_us"]), _us(r["e2e_us"]), _x(r["speedup"]),
            _x(r["paper_speedup"]) if r["paper_speedup"] else "",
        )  # fmt: skip
    table.caption = (
        "vs fp: engine fp teacher / engine model (network alone); paper: Cortex-A53, its own network"
    )
    return table


def metrics(results: dict[str, Any]) -> dict[str, Any]:
    """The manifest's flat summary: accuracies, engine latencies and speed-ups, storage ratios."""
    out: dict[str, Any] = {"split": results["split"]["name"]}
    for r in headline_rows(results):
        m = r["model"]
        out[f"accuracy_{m}"] = r["engine"]
        out[f"accuracy_pytorch_{m}"] = r["pytorch"]
        for key in ("e2e_balanced_accuracy", "e2e_unknown_recall", "e2e_false_accept"):
            out[f"{key}_{m}"] = results["accuracy"]["models"][m][key]
        out[f"latency_net_us_{m}"] = r["net_us"]
        out[f"latency_e2e_us_{m}"] = r["e2e_us"]
        if m != TEACHER:
            out[f"speedup_net_{m}"] = r["speedup"]
            out[f"storage_ratio_{m}"] = results["storage"]["variants"][m]["teacher_bfsm_over_bfsm"]
    out |= streaming_metrics(results.get("streaming"))
    return out


def _latency_section(lat: dict[str, Any], title: str) -> list[str]:
    rows = []
    for c in lat["contenders"]:
        net, e2e = c["net"], c.get("e2e")
        rows.append([
            c["name"], c.get("resolved_kernel", c.get("kind", "")),
            _us(net["median_us"]), _us(net["p90_us"]),
            _us(e2e["median_us"]) if e2e else "n/a", _us(e2e["p90_us"]) if e2e else "n/a",
            str(net["runs"]),
        ])  # fmt: skip
    out = [
        f"### {title}\n",
        f"{lat['rounds']} round-robin rounds x {lat['repeats']} timed runs after {lat['warmup']} warm-up runs per "
        "contender and round; batch 1, one thread. net = features in, scores out; e2e = 16-bit PCM in (front "
        "end + network).\n",
        _table(
            ["contender", "kernels", "net median µs", "net p90 µs", "e2e median µs", "e2e p90 µs", "runs"],
            rows,
        ),
    ]
    for kind, reason in lat.get("not_measured", {}).items():
        out.append(f"- {kind}: not measured ({reason})\n")
    for c in lat["contenders"]:
        if "e2e_not_measured" in c:
            out.append(f"- {c['name']}, e2e: not measured ({c['e2e_not_measured']})\n")
    speed = [
        [s["contender"], s["baseline"], s["path"], _x(s["ratio"]), f"{s['round_min']:.2f}-{s['round_max']:.2f}",
         _x(PAPER["speedup_cortex_a53"].get(s["model"])) if s["baseline"].startswith("engine") and s["path"] == "net" else ""]
        for s in lat["speedups"]
    ]  # fmt: skip
    if speed:
        out += [
            "\nSpeed-ups: baseline time / contender time, the median over rounds of the ratio of the two "
            "round medians (drift between rounds cancels); the range is over rounds. The paper's figures are for "
            "its own network on a Cortex-A53 board.\n",
            _table(
                ["binary", "full-precision baseline", "path", "speed-up", "per-round range", "paper (A53)"],
                speed,
            ),
        ]
    return out


def _kernel_section(k: dict[str, Any]) -> list[str]:
    peak = k["peak"]
    out = ["## Kernel throughput (one thread)\n"]
    if peak.get("estimated"):
        out.append(
            f"Peak per core, estimated: {peak['float32_gflops']:.1f} GFLOP/s float32 and "
            f"{peak['binary_gbit_macs']:.1f} G bit-MACs/s binary ({peak['formula']}). An upper bound: CPUs that "
            "split wide vector operations reach less, so the fractions are lower bounds.\n"
        )
    else:
        out.append(f"Peak not estimated: {peak['reason']}.\n")
    impls = k["implementations"]
    rows = []
    for s in k["shapes"]:
        cells = [f"{s['name']} (x{s['layers']})" if s["layers"] > 1 else s["name"]]
        for i in impls:
            b = s["bgemm"][i]
            cells.append(
                f"{b['gbit_macs_per_s']:.1f}"
                + (f" ({100 * b['fraction_of_peak']:.0f}%)" if "fraction_of_peak" in b else "")
            )
        for i in [*impls, "pytorch"]:
            f = s["sgemm"][i]
            cells.append(
                f"{f['gflops_per_s']:.1f}"
                + (f" ({100 * f['fraction_of_peak']:.0f}%)" if "fraction_of_peak" in f else "")
            )
        cells.append(f"{s['binary_vs_float_mac_ratio']:.1f}x")
        rows.append(cells)
    header = ["shape M x N x K", *(f"bgemm {i} Gbit-MAC/s" for i in impls)]
    header += [*(f"sgemm {i} GFLOP/s" for i in impls), "PyTorch matmul GFLOP/s", "binary/float per MAC"]
    out.append(_table(header, rows))
    overhead = ", ".join(f"{i} {v:.2f} µs" for i, v in k["call_overhead_us"].items())
    out.append(
        f"\nPercentages are of the peak above. Each figure is the median of {k['samples']} samples of at least "
        f"{k['min_sample_ms']:g} ms; the model's layers are small, so their figures include the per-call cost "
        f"({overhead} for a 1 x 1 x 64 binary GEMM). binary/float per MAC: best binary bit-MACs/s over best "
        "float MACs/s (FLOP/s / 2), PyTorch included.\n"
    )
    return out


def _not(section: dict[str, Any]) -> str:
    return f"not measured: {section['reason']}.\n"


def _mca_tables(target: str, fig: dict[str, Any], variants: list[str]) -> list[str]:
    """The network-weighted rates per core and variant, then the loops they come from."""
    rows = []
    for cpu, r in fig["cores"].items():
        cells = [cpu, f"{r['sgemm_macs_per_cycle']:.2f}"]
        for v in variants:
            e = r["variants"].get(v, {})
            rate = e.get("bfuse_bit_macs_per_cycle")
            cells += ["n/a" if rate is None else f"{rate:.2f} ({e['binary_vs_float_mac_ratio']:.1f}x)",
                      _x(e.get("network_speedup_estimate"))]  # fmt: skip
        rows.append(cells)
    header = ["core", "sgemm MACs/cycle"]
    for v in variants:
        header += [f"{v} bit-MACs/cycle (/ float)", f"est. {v} vs fp"]
    cpus = list(fig["cores"])
    loops = [
        [name, lp["scope"], str(lp["instructions"]), f"{lp['bit_macs_per_iteration']:,}",
         *(f"{lp['bit_macs_per_cycle'].get(c, 0):.2f}" for c in cpus)]
        for name, lp in fig.get("loops", {}).items()
    ]  # fmt: skip
    reasons = {e["reason"] for r in fig["cores"].values() for e in r["variants"].values() if "reason" in e}
    return [
        f"{target} (llvm-mca {fig.get('llvm_mca')}): each variant's binary layers weigh the fused NEON loops they "
        "run (total bit-MACs over total estimated cycles); / float = that rate over the float GEMM's MACs per "
        "cycle, the kernel-level ceiling. The network estimate adds the real MACs at the float rate against the "
        "teacher's (kernel-bound: no front end, packing or memory traffic; an estimate, not a measurement).\n",
        _table(header, rows),
        *(f"- {reason}\n" for reason in sorted(reasons)),
        "\nThe loops (bifsmn_cli/engine/mca.py; scope group: a 4-row x 4-output group with its reduction and output "
        "transform; step: one 128-bit step only, an upper bound; time step: 16 channels of the depthwise conv):\n",
        _table(
            [
                "loop",
                "scope",
                "instructions",
                "bit-MACs per iteration",
                *(f"{c} bit-MACs/cycle" for c in cpus),
            ],
            loops,
        ),  # fmt: skip
    ]


def _arm_section(a: dict[str, Any], results: dict[str, Any]) -> list[str]:
    out = ["## ARM\n", "### llvm-mca kernel throughput (build-kernel's aarch64 builds)\n"]
    mca = a["mca"]
    if not mca["measured"]:
        out.append(_not(mca))
    else:
        for target, fig in mca["targets"].items():
            if not fig["measured"]:
                out.append(f"- {target}: {_not(fig)}")
                continue
            out += _mca_tables(target, fig, [m for m in results["accuracy"]["models"] if m != TEACHER])
            paper = ", ".join(f"{v} {s}x" for v, s in PAPER["speedup_cortex_a53"].items())
            out.append(f"\nPaper (measured on a Cortex-A53 board): {paper}.\n")
    out.append("\n### Executed aarch64 instructions per inference (qemu)\n")
    q = a["qemu"]
    if not q["measured"]:
        out.append(_not(q))
    else:
        rows = []
        for m, r in q["models"].items():
            ratio = q["teacher_over_model"].get(m, {})
            rows.append([m, f"{r['net_insns']:,.0f}", f"{r['e2e_insns']:,.0f}", f"{r['frontend_insns']:,.0f}",
                         _x(ratio.get("net")) if m != TEACHER else "1.00x"])  # fmt: skip
        out += [
            f"Static aarch64 bifsmn-infer ({q['target']}) under qemu-aarch64 with the insn plugin {q['plugin']}"
            + (" (built by this run)" if q.get("plugin_built") else "")
            + "; one inference = "
            "difference of two --bench runs, so loading and WAV reading cancel. Instruction counts are not cycles "
            "(a NEON CNT and a scalar add count alike).\n",
            _table(
                ["model", "net instructions", "e2e instructions", "front end", "teacher/model (net)"], rows
            ),
        ]
    out.append("\n### Timings on a board\n")
    d = a["device"]
    if not d["measured"]:
        out.append(_not(d))
    else:
        b = d["board"]
        out.append(f"{b['url']}: {b['arch']}, cores {', '.join(b['cpu_parts']) or 'unknown'}"
                   + (f", {b['model']}" if b.get("model") else "") + f"; binary from {d['target']}.\n")  # fmt: skip
        out += _latency_section(
            {**d, "rounds": results["latency"]["rounds"], "repeats": results["latency"]["repeats"],
             "warmup": results["latency"]["warmup"]}, "Board latency")  # fmt: skip
    return out


def _profile_section(p: dict[str, Any] | None) -> list[str]:
    """Per op kind: the share of one network's x86 time and of its aarch64 instructions (bench/profile.py)."""
    out = ["## Profile per op kind\n"]
    if p is None or not p["measured"]:
        return out + [_not(p or {"reason": "not in this bench.json"})]
    x86, a64 = p["x86"], p["aarch64"]
    rows = [
        [r["kind"], str(r["steps"]) if r["steps"] is not None else "", _us(r["x86_us"]), _pct(r["x86_share"]),
         f"{r['aarch64_insns']:,.0f}" if r["aarch64_insns"] is not None else "n/a", _pct(r["aarch64_share"])]
        for r in profile.table_rows(p)
    ]  # fmt: skip
    total = ["all steps", "", _us(x86["kinds_us"]), "100.00", "n/a", "n/a"]
    if a64["measured"]:
        total[4:] = [f"{a64['kinds_insns']:,.0f}", "100.00"]
    out += [
        f"Model {p['model']}. x86: `bifsmn-infer --profile {x86['runs']}` on this machine, each kind's steps alone, "
        "alternating with the whole network run by run; a kind's share is its median over the sum of the kinds' "
        f"medians (the network alone: {_us(x86['net_us'])} µs median). aarch64: executed instructions of one pass of "
        "each kind's steps under qemu (`--profile-kind`, two runs differenced), share of their sum"
        + (f" (from {a64['target']}).\n" if a64["measured"] else f"; {_not(a64)}"),
        _table(
            ["kind", "steps", "x86 median µs", "x86 share %", "aarch64 instructions", "aarch64 share %"],
            rows + [total],
        ),  # fmt: skip
    ]
    return out


def _storage_section(s: dict[str, Any]) -> list[str]:
    t = s["teacher"]
    out = [
        "## Storage\n",
        _table(
            ["full-precision teacher", "bytes"],
            [
                ["checkpoint (teacher.pt: weights, config, metadata)", f"{t['checkpoint_bytes']:,}"],
                ["state dict (torch.save)", f"{t['state_dict_bytes']:,}"],
                ["fp32 weights (4 bytes x parameters)", f"{t['fp32_weights_bytes']:,}"],
                ["teacher.bfsm (engine, BN folded)", f"{t['bfsm_bytes']:,}"],
            ]
            + ([["teacher.onnx", f"{t['onnx_bytes']:,}"]] if "onnx_bytes" in t else []),
        ),  # fmt: skip
        "\n",
    ]
    rows = [
        [v, f"{r['bfsm_bytes']:,}", r.get("fp_storage", "fp32"), _x(r["teacher_bfsm_over_bfsm"]),
         _x(r.get("fp32_weights_over_bfsm")), _x(r["state_dict_over_bfsm"]),
         _x(r["checkpoint_over_bfsm"]), f"{r['packed_estimate_bytes']:,}", _x(r["fp32_weights_over_packed_estimate"]),
         _x(PAPER["storage_saving"]) if v == "1x" else ""]
        for v, r in s["variants"].items()
    ]  # fmt: skip
    out.append(
        _table(
            [
                "variant",
                ".bfsm bytes",
                "float storage",
                "teacher.bfsm / .bfsm",
                "fp32 weights / .bfsm",
                "state dict / .bfsm",
                "checkpoint / .bfsm",
                "packed estimate",
                "fp32 weights / estimate",
                "paper",
            ],
            rows,
        )  # fmt: skip
    )
    out.append(
        "\nteacher.bfsm is the teacher in float32 (BatchNorm folded), the base of the storage ratio; fp32 weights are "
        "4 bytes per teacher parameter. float storage: how each file stores its full-precision arrays (export."
        "fp_storage; mixed: per array, exported.json has the measured choice). The estimate counts 1 bit per binary "
        "weight and 4 bytes per other parameter and per-channel scale.\n"
    )
    return out


def markdown(results: dict[str, Any], plots: list[str]) -> str:
    m = results["machine"]
    eng = m["engine"]
    acc = results["accuracy"]
    split = results["split"]
    out = [
        "# bifsmn benchmark\n",
        f"Measured on {m['cpu_model']} ({m['arch']}, {m['logical_cpus']} logical CPUs, {m['clock_mhz']} MHz), "
        f"{m['os']}. Engine: {eng['library']}, built by {(eng.get('compiler') or {}).get('id', '?')} "
        f"{(eng.get('compiler') or {}).get('version', '')} with `{eng.get('flags') or ''}`; kernels here: "
        f"{', '.join(eng['kernels'])} (auto = {eng['auto']}). Versions: "
        + ", ".join(f"{k} {v}" for k, v in m["versions"].items() if v)
        + f". CPU flags: {' '.join(m['flags'])}.\n",
        "## Headline\n",
    ]
    rows = [
        [r["model"], _pct(r["pytorch"]), _pct(r["engine"]), f"{r['flops']:,.0f}", f"{r['bytes']:,}", _us(r["net_us"]),
         _us(r["e2e_us"]), _x(r["speedup"]), _x(r["paper_speedup"]) if r["paper_speedup"] else ""]
        for r in headline_rows(results)
    ]  # fmt: skip
    out.append(
        _table(
            [
                "model",
                "accuracy PyTorch %",
                "accuracy engine %",
                "FLOPs",
                ".bfsm bytes",
                "engine net µs",
                "engine e2e µs",
                "speed-up vs engine fp (net)",
                "paper speed-up (A53)",
            ],
            rows,
        )  # fmt: skip
    )
    out.append(
        f"\nAccuracy on the {split['name']} split ({split['clips']} clips"
        + (f"; {split['note']}" if "note" in split else "")
        + "). Speed-ups on this machine: median "
        "over round-robin rounds of the per-round ratio, network alone; the paper's are from a Cortex-A53 board.\n"
    )
    out.append("## Accuracy\n")
    teacher_acc = acc["models"].get(TEACHER, {}).get("pytorch")
    arows = []
    for name, a in acc["models"].items():
        drop = None if teacher_acc is None or name == TEACHER else teacher_acc - a["pytorch"]
        arows.append(
            [name, _pct(a["pytorch"]), _pct(a["engine"]), _pct(a["engine_e2e"]), _pct(a["agreement"]),
             _pct(a["agreement_e2e"]), _pct(a["e2e_balanced_accuracy"]), _pct(a["e2e_unknown_recall"]),
             _pct(a["e2e_false_accept"]), "" if drop is None else f"{100 * drop:+.2f}",
             f"< {PAPER['accuracy_drop_below_pct']:g}" if name == "1x" else ""]
        )  # fmt: skip
    out += [
        _table(
            [
                "model",
                "PyTorch %",
                "engine %",
                "engine e2e %",
                "engine = PyTorch %",
                "e2e = PyTorch %",
                "e2e balanced %",
                "e2e non-keyword recall %",
                "e2e false accepts %",
                "drop vs teacher (points)",
                "paper drop (SC V1-12)",
            ],
            arows,
        ),  # fmt: skip
        "\nengine: the C engine on the same features as PyTorch; e2e: the engine's own front end from 16-bit "
        "PCM. The agreement columns count clips whose top class equals PyTorch's; a file whose float arrays are "
        "stored in fp16 or int8 (Storage below, export.fp_storage) runs its rounded weights, so its agreement "
        "includes what the rounding changes on this split. Balanced: the mean recall over classes; non-keyword "
        "recall: `_unknown_` clips rejected; false accepts: `_unknown_` and `_silence_` clips taken for a keyword.\n",
        "## Latency\n",
    ]
    out += _latency_section(results["latency"], "This machine")
    out += _kernel_section(results["kernels"])
    out += _arm_section(results["arm"], results)
    out += _profile_section(results.get("profile"))
    out += _storage_section(results["storage"])
    out += streaming_section(results.get("streaming"))
    out.append("## Cost per clip (paper convention: FLOPs = real MACs + binary operations / 64)\n")
    crows = [
        [m, f"{r['params']:,}", f"{r['real_macs']:,}", f"{r['binary_ops']:,}", f"{r['flops']:,.0f}",
         _x(r["teacher_flops_over_flops"])]
        for m, r in results["complexity"].items()
    ]  # fmt: skip
    out.append(
        _table(["model", "parameters", "real MACs", "binary ops", "FLOPs", "teacher FLOPs / FLOPs"], crows)
    )
    if plots:
        out.append("\n## Plots\n")
        out += [f"![{p}]({p})\n" for p in plots]
    out.append(f"\nPaper figures: {PAPER['source']}.\n")
    return "\n".join(out)


# ---- streaming keyword detection (bifsmn_cli/bench/streaming.py) ----
def _fa(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.1f}"


def streaming_metrics(st: dict[str, Any] | None) -> dict[str, Any]:
    """Per model: keywords missed and false alarms per hour at the default threshold, the 1-per-hour operating
    point, and the CPU time per second of audio."""
    if not st or not st.get("measured"):
        return {}
    out: dict[str, Any] = {}
    for m, r in st["models"].items():
        op = r["at_1_false_alarm_per_hour"] or {}
        out[f"stream_frr_{m}"] = r["default"]["false_rejection_rate"]
        out[f"stream_fa_per_hour_{m}"] = r["default"]["false_alarms_per_hour"]
        out[f"stream_threshold_at_1fa_{m}"] = op.get("threshold")
        out[f"stream_frr_at_1fa_{m}"] = op.get("false_rejection_rate")
        out[f"stream_cpu_us_per_s_{m}"] = r["cost"]["cpu_us_per_audio_second"]
    return out


def streaming_section(st: dict[str, Any] | None) -> list[str]:
    if not st:
        return []
    out = ["## Streaming keyword detection\n"]
    if not st["measured"]:
        return [*out, _not(st)]
    k, d, cfg = st["streams"], st["settings"]["detector"], st["settings"]
    fa = k.get("false_alarms")
    out.append(
        f"Streams built from the {k['split']} split ({k['clips']} clips) as TensorFlow's generate_streaming_test_wav "
        f"does: a keyword stream of {k['keywords']['seconds']:g} s ({k['keywords']['keywords']} keywords, "
        f"{k['keywords']['non_keywords']} non-keywords)"
        + (
            f" and a false-alarm stream of {fa['seconds']:g} s ({fa['non_keywords']} non-keywords)"
            if fa
            else ""
        )
        + f" over background noise up to volume {cfg['background_volume']:g}. Each model's C stream: stride "
        f"{cfg['stride']} hops, edge frames from real audio, threshold {d['threshold']:g}, average "
        f"{d['average_ms']:g} ms, refractory {d['refractory_ms']:g} ms, re-arm {d['rearm']:g}, minimum count "
        f"{d['min_count']}. A detection matches a label within {cfg['tolerance_ms']:g} ms (window starts against "
        f"clip starts). False alarms are every detection that does not find a keyword, on both streams, per hour of "
        f"both ({k['hours']:.2f} h: one false alarm is {k['one_false_alarm_per_hour']:.2f} per hour).\n"
    )
    for name in ("keywords", "false_alarms"):
        for note in (k.get(name) or {}).get("notes", []):
            out.append(f"- {name} stream: {note}\n")
    rows = []
    for m, r in st["models"].items():
        tf, df, op = r["tensorflow"], r["default"], r["at_1_false_alarm_per_hour"]
        rows.append([
            m, f"{tf['matched_pct']:.1f}", f"{tf['correct_pct']:.1f}", f"{tf['wrong_pct']:.1f}",
            f"{tf['false_positive_pct']:.1f}", _pct(1 - df["false_rejection_rate"]),
            " / ".join(map(str, df["false_alarms"])), _fa(df["false_alarms_per_hour"]),
            f"{op['threshold']:g}" if op else "not reached", _pct(op["false_rejection_rate"]) if op else "n/a",
        ])  # fmt: skip
    out += [
        "\n### Accuracy\n",
        _table(
            [
                "model",
                "TF matched %",
                "TF correct %",
                "TF wrong %",
                "TF false positive %",
                f"found % at {d['threshold']:g}",
                "false alarms: keyword / false-alarm stream",
                "false alarms / h",
                "threshold at <= 1 FA/h",
                "missed % there",
            ],
            rows,
        ),
        "\nTF columns: TensorFlow's test_streaming_accuracy percentages of the keywords on the keyword stream at "
        "the default threshold. The last two columns: the threshold of the sweep with the fewest missed keywords at "
        "no more than one false alarm per hour (the DET curve, streaming_det.png).\n",
    ]
    crows = []
    for m, r in st["models"].items():
        c = r["cost"]
        crows.append([
            m, f"{c['cpu_us_per_audio_second']:,.1f}", f"{c['cpu_us_per_hop']:.2f}", f"{c['real_time_factor']:.2g}",
            f"{c['network_runs_per_second']:.2f}",
            f"{c['clip_loop_us_per_audio_second']:,.0f}" if "clip_loop_us_per_audio_second" in c else "n/a",
            _x(c.get("clip_loop_over_stream")),
            f"{c['aarch64_insns_per_audio_second']:,.0f}" if "aarch64_insns_per_audio_second" in c else "n/a",
        ])  # fmt: skip
    out += [
        "\n### Cost\n",
        _table(
            [
                "model",
                "CPU µs per audio second",
                "µs per hop",
                "real-time factor",
                "network runs / s",
                "clip loop µs / s",
                "clip loop / stream",
                "aarch64 instructions / s",
            ],
            crows,
        ),
        f"\nbifsmn-infer --bench --stream: {cfg['cost_seconds']:g} s of a test clip, tiled, pushed a hop at a time, "
        "this thread's CPU time (median over round-robin rounds). Clip loop: the clip engine on a 1-s window every "
        "30 ms (1000 / 30 x the e2e median above), the detector a stream replaces. aarch64: executed instructions "
        "per second of audio under qemu"
        + (
            f" ({st['qemu']['target']})"
            if st["qemu"]["measured"]
            else f", {_not(st['qemu']).rstrip('.' + chr(10))}"
        )
        + ".\n",
    ]
    return out

"""The bench plots (PNG): latency per contender, accuracy against FLOPs and against latency, kernel throughput
as a fraction of the CPU's estimated peak, the streaming DET curves."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bifsmn_cli.bench.report import engine_contender
from bifsmn_cli.figures import pyplot, save_png
from bifsmn_cli.nn.config import TEACHER


def _save(fig: Any, path: Path) -> None:
    fig.tight_layout()
    save_png(fig, path)


def latency(results: dict[str, Any], path: Path) -> None:
    """Median (bar) and p90 (whisker) per contender, network alone and end to end, log scale."""
    plt = pyplot()

    contenders = results["latency"]["contenders"]
    fig, ax = plt.subplots(figsize=(8, 0.5 * len(contenders) + 1.5))
    height = 0.38
    for j, (p, colour) in enumerate((("net", "tab:blue"), ("e2e", "tab:orange"))):
        ys, med, err = [], [], []
        for i, c in enumerate(contenders):
            if p in c:
                ys.append(i + (j - 0.5) * height)
                med.append(c[p]["median_us"])
                err.append(c[p]["p90_us"] - c[p]["median_us"])
        ax.barh(ys, med, height, xerr=[[0] * len(err), err], color=colour, label=p, capsize=3)
    ax.set_yticks(range(len(contenders)), [c["name"] for c in contenders])
    ax.invert_yaxis()
    ax.set_xscale("log")
    ax.set_xlabel("µs per 1-s clip (median; whisker to p90), batch 1, one thread")
    ax.legend(title="path")
    ax.grid(True, axis="x", alpha=0.3)
    _save(fig, path)


def accuracy(results: dict[str, Any], path_flops: Path, path_latency: Path) -> None:
    """Engine accuracy of each model against its FLOPs and against its engine latency."""
    plt = pyplot()

    models = results["accuracy"]["models"]
    for path, x_of, label in (
        (
            path_flops,
            lambda m: results["complexity"][m]["flops"],
            "FLOPs per clip (real MACs + binary ops / 64)",
        ),
        (
            path_latency,
            lambda m: (engine_contender(results, m) or {}).get("net", {}).get("median_us"),
            "engine latency, network alone (µs, median)",
        ),
    ):
        fig, ax = plt.subplots(figsize=(6, 4))
        for m, a in models.items():
            x = x_of(m)
            if x is None:
                continue
            ax.scatter(x, 100 * a["engine"], s=40, marker="s" if m == TEACHER else "o")
            ax.annotate(m, (x, 100 * a["engine"]), textcoords="offset points", xytext=(5, 5))
        ax.set_xscale("log")
        ax.set_xlabel(label)
        ax.set_ylabel(f"accuracy on {results['split']['name']} (%)")
        ax.grid(True, alpha=0.3)
        _save(fig, path)


def kernels(results: dict[str, Any], path: Path) -> None:
    """Fraction of the estimated per-core peak of each kernel implementation, per GEMM shape."""
    plt = pyplot()

    k = results["kernels"]
    shapes = k["shapes"]
    fig, axes = plt.subplots(1, 2, figsize=(11, 0.45 * len(shapes) + 2), sharey=True)
    for ax, family, impls, unit in (
        (axes[0], "bgemm", k["implementations"], "binary GEMM"),
        (axes[1], "sgemm", [*k["implementations"], "pytorch"], "float32 GEMM"),
    ):
        height = 0.8 / len(impls)
        for j, impl in enumerate(impls):
            ys = [i + (j - (len(impls) - 1) / 2) * height for i in range(len(shapes))]
            ax.barh(
                ys, [100 * s[family][impl].get("fraction_of_peak", 0) for s in shapes], height, label=impl
            )
        ax.set_yticks(range(len(shapes)), [s["name"] for s in shapes])
        ax.set_xlabel(f"{unit}: % of estimated peak")
        ax.legend(loc="lower right", fontsize="small")
        ax.grid(True, axis="x", alpha=0.3)
    axes[0].invert_yaxis()
    _save(fig, path)


def write_all(results: dict[str, Any], out_dir: Path) -> list[str]:
    """Every plot into out_dir; returns the file names."""
    names = ["latency.png", "accuracy_vs_flops.png", "accuracy_vs_latency.png"]
    latency(results, out_dir / names[0])
    accuracy(results, out_dir / names[1], out_dir / names[2])
    if results["kernels"]["peak"].get("estimated"):
        kernels(results, out_dir / "kernel_throughput.png")
        names.append("kernel_throughput.png")
    if (results.get("streaming") or {}).get("measured"):
        streaming_det(results["streaming"], out_dir / "streaming_det.png")
        names.append("streaming_det.png")
    return names


def streaming_det(st: dict[str, Any], path: Path) -> None:
    """False-rejection rate against false alarms per hour over the threshold sweep, one curve per model; the
    x axis is linear up to 1 per hour and logarithmic beyond, so that zero false alarms stays on the plot."""
    plt = pyplot()

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for m, r in st["models"].items():
        pts = sorted(r["det"], key=lambda p: p["threshold"])
        ax.plot(
            [p["false_alarms_per_hour"] for p in pts],
            [100 * p["false_rejection_rate"] for p in pts],
            marker="s" if m == TEACHER else "o",
            markersize=3,
            label=m,
        )
        op = r["at_1_false_alarm_per_hour"]
        if op:
            ax.annotate(
                f"{op['threshold']:g}",
                (op["false_alarms_per_hour"], 100 * op["false_rejection_rate"]),
                textcoords="offset points",
                xytext=(4, 4),
                fontsize="small",
            )
    ax.axvline(1.0, color="grey", linestyle=":", linewidth=1)
    ax.set_xscale("symlog", linthresh=1.0)
    ax.set_xlim(left=0)
    ax.set_ylim(0, 100)
    k = st["streams"]
    ax.set_xlabel(
        f"false alarms per hour ({k['hours']:.2f} h of audio; one = {k['one_false_alarm_per_hour']:.2f})"
    )
    ax.set_ylabel("missed keywords (%)")
    ax.set_title(
        f"DET, {k['split']} split streams; labels: threshold at <= 1 false alarm per hour", fontsize="medium"
    )
    ax.legend(title="model")
    ax.grid(True, alpha=0.3, which="both")
    _save(fig, path)

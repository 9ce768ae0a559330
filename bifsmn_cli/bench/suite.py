"""One bench run: every figure of bench.json, measured from resolved inputs.

The bench stage resolves its upstream artifacts into `Inputs` (the exported files and their index, the PyTorch
counterparts, the evaluation split, thin's complexity rows, build-kernel's directory and metrics); `measure` then
times and compares them: accuracy in PyTorch and the engine, latency (round-robin contenders), kernel throughput,
ARM figures (llvm-mca, qemu instruction counts, a board over ssh), storage and complexity. `config` is the
`bench:` section. The figures' meaning and formulas are in the sibling modules.
"""

from __future__ import annotations

import dataclasses
import io
import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bifsmn_cli.audio.frontend import FrontEnd
from bifsmn_cli.audio.wav import from_int16
from bifsmn_cli.bench import (
    accuracy,
    arm,
    binary_layers,
    kernels,
    latency,
    machine,
    profile,
    qemu_plugin,
    report,
    streaming,
)
from bifsmn_cli.console import info, progress, warn
from bifsmn_cli.engine.binding import Library
from bifsmn_cli.errors import UserError
from bifsmn_cli.export.bfsm import read_bfsm
from bifsmn_cli.export.onnx_export import onnx_available
from bifsmn_cli.nn.config import TEACHER
from bifsmn_cli.nn.model_file import ModelFile

AARCH64_TARGETS = ("aarch64-cortex-a53", "aarch64", "aarch64-clang")  # preference for qemu and the board
QEMU_EXTRA_RUNS = 4
NO_AARCH64 = "build-kernel has no aarch64 target (add aarch64 to build_kernel.targets)"


@dataclasses.dataclass
class Inputs:
    """What a bench run measures, resolved once from the upstream artifacts."""

    export_dir: Path
    index: dict[str, Any]
    models: list[str]  # deployed variants, then "teacher"
    classes: list[str]
    split: str
    features: np.ndarray
    waves: np.ndarray
    labels: np.ndarray
    teacher_file: Path
    complexity: dict[str, dict[str, Any]]
    kernel_dir: Path
    kernel_metrics: dict[str, Any]
    torch_models: dict[str, ModelFile]  # the PyTorch counterpart of every exported model
    library: Library  # build-kernel's host engine
    stream_audio: streaming.SplitAudio | None = None  # the clips of the streaming evaluation; None: off


def measure(
    inp: Inputs,
    config: dict[str, Any],
    plugin: Path | None,  # bench.qemu_plugin; None: the cached one, or built (bench/qemu_plugin.py)
    device: arm.Device | None,
    work_dir: Path,
    seed: int,
) -> dict[str, Any]:
    """Every section of bench.json; `work_dir` holds the timed clip."""
    lib = inp.library
    host = machine.describe()
    host_build = inp.kernel_metrics.get("targets", {}).get("host", {})
    host["engine"] = {
        "library": str(lib.path),
        "compiler": host_build.get("compiler"),
        "flags": host_build.get("flags"),
        "kernels": lib.available_kernels(),
        "auto": lib.kernel_name("auto"),
    }
    results: dict[str, Any] = {
        "schema": "bifsmn-bench/1",
        "units": report.UNITS,
        "machine": host,
        "config": dict(config),
        "split": {"name": inp.split, "clips": int(len(inp.labels))}
        | ({"note": "the test split is empty"} if inp.split == "validation" else {}),
    }
    results["accuracy"] = _accuracy(lib, inp)
    clip = latency.clip_file(work_dir / "clip.wav", inp.waves[0])
    results["latency"] = _latency(config, inp, clip)
    results["kernels"] = _kernels(config, lib, inp, host["peak"], seed)
    qemu = _qemu_setup(config, inp, plugin)
    results["arm"] = _arm(config, inp, qemu, device, clip)
    results["profile"] = _profile(config, inp, qemu, clip)
    results["storage"] = _storage(inp, inp.torch_models[TEACHER].model)
    results["complexity"] = _complexity(inp)
    results["streaming"] = _streaming(config, inp, qemu, clip, results, seed)
    results["paper"] = report.PAPER
    return results


def _accuracy(lib: Library, inp: Inputs) -> dict[str, Any]:
    out = {}
    with progress("accuracy", total=len(inp.models), unit="models") as bar:
        for m in inp.models:
            with lib.load(inp.export_dir / inp.index["models"][m]["file"]) as engine:
                out[m] = accuracy.compare(
                    inp.torch_models[m].model, engine, inp.features, inp.waves, inp.labels, inp.classes
                )
            bar.advance()
    return {"split": inp.split, "models": out}


def _engine_contenders(
    infer: list[str], files: dict[str, str], clip: str, kernels: list[str]
) -> list[latency.Contender]:
    """One contender per model and kernel; `files` maps model -> path as `infer` sees it."""
    out = []
    for k in kernels:
        suffix = "" if len(kernels) == 1 else f" [{k}]"
        for m, path in files.items():
            meta = {"kernel": k}  # the runner adds the kernels the engine resolved k to
            runner = latency.infer_runner(infer, path, clip, k, meta)
            out.append(latency.Contender(f"engine {m}{suffix}", "engine", m, latency.PATHS, runner, meta))
    return out


def _python_contenders(
    c: dict[str, Any], inp: Inputs, teacher: ModelFile
) -> tuple[list[latency.Contender], dict[str, str]]:
    """PyTorch eager and onnxruntime, full precision; and why either is absent."""
    contenders, skipped = [], {}
    x = torch.from_numpy(inp.features[:1].copy())
    wave = torch.from_numpy(from_int16(inp.waves[:1]))
    frontend = FrontEnd(teacher.frontend).eval()
    network = teacher.model.eval()
    if c["pytorch"]:

        @torch.inference_mode()
        def net() -> Any:
            return network(x)

        @torch.inference_mode()
        def e2e() -> Any:
            return network(frontend(wave))

        contenders.append(
            latency.Contender(
                "pytorch teacher", "pytorch", TEACHER, latency.PATHS, latency.python_runner(net, e2e)
            )
        )
    else:
        skipped["pytorch"] = "bench.pytorch is false"
    onnx = inp.index.get("onnx") or {}
    if not c["onnxruntime"]:
        skipped["onnxruntime"] = "bench.onnxruntime is false"
    elif not onnx.get("written"):
        skipped["onnxruntime"] = f"no teacher.onnx ({onnx.get('reason', 'not exported')})"
    elif not onnx_available():
        skipped["onnxruntime"] = "onnxruntime is not installed"
    else:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        session = ort.InferenceSession(
            str(inp.export_dir / onnx["file"]), options, providers=["CPUExecutionProvider"]
        )
        feed = {"features": inp.features[:1].copy()}
        contenders.append(
            latency.Contender(
                "onnxruntime teacher",
                "onnxruntime",
                TEACHER,
                ("net",),
                latency.python_runner(lambda: session.run(["logits"], feed), None),
                {"e2e_not_measured": "teacher.onnx holds the network only"},
            )
        )
    return contenders, skipped


def _timed(
    contenders: list[latency.Contender], c: dict[str, Any], title: str
) -> dict[str, dict[str, dict[str, Any]]]:
    with progress(title, total=c["rounds"] * len(contenders), unit="blocks") as bar:
        raw = latency.round_robin(
            contenders,
            c["rounds"],
            c["repeats"],
            c["warmup"],
            lambda what: (bar.update(description=what), bar.advance()),
        )
    return {name: {p: latency.summarize(r) for p, r in paths.items()} for name, paths in raw.items()}


def _speedups(contenders: list[latency.Contender], summary: dict[str, Any]) -> list[dict[str, Any]]:
    """Each binary engine contender against every full-precision one of the same run."""
    baselines = [x for x in contenders if x.model == TEACHER]
    out = []
    for b in contenders:
        if b.kind != "engine" or b.model == TEACHER:
            continue
        for base in baselines:
            if base.kind == "engine" and base.meta.get("kernel") != b.meta.get("kernel"):
                continue
            for p in base.paths:
                if p in b.paths:
                    out.append(
                        {"contender": b.name, "model": b.model, "baseline": base.name, "path": p}
                        | latency.speedup(summary[base.name][p], summary[b.name][p])
                    )
    return out


def _latency(c: dict[str, Any], inp: Inputs, clip: Path) -> dict[str, Any]:
    infer = inp.kernel_dir / "host" / "bifsmn-infer"
    files = {m: str(inp.export_dir / inp.index["models"][m]["file"]) for m in inp.models}
    contenders = _engine_contenders([str(infer)], files, str(clip), c["kernels"])
    python, skipped = _python_contenders(c, inp, inp.torch_models[TEACHER])
    contenders += python
    summary = _timed(contenders, c, "latency")
    return {
        "rounds": c["rounds"],
        "repeats": c["repeats"],
        "warmup": c["warmup"],
        "contenders": [
            {"name": x.name, "kind": x.kind, "model": x.model, **x.meta, **summary[x.name]}
            for x in contenders
        ],
        "not_measured": skipped,
        "speedups": _speedups(contenders, summary),
    }


def _kernels(c: dict[str, Any], lib: Library, inp: Inputs, peak: dict[str, Any], seed: int) -> dict[str, Any]:
    student = next((m for m in inp.models if m != TEACHER), None)
    shapes = []
    if student is not None:
        path = inp.export_dir / inp.index["models"][student]["file"]
        with lib.load(path) as engine:
            shapes = kernels.model_shapes(engine, read_bfsm(path))
    shapes += kernels.square_shapes(c["kernel_shapes"])
    impls = lib.available_kernels()
    info(f"kernel throughput: {len(shapes)} shapes x {', '.join(impls)} and PyTorch")
    result = kernels.measure(lib, impls, shapes, peak, samples=c["kernel_samples"], seed=seed)
    return {"model_shapes_from": student, "peak": peak, **result}


def _aarch64_targets(inp: Inputs) -> list[str]:
    return [t for t in inp.kernel_metrics.get("targets", {}) if t.startswith("aarch64")]


def _arm(
    c: dict[str, Any], inp: Inputs, qemu: QemuSetup | str, device: arm.Device | None, clip: Path
) -> dict[str, Any]:
    targets = _aarch64_targets(inp)
    out: dict[str, Any] = {}
    mca = {}
    layers = {
        m: binary_layers.binary_layers(read_bfsm(inp.export_dir / inp.index["models"][m]["file"]))
        for m in inp.models
        if m != TEACHER
    }
    for t in targets:
        path = inp.kernel_dir / t / "mca.json"
        if path.is_file():
            mca[t] = arm.mca_figures(json.loads(path.read_text()), inp.complexity, layers)
    if mca:
        out["mca"] = {"measured": True, "targets": mca}
    else:
        reason = NO_AARCH64 if not targets else "build-kernel ran without llvm-mca (build_kernel.mca: false)"
        out["mca"] = {"measured": False, "reason": reason}
    chosen = next((t for t in AARCH64_TARGETS if t in targets), targets[0] if targets else None)
    infer = inp.kernel_dir / chosen / "bifsmn-infer" if chosen else None
    files = {m: inp.export_dir / inp.index["models"][m]["file"] for m in inp.models}
    out["qemu"] = _qemu(qemu, files, clip)
    out["device"] = _device(c, device, infer, chosen, files, clip)
    return out


# ---------------------------------------------------------------- qemu: the counting setup, counts, profile


@dataclasses.dataclass(frozen=True)
class QemuSetup:
    """What counting aarch64 instructions needs: qemu-aarch64, the insn plugin, the aarch64 bifsmn-infer."""

    qemu: str
    plugin: Path
    built: bool  # the plugin was built by this run
    infer: Path
    target: str

    def describe(self) -> dict[str, Any]:
        return {"target": self.target, "plugin": str(self.plugin), "plugin_built": self.built}


def _qemu_setup(c: dict[str, Any], inp: Inputs, plugin: Path | None) -> QemuSetup | str:
    """The setup, or the one-line reason there is none (printed as a warning when the plugin cannot be built)."""
    if not c["qemu"]:
        return "bench.qemu is false"
    targets = _aarch64_targets(inp)
    if not targets:
        return NO_AARCH64
    target = next((t for t in AARCH64_TARGETS if t in targets), targets[0])
    infer = inp.kernel_dir / target / "bifsmn-infer"
    if not infer.is_file():
        return f"build-kernel's {target} target has no bifsmn-infer"
    qemu = shutil.which("qemu-aarch64")
    if qemu is None:
        return "qemu-aarch64 is not installed (apt-get install qemu-user)"
    built = False
    if plugin is None:
        try:
            plugin, built = qemu_plugin.find_or_build(qemu, say=info)
        except qemu_plugin.Unavailable as exc:
            warn(f"aarch64 instruction counts not measured: {exc}")
            return str(exc)
    return QemuSetup(qemu, plugin, built, infer, target)


def _qemu(qemu: QemuSetup | str, files: dict[str, Path], clip: Path) -> dict[str, Any]:
    if isinstance(qemu, str):
        return {"measured": False, "reason": qemu}
    info(f"counting aarch64 instructions under qemu ({qemu.target}, plugin {qemu.plugin})")
    counts = arm.qemu_counts(qemu.qemu, qemu.plugin, qemu.infer, files, clip, QEMU_EXTRA_RUNS)
    teacher = counts.get(TEACHER)
    ratios = {
        m: {p: teacher[f"{p}_insns"] / r[f"{p}_insns"] for p in latency.PATHS}
        for m, r in counts.items()
        if teacher is not None and m != TEACHER
    }
    return {"measured": True, **qemu.describe(), "models": counts, "teacher_over_model": ratios}


def _profile(c: dict[str, Any], inp: Inputs, qemu: QemuSetup | str, clip: Path) -> dict[str, Any]:
    """Per op kind, the share of one model's x86 time and aarch64 instructions (bifsmn_cli/bench/profile.py)."""
    if c["profile_runs"] == 0:
        return {"measured": False, "reason": "bench.profile_runs is 0"}
    model = c["profile"] or next((m for m in inp.models if m != TEACHER), inp.models[0])
    path = inp.export_dir / inp.index["models"][model]["file"]
    infer = inp.kernel_dir / "host" / "bifsmn-infer"
    x86 = profile.host_profile(infer, path, clip, c["profile_runs"], c["warmup"])
    out: dict[str, Any] = {"measured": True, "model": model, "x86": x86}
    if isinstance(qemu, str):
        out["aarch64"] = {"measured": False, "reason": qemu}
    else:
        info(f"counting aarch64 instructions per op kind of {model} under qemu")
        kinds = list(x86["kinds"])
        counts = profile.qemu_profile(qemu.qemu, qemu.plugin, qemu.infer, path, clip, kinds, QEMU_EXTRA_RUNS)
        out["aarch64"] = {"measured": True, **qemu.describe(), **counts}
    return out


def _device(
    c: dict[str, Any],
    device: arm.Device | None,
    infer: Path | None,
    target: str | None,
    files: dict[str, Path],
    clip: Path,
) -> dict[str, Any]:
    if device is None:
        return {"measured": False, "reason": "bench.device is not set"}
    if infer is None:
        return {"measured": False, "reason": NO_AARCH64}
    with arm.Board(device) as board:
        described = board.describe()
        if described["arch"] not in ("aarch64", "arm64"):
            raise UserError(f"bench.device {device.url}: the board is {described['arch']}, not aarch64")
        remote = board.put([infer, clip, *files.values()])
        contenders = _engine_contenders(
            [*device.ssh(), remote[infer.name]],
            {m: remote[p.name] for m, p in files.items()},
            remote[clip.name],
            ["auto"],
        )
        summary = _timed(contenders, c, f"latency on {device.destination}")
    return {
        "measured": True,
        "target": target,
        "board": described,
        "contenders": [{"name": x.name, "model": x.model, **x.meta, **summary[x.name]} for x in contenders],
        "speedups": _speedups(contenders, summary),
    }


def _storage(inp: Inputs, teacher: torch.nn.Module) -> dict[str, Any]:
    buffer = io.BytesIO()
    torch.save(teacher.state_dict(), buffer)
    teacher_bfsm = inp.index["models"][TEACHER]["bytes"]
    full = {
        "checkpoint_bytes": inp.teacher_file.stat().st_size,
        "state_dict_bytes": len(buffer.getvalue()),
        "fp32_weights_bytes": inp.complexity[TEACHER]["bytes"],
        "bfsm_bytes": teacher_bfsm,
        "bfsm_fp_storage": inp.index["models"][TEACHER].get("fp_storage", "fp32"),  # the ratios' float32 base
    }
    onnx = inp.index.get("onnx") or {}
    if onnx.get("written"):
        full["onnx_bytes"] = onnx["bytes"]
    variants = {}
    for m in inp.models:
        if m == TEACHER:
            continue
        size = inp.index["models"][m]["bytes"]
        variants[m] = {
            "bfsm_bytes": size,
            "fp_storage": inp.index["models"][m].get("fp_storage", "fp32"),  # export.fp_storage's result
            "packed_estimate_bytes": inp.complexity[m]["bytes"],
            "teacher_bfsm_over_bfsm": teacher_bfsm / size,
            "fp32_weights_over_bfsm": full["fp32_weights_bytes"] / size,
            "state_dict_over_bfsm": full["state_dict_bytes"] / size,
            "checkpoint_over_bfsm": full["checkpoint_bytes"] / size,
            "fp32_weights_over_packed_estimate": full["fp32_weights_bytes"] / inp.complexity[m]["bytes"],
        }
    return {"teacher": full, "variants": variants}


def _complexity(inp: Inputs) -> dict[str, Any]:
    teacher = inp.complexity[TEACHER]
    out = {}
    for m in inp.models:
        r = inp.complexity[m]
        out[m] = {
            "params": r["params"],
            "real_macs": r["real_macs"],
            "binary_ops": r["binary_ops"],
            "flops": r["flops"],
            "teacher_flops_over_flops": teacher["flops"] / r["flops"],
        }
    return out


# ---- streaming keyword detection (bifsmn_cli/bench/streaming.py) ----
def _streaming(
    c: dict[str, Any], inp: Inputs, qemu: QemuSetup | str, clip: Path, results: dict[str, Any], seed: int
) -> dict[str, Any]:
    """After the latency section: the clip loop's cost comes from it; aarch64 counts use the same qemu setup."""
    if inp.stream_audio is None:
        return {"measured": False, "reason": "bench.streaming is false"}
    files = {m: inp.export_dir / inp.index["models"][m]["file"] for m in inp.models}
    e2e = {m: (report.engine_contender(results, m) or {}).get("e2e", {}).get("median_us") for m in inp.models}
    counting = (
        streaming.Qemu(reason=qemu)
        if isinstance(qemu, str)
        else streaming.Qemu(qemu.qemu, qemu.plugin, qemu.infer, qemu.target)
    )
    s = streaming.Settings.from_config(c)
    host_infer = inp.kernel_dir / "host" / "bifsmn-infer"
    return streaming.measure(
        inp.library, files, inp.stream_audio, s, seed, host_infer, clip, c["rounds"], e2e, counting
    )

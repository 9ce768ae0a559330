"""The `bench` stage: accuracy, latency, kernel throughput, ARM figures, size and cost of every exported model,
measured in one run and written as bench/bench.json, bench/report.md and PNG plots.

Everything here is measured in this run or read from upstream artifacts (thin's FLOPs, build-kernel's llvm-mca
estimates); a figure whose input is missing (no aarch64 build, no qemu plugin, no board) is recorded as not
measured with the reason. The figures' meaning and formulas are in bifsmn_cli/bench/.
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

from bifsmn_cli.audio.frontend import FrontEnd, FrontEndConfig
from bifsmn_cli.bench import accuracy, arm, kernels, latency, machine, plots, report
from bifsmn_cli.config import Bool, Int, List, Str
from bifsmn_cli.console import console, info, is_quiet, progress
from bifsmn_cli.data import packed
from bifsmn_cli.engine.binding import IMPLS, LIB_NAME, Library
from bifsmn_cli.errors import UserError
from bifsmn_cli.export import onnx_available, read_bfsm
from bifsmn_cli.fsutil import atomic_write_json, atomic_write_text
from bifsmn_cli.nn.checkpoint import ModelFile, load_model
from stages.base import StageContext, StageSpec
from stages.export import INDEX, TEACHER
from stages.thin import MODELS_DIR
from stages.train_teacher import MODEL_FILE as TEACHER_FILE

SPEC = StageSpec(
    name="bench",
    schema={
        "rounds": Int(20, "round-robin rounds of the latency contenders", min=1),
        "repeats": Int(25, "timed runs per contender and path in each round", min=1),
        "warmup": Int(5, "untimed runs per contender before its timed runs in each round", min=0),
        "kernels": List("str", ["auto"], "engine kernels timed: " + ", ".join(IMPLS), choices=tuple(IMPLS)),
        "pytorch": Bool(True, "time the teacher in PyTorch eager (one thread)"),
        "onnxruntime": Bool(True, "time teacher.onnx in onnxruntime (one thread) when it was exported"),
        "kernel_shapes": List("int", [256, 512], "square GEMM sizes timed besides the model's layers", min=1),
        "kernel_samples": Int(7, "timing samples per GEMM shape and implementation", min=1),
        "qemu_plugin": Str(
            None, "QEMU insn plugin (libinsn.so): count aarch64 instructions per inference", nullable=True
        ),
        "device": Str(
            None, "ssh://user@host[:port] of an aarch64 board to time the engine on", nullable=True
        ),
    },
    needs=("featurize", "train-teacher", "thin", "export", "build-kernel"),
)

AARCH64_TARGETS = ("aarch64-cortex-a53", "aarch64", "aarch64-clang")  # preference for qemu and the board
QEMU_EXTRA_RUNS = 4
NO_AARCH64 = "build-kernel has no aarch64 target (add aarch64 to build_kernel.targets)"


@dataclasses.dataclass
class Inputs:
    """What the stage reads from upstream, resolved once."""

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


def _inputs(ctx: StageContext) -> Inputs:
    featurized = ctx.input_dir("featurize")
    export_dir = ctx.input_dir("export")
    index = json.loads((export_dir / INDEX).read_text())
    split = "testing"
    data = packed.load_split(featurized, split)
    if len(data) == 0:
        split, data = "validation", packed.load_split(featurized, "validation")
        info("the test split is empty: accuracy is measured on the validation split")
    if len(data) == 0:
        raise UserError(f"{featurized}: the test and validation splits are empty; nothing to measure on")
    rows = json.loads((ctx.input_dir("thin") / "variants.json").read_text())["variants"]
    return Inputs(
        export_dir=export_dir,
        index=index,
        models=list(index["models"]),
        classes=packed.load_classes(featurized),
        split=split,
        features=np.array(data.features, dtype=np.float32),  # in memory and writable, for torch
        waves=data.waves,
        labels=np.asarray(data.labels, dtype=np.int64),
        teacher_file=ctx.input_dir("train-teacher") / TEACHER_FILE,
        complexity={r["variant"]: r for r in rows},
        kernel_dir=ctx.input_dir("build-kernel"),
        kernel_metrics=ctx.input_manifest("build-kernel")["metrics"],
    )


def _torch_models(ctx: StageContext, inp: Inputs) -> dict[str, ModelFile]:
    """The PyTorch counterpart of every exported model: thin's deployable variants and the teacher."""
    thin = ctx.input_dir("thin") / MODELS_DIR
    return {
        m: load_model(inp.teacher_file if m == TEACHER else thin / f"{m}.pt", expect_classes=len(inp.classes))
        for m in inp.models
    }


def _host_library(inp: Inputs) -> Library:
    path = inp.kernel_dir / "host" / LIB_NAME
    if not path.is_file():
        raise UserError(
            f"{path}: missing; bench runs the host engine: add host to build_kernel.targets and rerun build-kernel"
        )
    return Library(path)


def run(ctx: StageContext) -> dict[str, Any]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # every contender runs on one core
    try:
        return _run(ctx)
    finally:
        torch.set_num_threads(threads)


def _run(ctx: StageContext) -> dict[str, Any]:
    c = ctx.config
    inp = _inputs(ctx)
    lib = _host_library(inp)
    for k in c["kernels"]:
        if k != "auto" and not lib.kernel_available(k):
            available = [i for i in IMPLS if lib.kernel_available(i)]
            raise UserError(
                f"bench.kernels: {k} does not run on this CPU (available: {', '.join(available)})"
            )
    plugin = _qemu_plugin(c["qemu_plugin"])
    device = arm.parse_device(c["device"]) if c["device"] else None
    torch_models = _torch_models(ctx, inp)
    host = machine.describe()
    host_build = inp.kernel_metrics.get("targets", {}).get("host", {})
    host["engine"] = {
        "library": str(lib.path),
        "compiler": host_build.get("compiler"),
        "flags": host_build.get("flags"),
        "kernels": [i for i in IMPLS if i != "auto" and lib.kernel_available(i)],
        "auto": lib.kernel_name("auto"),
    }

    results: dict[str, Any] = {
        "schema": "bifsmn-bench/1",
        "units": report.UNITS,
        "machine": host,
        "config": dict(c),
        "split": {"name": inp.split, "clips": int(len(inp.labels))}
        | ({"note": "the test split is empty"} if inp.split == "validation" else {}),
    }
    results["accuracy"] = _accuracy(lib, inp, torch_models)
    clip = latency.clip_file(ctx.state_dir / "clip.wav", inp.waves[0])
    results["latency"] = _latency(ctx, inp, torch_models, clip)
    results["kernels"] = _kernels(ctx, lib, inp, host["peak"])
    results["arm"] = _arm(ctx, inp, plugin, device, clip)
    results["storage"] = _storage(inp, torch_models[TEACHER].model)
    results["complexity"] = _complexity(inp)
    results["paper"] = report.PAPER

    atomic_write_json(ctx.out_dir / "bench.json", results)
    written = plots.write_all(results, ctx.out_dir)
    atomic_write_text(ctx.out_dir / "report.md", report.markdown(results, written))
    if not is_quiet():
        console.print(report.headline_table(results))
    return report.metrics(results)


def _qemu_plugin(value: str | None) -> Path | None:
    if value is None:
        return None
    path = Path(value).expanduser()
    if not path.is_file():
        raise UserError(
            f"bench.qemu_plugin: {path}: no such file; build QEMU's insn plugin (tests/plugin/insn.c) "
            "or remove the key"
        )
    return path


def _accuracy(lib: Library, inp: Inputs, models: dict[str, ModelFile]) -> dict[str, Any]:
    out = {}
    with progress("accuracy", total=len(inp.models), unit="models") as bar:
        for m in inp.models:
            with lib.load(inp.export_dir / inp.index["models"][m]["file"]) as engine:
                out[m] = accuracy.compare(models[m].model, engine, inp.features, inp.waves, inp.labels)
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
    c: dict[str, Any], inp: Inputs, teacher: torch.nn.Module, frontend_cfg: dict[str, Any]
) -> tuple[list[latency.Contender], dict[str, str]]:
    """PyTorch eager and onnxruntime, full precision; and why either is absent."""
    contenders, skipped = [], {}
    x = torch.from_numpy(inp.features[:1].copy())
    wave = torch.from_numpy(inp.waves[:1].astype(np.float32) / 32768.0)
    fields = {f.name for f in dataclasses.fields(FrontEndConfig)}
    frontend = FrontEnd(FrontEndConfig(**{k: v for k, v in frontend_cfg.items() if k in fields})).eval()
    teacher.eval()
    if c["pytorch"]:

        @torch.inference_mode()
        def net() -> Any:
            return teacher(x)

        @torch.inference_mode()
        def e2e() -> Any:
            return teacher(frontend(wave))

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


def _latency(ctx: StageContext, inp: Inputs, models: dict[str, ModelFile], clip: Path) -> dict[str, Any]:
    c = ctx.config
    infer = inp.kernel_dir / "host" / "bifsmn-infer"
    files = {m: str(inp.export_dir / inp.index["models"][m]["file"]) for m in inp.models}
    contenders = _engine_contenders([str(infer)], files, str(clip), c["kernels"])
    teacher = models[TEACHER]
    python, skipped = _python_contenders(c, inp, teacher.model, teacher.frontend)
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


def _kernels(ctx: StageContext, lib: Library, inp: Inputs, peak: dict[str, Any]) -> dict[str, Any]:
    student = next((m for m in inp.models if m != TEACHER), None)
    shapes = []
    if student is not None:
        path = inp.export_dir / inp.index["models"][student]["file"]
        with lib.load(path) as engine:
            shapes = kernels.model_shapes(engine, read_bfsm(path))
    shapes += kernels.square_shapes(ctx.config["kernel_shapes"])
    impls = [i for i in IMPLS if i not in ("auto",) and lib.kernel_available(i)]
    info(f"kernel throughput: {len(shapes)} shapes x {', '.join(impls)} and PyTorch")
    result = kernels.measure(lib, impls, shapes, peak, samples=ctx.config["kernel_samples"], seed=ctx.seed)
    return {"model_shapes_from": student, "peak": peak, **result}


def _aarch64_targets(inp: Inputs) -> list[str]:
    return [t for t in inp.kernel_metrics.get("targets", {}) if t.startswith("aarch64")]


def _arm(
    ctx: StageContext, inp: Inputs, plugin: Path | None, device: arm.Device | None, clip: Path
) -> dict[str, Any]:
    targets = _aarch64_targets(inp)
    out: dict[str, Any] = {}
    mca = {}
    for t in targets:
        path = inp.kernel_dir / t / "mca.json"
        if path.is_file():
            mca[t] = arm.mca_figures(json.loads(path.read_text()), inp.complexity)
    if mca:
        out["mca"] = {"measured": True, "targets": mca}
    else:
        reason = NO_AARCH64 if not targets else "build-kernel ran without llvm-mca (build_kernel.mca: false)"
        out["mca"] = {"measured": False, "reason": reason}
    chosen = next((t for t in AARCH64_TARGETS if t in targets), targets[0] if targets else None)
    infer = inp.kernel_dir / chosen / "bifsmn-infer" if chosen else None
    files = {m: inp.export_dir / inp.index["models"][m]["file"] for m in inp.models}
    out["qemu"] = _qemu(plugin, infer, chosen, files, clip)
    out["device"] = _device(ctx, device, infer, chosen, files, clip)
    return out


def _qemu(
    plugin: Path | None, infer: Path | None, target: str | None, files: dict[str, Path], clip: Path
) -> dict[str, Any]:
    if plugin is None:
        return {"measured": False, "reason": "bench.qemu_plugin is not set"}
    if infer is None:
        return {"measured": False, "reason": NO_AARCH64}
    qemu = shutil.which("qemu-aarch64")
    if qemu is None:
        return {"measured": False, "reason": "qemu-aarch64 is not installed (apt-get install qemu-user)"}
    info(f"counting aarch64 instructions under qemu ({target})")
    counts = arm.qemu_counts(qemu, plugin, infer, files, clip, QEMU_EXTRA_RUNS)
    teacher = counts.get(TEACHER)
    ratios = {
        m: {p: teacher[f"{p}_insns"] / r[f"{p}_insns"] for p in latency.PATHS}
        for m, r in counts.items()
        if teacher is not None and m != TEACHER
    }
    return {
        "measured": True,
        "target": target,
        "plugin": str(plugin),
        "models": counts,
        "teacher_over_model": ratios,
    }


def _device(
    ctx: StageContext,
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
    c = ctx.config
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
            "packed_estimate_bytes": inp.complexity[m]["bytes"],
            "teacher_bfsm_over_bfsm": teacher_bfsm / size,
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

"""The `build-kernel` stage: build and test the C engine for each target, and keep what deployment needs.

Each target maps to a CMake preset (bifsmn_cli.engine.build.TARGETS). It is configured and built in
`state/<target>/`, its ctest suite runs (aarch64 under qemu-aarch64, through the toolchain's emulator), and
`<target>/` receives libbifsmn.so, libbifsmn.a, bifsmn-infer, bifsmn.h, build.log and ctest.log, plus mca.json
(llvm-mca estimates of the NEON kernel loops the network runs: the fused binary kernels and the float GEMM) for
aarch64 targets. The stage's hash includes the csrc/ tree, so editing a C or CMake file makes it (and `bench`)
stale.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from bifsmn_cli.config import Bool, Int, List, Str
from bifsmn_cli.console import Task, info, progress
from bifsmn_cli.engine import build
from bifsmn_cli.engine.binding import Library
from bifsmn_cli.engine.mca import DEFAULT_CPUS, estimate
from bifsmn_cli.errors import UserError
from bifsmn_cli.fsutil import atomic_path, atomic_write_json
from stages.pipeline.stage import StageContext, StageSpec

# Per target directory: what deployment and the later stages use, and the logs.
TARGET_FILES = (
    "libbifsmn.so",
    "libbifsmn.a",
    "bifsmn-infer",
    "bifsmn.h",
    "build.log",
    "ctest.log",
    "mca.json",
)

SPEC = StageSpec(
    name="build-kernel",
    schema={
        "targets": List(
            "str", ["host"], "what to build: " + ", ".join(build.TARGETS), choices=tuple(build.TARGETS)
        ),
        "build_type": Str(
            None,
            "CMake build type (default: the preset's, Release; host-debug: Debug)",
            choices=build.BUILD_TYPES,
            nullable=True,
        ),
        "run_tests": Bool(True, "run the ctest suite of each target (aarch64 under qemu-aarch64)"),
        "jobs": Int(2, "parallel compile and test jobs", min=1, max=256),
        "mca": Bool(True, "llvm-mca cycle estimates of the NEON kernels for aarch64 targets"),
        "mca_cpus": List("str", list(DEFAULT_CPUS), "CPU models llvm-mca simulates"),
    },
    outputs=tuple(f"*/{name}" for name in TARGET_FILES),
    source_hash=lambda: build.source_hash(),  # looked up at call time, so tests can point it elsewhere
)


def run(ctx: StageContext) -> dict[str, Any]:
    c = ctx.config
    targets = c["targets"]
    if not targets:
        raise UserError(f"build_kernel.targets: empty; list at least one of {', '.join(build.TARGETS)}")
    if len(set(targets)) != len(targets):
        raise UserError(f"build_kernel.targets: {targets} lists a target twice")
    mca = c["mca"] and any(build.is_cross(t) for t in targets)
    if mca and not c["mca_cpus"]:
        raise UserError("build_kernel.mca_cpus: empty; list CPU models (e.g. cortex-a53) or set mca: false")
    cmake = build.find_cmake()
    build.check_tools(targets, c["run_tests"], c["mca"])
    metrics: dict[str, Any] = {
        "source_hash": build.source_hash(),
        "cmake": build.cmake_version(cmake),
        "host_cpu": build.host_cpu(),
        "targets": {},
    }
    steps = {t: 2 + c["run_tests"] + (c["mca"] and build.is_cross(t)) for t in targets}
    with progress("build-kernel", total=sum(steps.values()), unit="steps") as bar:
        for target in targets:
            metrics["targets"][target] = _target(ctx, target, cmake, bar)
    return metrics


def _target(ctx: StageContext, target: str, cmake: str, bar: Task) -> dict[str, Any]:
    c = ctx.config
    dest = ctx.out_dir / target
    dest.mkdir(parents=True, exist_ok=True)
    build_dir = ctx.state_dir / target
    log = dest / "build.log"
    log.unlink(missing_ok=True)

    bar.update(description=f"{target}: configure")
    cfg = build.configure(build.TARGETS[target], build_dir, log, c["build_type"], cmake)
    bar.advance()
    bar.update(description=f"{target}: build")
    build.build(build_dir, log, c["jobs"], cmake)
    bar.advance()
    _copy(build_dir / build.LIB_NAME, dest / build.LIB_NAME)  # follows the soname links to the real file
    _copy(build_dir / "libbifsmn_static.a", dest / "libbifsmn.a")
    _copy(build_dir / "bifsmn-infer", dest / "bifsmn-infer")
    _copy(build.CSRC / "include" / "bifsmn.h", dest / "bifsmn.h")
    result: dict[str, Any] = {
        "preset": cfg.preset,
        "build_type": cfg.build_type,
        "cross": build.is_cross(target),
        "compiler": cfg.compiler,
        "flags": cfg.flags,
        "file_flags": cfg.file_flags,
        "linker_flags": cfg.linker_flags,
    }
    summary = "not tested"
    if c["run_tests"]:
        bar.update(description=f"{target}: ctest")
        tests = build.run_ctest(build_dir, dest / "ctest.log", c["jobs"], cmake)
        bar.advance()
        result["tests"] = tests.as_dict()
        if tests.failed:
            raise UserError(
                f"build-kernel {target}: {len(tests.failed)} of {tests.total} tests failed "
                f"({', '.join(tests.failed)}); see {dest / 'ctest.log'}"
            )
        summary = f"{tests.passed}/{tests.total} tests passed"
    if not build.is_cross(target) and not cfg.sanitized:  # ASan builds cannot be dlopened
        result["engine_kernels"] = Library(dest / build.LIB_NAME).available_kernels()
    if c["mca"] and build.is_cross(target):
        bar.update(description=f"{target}: llvm-mca")
        figures = estimate(dest / "libbifsmn.a", cpus=tuple(c["mca_cpus"]))
        atomic_write_json(dest / "mca.json", figures)
        bar.advance()
        result["mca"] = _mca_summary(figures)
    notes = [f"{cfg.compiler['id']} {cfg.compiler['version']}", summary]
    if "engine_kernels" in result:
        notes.append("kernels on this CPU: " + ", ".join(result["engine_kernels"]))
    gemm = [v for k, v in result.get("mca", {}).items() if k.startswith("bfuse_gemm_")]
    if gemm:
        cpu = c["mca_cpus"][0]
        rates = [g[cpu] for g in gemm]
        notes.append(
            f"llvm-mca fused binary GEMM loops {min(rates)}-{max(rates)} bit-MACs/cycle on {cpu} (mca.json)"
        )
    info(f"{target}: " + ", ".join(notes))
    return result


def _copy(src: Path, dst: Path) -> None:
    if not src.exists():
        raise UserError(f"{src}: the build did not produce it; check {dst.parent / 'build.log'}")
    with atomic_path(dst) as tmp:
        shutil.copy2(src, tmp)


def _mca_summary(figures: dict[str, Any]) -> dict[str, Any]:
    """Per kernel loop and CPU, the work per cycle (bit-MACs for the fused binary loops, MACs for sgemm) from
    mca.json."""
    out = {}
    for name, kernel in figures["kernels"].items():
        per_cpu = {}
        for cpu, values in kernel["cpus"].items():
            unit, value = next((k, v) for k, v in values.items() if k.endswith("_per_cycle"))
            per_cpu[cpu] = value
        out[name] = {"unit": unit, **per_cpu}
    return out

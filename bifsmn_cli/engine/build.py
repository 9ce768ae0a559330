"""Configure, build and test the C engine (csrc/) with CMake presets, describe what was built, and find a build.

The stage `build-kernel`, `bifsmn predict` and the fuzzing driver use this; it knows presets, tools and CMake's
outputs, not manifests. Compiler, version and flags are read back from CMake's file API (what CMake really
used), not guessed from the presets; the host CPU's features come from /proc/cpuinfo.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bifsmn_cli.engine.mca import MCA_NAMES, find_tool
from bifsmn_cli.errors import InternalError, UserError

CSRC = Path(__file__).resolve().parents[2] / "csrc"
LIB_NAME = "libbifsmn.so"

# Stage target -> configure preset (csrc/CMakePresets.json).
TARGETS: dict[str, str] = {
    "host": "host-release",
    "host-debug": "host-debug",
    "aarch64": "aarch64-release",
    "aarch64-cortex-a53": "aarch64-cortex-a53",
    "aarch64-clang": "aarch64-clang-release",
}
BUILD_TYPES = ("Release", "Debug", "RelWithDebInfo", "MinSizeRel")
# Tool on PATH -> the Debian package that provides it (all of them are in `make setup`'s list).
APT_PACKAGES = {
    "cc": "gcc",
    "aarch64-linux-gnu-gcc": "gcc-aarch64-linux-gnu",
    "clang": "clang",
    "qemu-aarch64": "qemu-user",
    "llvm-mca": "llvm-16",
}
# Host CPU features the x86 kernels depend on, by their /proc/cpuinfo names.
X86_FEATURES = {
    "avx2": "avx2",
    "fma": "fma",
    "avx512f": "avx512f",
    "avx512bw": "avx512bw",
    "avx512vpopcntdq": "avx512_vpopcntdq",
}
# Files under csrc/ that do not shape the build or its tests: build trees, hidden files, prose, fuzz tooling.
_UNHASHED_DIRS = {"build"}
_UNHASHED_SUFFIXES = {".md", ".py", ".pyc", ".dict"}  # docs, the fuzz driver and its dictionaries
_FILE_API_QUERIES = ("toolchains-v1", "codemodel-v2", "cache-v2")


def find_cmake() -> str:
    """The venv's cmake (a pinned pip wheel, so builds do not depend on the distribution's), then PATH's."""
    beside = Path(sys.executable).with_name("cmake")
    found = str(beside) if beside.exists() else shutil.which("cmake")
    if found is None:
        raise UserError(
            "cmake not found: run `make setup` (it installs cmake into .venv) or `pip install cmake`"
        )
    return found


def find_library(path: Path | str | None = None) -> Path:
    """A libbifsmn.so: `path` (the file or its directory), else $BIFSMN_LIB, else csrc/build/host-release, then
    the newest other host build under csrc/build/ (cross builds for another CPU are skipped)."""
    explicit = path or os.environ.get("BIFSMN_LIB")
    if explicit:
        p = Path(explicit)
        candidates = [p / LIB_NAME if p.is_dir() else p]
    else:
        others = [f for f in CSRC.glob(f"build/*/{LIB_NAME}") if not f.parent.name.startswith("aarch64")]
        candidates = [CSRC / "build" / "host-release" / LIB_NAME]
        candidates += sorted(others, key=lambda f: f.stat().st_mtime, reverse=True)
    for c in candidates:
        if c.is_file():
            return c
    raise UserError(
        f"{candidates[0]}: no {LIB_NAME}; build the engine (bifsmn run build-kernel) or pass its path"
    )


def build_library(build_dir: Path | str, build_type: str = "Release", sanitize: bool = False) -> Path:
    """Configure and build csrc/ into build_dir with the venv's cmake; returns the path of libbifsmn.so."""
    cmake_cmd = find_cmake()
    build_dir = Path(build_dir)
    configure = [cmake_cmd, "-S", str(CSRC), "-B", str(build_dir), f"-DCMAKE_BUILD_TYPE={build_type}"]
    configure.append(f"-DBIFSMN_SANITIZE={'ON' if sanitize else 'OFF'}")
    for cmd in (configure, [cmake_cmd, "--build", str(build_dir), "-j", str(os.cpu_count() or 1)]):
        result = subprocess.run(cmd, capture_output=True, text=True)
        if result.returncode != 0:
            tail = "\n".join((result.stdout + result.stderr).strip().splitlines()[-20:])
            raise InternalError(f"engine build failed: {' '.join(cmd)}\n{tail}")
    return build_dir / LIB_NAME


def cmake_version(cmake: str) -> str:
    out = subprocess.run([cmake, "--version"], capture_output=True, text=True).stdout
    m = re.search(r"cmake version (\S+)", out)
    return m.group(1) if m else "unknown"


def ctest_for(cmake: str) -> str:
    beside = Path(cmake).with_name("ctest")
    return str(beside) if beside.exists() else shutil.which("ctest") or "ctest"


def source_hash(root: Path | None = None) -> str:
    """A hash of every file under csrc/ that shapes the build or its tests (sources, CMake files, fuzz inputs)."""
    root = root or CSRC
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root)
        if (
            not path.is_file()
            or rel.parts[0] in _UNHASHED_DIRS
            or any(part.startswith(".") for part in rel.parts)
            or path.suffix in _UNHASHED_SUFFIXES
            or "__pycache__" in rel.parts
        ):
            continue
        digest.update(f"{rel.as_posix()}\0{hashlib.sha256(path.read_bytes()).hexdigest()}\n".encode())
    return digest.hexdigest()


def host_cpu(cpuinfo: Path = Path("/proc/cpuinfo")) -> dict[str, Any]:
    """Architecture, model name and the kernel-relevant features of the machine building (and testing)."""
    arch = platform.machine()
    try:
        text = cpuinfo.read_text()
    except OSError:
        text = ""
    model = re.search(r"^(?:model name|Model|CPU part)\s*:\s*(.+)$", text, re.M)
    flags_line = re.search(r"^(?:flags|Features)\s*:\s*(.*)$", text, re.M)
    flags = set(flags_line.group(1).split()) if flags_line else set()
    if arch in ("x86_64", "AMD64", "i686"):
        features = {name: proc in flags for name, proc in X86_FEATURES.items()}
    else:
        features = {name: name in flags for name in ("asimd", "asimddp", "sve")}
    return {"arch": arch, "model": model.group(1).strip() if model else "unknown", "features": features}


def is_cross(target: str) -> bool:
    return TARGETS[target].startswith("aarch64")


def required_tools(target: str, run_tests: bool, mca: bool) -> list[str]:
    """Commands a target needs on PATH (cmake is checked separately: it comes from the venv)."""
    if not is_cross(target):
        return ["cc"]
    tools = ["aarch64-linux-gnu-gcc"]  # the clang cross build links with its binutils and sysroot too
    if target == "aarch64-clang":
        tools.append("clang")
    if run_tests:
        tools.append("qemu-aarch64")
    if mca:
        tools.append("llvm-mca")
    return tools


def check_tools(targets: list[str], run_tests: bool, mca: bool) -> None:
    """Fail before building anything when a target's compiler, emulator or llvm-mca is missing."""
    for target in targets:
        missing = []
        for tool in required_tools(target, run_tests, mca):
            found = find_tool(MCA_NAMES) if tool == "llvm-mca" else shutil.which(tool)
            if found is None:
                missing.append(tool)
        if missing:
            packages = " ".join(dict.fromkeys(APT_PACKAGES[t] for t in missing))
            raise UserError(
                f"build_kernel.targets: {target} needs {', '.join(missing)}, not found; install them with "
                f"`sudo apt-get install {packages}` (or `make setup`)"
            )


@dataclass
class Configured:
    """What CMake chose for one build directory."""

    preset: str
    build_dir: Path
    build_type: str
    compiler: dict[str, str]
    flags: str
    file_flags: dict[str, str] = field(default_factory=dict)
    linker_flags: str = ""

    @property
    def sanitized(self) -> bool:
        return "-fsanitize" in self.flags


def _run(cmd: list[str], log: Path, what: str, cwd: Path | None = None) -> None:
    """Run one build step appending to `log`; a failure names the step, the first error line and the log."""
    with open(log, "a") as fh:
        fh.write(f"$ {' '.join(cmd)}\n")
        fh.flush()
        result = subprocess.run(cmd, stdout=fh, stderr=subprocess.STDOUT, cwd=cwd)
    if result.returncode != 0:
        lines = [line.strip() for line in log.read_text(errors="replace").splitlines()]
        at = next(
            (
                i
                for i, line in enumerate(lines)
                if re.search(r"error|Error", line) and not line.startswith("$ ")
            ),
            len(lines) - 1,
        )
        first = lines[at] if lines else ""
        if first.startswith("CMake Error"):  # "CMake Error at file:line (message):", the message follows
            first = " ".join([first, *(line for line in lines[at + 1 : at + 4] if line)])
        raise UserError(f"{what} failed: {first[:300]} (full output in {log})")


def configure(
    preset: str, build_dir: Path, log: Path, build_type: str | None = None, cmake: str | None = None
) -> Configured:
    """`cmake --preset` into `build_dir` (overriding the preset's binaryDir), then read back the toolchain."""
    cmake = cmake or find_cmake()
    query = build_dir / ".cmake" / "api" / "v1" / "query"
    query.mkdir(parents=True, exist_ok=True)
    for name in _FILE_API_QUERIES:
        (query / name).touch()
    cmd = [cmake, "--preset", preset, "-B", str(build_dir)]
    if build_type is not None:
        cmd.append(f"-DCMAKE_BUILD_TYPE={build_type}")
    _run(cmd, log, f"configuring preset {preset}", cwd=CSRC)
    return _read_file_api(preset, build_dir)


def _read_file_api(preset: str, build_dir: Path) -> Configured:
    reply = build_dir / ".cmake" / "api" / "v1" / "reply"
    index = json.loads(max(reply.glob("index-*.json")).read_text())
    objects = {o["kind"]: json.loads((reply / o["jsonFile"]).read_text()) for o in index["objects"]}
    cache = {e["name"]: e["value"] for e in objects["cache"]["entries"]}
    compiler = next(t["compiler"] for t in objects["toolchains"]["toolchains"] if t["language"] == "C")
    build_type = cache.get("CMAKE_BUILD_TYPE", "")
    flags, file_flags = "", {}
    config = objects["codemodel"]["configurations"][0]
    target = next((t for t in config["targets"] if t["name"] == "bifsmn_objects"), None)
    if target is not None:
        detail = json.loads((reply / target["jsonFile"]).read_text())
        groups = [
            ([f["fragment"] for f in g.get("compileCommandFragments", [])], g["sourceIndexes"])
            for g in detail.get("compileGroups", [])
        ]
        base, _ = max(groups, key=lambda g: len(g[1]))  # the flags most files share
        flags = " ".join(base)
        for fragments, sources in groups:
            extra = " ".join(f for f in fragments if f not in base)
            for i in sources if extra else []:
                file_flags[detail["sources"][i]["path"]] = extra
    return Configured(
        preset=preset,
        build_dir=build_dir,
        build_type=build_type,
        compiler={
            "id": compiler.get("id", ""),
            "version": compiler.get("version", ""),
            "path": compiler["path"],
        },
        flags=flags,
        file_flags=file_flags,
        linker_flags=cache.get("CMAKE_EXE_LINKER_FLAGS", "").strip(),
    )


def build(
    build_dir: Path, log: Path, jobs: int, cmake: str | None = None, targets: list[str] | None = None
) -> None:
    cmd = [cmake or find_cmake(), "--build", str(build_dir), "-j", str(jobs)]
    if targets:
        cmd += ["--target", *targets]
    _run(cmd, log, f"building {build_dir.name}")


@dataclass
class CtestSummary:
    passed: int
    failed: list[str]
    total: int
    seconds: float
    tests: dict[str, dict[str, Any]]

    def as_dict(self) -> dict[str, Any]:
        return {
            "passed": self.passed,
            "failed": len(self.failed),
            "failed_tests": self.failed,
            "total": self.total,
            "seconds": self.seconds,
            "tests": self.tests,
        }


def run_ctest(
    build_dir: Path, log: Path, jobs: int, cmake: str | None = None, timeout: int = 900
) -> CtestSummary:
    """Run the ctest suite (cross builds go through the toolchain's emulator); the text output goes to `log`.

    A failing suite is not an exception here: the caller decides what a failure means.
    """
    junit = build_dir / "ctest-junit.xml"
    junit.unlink(missing_ok=True)
    cmd = [
        ctest_for(cmake or find_cmake()),
        "--test-dir",
        str(build_dir),
        "--output-on-failure",
        "--output-junit",
        str(junit),
        "--timeout",
        str(timeout),
        "-j",
        str(jobs),
    ]
    started = time.perf_counter()
    with open(log, "w") as fh:
        subprocess.run(cmd, stdout=fh, stderr=subprocess.STDOUT)
    seconds = round(time.perf_counter() - started, 2)
    if not junit.exists():
        raise UserError(f"ctest in {build_dir} produced no results (see {log})")
    tests = {
        case.get("name", "?"): {"status": case.get("status", "?"), "seconds": float(case.get("time", 0) or 0)}
        for case in ET.parse(junit).getroot().iter("testcase")
    }
    failed = [name for name, t in tests.items() if t["status"] not in ("run", "disabled")]
    return CtestSummary(len(tests) - len(failed), failed, len(tests), seconds, tests)

"""The aarch64 cross build: configure a preset, build, and run every ctest test under qemu-user.

The ctest suite compares the NEON kernels with the portable ones (bit-exact for bitpack/bgemm, to
float rounding for sgemm) on random and edge shapes, accumulator limits and guard pages; here we
check that it builds under both compilers and passes on an emulated aarch64 CPU.
"""

from __future__ import annotations

import shutil
import struct
import subprocess
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # cross builds run under qemu

CSRC = Path(__file__).resolve().parents[1] / "csrc"
SYSROOT = Path("/usr/aarch64-linux-gnu")
EM_AARCH64 = 183
PT_INTERP = 3


def _missing(tools: tuple[str, ...]) -> list[str]:
    missing = [t for t in ("cmake", "qemu-aarch64", *tools) if shutil.which(t) is None]
    if not SYSROOT.is_dir():
        missing.append(str(SYSROOT))
    return missing


def _run(cmd: list[str], cwd: Path, timeout: float = 300) -> str:
    res = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout)
    assert res.returncode == 0, f"{' '.join(cmd)}\n{res.stdout[-4000:]}\n{res.stderr[-4000:]}"
    return res.stdout


def _elf_machine_and_interp(path: Path) -> tuple[int, bool]:
    """e_machine and whether a PT_INTERP segment exists (a dynamically linked executable)."""
    data = path.read_bytes()
    assert data[:4] == b"\x7fELF" and data[4] == 2, f"{path} is not a 64-bit ELF"
    machine = struct.unpack_from("<H", data, 18)[0]
    phoff, phentsize, phnum = struct.unpack_from("<Q", data, 32)[0], *struct.unpack_from("<HH", data, 54)
    types = [struct.unpack_from("<I", data, phoff + i * phentsize)[0] for i in range(phnum)]
    return machine, PT_INTERP in types


def _build(preset: str, build: Path) -> None:
    _run(["cmake", "--preset", preset, "-B", str(build)], CSRC)
    _run(["cmake", "--build", str(build), "-j", "2"], CSRC, timeout=600)


def test_gcc_cross_build_passes_ctest_under_qemu(tmp_path):
    missing = _missing(("aarch64-linux-gnu-gcc",))
    if missing:
        pytest.skip(f"aarch64 cross toolchain incomplete, missing: {', '.join(missing)}")
    build = tmp_path / "build"
    _build("aarch64-release", build)
    out = _run(["ctest", "--test-dir", str(build), "--output-on-failure", "--verbose"], CSRC)
    assert "100% tests passed" in out
    assert "test_neon_kernels: all checks passed" in out
    assert "testing neon" in out  # test_kernels selected the NEON implementation, not only the reference
    machine, dynamic = _elf_machine_and_interp(build / "bifsmn-infer")
    assert machine == EM_AARCH64 and not dynamic  # a static aarch64 bifsmn-infer, copyable to a board


def test_clang_cross_build_passes_kernel_tests_under_qemu(tmp_path):
    """The inline assembly and intrinsics under the other compiler: only the kernel tests, to stay quick."""
    missing = _missing(("clang", "aarch64-linux-gnu-gcc"))  # clang links with the GNU cross libc/binutils
    if missing:
        pytest.skip(f"clang aarch64 cross toolchain incomplete, missing: {', '.join(missing)}")
    build = tmp_path / "build"
    _build("aarch64-clang-release", build)
    out = _run(["ctest", "--test-dir", str(build), "--output-on-failure", "-R", "kernels"], CSRC)
    assert "100% tests passed, 0 tests failed out of 2" in out

"""The machine a benchmark ran on, and its per-core peak estimated from the clock and the vector width.

Peak model (per core; an upper bound: it assumes the widest vector unit issues every cycle):
- float32: clock x (vector bits / 32 lanes) x 2 FLOP per fused multiply-add x FMA_PIPES (2 FMA pipes, as on
  Haswell and later, Zen 2 and later, and most 128-bit NEON cores' dual issue). CPUs that split 512-bit FMAs
  into two 256-bit halves (Zen 4) reach half of it, so fractions of peak are then lower bounds.
- binary: clock x (bits XOR-popcount-accumulated per cycle) with one vector XOR + popcount + add per cycle
  at the widest width that has a popcount path: 512 with AVX-512 VPOPCNTDQ, 256 with AVX2 (nibble lookup),
  128 with NEON CNT, else 64 (scalar POPCNT).
The clock is /proc/cpuinfo's "cpu MHz" (the current clock; under a hypervisor the nominal one), else
cpufreq's maximum; without either the peak is not estimated.
"""

from __future__ import annotations

import platform
import re
import sys
from pathlib import Path
from typing import Any

from bifsmn_cli import __version__
from bifsmn_cli.versions import package_version

FMA_PIPES = 2
FLOPS_PER_FMA = 2


def _cpuinfo(path: Path) -> str:
    try:
        return path.read_text()
    except OSError:
        return ""


def _mhz(text: str, cpufreq: Path) -> float | None:
    values = [float(v) for v in re.findall(r"^cpu MHz\s*:\s*([\d.]+)", text, re.M)]
    if values:
        return max(values)
    try:
        return int(cpufreq.read_text()) / 1000.0  # kHz
    except (OSError, ValueError):
        return None


def vector_widths(flags: set[str], arch: str) -> dict[str, int]:
    """Bits per cycle of the float FMA path and of the XOR-popcount path (see the module docstring)."""
    if arch in ("aarch64", "arm64"):
        neon = "asimd" in flags or not flags  # NEON is baseline on aarch64
        return {"float_bits": 128 if neon else 64, "popcount_bits": 128 if neon else 64}
    if "avx512f" in flags:
        float_bits = 512
    elif "avx2" in flags or "avx" in flags:
        float_bits = 256
    else:
        float_bits = 128
    if "avx512f" in flags and "avx512_vpopcntdq" in flags:
        popcount_bits = 512
    elif "avx2" in flags:
        popcount_bits = 256
    else:
        popcount_bits = 64
    return {"float_bits": float_bits, "popcount_bits": popcount_bits}


def peak(mhz: float | None, widths: dict[str, int], fma: bool = True) -> dict[str, Any]:
    """Per-core peaks in GFLOP/s (float32) and G bit-MACs/s (binary), with the formula's inputs."""
    if mhz is None:
        return {"estimated": False, "reason": "no clock in /proc/cpuinfo or cpufreq"}
    ghz = mhz / 1000.0
    lanes = widths["float_bits"] // 32
    flops_per_cycle = lanes * (FLOPS_PER_FMA * FMA_PIPES if fma else 1)
    return {
        "estimated": True,
        "clock_mhz": mhz,
        "float_bits": widths["float_bits"],
        "popcount_bits": widths["popcount_bits"],
        "fma_pipes_assumed": FMA_PIPES if fma else 0,
        "float32_flops_per_cycle": flops_per_cycle,
        "float32_gflops": ghz * flops_per_cycle,
        "bit_macs_per_cycle": widths["popcount_bits"],
        "binary_gbit_macs": ghz * widths["popcount_bits"],
        "formula": (
            f"float32: {mhz:.0f} MHz x {lanes} lanes x {FLOPS_PER_FMA} FLOP/FMA x {FMA_PIPES} FMA pipes; "
            f"binary: {mhz:.0f} MHz x {widths['popcount_bits']} bits (one XOR+popcount+add per cycle)"
        ),
    }


def describe(
    cpuinfo: Path = Path("/proc/cpuinfo"),
    cpufreq: Path = Path("/sys/devices/system/cpu/cpu0/cpufreq/cpuinfo_max_freq"),
) -> dict[str, Any]:
    """CPU model, kernel-relevant flags, clock, core count, peak estimate and the software versions."""
    text = _cpuinfo(cpuinfo)
    arch = platform.machine()
    model = re.search(r"^(?:model name|Model|CPU part)\s*:\s*(.+)$", text, re.M)
    flags_line = re.search(r"^(?:flags|Features)\s*:\s*(.*)$", text, re.M)
    flags = set(flags_line.group(1).split()) if flags_line else set()
    relevant = sorted(
        f for f in flags if f.startswith(("avx", "fma", "popcnt", "sse4", "asimd", "sve", "bmi"))
    )
    mhz = _mhz(text, cpufreq)
    fma = "fma" in flags or arch in ("aarch64", "arm64")
    return {
        "arch": arch,
        "cpu_model": model.group(1).strip() if model else "unknown",
        "logical_cpus": len(re.findall(r"^processor\s*:", text, re.M)) or None,
        "clock_mhz": mhz,
        "flags": relevant,
        "peak": peak(mhz, vector_widths(flags, arch), fma),
        "os": f"{platform.system()} {platform.release()}",
        "versions": {
            "bifsmn": __version__,
            "python": sys.version.split()[0],
            "torch": package_version("torch"),
            "numpy": package_version("numpy"),
            "onnxruntime": package_version("onnxruntime"),
        },
    }

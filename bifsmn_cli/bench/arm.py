"""ARM figures without an ARM host: llvm-mca kernel throughput, executed instructions under qemu, and real
timings on a board over ssh.

- llvm-mca (build-kernel's mca.json, bifsmn_cli/engine/mca.py): bit-MACs per cycle of each fused NEON binary
  kernel loop and MACs per cycle of the NEON float GEMM loop per core model. Each variant's binary layers
  (bench/binary_layers.py: kernel and work of every binary op of its .bfsm) weigh the loops they run into one
  bit-MACs-per-cycle figure (total bit-MACs over total estimated cycles); its ratio to the float rate is the
  kernel-level speed-up ceiling of that network's binary MACs over float ones, and with the real MACs at the
  float rate it gives a network-level estimate against the teacher (kernel-bound: no front end, packing or
  memory traffic), labelled as such.
- qemu: `qemu-aarch64 -plugin INSN_PLUGIN,inline=on -d plugin` counts every instruction the static aarch64
  bifsmn-infer executes. Two runs of `--bench` differing only in the number of runs cancel the loading and
  WAV reading, so (count(1 + extra) - count(1)) / extra is one inference.
- a board: `ssh://user@host[:port]`; the static binary, the models and a clip are copied to a temporary
  directory there and timed with `bifsmn-infer --bench` in round-robin rounds like the host contenders.
"""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from bifsmn_cli.bench import binary_layers
from bifsmn_cli.errors import UserError

# /proc/cpuinfo "CPU part" of Arm cores -> name (the cores the paper and llvm-mca talk about)
ARM_PARTS = {"0xd03": "cortex-a53", "0xd04": "cortex-a35", "0xd05": "cortex-a55", "0xd07": "cortex-a57",
             "0xd08": "cortex-a72", "0xd09": "cortex-a73", "0xd0a": "cortex-a75", "0xd0b": "cortex-a76"}  # fmt: skip


def mca_figures(
    mca: dict[str, Any], complexity: dict[str, dict[str, Any]], layers: dict[str, list[dict[str, Any]]]
) -> dict[str, Any]:
    """Per core: the float GEMM's MACs/cycle and, per variant (`layers`: binary_layers of each variant's .bfsm),
    the bit-MACs/cycle its binary layers reach, the ratio of the two, and the kernel-bound network speed-up
    estimate over the float teacher (`complexity`: thin's rows by variant); with the loops each variant used."""
    kernels = mca.get("kernels", {})
    if "sgemm" not in kernels or not any(k.startswith("bfuse_") for k in kernels):
        return {
            "measured": False,
            "reason": "mca.json lacks the fused binary or the sgemm loops; rerun build-kernel",
        }
    teacher = complexity.get("teacher")
    cores = {}
    for cpu, s in kernels["sgemm"]["cpus"].items():
        mac_rate = s["macs_per_cycle"]
        row: dict[str, Any] = {"sgemm_macs_per_cycle": mac_rate, "variants": {}}
        for v, ls in layers.items():
            found = [binary_layers.rate(kernels, layer["kernel"], cpu) for layer in ls]
            missing = sorted({layer["kernel"] for layer, f in zip(ls, found, strict=True) if f is None})
            if missing or not ls:
                row["variants"][v] = {
                    "reason": f"no llvm-mca loop for {', '.join(missing) or 'any binary layer'}"
                }
                continue
            bits = sum(layer["bit_macs"] for layer in ls)
            cycles = sum(layer["bit_macs"] / r for layer, (_, r) in zip(ls, found, strict=True))
            entry = {
                "bfuse_bit_macs_per_cycle": bits / cycles,
                "binary_vs_float_mac_ratio": bits / cycles / mac_rate,
                "loops": sorted({name for name, _ in found}),
            }
            if teacher is not None and v in complexity:
                teacher_cycles = (teacher["real_macs"] + teacher["binary_ops"]) / mac_rate
                real = complexity[v]["real_macs"] / mac_rate
                entry["network_speedup_estimate"] = teacher_cycles / (real + cycles)
            row["variants"][v] = entry
        cores[cpu] = row
    used = sorted({n for row in cores.values() for e in row["variants"].values() for n in e.get("loops", [])})
    loops = {
        n: {
            "scope": kernels[n]["scope"],
            "instructions": kernels[n]["instructions"],
            "bit_macs_per_iteration": kernels[n]["bit_macs_per_iteration"],
            "bit_macs_per_cycle": {c: f["bit_macs_per_cycle"] for c, f in kernels[n]["cpus"].items()},
        }
        for n in used
    }
    return {"measured": True, "llvm_mca": mca.get("llvm_mca"), "cores": cores, "loops": loops}


def find_insn_count(text: str) -> int:
    """The total of QEMU's insn plugin ("insns: N" on the log)."""
    found = re.findall(r"\binsns:\s*(\d+)", text)
    if not found:
        raise UserError(
            f"the qemu plugin printed no instruction count ({text.strip()[-160:]!r}); use libinsn.so"
        )
    return int(found[-1])


def qemu_count(qemu: str, plugin: Path, infer: Path, args: list[str]) -> int:
    """Instructions one run of the aarch64 `infer` with `args` executes under qemu with the insn plugin."""
    cmd = [qemu, "-plugin", f"{plugin},inline=on", "-d", "plugin", str(infer), *args]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no message"])[-1]
        raise UserError(f"{' '.join(cmd)}: exit {done.returncode}: {last}")
    return find_insn_count(done.stderr + done.stdout)


def qemu_per_run(count: Callable[[int], int], extra: int) -> float:
    """One run's instructions, (count(1 + extra) - count(1)) / extra: loading and reading the clip cancel."""
    return (count(1 + extra) - count(1)) / extra


def qemu_counts(
    qemu: str, plugin: Path, infer: Path, models: dict[str, Path], clip: Path, extra: int = 4
) -> dict[str, Any]:
    """Executed aarch64 instructions per inference: network alone and front end + network, per model."""
    out: dict[str, Any] = {}
    for name, model in models.items():
        row = {}
        for path in ("net", "e2e"):

            def count(runs: int, model: Path = model, path: str = path) -> int:
                args = ["--bench", str(runs), "--warmup", "0", "--bench-path", path, str(model), str(clip)]
                return qemu_count(qemu, plugin, infer, args)

            row[f"{path}_insns"] = qemu_per_run(count, extra)
        row["frontend_insns"] = row["e2e_insns"] - row["net_insns"]
        out[name] = row
    return out


@dataclass(frozen=True)
class Device:
    """An ssh destination parsed from ssh://user@host[:port]."""

    url: str
    destination: str
    port: int | None

    def ssh(self) -> list[str]:
        port = ["-p", str(self.port)] if self.port else []
        return ["ssh", "-o", "BatchMode=yes", "-o", "ConnectTimeout=15", *port, self.destination]

    def scp(self) -> list[str]:
        port = ["-P", str(self.port)] if self.port else []
        return ["scp", "-q", "-o", "BatchMode=yes", "-o", "ConnectTimeout=15", *port]


def parse_device(url: str) -> Device:
    parts = urlsplit(url)
    if parts.scheme != "ssh" or not parts.hostname:
        raise UserError(f"bench.device: expected ssh://user@host[:port], got {url!r}")
    try:
        port = parts.port
    except ValueError:
        raise UserError(f"bench.device: bad port in {url!r}") from None
    user = f"{parts.username}@" if parts.username else ""
    return Device(url, f"{user}{parts.hostname}", port)


class Board:
    """A temporary directory on the board holding the binary, the models and the clip; removed on exit."""

    def __init__(self, device: Device) -> None:
        self.device = device
        self.dir = ""

    def run(self, command: str, timeout: float = 120) -> str:
        cmd = [*self.device.ssh(), command]
        try:
            done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            raise UserError(
                f"bench.device {self.device.url}: `{command}` did not answer in {timeout:.0f} s"
            ) from None
        except OSError as exc:
            raise UserError(
                f"bench.device: cannot run ssh ({exc.strerror}); install openssh-client"
            ) from None
        if done.returncode != 0:
            last = (done.stderr.strip().splitlines() or ["no message"])[-1]
            raise UserError(f"bench.device {self.device.url}: `{command}` failed: {last}")
        return done.stdout

    def put(self, files: list[Path]) -> dict[str, str]:
        """Copy files into the board's directory; returns local name -> remote path."""
        target = f"{self.device.destination}:{self.dir}/"
        done = subprocess.run([*self.device.scp(), *map(str, files), target], capture_output=True, text=True)
        if done.returncode != 0:
            last = (done.stderr.strip().splitlines() or ["no message"])[-1]
            raise UserError(f"bench.device {self.device.url}: copying files failed: {last}")
        return {f.name: f"{self.dir}/{f.name}" for f in files}

    def describe(self) -> dict[str, Any]:
        arch = self.run("uname -m").strip()
        cpuinfo = self.run("cat /proc/cpuinfo")
        parts = sorted(set(re.findall(r"^CPU part\s*:\s*(0x[0-9a-f]+)", cpuinfo, re.M)))
        model = re.search(r"^(?:model name|Model|Hardware)\s*:\s*(.+)$", cpuinfo, re.M)
        return {
            "url": self.device.url,
            "arch": arch,
            "cpu_parts": [ARM_PARTS.get(p, p) for p in parts],
            "model": model.group(1).strip() if model else None,
        }

    def __enter__(self) -> Board:
        if shutil.which("ssh") is None or shutil.which("scp") is None:
            raise UserError("bench.device: ssh and scp are needed (apt-get install openssh-client)")
        self.dir = self.run("mktemp -d /tmp/bifsmn-bench.XXXXXX").strip()
        if not self.dir.startswith("/tmp/bifsmn-bench."):
            raise UserError(f"bench.device {self.device.url}: mktemp answered {self.dir!r}")
        return self

    def __exit__(self, *exc: object) -> None:
        if self.dir:
            try:
                self.run(f"rm -rf {shlex.quote(self.dir)}")
            except UserError:
                pass  # the measurements stand; a leftover temp dir on the board is harmless

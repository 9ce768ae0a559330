"""Static cycle estimates of the NEON micro-kernels with llvm-mca, read from compiled code.

The measured loop is cut out of the compiled object (or the compiler's assembly): the innermost
loop of a kernel's functions that holds its characteristic instruction (CNT for the binary GEMM,
FMLA for the float GEMM). The figures therefore follow what the compiler and the inline assembly
really emit, and a regression in either shows up here. llvm-mca simulates the loop body as a
steady-state loop on each CPU model; the work per iteration is counted from the body itself.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from bifsmn_cli.errors import UserError

DEFAULT_CPUS = ("cortex-a53", "cortex-a55", "cortex-a72")
TRIPLE = "aarch64-linux-gnu"
# LLVM 16 first: its scheduling models are the ones the kernels were tuned against.
MCA_NAMES = ("llvm-mca-16", "/usr/lib/llvm-16/bin/llvm-mca", "llvm-mca")
OBJDUMP_NAMES = (
    "llvm-objdump-16",
    "/usr/lib/llvm-16/bin/llvm-objdump",
    "llvm-objdump",
    "aarch64-linux-gnu-objdump",
)
BRANCHES = {"b", "cbz", "cbnz", "tbz", "tbnz"}
ELF_MAGIC = b"\x7fELF"
AR_MAGIC = b"!<arch>\n"


@dataclass(frozen=True)
class KernelSpec:
    """Where a micro-kernel lives (function-name pattern), what marks its loop, and what one instruction of it is worth."""

    name: str
    function: str
    marker: str
    unit: str  # "bit_macs" (one XOR+popcount of a bit pair) or "macs" (one float multiply-add)


KERNELS = (
    KernelSpec("bgemm", r"bgemm_neon", "cnt", "bit_macs"),
    KernelSpec("sgemm", r"sgemm_neon", "fmla", "macs"),
)


@dataclass
class Insn:
    """One instruction; `target` is the index of a branch's destination within its function, if known."""

    mnemonic: str
    operands: str
    target: int | None = None


def find_tool(names: tuple[str, ...]) -> str | None:
    """First of `names` that exists on PATH (or as an absolute path)."""
    for name in names:
        found = shutil.which(name)
        if found:
            return found
    return None


def _is_branch(mnemonic: str) -> bool:
    return mnemonic in BRANCHES or mnemonic.startswith("b.")


def _lane_work(operands: str, lanes_of_byte: bool) -> int:
    """Elements processed by a vector instruction, from the arrangement of its first operand (v6.16b -> 16)."""
    m = re.match(r"\s*v\d+\.(\d+)([bhsd])", operands)
    if not m:
        return 1
    return int(m.group(1)) * (8 if lanes_of_byte else 1)


def loop_work(body: list[Insn], spec: KernelSpec) -> int:
    """Bit-MACs (bits counted by CNT) or float MACs (FMLA lanes) of one loop iteration."""
    return sum(
        _lane_work(i.operands, lanes_of_byte=spec.unit == "bit_macs")
        for i in body
        if i.mnemonic == spec.marker
    )


def _disassemble(path: Path) -> str:
    tool = find_tool(OBJDUMP_NAMES)
    if tool is None:
        raise UserError(f"{path}: no llvm-objdump or aarch64-linux-gnu-objdump on PATH; install llvm-16")
    res = subprocess.run([tool, "-d", "--no-show-raw-insn", str(path)], capture_output=True, text=True)
    if res.returncode != 0:
        raise UserError(
            f"{path}: cannot disassemble ({res.stderr.strip().splitlines()[-1:]}); pass an aarch64 object"
        )
    return res.stdout


def parse_objdump(text: str) -> dict[str, list[Insn]]:
    """Functions of an objdump -d listing (LLVM or GNU format), with branch targets resolved to indices."""
    functions: dict[str, list[tuple[int, Insn, int | None]]] = {}
    current: list | None = None
    for line in text.splitlines():
        head = re.match(r"^[0-9a-fA-F]+ <([^>]+)>:\s*$", line)
        if head:
            current = functions.setdefault(head.group(1), [])
            continue
        ins = re.match(r"^\s*([0-9a-fA-F]+):\s+(?:[0-9a-fA-F]{8}\s+)?([a-z][\w.]*)\s*(.*)$", line)
        if ins is None or current is None:
            continue
        operands = re.split(r"\s*(?://|;)", ins.group(3), maxsplit=1)[0].strip()
        target = None
        if _is_branch(ins.group(2)):
            dest = re.search(r"(?:0x)?([0-9a-fA-F]+)\s+<", operands)
            target = int(dest.group(1), 16) if dest else None
        current.append((int(ins.group(1), 16), Insn(ins.group(2), operands), target))
    result = {}
    for name, rows in functions.items():
        index = {addr: k for k, (addr, _, _) in enumerate(rows)}
        for _, insn, target in rows:
            insn.target = index.get(target) if target is not None else None
        result[name] = [insn for _, insn, _ in rows]
    return result


def parse_asm(text: str) -> dict[str, list[Insn]]:
    """Functions of compiler assembly (GNU syntax, aarch64), with branch targets resolved to indices.

    Named labels that do not start with ".L" open a function; numeric labels ("3:", "3b", "3f")
    come from inline assembly and resolve to the nearest definition in the given direction."""
    functions: dict[str, list[Insn]] = {}
    pending: list[tuple[Insn, str, int]] = []
    labels: dict[str, list[tuple[str, int]]] = {}  # function -> [(label, index)]
    name = None
    for raw in text.splitlines():
        line = re.split(r"\s*//", raw, maxsplit=1)[0].strip()
        while line:
            lab = re.match(r"^([\w.$]+):\s*(.*)$", line)
            if not lab:
                break
            label, line = lab.group(1), lab.group(2)
            if not label.startswith(".L") and not label.isdigit():
                name = label
                functions.setdefault(name, [])
            elif name is not None:
                labels.setdefault(name, []).append((label, len(functions[name])))
        if not line or line.startswith(".") or line.startswith("#") or name is None:
            continue
        parts = line.split(None, 1)
        insn = Insn(parts[0].lower(), parts[1].strip() if len(parts) > 1 else "")
        if _is_branch(insn.mnemonic):
            pending.append((insn, name, len(functions[name])))
        functions[name].append(insn)
    for insn, fname, pos in pending:
        ref = insn.operands.split(",")[-1].strip()
        defs = labels.get(fname, [])
        num = re.fullmatch(r"(\d+)([bf])", ref)
        if num:
            cands = [i for lab, i in defs if lab == num.group(1)]
            back = [i for i in cands if i <= pos]
            fwd = [i for i in cands if i > pos]
            insn.target = (back[-1] if back else None) if num.group(2) == "b" else (fwd[0] if fwd else None)
        else:
            insn.target = next((i for lab, i in defs if lab == ref), None)
    return functions


def innermost_loop(insns: list[Insn], marker: str) -> list[Insn] | None:
    """Body (target..branch) of the innermost backward-branch loop containing `marker`; ties go to the most work."""
    loops = [(i.target, k) for k, i in enumerate(insns) if i.target is not None and i.target <= k]
    inner = [
        (s, e) for s, e in loops if not any((s2, e2) != (s, e) and s <= s2 and e2 <= e for s2, e2 in loops)
    ]
    bodies = [insns[s : e + 1] for s, e in inner]
    bodies = [b for b in bodies if any(i.mnemonic == marker for i in b)]
    if not bodies:
        return None
    return max(bodies, key=lambda b: sum(i.mnemonic == marker for i in b))


def loop_text(body: list[Insn]) -> str:
    """llvm-mca input for a loop body: every branch retargeted to the loop head (mca ignores control flow)."""
    lines = [".Lloop:"]
    for insn in body:
        operands = insn.operands
        if _is_branch(insn.mnemonic):
            head, _, _ = operands.rpartition(",")
            operands = f"{head}, .Lloop" if head else ".Lloop"
        lines.append(f"\t{insn.mnemonic}\t{operands}".rstrip())
    return "\n".join(lines) + "\n"


def run_mca(asm: str, cpu: str, iterations: int = 1000, tool: str | None = None) -> dict:
    """llvm-mca's summary view for `asm` on `cpu`."""
    tool = tool or find_tool(MCA_NAMES)
    if tool is None:
        raise UserError("llvm-mca not found: install llvm-16 (apt install llvm-16) or put llvm-mca on PATH")
    res = subprocess.run(
        [tool, f"-mtriple={TRIPLE}", f"-mcpu={cpu}", f"-iterations={iterations}", "--json"],
        input=asm,
        capture_output=True,
        text=True,
    )
    if res.returncode != 0:
        raise UserError(f"llvm-mca rejected -mcpu={cpu}: {res.stderr.strip().splitlines()[-1:]}")
    return json.loads(res.stdout)["CodeRegions"][0]["SummaryView"]


def mca_version(tool: str) -> str:
    """Version line of llvm-mca, recorded with the figures."""
    out = subprocess.run([tool, "--version"], capture_output=True, text=True).stdout
    m = re.search(r"LLVM version (\S+)", out)
    return m.group(1) if m else "unknown"


def load_functions(path: Path) -> dict[str, list[Insn]]:
    """Functions of an ELF object/archive/library (disassembled) or of an assembly file."""
    if not path.is_file():
        raise UserError(
            f"{path}: no such file; build the aarch64 kernels first (cmake --preset aarch64-release)"
        )
    magic = path.read_bytes()[:8]
    if magic.startswith(ELF_MAGIC) or magic == AR_MAGIC:
        return parse_objdump(_disassemble(path))
    return parse_asm(path.read_text(errors="replace"))


def estimate(
    obj_or_asm_path: str | Path, cpus: tuple[str, ...] = DEFAULT_CPUS, iterations: int = 1000
) -> dict:
    """llvm-mca figures of every NEON micro-kernel found in an aarch64 object, archive or assembly file.

    Returns {"source", "llvm_mca", "iterations", "kernels": {name: {"function", "instructions",
    "<unit>_per_iteration", "loop", "cpus": {cpu: {"cycles_per_iteration", "ipc",
    "block_rthroughput", "<unit>_per_cycle"}}}}} with unit "bit_macs" (bgemm) or "macs" (sgemm)."""
    path = Path(obj_or_asm_path)
    tool = find_tool(MCA_NAMES)
    if tool is None:
        raise UserError("llvm-mca not found: install llvm-16 (apt install llvm-16) or put llvm-mca on PATH")
    functions = load_functions(path)
    kernels = {}
    for spec in KERNELS:
        found = [
            (fname, body)
            for fname, insns in functions.items()
            if re.search(spec.function, fname) and (body := innermost_loop(insns, spec.marker))
        ]
        if not found:
            continue
        fname, body = max(found, key=lambda fb: loop_work(fb[1], spec))
        work = loop_work(body, spec)
        asm = loop_text(body)
        per_cpu = {}
        for cpu in cpus:
            summary = run_mca(asm, cpu, iterations, tool)
            cycles = summary["TotalCycles"] / summary["Iterations"]
            per_cpu[cpu] = {
                "cycles_per_iteration": round(cycles, 3),
                "ipc": round(summary["IPC"], 3),
                "block_rthroughput": summary["BlockRThroughput"],
                f"{spec.unit}_per_cycle": round(work / cycles, 2),
            }
        kernels[spec.name] = {
            "function": fname,
            "instructions": len(body),
            f"{spec.unit}_per_iteration": work,
            "loop": asm.splitlines(),
            "cpus": per_cpu,
        }
    if not kernels:
        names = ", ".join(s.function for s in KERNELS)
        raise UserError(
            f"{path}: no NEON micro-kernel loop found (functions matching {names}); pass the aarch64 build"
        )
    return {"source": str(path), "llvm_mca": mca_version(tool), "iterations": iterations, "kernels": kernels}

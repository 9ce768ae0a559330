"""Static cycle estimates of the NEON kernels the network runs, with llvm-mca, read from compiled code.

Each measured loop is cut out of the compiled object (or the compiler's assembly) by what marks it, so the
figures follow what the compiler and the inline assembly really emit, and a regression in either shows up here:

- `bfuse_gemm_kw<D>_<form>`: the fused binary GEMM of packed depth D words (bfuse_neon.c compiles one kernel per
  depth, `gemm_1` .. `gemm_8`, and `gemm_any`) in the threshold form (the popcounts compared with integer
  thresholds: outputs only binarised) or the float form (scale, shift, PReLU, residual, floats and sign bits),
  told apart by the int-to-float conversion (SCVTF) of the float form. Where the compiler unrolled all of a
  depth's 128-bit steps, the innermost loop is one group of the 4-row x 16-output tile: 4 rows x 4 outputs x
  64 D bit-MACs, with the byte-count reduction and the output transform (scope "group"). Deeper kernels keep a
  rolled loop over the steps, which both forms share: `bfuse_gemm_kw<D>_step` is that loop alone (EOR, CNT,
  ADD: 128 bit-MACs per CNT; the reduction and the transform are outside it, so the figure is an upper bound).
- `bfuse_dwconv_taps<T>`: the depthwise memory conv with T taps in registers (bifsmn_bdwconv_neon): one time
  step of 16 channels, T XORs of sign bytes (T EORs) and the output transform: 16 T bit-MACs.
- `sgemm`: the float GEMM loop (FMLA) of the full-precision layers: MACs per iteration from its FMLA lanes.

llvm-mca simulates each loop body as a steady-state loop on each CPU model (the body's branches retargeted to its
head); the work per iteration is counted as above.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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
CONDITIONAL = re.compile(r"b(?:eq|ne|cs|hs|cc|lo|mi|pl|vs|vc|hi|ls|ge|lt|gt|le|al|nv)")
ELF_MAGIC = b"\x7fELF"
AR_MAGIC = b"!<arch>\n"


GEMM_FUNCTION = re.compile(r"^gemm_(\d+|any)(?:\.\w+)*$")  # bfuse_neon.c's per-depth kernels
DWCONV_FUNCTION = re.compile(r"^bifsmn_bdwconv_neon$")
SGEMM_FUNCTION = re.compile(r"sgemm_neon")
MAX_TAPS = 8  # bfuse_neon.c keeps up to 8 taps in registers


@dataclass(frozen=True)
class Loop:
    """One loop to simulate: where it is, what one iteration computes, in which unit."""

    name: str
    function: str
    body: list[Insn]
    unit: str  # "bit_macs" (one XOR + popcount of a bit pair) or "macs" (one float multiply-add)
    work: int
    meta: dict[str, Any]


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
    """b, cbz/cbnz, tbz/tbnz and the conditional branches, written b.ne (LLVM, inline asm) or bne (GCC)."""
    return mnemonic in BRANCHES or mnemonic.startswith("b.") or CONDITIONAL.fullmatch(mnemonic) is not None


def _lane_work(operands: str, lanes_of_byte: bool) -> int:
    """Elements processed by a vector instruction, from the arrangement of its first operand (v6.16b -> 16)."""
    m = re.match(r"\s*v\d+\.(\d+)([bhsd])", operands)
    if not m:
        return 1
    return int(m.group(1)) * (8 if lanes_of_byte else 1)


def lanes(body: list[Insn], mnemonic: str, lanes_of_byte: bool = False) -> int:
    """Elements `mnemonic` processes in one pass of `body` (bits when `lanes_of_byte`: CNT v.16b -> 128)."""
    return sum(_lane_work(i.operands, lanes_of_byte) for i in body if i.mnemonic == mnemonic)


def vector_count(body: list[Insn], mnemonic: str, arrangement: str = ".16b") -> int:
    """How many `mnemonic` of the body work on vectors of `arrangement`."""
    return sum(i.mnemonic == mnemonic and arrangement in i.operands for i in body)


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


def inner_loops(insns: list[Insn]) -> list[list[Insn]]:
    """Bodies (target..branch) of the innermost backward-branch loops of a function."""
    loops = [(i.target, k) for k, i in enumerate(insns) if i.target is not None and i.target <= k]
    inner = [
        (s, e) for s, e in loops if not any((s2, e2) != (s, e) and s <= s2 and e2 <= e for s2, e2 in loops)
    ]
    return [insns[s : e + 1] for s, e in inner]


def innermost_loop(insns: list[Insn], marker: str) -> list[Insn] | None:
    """The innermost loop holding the most `marker` instructions; ties go to the longest (the most complete)."""
    bodies = [b for b in inner_loops(insns) if any(i.mnemonic == marker for i in b)]
    if not bodies:
        return None
    return max(bodies, key=lambda b: (sum(i.mnemonic == marker for i in b), len(b)))


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


def gemm_loops(functions: dict[str, list[Insn]]) -> list[Loop]:
    """Per packed depth, the fused GEMM's loops (see the module docstring): a group loop per form when the depth's
    steps are unrolled, else the one step loop both forms share."""
    out = []
    for fname, insns in functions.items():
        m = GEMM_FUNCTION.match(fname)
        if m is None:
            continue
        depth = m.group(1)
        bodies = [b for b in inner_loops(insns) if vector_count(b, "cnt")]
        steps = (int(depth) + 1) // 2 if depth.isdigit() else None
        groups = [b for b in bodies if vector_count(b, "cnt") == 16 * (steps or 0)]
        for form in ("threshold", "float"):
            mine = [b for b in groups if any(i.mnemonic == "scvtf" for i in b) == (form == "float")]
            if mine:
                body = max(mine, key=len)
                meta = {"family": "bfuse_gemm", "depth_words": depth, "form": form, "scope": "group"}
                out.append(
                    Loop(f"bfuse_gemm_kw{depth}_{form}", fname, body, "bit_macs", 1024 * int(depth), meta)
                )
        if not groups and bodies:
            body = max(bodies, key=lambda b: (vector_count(b, "cnt"), len(b)))
            meta = {"family": "bfuse_gemm", "depth_words": depth, "form": "any", "scope": "step"}
            work = lanes(body, "cnt", lanes_of_byte=True)
            out.append(Loop(f"bfuse_gemm_kw{depth}_step", fname, body, "bit_macs", work, meta))
    return out


def dwconv_loops(functions: dict[str, list[Insn]]) -> list[Loop]:
    """Per tap count up to MAX_TAPS, the depthwise conv's time-step loop: of the loops with the output transform
    (SCVTF) and exactly that many EORs, the shortest (the interior steps; the border ones hold more code)."""
    out = []
    for fname, insns in functions.items():
        if not DWCONV_FUNCTION.match(fname):
            continue
        bodies = [b for b in inner_loops(insns) if any(i.mnemonic == "scvtf" for i in b)]
        for taps in range(1, MAX_TAPS + 1):
            mine = [b for b in bodies if vector_count(b, "eor") == taps]
            if mine:
                body = min(mine, key=len)
                meta = {"family": "bfuse_dwconv", "taps": taps, "scope": "time step"}
                out.append(Loop(f"bfuse_dwconv_taps{taps}", fname, body, "bit_macs", 16 * taps, meta))
    return out


def sgemm_loops(functions: dict[str, list[Insn]]) -> list[Loop]:
    """The float GEMM's loop: the innermost one with the most FMLAs over the sgemm_neon functions."""
    found = [
        (fname, body)
        for fname, insns in functions.items()
        if SGEMM_FUNCTION.search(fname) and (body := innermost_loop(insns, "fmla"))
    ]
    if not found:
        return []
    fname, body = max(found, key=lambda fb: lanes(fb[1], "fmla"))
    return [Loop("sgemm", fname, body, "macs", lanes(body, "fmla"), {"family": "sgemm", "scope": "step"})]


def estimate(
    obj_or_asm_path: str | Path, cpus: tuple[str, ...] = DEFAULT_CPUS, iterations: int = 1000
) -> dict:
    """llvm-mca figures of every NEON kernel loop found in an aarch64 object, archive or assembly file.

    Returns {"source", "llvm_mca", "iterations", "kernels": {name: {"family", "function", "scope", ...,
    "instructions", "<unit>_per_iteration", "loop", "cpus": {cpu: {"cycles_per_iteration", "ipc",
    "block_rthroughput", "<unit>_per_cycle"}}}}}, unit "bit_macs" (bfuse) or "macs" (sgemm); names as in the
    module docstring."""
    path = Path(obj_or_asm_path)
    tool = find_tool(MCA_NAMES)
    if tool is None:
        raise UserError("llvm-mca not found: install llvm-16 (apt install llvm-16) or put llvm-mca on PATH")
    functions = load_functions(path)
    kernels = {}
    for loop in [*gemm_loops(functions), *dwconv_loops(functions), *sgemm_loops(functions)]:
        asm = loop_text(loop.body)
        per_cpu = {}
        for cpu in cpus:
            summary = run_mca(asm, cpu, iterations, tool)
            cycles = summary["TotalCycles"] / summary["Iterations"]
            per_cpu[cpu] = {
                "cycles_per_iteration": round(cycles, 3),
                "ipc": round(summary["IPC"], 3),
                "block_rthroughput": summary["BlockRThroughput"],
                f"{loop.unit}_per_cycle": round(loop.work / cycles, 4),
            }
        kernels[loop.name] = {
            **loop.meta,
            "function": loop.function,
            "instructions": len(loop.body),
            f"{loop.unit}_per_iteration": loop.work,
            "loop": asm.splitlines(),
            "cpus": per_cpu,
        }
    if not kernels:
        raise UserError(
            f"{path}: no NEON kernel loop found (functions gemm_<depth>, bifsmn_bdwconv_neon, sgemm_neon); "
            "pass the aarch64 build"
        )
    return {"source": str(path), "llvm_mca": mca_version(tool), "iterations": iterations, "kernels": kernels}

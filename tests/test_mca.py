"""llvm-mca estimates of the NEON kernel loops the network runs, cut from compiled code (bifsmn_cli.engine.mca): the
fused binary GEMM per packed depth and form, the depthwise conv per tap count, the float GEMM."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from bifsmn_cli.engine import mca
from bifsmn_cli.errors import UserError

CSRC = Path(__file__).resolve().parents[1] / "csrc"
KERNEL_SOURCES = ("kernels/bfuse/bfuse_neon.c", "kernels/sgemm/sgemm_neon.c")
CC = "aarch64-linux-gnu-gcc"


def _need_tools() -> None:
    if mca.find_tool(mca.MCA_NAMES) is None:
        pytest.skip("llvm-mca is not installed (apt install llvm-16)")
    if shutil.which(CC) is None:
        pytest.skip(f"{CC} is not installed (apt install gcc-aarch64-linux-gnu)")


def _compile(out: Path, *flags: str) -> list[Path]:
    paths = []
    for src in KERNEL_SOURCES:
        dst = out / (Path(src).stem + (".s" if "-S" in flags else ".o"))
        subprocess.run(
            [CC, "-std=c11", "-O3", f"-I{CSRC / 'kernels'}", *flags, str(CSRC / src), "-o", str(dst)],
            check=True,
            capture_output=True,
        )
        paths.append(dst)
    return paths


@pytest.fixture(scope="module")
def objects(tmp_path_factory) -> list[Path]:
    _need_tools()
    return _compile(tmp_path_factory.mktemp("mca"), "-c")


@pytest.fixture(scope="module")
def fused(objects) -> dict:
    """The fused kernels' figures on every default CPU, estimated once (some 25 loops x 3 llvm-mca runs)."""
    return mca.estimate(objects[0])


def _check_kernel(entry: dict, unit: str, cpus: tuple[str, ...]) -> None:
    work = entry[f"{unit}_per_iteration"]
    assert work > 0 and entry["instructions"] == len(entry["loop"]) - 1  # minus the .Lloop label
    assert set(entry["cpus"]) == set(cpus)
    for figures in entry["cpus"].values():
        assert figures["cycles_per_iteration"] > 0 and figures["ipc"] > 0 and figures["block_rthroughput"] > 0
        assert figures[f"{unit}_per_cycle"] == pytest.approx(work / figures["cycles_per_iteration"], rel=1e-3)


def _vector(entry: dict, mnemonic: str) -> int:
    insns = [line.split(None, 1) for line in entry["loop"][1:]]
    return sum(m == mnemonic and bool(rest) and ".16b" in rest[0] for m, *rest in insns)


def _has(entry: dict, mnemonic: str) -> bool:
    return any(line.split()[0] == mnemonic for line in entry["loop"][1:])


@pytest.mark.slow
def test_estimate_reads_the_fused_kernels_from_objects(objects, fused):
    assert fused["llvm_mca"][0].isdigit()
    k = fused["kernels"]
    for depth in [*map(str, range(1, 9)), "any"]:
        names = {n for n in k if n.startswith(f"bfuse_gemm_kw{depth}_")}
        assert names in (
            {f"bfuse_gemm_kw{depth}_threshold", f"bfuse_gemm_kw{depth}_float"},
            {f"bfuse_gemm_kw{depth}_step"},
        )
    for depth in range(1, 5):  # at most 2 steps of 128 bits: unrolled into the tile by the source itself
        for form in ("threshold", "float"):
            entry = k[f"bfuse_gemm_kw{depth}_{form}"]
            assert entry["function"] == f"gemm_{depth}" and entry["scope"] == "group"
            # one group: 4 rows x 4 outputs x every 128-bit step, each an EOR + CNT; the float form converts
            assert _vector(entry, "cnt") == _vector(entry, "eor") == 16 * ((depth + 1) // 2)
            assert entry["bit_macs_per_iteration"] == 16 * 64 * depth
            assert _has(entry, "scvtf") == (form == "float")
            _check_kernel(entry, "bit_macs", mca.DEFAULT_CPUS)
        # the threshold form skips the float transform: fewer instructions per group
        assert (
            k[f"bfuse_gemm_kw{depth}_threshold"]["instructions"]
            < k[f"bfuse_gemm_kw{depth}_float"]["instructions"]
        )
    step = k["bfuse_gemm_kwany_step"]  # a rolled loop over 128-bit steps: 4 rows x 4 outputs, EOR + CNT + ADD
    assert step["scope"] == "step" and step["function"] == "gemm_any"
    assert _vector(step, "cnt") == _vector(step, "eor") == _vector(step, "add") == 16
    assert step["bit_macs_per_iteration"] == 128 * 16
    for taps in range(1, mca.MAX_TAPS + 1):
        entry = k[f"bfuse_dwconv_taps{taps}"]
        assert entry["function"] == "bifsmn_bdwconv_neon" and entry["scope"] == "time step"
        assert _vector(entry, "eor") == taps and _has(entry, "scvtf")
        assert entry["bit_macs_per_iteration"] == 16 * taps
    _check_kernel(k["bfuse_dwconv_taps5"], "bit_macs", mca.DEFAULT_CPUS)

    sgemm = mca.estimate(objects[1], cpus=("cortex-a72",))
    assert set(sgemm["kernels"]) == {"sgemm"}
    entry = sgemm["kernels"]["sgemm"]
    assert entry["macs_per_iteration"] == 4 * sum(line.split()[0] == "fmla" for line in entry["loop"])
    _check_kernel(entry, "macs", ("cortex-a72",))


@pytest.mark.slow
def test_assembly_and_object_give_the_same_loop(fused, tmp_path):
    asm = _compile(tmp_path, "-S")[0]
    from_asm = mca.estimate(asm, cpus=("cortex-a53",))["kernels"]["bfuse_gemm_kw4_threshold"]
    from_obj = fused["kernels"]["bfuse_gemm_kw4_threshold"]
    assert from_asm["instructions"] == from_obj["instructions"]
    assert from_asm["cpus"]["cortex-a53"]["cycles_per_iteration"] == pytest.approx(
        from_obj["cpus"]["cortex-a53"]["cycles_per_iteration"], rel=0.02
    )


LISTING = """
0000000000000000 <gemm_2>:
       0:      \tmov\tx1, #0x2
       4:      \tcnt\tv0.16b, v0.16b
       8:      \tcnt\tv1.8b, v1.8b
       c:      \tsubs\tx1, x1, #0x1
      10:      \tb.ne\t0x4 <gemm_2+0x4>
      14:      \tcnt\tv2.16b, v2.16b
      18:      \tcbnz\tx2, 0x0 <gemm_2>
0000000000000020 <other>:
      20:      \tcnt\tv3.16b, v3.16b
      24:      \tb\t0x20 <other>
"""


def test_innermost_loop_and_work_from_a_listing():
    functions = mca.parse_objdump(LISTING)
    body = mca.innermost_loop(functions["gemm_2"], "cnt")
    assert [i.mnemonic for i in body] == ["cnt", "cnt", "subs", "b.ne"]
    assert mca.lanes(body, "cnt", lanes_of_byte=True) == 128 + 64 and mca.vector_count(body, "cnt") == 1
    assert mca.loop_text(body).splitlines()[-1] == "\tb.ne\t.Lloop"
    assert mca.innermost_loop(functions["gemm_2"], "fmla") is None
    # one CNT loop, not all of a depth-2 group's 16: the general step scope, 128 bit-MACs per 16-byte CNT
    (loop,) = mca.gemm_loops(functions)
    assert (loop.name, loop.work, loop.meta["scope"]) == ("bfuse_gemm_kw2_step", 128 + 64, "step")


def test_numeric_labels_in_assembly_resolve_by_direction():
    text = "f:\n1:\n\tcnt v0.16b, v0.16b\n\tb.ne 1f\n1:\n\tcnt v1.16b, v1.16b\n\tcbnz x0, 1b\n\tret\n"
    body = mca.innermost_loop(mca.parse_asm(text)["f"], "cnt")
    assert [i.operands for i in body] == ["v1.16b, v1.16b", "x0, 1b"]
    # GCC writes conditional branches without the dot
    gcc = "f:\n.L3:\n\tcnt v0.16b, v0.16b\n\tcmp x7, x3\n\tbne .L3\n\tret\n"
    assert [i.mnemonic for i in mca.innermost_loop(mca.parse_asm(gcc)["f"], "cnt")] == ["cnt", "cmp", "bne"]


def test_errors_name_the_file(tmp_path):
    if mca.find_tool(mca.MCA_NAMES) is None:
        pytest.skip("llvm-mca is not installed (apt install llvm-16)")
    with pytest.raises(UserError, match="no such file"):
        mca.estimate(tmp_path / "missing.o")
    empty = tmp_path / "empty.s"
    empty.write_text("f:\n\tret\n")
    with pytest.raises(UserError, match="empty.s: no NEON kernel loop"):
        mca.estimate(empty)

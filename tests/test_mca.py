"""llvm-mca estimates of the NEON micro-kernels, cut from compiled code (bifsmn_cli.engine.mca)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from bifsmn_cli.engine import mca
from bifsmn_cli.errors import UserError

CSRC = Path(__file__).resolve().parents[1] / "csrc"
KERNEL_SOURCES = ("kernels/bgemm/bgemm_neon.c", "kernels/sgemm/sgemm_neon.c")
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
            [CC, "-std=c11", "-O2", f"-I{CSRC / 'kernels'}", *flags, str(CSRC / src), "-o", str(dst)],
            check=True,
            capture_output=True,
        )
        paths.append(dst)
    return paths


@pytest.fixture(scope="module")
def objects(tmp_path_factory) -> list[Path]:
    _need_tools()
    return _compile(tmp_path_factory.mktemp("mca"), "-c")


def _check_kernel(entry: dict, unit: str, cpus: tuple[str, ...]) -> None:
    work = entry[f"{unit}_per_iteration"]
    assert work > 0 and entry["instructions"] == len(entry["loop"]) - 1  # minus the .Lloop label
    assert set(entry["cpus"]) == set(cpus)
    for figures in entry["cpus"].values():
        assert figures["cycles_per_iteration"] > 0 and figures["ipc"] > 0 and figures["block_rthroughput"] > 0
        assert figures[f"{unit}_per_cycle"] == pytest.approx(work / figures["cycles_per_iteration"], rel=1e-3)


def test_estimate_reads_both_kernels_from_objects(objects):
    bgemm = mca.estimate(objects[0])
    assert set(bgemm["kernels"]) == {"bgemm"} and bgemm["llvm_mca"][0].isdigit()
    entry = bgemm["kernels"]["bgemm"]
    assert entry["function"] == "bifsmn_bgemm_neon"
    # The measured loop is the EOR/CNT/ADD step loop: 128-bit CNTs, each with one vector EOR and one vector ADD.
    insns = [line.split(None, 1) for line in entry["loop"][1:]]

    def vector(mnemonic: str) -> int:
        return sum(m == mnemonic and ops.startswith("v") and ".16b" in ops for m, ops in insns)

    assert vector("cnt") > 0 and vector("cnt") == vector("eor") == vector("add")
    assert entry["bit_macs_per_iteration"] == 128 * vector("cnt")
    _check_kernel(entry, "bit_macs", mca.DEFAULT_CPUS)

    sgemm = mca.estimate(objects[1], cpus=("cortex-a72",))
    entry = sgemm["kernels"]["sgemm"]
    assert entry["macs_per_iteration"] == 4 * sum(line.split()[0] == "fmla" for line in entry["loop"])
    _check_kernel(entry, "macs", ("cortex-a72",))


def test_assembly_and_object_give_the_same_loop(objects, tmp_path):
    asm = _compile(tmp_path, "-S")[0]
    from_asm = mca.estimate(asm, cpus=("cortex-a53",))["kernels"]["bgemm"]
    from_obj = mca.estimate(objects[0], cpus=("cortex-a53",))["kernels"]["bgemm"]
    assert from_asm["instructions"] == from_obj["instructions"]
    assert from_asm["cpus"]["cortex-a53"]["cycles_per_iteration"] == pytest.approx(
        from_obj["cpus"]["cortex-a53"]["cycles_per_iteration"], rel=0.02
    )


LISTING = """
0000000000000000 <bifsmn_bgemm_neon>:
       0:      \tmov\tx1, #0x2
       4:      \tcnt\tv0.16b, v0.16b
       8:      \tcnt\tv1.8b, v1.8b
       c:      \tsubs\tx1, x1, #0x1
      10:      \tb.ne\t0x4 <bifsmn_bgemm_neon+0x4>
      14:      \tcnt\tv2.16b, v2.16b
      18:      \tcbnz\tx2, 0x0 <bifsmn_bgemm_neon>
0000000000000020 <other>:
      20:      \tcnt\tv3.16b, v3.16b
      24:      \tb\t0x20 <other>
"""


def test_innermost_loop_and_work_from_a_listing():
    functions = mca.parse_objdump(LISTING)
    body = mca.innermost_loop(functions["bifsmn_bgemm_neon"], "cnt")
    assert [i.mnemonic for i in body] == ["cnt", "cnt", "subs", "b.ne"]
    assert mca.loop_work(body, mca.KERNELS[0]) == 128 + 64
    assert mca.loop_text(body).splitlines()[-1] == "\tb.ne\t.Lloop"
    assert mca.innermost_loop(functions["bifsmn_bgemm_neon"], "fmla") is None


def test_numeric_labels_in_assembly_resolve_by_direction():
    text = "f:\n1:\n\tcnt v0.16b, v0.16b\n\tb.ne 1f\n1:\n\tcnt v1.16b, v1.16b\n\tcbnz x0, 1b\n\tret\n"
    body = mca.innermost_loop(mca.parse_asm(text)["f"], "cnt")
    assert [i.operands for i in body] == ["v1.16b, v1.16b", "x0, 1b"]


def test_errors_name_the_file(tmp_path):
    if mca.find_tool(mca.MCA_NAMES) is None:
        pytest.skip("llvm-mca is not installed (apt install llvm-16)")
    with pytest.raises(UserError, match="no such file"):
        mca.estimate(tmp_path / "missing.o")
    empty = tmp_path / "empty.s"
    empty.write_text("f:\n\tret\n")
    with pytest.raises(UserError, match="empty.s: no NEON micro-kernel loop"):
        mca.estimate(empty)

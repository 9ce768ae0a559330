"""The binary layers of an exported model as the NEON engine runs them: which fused kernel, how much work.

From read_bfsm's view of a `.bfsm` (csrc/FORMAT.md): every slot's shape is followed op by op, so each binary
op's work in bit-MACs is known (a GEMM: output positions x outputs x depth; the depthwise memory conv: time steps
x channels x taps), and its kernel as bifsmn_cli.engine.mca names the loops: `bfuse_gemm_kw<D>_<form>` (D the
packed depth in 64-bit words) or `bfuse_dwconv_taps<T>`. The form follows the engine's plan (csrc/src/plan.c):
an output without a residual that only binary ops read as their input is produced in the threshold form (sign
bits from integer thresholds), every other output in the float form.
"""

from __future__ import annotations

from typing import Any


def _out_shape(op: dict[str, Any], shape: tuple[int, int, int]) -> tuple[int, int, int]:
    d = op["dims"]
    if op["type"] == "conv2d":
        ow = (d["w_in"] + 2 * d["pw"] - d["kw"]) // d["sw"] + 1
        oh = (d["h_in"] + 2 * d["ph"] - d["kh"]) // d["sh"] + 1
        return (ow, oh, d["c_out"])
    if op["type"] == "linear":
        return (1 if op["flatten"] else shape[0], 1, d["n"])
    return shape  # dwconv1d keeps its (T, 1, C) input's shape


def _threshold_form(ops: list[dict[str, Any]], i: int) -> bool:
    """Op i's output is only binarised: no residual, and every op reading it before it is overwritten reads it
    as the input of a binary op."""
    if ops[i]["res_slot"] is not None:
        return False
    slot, readers = ops[i]["out_slot"], []
    for op in ops[i + 1 :]:
        if op["in_slot"] == slot or op["res_slot"] == slot:
            readers.append(op["binary"] and op["res_slot"] != slot)
        if op["out_slot"] == slot:
            break
    return bool(readers) and all(readers)


def binary_layers(record: dict[str, Any]) -> list[dict[str, Any]]:
    """[{"op", "type", "kernel", "bit_macs"}] for every binary op of `record`, in order."""
    fe = record["frontend"]
    shapes = {0: (fe["n_frames"], fe["n_mels"], 1)}
    ops = record["ops"]
    out = []
    for i, op in enumerate(ops):
        shape = shapes[op["in_slot"]]
        result = _out_shape(op, shape)
        shapes[op["out_slot"]] = result
        if not op["binary"]:
            continue
        d = op["dims"]
        if op["type"] == "dwconv1d":
            kernel = f"bfuse_dwconv_taps{d['taps']}"
            work = shape[0] * d["channels"] * d["taps"]
        else:
            k = d["kh"] * d["kw"] * d["c_in"] if op["type"] == "conv2d" else d["k"]
            form = "threshold" if _threshold_form(ops, i) else "float"
            kernel = f"bfuse_gemm_kw{(k + 63) // 64}_{form}"
            work = result[0] * result[1] * result[2] * k
        out.append({"op": i, "type": op["type"], "kernel": kernel, "bit_macs": work})
    return out


def rate(mca_kernels: dict[str, Any], kernel: str, cpu: str) -> tuple[str, float] | None:
    """(the loop that stands for `kernel`, its bit-MACs per cycle on `cpu`): the kernel's own loop, else the step
    loop its depth shares across forms, else the general kernel's (`gemm_any`, depths past 8)."""
    names = [kernel]
    if kernel.startswith("bfuse_gemm_kw"):
        depth = kernel.removeprefix("bfuse_gemm_kw").split("_")[0]
        names += [f"bfuse_gemm_kw{depth}_step", "bfuse_gemm_kwany_step"]
    for name in names:
        figures = mca_kernels.get(name, {}).get("cpus", {}).get(cpu)
        if figures is not None:
            return name, figures["bit_macs_per_cycle"]
    return None

""".bfsm version 2 storage of the float arrays (fp16, int8 per output channel) and how export chooses it: the
rounding, the bytes a reader gets back, version 1 files still read, the engine's dequantisation against PyTorch
running the same rounded weights (every op: binary integers bit-exact, floats to rounding; whole models; every
kernel this CPU runs), the reference executor against the PyTorch D-FSMN, and the measured choice."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import TINY_CLASSES, VARIANTS, dB_features, tiny_student, tiny_teacher

from bifsmn_cli.audio.config import FrontEndConfig
from bifsmn_cli.engine.binding import Engine
from bifsmn_cli.errors import UserError
from bifsmn_cli.export import storage
from bifsmn_cli.export.bfsm import (
    HEADER,
    STORE_F16,
    STORE_F32,
    STORE_I8,
    Op,
    encode,
    int8_rows,
    parse,
    quantize_op,
    read_bfsm,
)
from bifsmn_cli.export.lowering import build_record, student_record
from bifsmn_cli.export.reference import RecordNet
from bifsmn_cli.nn.model_file import fixed_depth

CSRC = Path(__file__).resolve().parents[1] / "csrc"
V1_REGRESSION = CSRC / "fuzz" / "regressions" / "loader" / "valid-student-0.5x.bfsm"


@pytest.fixture(scope="module")
def student():
    return tiny_student()


@pytest.fixture(scope="module")
def records(student) -> dict[str, object]:
    return {v: student_record(student, v, TINY_CLASSES, FrontEndConfig()) for v in VARIANTS}


def _op(weight: np.ndarray, **kw) -> Op:
    n = weight.shape[0]
    return Op(
        2,
        (weight.shape[1], n),
        False,
        0,
        1,
        weight.astype(np.float32),
        np.linspace(-1, 1, n).astype(np.float32),
        **kw,
    )


def test_int8_rows_and_fp16_rounding():
    w = np.array([[0.5, -1.27, 0.01], [0.0, 0.0, 0.0], [3.0, 2.0, -1.0]], dtype=np.float32)
    scales, q, values = int8_rows(w)
    assert scales.dtype == np.float32 and np.allclose(scales, [0.01, 0.0, 3.0 / 127])
    assert q.dtype == np.int8 and q[0].tolist() == [50, -127, 1] and q[1].tolist() == [0, 0, 0]
    assert q[2].tolist() == [127, 85, -42]  # the row's largest magnitude at 127
    assert np.array_equal(
        values, scales[:, None] * q.astype(np.float32)
    )  # a float32 multiply, as in the loader
    assert np.abs(values - w).max() <= scales.max() / 2 + 1e-7
    op = quantize_op(_op(w, slope=np.array([0.1, 0.2, 0.3], np.float32)), "int8", "fp16")
    assert (op.weight_storage, op.vector_storage) == (STORE_I8, STORE_F16)
    assert np.array_equal(op.weight, values) and op.int8_parts[1].tolist() == q.tolist()
    assert op.slope.tolist() == np.float16([0.1, 0.2, 0.3]).astype(np.float32).tolist()
    half = quantize_op(_op(w), "fp16", "fp16")
    assert (half.weight_storage, half.vector_storage) == (STORE_F16, STORE_F16)
    assert np.array_equal(half.weight, w.astype(np.float16).astype(np.float32))
    assert (
        quantize_op(_op(w), "fp32").weight is not None
        and quantize_op(_op(w), "fp32").weight_storage == STORE_F32
    )


def test_what_binary16_cannot_hold_stays_float32():
    big = quantize_op(_op(np.array([[70000.0, 1.0]]), slope=np.array([1e6], np.float32)), "fp16", "fp16")
    assert (big.weight_storage, big.vector_storage) == (STORE_F32, STORE_F32)  # 65504 is binary16's largest
    assert big.weight[0, 0] == 70000.0
    inf = quantize_op(_op(np.array([[np.inf, 1.0]])), "int8", "fp16")
    assert inf.weight_storage == STORE_F32 and inf.vector_storage == STORE_F16
    with pytest.raises(UserError, match="storage 'bf16' / 'fp32'"):
        quantize_op(_op(np.ones((1, 1))), "bf16")
    with pytest.raises(UserError, match="vectors fp32 or fp16"):
        quantize_op(_op(np.ones((1, 1))), "fp32", "int8")


@pytest.mark.parametrize("kind", storage.STORAGES)
def test_a_reader_gets_back_the_rounded_values(records, kind):
    rec = storage.quantize(records["1x"], kind)
    parsed = parse(encode(rec))
    assert parsed["version"] == 2
    for op, got in zip(rec.ops, parsed["ops"], strict=True):
        for name in ("weight", "scale", "shift", "slope"):
            want = getattr(op, name)
            assert (want is None) == (got[name] is None) and (want is None or np.array_equal(want, got[name]))
        if op.binary:  # bits stay bits; their affines are vectors
            assert got["weight_storage"] == "fp32" and got["vector_storage"] == (
                "fp32" if kind == "fp32" else "fp16"
            )
        else:
            assert got["weight_storage"] == kind and got["vector_storage"] == (
                "fp32" if kind == "fp32" else "fp16"
            )
    sizes = {k: len(encode(storage.quantize(records["1x"], k))) for k in storage.STORAGES}
    assert sizes["int8"] < sizes["fp16"] < sizes["fp32"]


def _as_version(data: bytes, version: int) -> bytes:
    return data[:4] + struct.pack("<H", version) + data[6:]  # the CRC covers the payload only


def test_version_1_files_are_still_read(lib, records):
    """A version 2 file of float32 arrays is version 1 with the version number changed: both load, with identical
    scores; version 1 with a storage code is refused, and so is an unknown version, each in one line."""
    data = encode(records["1x"])
    x = dB_features(4, 1).numpy()
    v2, v1 = Engine.from_bytes(data, lib), Engine.from_bytes(_as_version(data, 1), lib)
    with v2, v1:
        for f in x:
            assert np.array_equal(v2.run_features(f), v1.run_features(f))
    assert parse(_as_version(data, 1))["version"] == 1
    shipped = read_bfsm(V1_REGRESSION)  # written by the version 1 exporter
    assert shipped["version"] == 1 and {op["weight_storage"] for op in shipped["ops"]} == {"fp32"}
    with lib.load(V1_REGRESSION) as engine:
        assert engine.run_features(np.zeros(engine.feature_shape, np.float32)).shape == (
            len(shipped["classes"]),
        )
    int8 = bytearray(encode(storage.quantize(records["1x"], "int8")))
    v1_int8 = _as_version(bytes(int8), 1)
    with pytest.raises(UserError, match="op 0 has an unknown storage .* for .bfsm version 1"):
        parse(v1_int8)
    with pytest.raises(UserError, match="non-zero reserved bytes"):
        Engine.from_bytes(v1_int8, lib)
    with pytest.raises(UserError, match=r"version 3; this reader knows versions 1, 2: re-export"):
        parse(_as_version(data, 3))
    with pytest.raises(UserError, match="reads versions 1 to 2"):
        Engine.from_bytes(_as_version(data, 3), lib)
    # an op header byte past the codes: the same one-line refusal in both readers
    at = len(data) - sum(len(op.pack()) for op in records["1x"].ops)  # op 0's header
    bad = bytearray(data)
    assert bad[at] == 1 and bad[at + 6] == STORE_F32  # op 0: a conv2d, weights float32
    bad[at + 6] = 7
    payload = bytes(bad[HEADER.size :])
    bad[12:16] = struct.pack("<I", zlib.crc32(payload))
    with pytest.raises(UserError, match="unknown storage"):
        parse(bytes(bad))
    with pytest.raises(UserError, match="unknown storage 7 of its weights"):
        Engine.from_bytes(bytes(bad), lib)


@pytest.mark.parametrize("kind", ["fp16", "int8"])
def test_engine_matches_pytorch_with_the_same_rounded_weights(lib, records, kind):
    """Every op of every width, on the engine's own kernels and the portable ones: binary dot products bit-exact,
    floats to rounding; whole-model scores within 1e-4 with the same top class."""
    x = dB_features(6, 2)
    for v in VARIANTS:
        data = encode(storage.quantize(records[v], kind))
        ref = RecordNet(parse(data))
        with torch.no_grad():
            want = ref(x).numpy()
        for kernel in sorted({"ref", "auto"}):
            with Engine.from_bytes(data, lib, kernel=kernel) as engine:
                got = np.stack([engine.run_features(f) for f in x.numpy()])
                inputs = torch.from_numpy(np.ascontiguousarray(x[0].numpy().T[None, :, :, None]))
                slots = {0: inputs}
                for i, op in enumerate(ref.ops):
                    res = slots.get(op["res_slot"]) if op["res_slot"] is not None else None
                    ours, ints = ref.step(i, slots[op["in_slot"]], res)
                    out, theirs = engine.run_op(
                        i, slots[op["in_slot"]][0].numpy(), None if res is None else res[0].numpy()
                    )
                    if ints is not None:
                        assert np.array_equal(theirs, ints[0].numpy().astype(np.int32)), (
                            f"{v} op {i} dot products"
                        )
                    scale = max(float(ours.abs().max()), 1e-6)
                    assert np.abs(out - ours[0].numpy()).max() <= 1e-5 * scale, (
                        f"{v} op {i} ({kind}, {kernel})"
                    )
                    slots[op["out_slot"]] = ours
            rel = np.abs(got - want).max(1) / np.abs(want).max(1)
            assert rel.max() < 1e-4 and (got.argmax(1) == want.argmax(1)).all(), (v, kernel)


def test_reference_executor_is_the_pytorch_model(student, records):
    """Float32 files in the reference executor give the D-FSMN's logits (the lowering and the executor agree)."""
    x = dB_features(8, 4)
    teacher = tiny_teacher()
    cases = [(fixed_depth(student, v), records[v]) for v in VARIANTS]
    cases.append((teacher, build_record(teacher, "1x", TINY_CLASSES, FrontEndConfig(), binary=False)))
    for model, record in cases:
        with torch.no_grad():
            want = model.eval()(x).numpy()
            got = RecordNet(parse(encode(record)))(x).numpy()
        assert (np.abs(got - want).max(1) / np.abs(want).max(1)).max() < 1e-5
        assert (got.argmax(1) == want.argmax(1)).all()


def test_measure_and_the_choice(records):
    """Uniform storages measured against float32 on the clips; auto keeps exactly the roundings that keep every
    decision, and its mix is recorded in the file."""
    features = dB_features(12, 5).numpy()
    chosen, m = storage.measure(records["1x"], features, "int8", 1.0)
    o = m["options"]
    assert (
        set(o) == set(storage.STORAGES)
        and o["fp32"]["changed_clips"] == 0
        and o["fp32"]["top1_agreement"] == 1
    )
    assert o["int8"]["bytes"] < o["fp16"]["bytes"] < o["fp32"]["bytes"]
    for k in ("fp16", "int8"):
        assert o[k]["top1_agreement"] == 1 - o[k]["changed_clips"] / 12
        assert o[k]["max_rel_logit_change"] > 0  # rounding changes the logits (a random net's can be tiny)
    assert storage.label(chosen) == "int8" and m["chosen"]["bytes"] == o["int8"]["bytes"] == len(
        encode(chosen)
    )
    assert m["chosen"]["weights"] == {"int8": 2} and m["chosen"]["vectors"] == {"fp16": len(chosen.ops)}
    best, a = storage.measure(records["1x"], features, "auto", 1.0)
    assert a["chosen"]["top1_agreement"] == 1.0 and a["chosen"]["bytes"] == len(encode(best))
    assert a["chosen"]["bytes"] <= min(r["bytes"] for r in o.values() if r["top1_agreement"] == 1.0)
    assert storage.logits(encode(best), features).argmax(1).tolist() == (
        storage.logits(encode(records["1x"]), features).argmax(1).tolist()
    )
    loose, _ = storage.measure(
        records["1x"], features, "auto", 0.0
    )  # any change allowed: the smallest of all
    assert len(encode(loose)) == o["int8"]["bytes"] and storage.label(loose) == "int8"
    assert storage.label(storage.quantize(records["1x"], "fp32")) == "fp32"
    half = storage.quantize(records["1x"], "fp16")
    assert storage.label(half) == "fp16" and storage.summary(half)["weights"] == {"fp16": 2}

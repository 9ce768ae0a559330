"""The .bfsm format: what the exporter writes (read back by the pure-Python reader), what each width
contains, BatchNorm and scale folding, the C header, refusal of what the engine cannot run, the engine's
errors on malformed files, and the ONNX teacher."""

from __future__ import annotations

import re
import struct
import zlib

import numpy as np
import pytest
import torch
from helpers import TINY_CFG, TINY_CLASSES, VARIANTS, dB_features, tiny_student, tiny_teacher

from bifsmn_cli.audio.config import FrontEndConfig
from bifsmn_cli.engine.binding import Engine
from bifsmn_cli.errors import UserError
from bifsmn_cli.export.bfsm import FORMAT_VERSION, read_bfsm, unpack_signs, write_c_header
from bifsmn_cli.export.lowering import export_student, export_teacher
from bifsmn_cli.export.onnx_export import export_teacher_onnx, onnx_available
from bifsmn_cli.nn.dfsmn import DFSMN


@pytest.fixture(scope="module")
def student():
    return tiny_student(seed=5)


@pytest.fixture(scope="module")
def files(tmp_path_factory, student):
    out = tmp_path_factory.mktemp("format")
    paths = {v: out / f"student_{v}.bfsm" for v in VARIANTS}
    for v, p in paths.items():
        export_student(student, v, TINY_CLASSES, FrontEndConfig(), p)
    paths["teacher"] = out / "teacher.bfsm"
    export_teacher(tiny_teacher(seed=6), TINY_CLASSES, FrontEndConfig(), paths["teacher"])
    return paths


def _bn(bn: torch.nn.Module) -> tuple[np.ndarray, np.ndarray]:
    w, b, mean, var = (
        t.detach().double().numpy() for t in (bn.weight, bn.bias, bn.running_mean, bn.running_var)
    )
    s = w / np.sqrt(var + bn.eps)
    return s, b - mean * s


def test_header_and_op_list(files, student):
    info = read_bfsm(files["1x"])
    assert info["version"] == FORMAT_VERSION and info["binary"] and info["variant"] == "1x"
    assert info["classes"] == TINY_CLASSES and info["blocks"] == [0, 1, 2, 3]
    fe = info["frontend"]
    assert (fe["sample_rate"], fe["num_samples"], fe["n_fft"], fe["win_length"], fe["hop_length"]) == (
        16000,
        16000,
        2048,
        2048,
        512,
    )
    assert (fe["n_mels"], fe["n_frames"], fe["f_min"], fe["f_max"]) == (32, 32, 0.0, 8000.0)
    assert fe["normalized"] and fe["to_db"] and fe["top_db"] is None and fe["pcm_scale"] == 2.0**-15
    kinds = [(op["type"], op["binary"]) for op in info["ops"]]
    block = [("dwconv1d", True), ("linear", True), ("linear", True)]
    assert kinds == [("conv2d", False), ("conv2d", True), ("linear", True), *block * 4, ("linear", False)]
    conv2 = info["ops"][1]
    assert conv2["dims"] == dict(c_in=6, h_in=16, w_in=16, c_out=12, kh=5, kw=5, sh=2, sw=2, ph=2, pw=2)
    assert conv2["weight"].shape == (12, 3)  # 150 sign bits -> 3 words per output channel
    wiring = [(op["in_slot"], op["out_slot"], op["res_slot"]) for op in info["ops"][3:6]]
    assert wiring == [(0, 1, 0), (1, 2, None), (2, 0, 1)]  # memory + input, project + memory output
    assert info["ops"][-1]["flatten"] and info["ops"][-1]["dims"] == {"k": 48 * 8, "n": 5}


def test_each_width_holds_only_its_blocks(files):
    sizes = {}
    for v, blocks in zip(VARIANTS, ([0, 1, 2, 3], [1, 3], [3]), strict=True):
        info = read_bfsm(files[v])
        assert info["blocks"] == blocks and len(info["ops"]) == 4 + 3 * len(blocks)
        sizes[v] = files[v].stat().st_size
    assert sizes["1x"] > sizes["0.5x"] > sizes["0.25x"]
    teacher = read_bfsm(files["teacher"])
    assert not teacher["binary"] and teacher["variant"] == "fp" and len(teacher["ops"]) == 4 + 3 * 4
    assert not any(op["binary"] for op in teacher["ops"]) and teacher["ops"][0]["scale"] is None


def test_signs_and_folded_affines(files, student):
    """Bits are the binarizer's weight signs in engine order; a = scale * gamma / std, b = (bias - mean) ..."""
    ops = read_bfsm(files["0.5x"])["ops"]
    blk = student.blocks[1]  # the first block of 0.5x
    signs, scale = (t.double().numpy() for t in blk.expand.binarizer.weight_parts(blk.expand.weight))
    expand = ops[4]
    np.testing.assert_array_equal(unpack_signs(expand["weight"], TINY_CFG.backbone_size), signs[:, :, 0])
    s, t = _bn(blk.bn_hidden)
    np.testing.assert_allclose(expand["scale"], scale * s, rtol=1e-6)
    np.testing.assert_allclose(
        expand["shift"], blk.expand.bias.detach().double().numpy() * s + t, rtol=1e-5, atol=1e-6
    )
    memory = ops[3]  # depthwise: one row of channel bits per tap
    mem_signs = blk.memory.binarizer.weight_parts(blk.memory.weight)[0].numpy()[:, 0, :].T
    np.testing.assert_array_equal(unpack_signs(memory["weight"], TINY_CFG.backbone_size), mem_signs)
    conv2 = ops[1]  # rows ordered (time tap, mel tap, channel)
    conv_signs = student.conv2.binarizer.weight_parts(student.conv2.weight)[0].numpy()
    np.testing.assert_array_equal(
        unpack_signs(conv2["weight"], 150), conv_signs.transpose(0, 3, 2, 1).reshape(12, -1)
    )
    assert np.all(
        memory["slope"] == blk.act_mem.weight.item()
    )  # one shared PReLU slope, per channel in the file
    project = ops[5]  # the 0.5x model uses the 0.5x-specific BatchNorm
    s, _ = _bn(blk.bn_out["0_5x"])
    scale = blk.project.binarizer.weight_parts(blk.project.weight)[1].double().numpy()
    np.testing.assert_allclose(project["scale"], scale * s, rtol=1e-6)


def test_teacher_folds_batchnorm_into_weights(files):
    teacher = tiny_teacher(seed=6)
    conv1 = read_bfsm(files["teacher"])["ops"][0]
    s, t = _bn(teacher.bn1)
    w = teacher.conv1.weight.detach().double().numpy() * s[:, None, None, None]
    np.testing.assert_allclose(conv1["weight"], w.transpose(0, 3, 2, 1).reshape(w.shape[0], -1), rtol=1e-6)
    np.testing.assert_allclose(
        conv1["shift"], teacher.conv1.bias.detach().double().numpy() * s + t, rtol=1e-5, atol=1e-6
    )
    assert np.all(conv1["slope"] == 0.0)  # ReLU is stored as PReLU with slope 0


def test_c_header_holds_the_same_bytes(files, tmp_path):
    write_c_header(files["0.25x"], tmp_path / "model.h", symbol="kws_model")
    text = (tmp_path / "model.h").read_text()
    data = bytes(int(h, 16) for h in re.findall(r"0x([0-9a-f]{2})", text))
    assert data == files["0.25x"].read_bytes()
    assert f"kws_model_size = {len(data)};" in text and "#ifndef KWS_MODEL_H" in text
    with pytest.raises(UserError, match="identifier"):
        write_c_header(files["0.25x"], tmp_path / "bad.h", symbol="2bad")


def test_what_the_engine_cannot_run_is_refused(tmp_path, student):
    with pytest.raises(UserError, match="'xnor' cannot be exported"):
        export_student(
            tiny_student(binarizer="xnor"), "1x", TINY_CLASSES, FrontEndConfig(), tmp_path / "x.bfsm"
        )
    with pytest.raises(UserError, match="5 outputs"):
        export_student(student, "1x", TINY_CLASSES[:3], FrontEndConfig(), tmp_path / "x.bfsm")
    with pytest.raises(UserError, match="40 mels x 32 frames"):
        export_student(student, "1x", TINY_CLASSES, FrontEndConfig(n_mels=40), tmp_path / "x.bfsm")
    with pytest.raises(UserError, match="not one of this model's variants"):
        export_student(student, "0.75x", TINY_CLASSES, FrontEndConfig(), tmp_path / "x.bfsm")
    with pytest.raises(UserError, match="export_teacher"):
        export_student(tiny_teacher(), "1x", TINY_CLASSES, FrontEndConfig(), tmp_path / "x.bfsm")
    with pytest.raises(UserError, match="export_student"):
        export_teacher(student, TINY_CLASSES, FrontEndConfig(), tmp_path / "x.bfsm")
    assert not (tmp_path / "x.bfsm").exists()


def _corrupt(data: bytes, offset: int, value: bytes, fix_crc: bool) -> bytes:
    out = bytearray(data)
    out[offset : offset + len(value)] = value
    if fix_crc:
        out[12:16] = struct.pack("<I", zlib.crc32(bytes(out[16:])))
    return bytes(out)


def test_malformed_files_give_errors_not_crashes(lib, files, tmp_path):
    good = files["0.25x"].read_bytes()
    # file header, model header, variant name, class names, block list [3]: then the first op's type byte
    first_op = 16 + 64 + 2 + len("0.25x") + sum(2 + len(c) for c in TINY_CLASSES) + 4 + 4
    cases = {
        "bad magic": good.replace(b"BFSM", b"BFSX", 1),
        "version 9": _corrupt(good, 4, b"\x09\x00", fix_crc=False),
        "CRC32 mismatch": _corrupt(good, len(good) // 2, b"\xff\xfe", fix_crc=False),
        "only": good[: len(good) - 10],  # "payload of N bytes but only M follow"
        "trailing": good + b"\0",
        "unknown type": _corrupt(good, first_op, b"\x07", fix_crc=True),
        "op count": _corrupt(good, 16 + 8, b"\xff\xff\x00\x00", fix_crc=True),
    }
    for needle, data in cases.items():
        with pytest.raises(UserError, match=needle):
            Engine.from_bytes(data, lib)
        path = tmp_path / "bad.bfsm"
        path.write_bytes(data)
        with pytest.raises(UserError):
            read_bfsm(path)
    with pytest.raises(UserError, match="cannot open"):
        Engine.load(tmp_path / "missing.bfsm", lib)
    with Engine.from_bytes(good, lib) as engine:  # and a good one still loads from memory
        assert engine.variant == "0.25x"


@pytest.mark.skipif(not onnx_available(), reason="onnx/onnxruntime not installed (the optional onnx extra)")
def test_onnx_teacher_matches_pytorch(tmp_path):
    teacher = tiny_teacher(seed=7)
    result = export_teacher_onnx(teacher, tmp_path / "teacher.onnx")
    assert result["max_abs_diff"] < 1e-4 and (tmp_path / "teacher.onnx").stat().st_size > 0
    import onnxruntime as ort

    session = ort.InferenceSession(str(tmp_path / "teacher.onnx"), providers=["CPUExecutionProvider"])
    feats = dB_features(3, seed=8)
    with torch.no_grad():
        want = teacher(feats).numpy()
    np.testing.assert_allclose(session.run(None, {"features": feats.numpy()})[0], want, rtol=1e-4, atol=1e-4)
    with pytest.raises(UserError, match="full-precision"):
        export_teacher_onnx(DFSMN(TINY_CFG, "bifsmn"), tmp_path / "student.onnx")

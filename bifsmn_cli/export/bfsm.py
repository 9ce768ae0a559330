"""The `.bfsm` packed model format (csrc/FORMAT.md): records, writer, pure-Python reader and C-header dump.

A model is stored as the op list the C engine runs, already in the engine's layout: tensors are (time,
height, channels) with channels fastest (lowering.py permutes PyTorch's channel-major weights into it, so the
engine never reorders anything at run time). Binary layers keep only their sign bits (packed along the
input-channel axis, LSB first, rows padded to 64 bits with 0) and one affine per output channel; full-precision
layers keep their weights and bias. The header carries the front end's settings (logmel only).

Version 2 lets each op store its float arrays smaller (FORMAT.md, "Storage"): the weights of a full-precision op
in float32, binary16 or int8 with a float32 scale per output row, its per-output vectors (bias, BatchNorm-folded
scale and shift, PReLU slopes) in float32 or binary16. An `Op` holds the values a reader will see (already
rounded to its storage) and, for int8, the stored parts; `quantize_op` makes such an op (export/storage.py
chooses the storages). Version 1 files (all
float32, those two header bytes reserved 0) are still read.
"""

from __future__ import annotations

import dataclasses
import struct
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from bifsmn_cli.audio.config import FrontEndConfig
from bifsmn_cli.audio.wav import INT16_SCALE
from bifsmn_cli.errors import UserError
from bifsmn_cli.fsutil import atomic_write_bytes, atomic_write_text

MAGIC = b"BFSM"
FORMAT_VERSION = 2  # written
READ_VERSIONS = (1, 2)
STORE_F32, STORE_F16, STORE_I8 = 0, 1, 2  # op header bytes 6 (weights) and 7 (per-output vectors), version 2
STORE_NAMES = {STORE_F32: "fp32", STORE_F16: "fp16", STORE_I8: "int8"}
F16_MAX = 65504.0
HEADER = struct.Struct("<4sHHII")  # magic, version, header size, payload size, CRC32 of the payload
MODEL_HEADER = struct.Struct("<11I2fIff")
# type, flags, in, out, residual, activation, weight storage, vector storage, body size
OP_HEADER = struct.Struct("<8BI")
OP_CONV2D, OP_LINEAR, OP_DWCONV1D = 1, 2, 3
OP_NAMES = {OP_CONV2D: "conv2d", OP_LINEAR: "linear", OP_DWCONV1D: "dwconv1d"}
OP_DIMS = {
    OP_CONV2D: ("c_in", "h_in", "w_in", "c_out", "kh", "kw", "sh", "sw", "ph", "pw"),
    OP_LINEAR: ("k", "n"),
    OP_DWCONV1D: ("channels", "taps", "dilation", "pad_left"),
}
ACT_NONE, ACT_PRELU = 0, 1
NO_SLOT = 0xFF
FLAG_BINARY, FLAG_FLATTEN = 1, 2
FE_NORMALIZED, FE_DB, FE_TOP_DB = 1, 2, 4
PCM_SCALE = 1.0 / INT16_SCALE  # soundfile's int16 -> float conversion, which the Python front end sees


@dataclass
class Op:
    """One layer record. Arrays are in the engine layout: `weight` float32 (N, K) or uint64 packed rows. Float
    arrays hold the values a reader sees: rounded to their storage when it is not float32."""

    type: int
    dims: tuple[int, ...]
    binary: bool
    in_slot: int
    out_slot: int
    weight: np.ndarray
    shift: np.ndarray  # binary: b of a * dot + b; full precision: the bias
    scale: np.ndarray | None = None  # binary only: a
    slope: np.ndarray | None = None  # PReLU slopes, one per output
    res_slot: int | None = None
    flatten: bool = False
    weight_storage: int = STORE_F32  # full-precision ops only
    vector_storage: int = STORE_F32  # scale, shift, slope
    int8_parts: tuple[np.ndarray, np.ndarray] | None = None  # STORE_I8: (float32 scale per row, int8 (N, K))

    def body(self) -> bytes:
        vec = _f16 if self.vector_storage == STORE_F16 else _f32
        parts = [struct.pack(f"<{len(self.dims)}I", *self.dims)]
        if self.binary:
            parts += [self.weight.astype("<u8").tobytes(), vec(self.scale)]
        elif self.weight_storage == STORE_I8:
            scales, q = self.int8_parts
            parts += [_f32(scales), np.ascontiguousarray(q, dtype=np.int8).tobytes()]
        else:
            parts.append((_f16 if self.weight_storage == STORE_F16 else _f32)(self.weight))
        parts.append(vec(self.shift))
        if self.slope is not None:
            parts.append(vec(self.slope))
        return b"".join(parts)

    def pack(self) -> bytes:
        body = self.body()
        flags = (FLAG_BINARY if self.binary else 0) | (FLAG_FLATTEN if self.flatten else 0)
        res = NO_SLOT if self.res_slot is None else self.res_slot
        act = ACT_NONE if self.slope is None else ACT_PRELU
        storage = (self.weight_storage, self.vector_storage)
        return (
            OP_HEADER.pack(self.type, flags, self.in_slot, self.out_slot, res, act, *storage, len(body))
            + body
        )


def _f16(x: np.ndarray | None) -> bytes:
    return np.ascontiguousarray(x, dtype="<f2").tobytes()


def _fits_f16(*arrays: np.ndarray | None) -> bool:
    """Every value finite and within binary16's range (larger ones would become infinities)."""
    return all(a is None or (np.isfinite(a).all() and (np.abs(a) <= F16_MAX).all()) for a in arrays)


def _to_f16(x: np.ndarray | None) -> np.ndarray | None:
    return None if x is None else np.asarray(x, dtype=np.float32).astype(np.float16).astype(np.float32)


def int8_rows(w: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(scale per row, int8 values, what a reader gets: scale x value in float32): symmetric, the row's largest
    magnitude at 127; an all-zero row has scale 0."""
    w = np.asarray(w, dtype=np.float32)
    scales = (np.abs(w).max(axis=1) / np.float32(127)).astype(np.float32)
    safe = np.where(scales > 0, scales, np.float32(1))
    q = np.clip(np.rint(w / safe[:, None]), -127, 127).astype(np.int8)
    return scales, q, (scales[:, None] * q.astype(np.float32)).astype(np.float32)


WEIGHT_STORAGES = ("fp32", "fp16", "int8")  # of a full-precision op's weights
VECTOR_STORAGES = ("fp32", "fp16")  # of every op's per-output vectors


def quantize_op(op: Op, weights: str = "fp32", vectors: str = "fp32") -> Op:
    """A float32 `op` with the weights of a full-precision op stored as `weights` (fp32, fp16, or int8 with a
    float32 scale per output row) and its per-output vectors as `vectors` (fp32, fp16), rounded as a reader will
    see them. A group binary16 cannot hold (a value past 65504, or not finite) stays float32, and so do weights
    int8 cannot scale (not finite): the op header records each group's storage."""
    if weights not in WEIGHT_STORAGES or vectors not in VECTOR_STORAGES:
        raise UserError(
            f"storage {weights!r} / {vectors!r}: weights fp32, fp16 or int8; vectors fp32 or fp16"
        )
    out = dataclasses.replace(op, weight_storage=STORE_F32, vector_storage=STORE_F32, int8_parts=None)
    if vectors == "fp16" and _fits_f16(op.scale, op.shift, op.slope):
        out.vector_storage = STORE_F16
        out.scale, out.shift, out.slope = _to_f16(op.scale), _to_f16(op.shift), _to_f16(op.slope)
    if op.binary or weights == "fp32" or not np.isfinite(op.weight).all():
        return out
    if weights == "int8":
        scales, q, values = int8_rows(op.weight)
        out.weight_storage, out.int8_parts, out.weight = STORE_I8, (scales, q), values
    elif _fits_f16(op.weight):
        out.weight_storage, out.weight = STORE_F16, _to_f16(op.weight)
    return out


@dataclass
class ModelRecord:
    """Everything a .bfsm file holds."""

    binary: bool
    variant: str
    classes: list[str]
    blocks: list[int]
    frontend: FrontEndConfig
    ops: list[Op] = field(default_factory=list)
    num_slots: int = 3


def _f32(x: np.ndarray | None) -> bytes:
    return np.ascontiguousarray(x, dtype="<f4").tobytes()


def _string(s: str) -> bytes:
    raw = s.encode("utf-8")
    if len(raw) > 1024 or b"\0" in raw:
        raise UserError(f"name {s!r}: at most 1024 UTF-8 bytes without NUL characters")
    return struct.pack("<H", len(raw)) + raw


def pack_signs(signs: np.ndarray) -> np.ndarray:
    """(rows, K) values -> (rows, ceil(K/64)) uint64: bit 1 where the value is < 0, LSB first, pad bits 0."""
    signs = np.asarray(signs)
    rows, k = signs.shape
    kw = (k + 63) // 64
    bits = np.zeros((rows, kw * 64), dtype=np.uint8)
    bits[:, :k] = signs < 0
    return np.packbits(bits, axis=1, bitorder="little").view("<u8").reshape(rows, kw)


def unpack_signs(words: np.ndarray, k: int) -> np.ndarray:
    """Inverse of pack_signs: (rows, kw) uint64 -> (rows, k) float32 of +-1."""
    bits = np.unpackbits(np.ascontiguousarray(words, dtype="<u8").view(np.uint8), axis=1, bitorder="little")
    return np.where(bits[:, :k] == 1, -1.0, 1.0).astype(np.float32)


def encode(model: ModelRecord) -> bytes:
    """The complete file: fixed header, then the CRC-protected payload."""
    fe = model.frontend
    fe.check_engine()
    flags = FE_DB | (FE_NORMALIZED if fe.normalized else 0) | (FE_TOP_DB if fe.top_db is not None else 0)
    payload = [
        MODEL_HEADER.pack(
            0 if model.binary else 1,
            len(model.classes),
            len(model.ops),
            model.num_slots,
            fe.sample_rate,
            fe.num_samples,
            fe.n_fft,
            fe.window,
            fe.hop_length,
            fe.n_mels,
            fe.stft_frames,
            fe.f_min,
            fe.mel_f_max,
            flags,
            fe.top_db or 0.0,
            PCM_SCALE,
        ),
        _string(model.variant),
        *(_string(c) for c in model.classes),
        struct.pack(f"<I{len(model.blocks)}I", len(model.blocks), *model.blocks),
        *(op.pack() for op in model.ops),
    ]
    body = b"".join(payload)
    return HEADER.pack(MAGIC, FORMAT_VERSION, HEADER.size, len(body), zlib.crc32(body)) + body


def write_bfsm(record: ModelRecord, path: Path | str) -> dict[str, Any]:
    """Write a record atomically; returns {path, bytes, crc32, ops}."""
    data = encode(record)
    atomic_write_bytes(Path(path), data)
    return {
        "path": str(path),
        "bytes": len(data),
        "crc32": zlib.crc32(data[HEADER.size :]),
        "ops": len(record.ops),
    }


# ---------------------------------------------------------------------------------------------- reading


class _Reader:
    def __init__(self, data: bytes, path: Path) -> None:
        self.data, self.pos, self.path = data, 0, path

    def take(self, n: int, what: str) -> bytes:
        if n > len(self.data) - self.pos:
            raise UserError(f"{self.path}: the file ends inside {what}; re-export the model")
        out = self.data[self.pos : self.pos + n]
        self.pos += n
        return out

    def unpack(self, fmt: str, what: str) -> tuple[Any, ...]:
        return struct.unpack(fmt, self.take(struct.calcsize(fmt), what))

    def string(self, what: str) -> str:
        (n,) = self.unpack("<H", what)
        return self.take(n, what).decode("utf-8")

    def array(self, dtype: str, count: int, what: str) -> np.ndarray:
        return np.frombuffer(self.take(np.dtype(dtype).itemsize * count, what), dtype=dtype).copy()


def read_bfsm(path: Path | str) -> dict[str, Any]:
    """Parse a .bfsm file into plain Python/numpy values (see `parse`)."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise UserError(f"{path}: cannot read the model ({exc.strerror})") from None
    return parse(data, path)


def parse(data: bytes, path: Path | str = "<bytes>") -> dict[str, Any]:
    """Parse .bfsm bytes (`path` names them in errors) into plain Python/numpy values (the tests' view of the
    format, and what the reference executor runs).

    Returns {"version", "crc32", "binary", "variant", "classes", "blocks", "num_slots", "frontend": {...},
    "ops": [{"type", "binary", "flatten", "in_slot", "out_slot", "res_slot", "activation", "dims": {...},
    "weight", "scale", "shift", "slope", "weight_storage", "vector_storage"}]}; weights are float32 (N, K) or
    uint64 (rows, words), every float array as float32 values whatever its storage ("fp32", "fp16", "int8").
    """
    if len(data) < HEADER.size or data[:4] != MAGIC:
        raise UserError(f"{path}: not a .bfsm model (bad magic)")
    _, version, header_size, payload_size, crc = HEADER.unpack_from(data)
    if version not in READ_VERSIONS:
        raise UserError(
            f"{path}: .bfsm format version {version}; this reader knows versions "
            f"{', '.join(map(str, READ_VERSIONS))}: re-export the model with this toolkit"
        )
    payload = data[header_size:]
    if len(payload) != payload_size:
        raise UserError(f"{path}: payload is {len(payload)} bytes, the header says {payload_size}")
    if zlib.crc32(payload) != crc:
        raise UserError(f"{path}: CRC32 mismatch, the file is corrupted; re-export the model")
    r = _Reader(payload, path)
    h = r.unpack(MODEL_HEADER.format, "the model header")
    (kind, n_classes, n_ops, n_slots, rate, samples, n_fft, win, hop, mels, frames) = h[:11]
    f_min, f_max, flags, top_db, pcm_scale = h[11:]
    out: dict[str, Any] = {
        "version": version,
        "crc32": crc,
        "binary": kind == 0,
        "num_slots": n_slots,
        "frontend": {
            "sample_rate": rate,
            "num_samples": samples,
            "n_fft": n_fft,
            "win_length": win,
            "hop_length": hop,
            "n_mels": mels,
            "n_frames": frames,
            "f_min": f_min,
            "f_max": f_max,
            "normalized": bool(flags & FE_NORMALIZED),
            "to_db": bool(flags & FE_DB),
            "top_db": top_db if flags & FE_TOP_DB else None,
            "pcm_scale": pcm_scale,
        },
    }
    out["variant"] = r.string("the variant name")
    out["classes"] = [r.string("a class name") for _ in range(n_classes)]
    (n_blocks,) = r.unpack("<I", "the block list")
    out["blocks"] = list(r.unpack(f"<{n_blocks}I", "the block list"))
    out["ops"] = [_read_op(r, i, version) for i in range(n_ops)]
    if r.pos != len(payload):
        raise UserError(f"{path}: {len(payload) - r.pos} unread bytes after the last op")
    return out


def _read_op(r: _Reader, i: int, version: int) -> dict[str, Any]:
    op_type, flags, in_slot, out_slot, res, act, ws, vs, body_size = r.unpack(OP_HEADER.format, f"op {i}")
    if op_type not in OP_DIMS:
        raise UserError(f"{r.path}: op {i} has unknown type {op_type}")
    binary = bool(flags & FLAG_BINARY)
    if (
        (version == 1 and (ws or vs))
        or ws not in STORE_NAMES
        or vs not in (STORE_F32, STORE_F16)
        or (binary and ws)
    ):
        raise UserError(f"{r.path}: op {i} has an unknown storage ({ws}, {vs}) for .bfsm version {version}")
    end = r.pos + body_size
    names = OP_DIMS[op_type]
    dims = dict(zip(names, r.unpack(f"<{len(names)}I", f"op {i}"), strict=True))
    if op_type == OP_CONV2D:
        n, k = dims["c_out"], dims["kh"] * dims["kw"] * dims["c_in"]
    elif op_type == OP_LINEAR:
        n, k = dims["n"], dims["k"]
    else:
        n, k = dims["channels"], dims["taps"]

    def vector(what: str) -> np.ndarray:
        if vs == STORE_F16:
            return r.array("<f2", n, f"op {i} {what}").astype(np.float32)
        return r.array("<f4", n, f"op {i} {what}")

    if binary:
        rows, words = (k, (n + 63) // 64) if op_type == OP_DWCONV1D else (n, (k + 63) // 64)
        weight = r.array("<u8", rows * words, f"op {i} weights").reshape(rows, words)
        scale = vector("scales")
    elif ws == STORE_I8:
        scales = r.array("<f4", n, f"op {i} weight scales")
        q = r.array("<i1", n * k, f"op {i} weights").reshape(n, k)
        weight, scale = (scales[:, None] * q.astype(np.float32)).astype(np.float32), None
    else:
        dtype = "<f2" if ws == STORE_F16 else "<f4"
        weight, scale = r.array(dtype, n * k, f"op {i} weights").reshape(n, k).astype(np.float32), None
    shift = vector("shifts")
    slope = vector("slopes") if act == ACT_PRELU else None
    if r.pos != end:
        raise UserError(
            f"{r.path}: op {i} body is {body_size} bytes, its fields take {body_size + r.pos - end}"
        )
    return {
        "type": OP_NAMES[op_type],
        "binary": binary,
        "flatten": bool(flags & FLAG_FLATTEN),
        "in_slot": in_slot,
        "out_slot": out_slot,
        "res_slot": None if res == NO_SLOT else res,
        "activation": "prelu" if act == ACT_PRELU else "none",
        "dims": dims,
        "weight": weight,
        "scale": scale,
        "shift": shift,
        "slope": slope,
        "weight_storage": STORE_NAMES[ws],
        "vector_storage": STORE_NAMES[vs],
    }


def write_c_header(bfsm_path: Path | str, h_path: Path | str, symbol: str = "bifsmn_model") -> None:
    """`model.h`: the .bfsm bytes as a C array, for firmware without a file system (bifsmn_load_memory)."""
    data = Path(bfsm_path).read_bytes()
    if not symbol.isidentifier():
        raise UserError(f"C symbol {symbol!r} is not a valid identifier")
    lines = [", ".join(f"0x{b:02x}" for b in data[i : i + 16]) for i in range(0, len(data), 16)]
    guard = f"{symbol.upper()}_H"
    text = (
        f"/* Generated by bifsmn from {Path(bfsm_path).name} ({len(data)} bytes, .bfsm version {FORMAT_VERSION}).\n"
        f"   Load with bifsmn_load_memory({symbol}_data, {symbol}_size, ...). */\n"
        f"#ifndef {guard}\n#define {guard}\n\n#include <stddef.h>\n\n"
        f"static const unsigned char {symbol}_data[{len(data)}] = {{\n    "
        + ",\n    ".join(lines)
        + f"\n}};\nstatic const size_t {symbol}_size = {len(data)};\n\n#endif\n"
    )
    atomic_write_text(Path(h_path), text)

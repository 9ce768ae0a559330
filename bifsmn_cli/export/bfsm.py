"""The `.bfsm` packed model format (csrc/FORMAT.md): records, writer, pure-Python reader and C-header dump.

A model is stored as the op list the C engine runs, already in the engine's layout: tensors are (time,
height, channels) with channels fastest (lowering.py permutes PyTorch's channel-major weights into it, so the
engine never reorders anything at run time). Binary layers keep only their sign bits (packed along the
input-channel axis, LSB first, rows padded to 64 bits with 0) and one affine per output channel; full-precision
layers keep float32 weights and bias. The header carries the front end's settings (logmel only).
"""

from __future__ import annotations

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
FORMAT_VERSION = 1
HEADER = struct.Struct("<4sHHII")  # magic, version, header size, payload size, CRC32 of the payload
MODEL_HEADER = struct.Struct("<11I2fIff")
OP_HEADER = struct.Struct("<6BHI")  # type, flags, in, out, residual, activation, reserved, body size
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
    """One layer record. Arrays are in the engine layout: `weight` float32 (N, K) or uint64 packed rows."""

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

    def body(self) -> bytes:
        parts = [struct.pack(f"<{len(self.dims)}I", *self.dims)]
        if self.binary:
            parts += [self.weight.astype("<u8").tobytes(), _f32(self.scale)]
        else:
            parts.append(_f32(self.weight))
        parts.append(_f32(self.shift))
        if self.slope is not None:
            parts.append(_f32(self.slope))
        return b"".join(parts)

    def pack(self) -> bytes:
        body = self.body()
        flags = (FLAG_BINARY if self.binary else 0) | (FLAG_FLATTEN if self.flatten else 0)
        res = NO_SLOT if self.res_slot is None else self.res_slot
        act = ACT_NONE if self.slope is None else ACT_PRELU
        return OP_HEADER.pack(self.type, flags, self.in_slot, self.out_slot, res, act, 0, len(body)) + body


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
    """Parse a .bfsm file into plain Python/numpy values (the tests' view of the format).

    Returns {"version", "crc32", "binary", "variant", "classes", "blocks", "num_slots", "frontend": {...},
    "ops": [{"type", "binary", "flatten", "in_slot", "out_slot", "res_slot", "activation", "dims": {...},
    "weight", "scale", "shift", "slope"}]}; weights are float32 (N, K) or uint64 (rows, words).
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise UserError(f"{path}: cannot read the model ({exc.strerror})") from None
    if len(data) < HEADER.size or data[:4] != MAGIC:
        raise UserError(f"{path}: not a .bfsm model (bad magic)")
    _, version, header_size, payload_size, crc = HEADER.unpack_from(data)
    if version != FORMAT_VERSION:
        raise UserError(f"{path}: .bfsm format version {version}, this reader knows {FORMAT_VERSION}")
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
    out["ops"] = [_read_op(r, i) for i in range(n_ops)]
    if r.pos != len(payload):
        raise UserError(f"{path}: {len(payload) - r.pos} unread bytes after the last op")
    return out


def _read_op(r: _Reader, i: int) -> dict[str, Any]:
    op_type, flags, in_slot, out_slot, res, act, _, body_size = r.unpack(OP_HEADER.format, f"op {i}")
    if op_type not in OP_DIMS:
        raise UserError(f"{r.path}: op {i} has unknown type {op_type}")
    end = r.pos + body_size
    names = OP_DIMS[op_type]
    dims = dict(zip(names, r.unpack(f"<{len(names)}I", f"op {i}"), strict=True))
    binary = bool(flags & FLAG_BINARY)
    if op_type == OP_CONV2D:
        n, k = dims["c_out"], dims["kh"] * dims["kw"] * dims["c_in"]
    elif op_type == OP_LINEAR:
        n, k = dims["n"], dims["k"]
    else:
        n, k = dims["channels"], dims["taps"]
    if binary:
        rows, words = (k, (n + 63) // 64) if op_type == OP_DWCONV1D else (n, (k + 63) // 64)
        weight = r.array("<u8", rows * words, f"op {i} weights").reshape(rows, words)
        scale = r.array("<f4", n, f"op {i} scales")
    else:
        weight, scale = r.array("<f4", n * k, f"op {i} weights").reshape(n, k), None
    shift = r.array("<f4", n, f"op {i} shifts")
    slope = r.array("<f4", n, f"op {i} slopes") if act == ACT_PRELU else None
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

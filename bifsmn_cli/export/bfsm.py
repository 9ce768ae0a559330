"""The `.bfsm` packed model format (csrc/FORMAT.md): writer, pure-Python reader and C-header dump.

A model is stored as the op list the C engine runs, already in the engine's layout: tensors are (time,
height, channels) with channels fastest, so the exporter permutes PyTorch's channel-major weights once here and
the engine never reorders anything at run time. Binary layers keep only their sign bits (packed along the
input-channel axis, LSB first, rows padded to 64 bits with 0) and one affine per output channel
(binarizer scale and BatchNorm folded); full-precision layers get BatchNorm folded into weights and bias.
A student exported at one width contains only the blocks that width runs.
"""

from __future__ import annotations

import dataclasses
import struct
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

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
PCM_SCALE = 1.0 / 32768.0  # soundfile's int16 -> float conversion, which the Python front end sees


@dataclass
class FrontendSettings:
    """What the C front end needs to reproduce the Python log-mel features."""

    sample_rate: int
    num_samples: int
    n_fft: int
    win_length: int
    hop_length: int
    n_mels: int
    f_min: float
    f_max: float
    normalized: bool
    top_db: float | None
    to_db: bool = True
    pcm_scale: float = PCM_SCALE

    @property
    def n_frames(self) -> int:
        return 1 + self.num_samples // self.hop_length  # centred STFT

    @classmethod
    def from_config(cls, cfg: Any) -> FrontendSettings:
        """From a FrontEndConfig or its dict (frontend.json); UserError for settings the engine cannot run."""
        from bifsmn_cli.audio.wav import CLIP_SAMPLES, SAMPLE_RATE

        d = dataclasses.asdict(cfg) if dataclasses.is_dataclass(cfg) else dict(cfg)
        if d.get("features", "logmel") != "logmel":
            raise UserError(
                f"featurize.features: {d['features']!r} cannot be exported; the C engine computes only 'logmel'"
            )
        rate = int(d.get("sample_rate", SAMPLE_RATE))
        n_fft = int(d.get("n_fft", 2048))
        return cls(
            sample_rate=rate,
            num_samples=int(d.get("num_samples", CLIP_SAMPLES)),
            n_fft=n_fft,
            win_length=int(d.get("win_length") or n_fft),
            hop_length=int(d.get("hop_length", 512)),
            n_mels=int(d.get("n_mels", 32)),
            f_min=float(d.get("f_min", 0.0)),
            f_max=float(d.get("f_max") or rate // 2),
            normalized=bool(d.get("normalized", True)),
            top_db=None if d.get("top_db") is None else float(d["top_db"]),
        )


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
    frontend: FrontendSettings
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
    flags = (
        (FE_NORMALIZED if fe.normalized else 0)
        | (FE_DB if fe.to_db else 0)
        | (FE_TOP_DB if fe.top_db is not None else 0)
    )
    payload = [
        MODEL_HEADER.pack(
            0 if model.binary else 1,
            len(model.classes),
            len(model.ops),
            model.num_slots,
            fe.sample_rate,
            fe.num_samples,
            fe.n_fft,
            fe.win_length,
            fe.hop_length,
            fe.n_mels,
            fe.n_frames,
            fe.f_min,
            fe.f_max,
            flags,
            fe.top_db or 0.0,
            fe.pcm_scale,
        ),
        _string(model.variant),
        *(_string(c) for c in model.classes),
        struct.pack(f"<I{len(model.blocks)}I", len(model.blocks), *model.blocks),
        *(op.pack() for op in model.ops),
    ]
    body = b"".join(payload)
    return HEADER.pack(MAGIC, FORMAT_VERSION, HEADER.size, len(body), zlib.crc32(body)) + body


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


# ---------------------------------------------------------------------------------------------- export


def _np(t: torch.Tensor) -> np.ndarray:
    return t.detach().to(torch.float64).cpu().numpy()


def _bn_affine(bn: nn.Module | None, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Eval-mode BatchNorm as y = s * x + t (identity when bn is None)."""
    if bn is None:
        return np.ones(n), np.zeros(n)
    if not isinstance(bn, nn.BatchNorm1d | nn.BatchNorm2d) or bn.running_mean is None:
        raise UserError(
            f"cannot fold {type(bn).__name__}: only BatchNorm with running statistics is exportable"
        )
    s = 1.0 / np.sqrt(_np(bn.running_var) + bn.eps)
    if bn.weight is not None:
        s = s * _np(bn.weight)
    t = -_np(bn.running_mean) * s + (_np(bn.bias) if bn.bias is not None else 0.0)
    return s, t


def _activation(act: nn.Module, n: int) -> np.ndarray | None:
    """PReLU slopes per output (ReLU is PReLU with slope 0), or None for no activation."""
    if isinstance(act, nn.Identity):
        return None
    if isinstance(act, nn.ReLU):
        return np.zeros(n)
    if isinstance(act, nn.PReLU):
        w = _np(act.weight)
        return np.broadcast_to(w, (n,)).copy() if w.size == 1 else w
    raise UserError(f"activation {type(act).__name__} cannot be exported (ReLU, PReLU or identity)")


def _layer(
    layer: nn.Module,
    parts: tuple[np.ndarray, np.ndarray | None, np.ndarray | None],
    bn: nn.Module | None,
    act: nn.Module,
    op_type: int,
    dims: tuple[int, ...],
    slots: tuple[int, int, int | None],
    flatten: bool = False,
) -> Op:
    """Fold bias, binarizer scale and BN into one record. `parts` = (weight (N, K), signs or None, scale or
    None) already in engine order (depthwise binary signs: (taps, C))."""
    weight, signs, scale = parts
    n = weight.shape[0]
    bias = _np(layer.bias) if layer.bias is not None else np.zeros(n)
    s, t = _bn_affine(bn, n)
    common = dict(in_slot=slots[0], out_slot=slots[1], res_slot=slots[2], flatten=flatten)
    shift = (bias * s + t).astype(np.float32)
    slope = _activation(act, n)
    if signs is None:
        folded = (weight * s[:, None]).astype(np.float32)
        return Op(op_type, dims, False, weight=folded, shift=shift, slope=slope, **common)
    a = (scale * s).astype(np.float32)
    return Op(op_type, dims, True, weight=pack_signs(signs), scale=a, shift=shift, slope=slope, **common)


def _parts(layer: nn.Module) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    """(latent weight, +-1 signs, per-output scale) as the layer computes in inference; signs/scale None for
    a full-precision layer."""
    binarizer = getattr(layer, "binarizer", None)
    if binarizer is None:
        return _np(layer.weight), None, None
    if not binarizer.exportable:
        raise UserError(
            f"binarizer {binarizer.name!r} cannot be exported: the engine runs only sign(x) with sign(w) * scale "
            "(use bifsmn, bnn, bireal, irnet or rad)"
        )
    signs, scale = binarizer.weight_parts(layer.weight)
    return _np(layer.weight), _np(signs), _np(scale)


def _map(parts: tuple[np.ndarray, np.ndarray | None, np.ndarray | None], fn: Any) -> tuple[Any, Any, Any]:
    """Apply one layout change to the weight and the signs alike."""
    w, signs, scale = parts
    return fn(w), None if signs is None else fn(signs), scale


def build_record(
    model: nn.Module, variant: str, classes: Sequence[str], frontend_cfg: Any, binary: bool
) -> ModelRecord:
    """The op list of one variant of a DFSMN (bifsmn_cli.nn.dfsmn), in the engine layout."""
    cfg = model.cfg
    fe = FrontendSettings.from_config(frontend_cfg)
    if (fe.n_mels, fe.n_frames) != (cfg.n_mels, cfg.frames):
        raise UserError(
            f"front end makes {fe.n_mels} mels x {fe.n_frames} frames but the model expects "
            f"{cfg.n_mels} x {cfg.frames}; export with the featurize settings the model was trained on"
        )
    if len(classes) != cfg.num_classes:
        raise UserError(f"classes: {len(classes)} names for a model with {cfg.num_classes} outputs")
    if variant not in model.variant_block_ids:
        raise UserError(f"variant {variant!r} is not one of this model's variants {list(model.variants)}")
    from bifsmn_cli.nn.dfsmn import variant_key

    ch, k = cfg.frontend_channels, cfg.frontend_kernel
    mel1, t1 = (cfg.n_mels + 2 * (k // 2) - k) // 2 + 1, (cfg.frames + 2 * (k // 2) - k) // 2 + 1
    mel2, t2 = cfg.frontend_shape()
    c, d, taps = cfg.backbone_size, cfg.hidden_size, cfg.memory_kernel
    ops = []

    def conv_dims(conv: nn.Conv2d, h: int, w: int) -> tuple[int, ...]:
        return (conv.in_channels, h, w, conv.out_channels, *conv.kernel_size, *conv.stride, *conv.padding)

    def conv_rows(
        w: np.ndarray,
    ) -> np.ndarray:  # (O, I, kh, kw) -> (O, kw * kh * I): time tap, mel tap, channel
        return w.transpose(0, 3, 2, 1).reshape(w.shape[0], -1)

    ops.append(
        _layer(model.conv1, _map(_parts(model.conv1), conv_rows), model.bn1, model.act1, OP_CONV2D,
               conv_dims(model.conv1, cfg.n_mels, cfg.frames), (0, 1, None))
    )  # fmt: skip
    ops.append(
        _layer(model.conv2, _map(_parts(model.conv2), conv_rows), model.bn2, model.act2, OP_CONV2D,
               conv_dims(model.conv2, mel1, t1), (1, 2, None))
    )  # fmt: skip

    def fc1_rows(w: np.ndarray) -> np.ndarray:  # feature c * H + h -> h * C + c
        return w.reshape(w.shape[0], 2 * ch, mel2).transpose(0, 2, 1).reshape(w.shape[0], -1)

    ops.append(
        _layer(model.fc1, _map(_parts(model.fc1), fc1_rows), None, model.act_fc1, OP_LINEAR,
               (2 * ch * mel2, c), (2, 0, None))
    )  # fmt: skip
    key = variant_key(variant)
    blocks = model.variant_block_ids[variant]
    for i in blocks:
        blk = model.blocks[i]
        w, sg, sc = _parts(blk.memory)  # (C, 1, taps); binary signs are stored per tap along the channels
        mem = (w[:, 0, :], None if sg is None else sg[:, 0, :].T, sc)
        mem_dims = (c, taps, cfg.dilation, cfg.memory_left * cfg.dilation)
        ops.append(_layer(blk.memory, mem, blk.bn_mem, blk.act_mem, OP_DWCONV1D, mem_dims, (0, 1, 0)))
        ops.append(
            _layer(blk.expand, _map(_parts(blk.expand), lambda a: a[:, :, 0]), blk.bn_hidden, blk.act_hidden,
                   OP_LINEAR, (c, d), (1, 2, None))
        )  # fmt: skip
        ops.append(
            _layer(blk.project, _map(_parts(blk.project), lambda a: a[:, :, 0]), blk.bn_out[key],
                   blk.act_out[key], OP_LINEAR, (d, c), (2, 0, 1))
        )  # fmt: skip

    def classifier_rows(w: np.ndarray) -> np.ndarray:  # feature c * T + t -> t * C + c
        return w.reshape(w.shape[0], c, t2).transpose(0, 2, 1).reshape(w.shape[0], -1)

    ops.append(
        _layer(model.classifier, _map(_parts(model.classifier), classifier_rows), None, nn.Identity(),
               OP_LINEAR, (c * t2, cfg.num_classes), (0, 1, None), flatten=True)
    )  # fmt: skip
    return ModelRecord(binary, variant if binary else "fp", list(classes), list(blocks), fe, ops)


def _write(record: ModelRecord, path: Path | str) -> dict[str, Any]:
    data = encode(record)
    atomic_write_bytes(Path(path), data)
    return {
        "path": str(path),
        "bytes": len(data),
        "crc32": zlib.crc32(data[HEADER.size :]),
        "ops": len(record.ops),
    }


def export_student(
    model: nn.Module, variant: str, classes: Sequence[str], frontend_cfg: Any, path: Path | str
) -> dict[str, Any]:
    """Write one width of a binary student (DFSMN with a binarizer) as .bfsm; returns {path, bytes, crc32, ops}."""
    if getattr(model, "binarizer_name", None) is None:
        raise UserError("export_student: the model has no binarizer; export a teacher with export_teacher")
    with torch.no_grad():
        return _write(build_record(model, variant, classes, frontend_cfg, binary=True), path)


def export_teacher(
    model: nn.Module, classes: Sequence[str], frontend_cfg: Any, path: Path | str
) -> dict[str, Any]:
    """Write the full-precision teacher (every block, float32, BN folded) as .bfsm: the engine's speed baseline."""
    if getattr(model, "binarizer_name", None) is not None:
        raise UserError("export_teacher: the model is binarized; export it with export_student")
    with torch.no_grad():
        return _write(build_record(model, model.variants[0], classes, frontend_cfg, binary=False), path)

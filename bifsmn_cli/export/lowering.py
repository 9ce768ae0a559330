"""Lowering a PyTorch D-FSMN (bifsmn_cli.nn.dfsmn) to the engine's op list, written as `.bfsm` (bfsm.py).

Each layer becomes one record in the engine layout: binary layers keep their sign bits and one affine per output
channel (binarizer scale and BatchNorm folded); full-precision layers get BatchNorm folded into weights and bias.
A student exported at one width contains only the blocks that width runs.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from bifsmn_cli.audio.config import FrontEndConfig
from bifsmn_cli.errors import UserError
from bifsmn_cli.export.bfsm import OP_CONV2D, OP_DWCONV1D, OP_LINEAR, ModelRecord, Op, pack_signs, write_bfsm
from bifsmn_cli.export.storage import quantize
from bifsmn_cli.nn.dfsmn import variant_key


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
    model: nn.Module, variant: str, classes: Sequence[str], frontend: FrontEndConfig, binary: bool
) -> ModelRecord:
    """The op list of one variant of a DFSMN (bifsmn_cli.nn.dfsmn), in the engine layout."""
    cfg = model.cfg
    frontend.check_engine()
    if (frontend.n_mels, frontend.stft_frames) != (cfg.n_mels, cfg.frames):
        raise UserError(
            f"front end makes {frontend.n_mels} mels x {frontend.stft_frames} frames but the model expects "
            f"{cfg.n_mels} x {cfg.frames}; export with the featurize settings the model was trained on"
        )
    if len(classes) != cfg.num_classes:
        raise UserError(f"classes: {len(classes)} names for a model with {cfg.num_classes} outputs")
    if variant not in model.variant_block_ids:
        raise UserError(f"variant {variant!r} is not one of this model's variants {list(model.variants)}")
    ch, k = cfg.stem_channels, cfg.stem_kernel
    mel1, t1 = (cfg.n_mels + 2 * (k // 2) - k) // 2 + 1, (cfg.frames + 2 * (k // 2) - k) // 2 + 1
    mel2, t2 = cfg.stem_shape()
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
    return ModelRecord(binary, variant if binary else "fp", list(classes), list(blocks), frontend, ops)


def student_record(
    model: nn.Module, variant: str, classes: Sequence[str], frontend: FrontEndConfig
) -> ModelRecord:
    """One width of a binary student (DFSMN with a binarizer) as a float32 record."""
    if getattr(model, "binarizer_name", None) is None:
        raise UserError("export_student: the model has no binarizer; export a teacher with export_teacher")
    with torch.no_grad():
        return build_record(model, variant, classes, frontend, binary=True)


def export_student(
    model: nn.Module,
    variant: str,
    classes: Sequence[str],
    frontend: FrontEndConfig,
    path: Path | str,
    storage: str = "fp32",
) -> dict[str, Any]:
    """Write one width of a binary student as .bfsm, its float arrays in `storage` (bifsmn_cli/export/storage.py);
    returns {path, bytes, crc32, ops}."""
    return write_bfsm(quantize(student_record(model, variant, classes, frontend), storage), path)


def export_teacher(
    model: nn.Module, classes: Sequence[str], frontend: FrontEndConfig, path: Path | str
) -> dict[str, Any]:
    """Write the full-precision teacher (every block, float32, BN folded) as .bfsm: the engine's speed baseline."""
    if getattr(model, "binarizer_name", None) is not None:
        raise UserError("export_teacher: the model is binarized; export it with export_student")
    with torch.no_grad():
        return write_bfsm(build_record(model, model.variants[0], classes, frontend, binary=False), path)

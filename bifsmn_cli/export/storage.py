"""How an exported student stores its float arrays (`export.fp_storage`), chosen by what it changes on validation.

A binary student's `.bfsm` is its sign bits plus the full-precision parts: the first conv and the classifier
(weights and bias) and every binary op's per-output affine and PReLU slopes. At float32 those parts are more than
half the 1x file. `.bfsm` version 2 stores each op's weights (full-precision ops) in float32, binary16, or int8
with a float32 scale per output channel (symmetric, the channel's largest magnitude at 127), and its per-output
vectors in float32 or binary16 (bfsm.quantize_op). The modes:

- `fp32`: every array float32, as version 1;
- `fp16`: every array binary16;
- `int8`: the full-precision weights int8, every vector binary16;
- `auto` (the default): array group by array group, the largest saving first (int8 before fp16 for weights),
  each rounding kept only while the top-1 decisions on the validation clips still agree with the float32 file's
  on at least `export.fp_storage_agreement` of them (default 1: no decision changes). A binary network can be
  sensitive to a few of its arrays (pre-sign values near 0: the first conv on un-normalised dB features, the
  affines whose outputs add to a residual) and not at all to others; the per-op storage bytes of version 2
  record the mix.

What a storage changes is measured, never assumed: every candidate file runs in the reference executor
(reference.RecordNet, the format's semantics in PyTorch, equal to the engine to rounding) on the validation
clips. The engine dequantises at load (weights are re-laid there anyway), so storage changes nothing in speed.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import torch

from bifsmn_cli.export.bfsm import STORE_NAMES, ModelRecord, encode, parse, quantize_op
from bifsmn_cli.export.reference import RecordNet

STORAGES = ("fp32", "fp16", "int8")
CHOICES = ("auto", *STORAGES)
UNIFORM = {"fp32": ("fp32", "fp32"), "fp16": ("fp16", "fp16"), "int8": ("int8", "fp16")}  # (weights, vectors)
BATCH = 256


def quantize(record: ModelRecord, storage: str) -> ModelRecord:
    """`record` (float32) with every op's float arrays in the uniform `storage`."""
    weights, vectors = UNIFORM[storage]
    return dataclasses.replace(record, ops=[quantize_op(op, weights, vectors) for op in record.ops])


def logits(data: bytes, features: np.ndarray) -> np.ndarray:
    """The reference executor's logits of a .bfsm (bytes) on features (clips, mels, frames)."""
    net = RecordNet(parse(data))
    with torch.no_grad():
        return np.concatenate(
            [net(torch.from_numpy(np.array(features[i : i + BATCH], dtype=np.float32))).numpy()
             for i in range(0, len(features), BATCH)]
        )  # fmt: skip


def _figures(data: bytes, features: np.ndarray, reference: np.ndarray) -> dict[str, Any]:
    got = logits(data, features)
    changed = int((got.argmax(1) != reference.argmax(1)).sum())
    scale = np.maximum(np.abs(reference).max(1), 1e-12)
    return {
        "bytes": len(data),
        "top1_agreement": 1.0 - changed / len(features),
        "changed_clips": changed,
        "max_rel_logit_change": float((np.abs(got - reference).max(1) / scale).max()),
    }


def summary(record: ModelRecord) -> dict[str, dict[str, int]]:
    """How many ops store their weights (full-precision ops) and their vectors in each storage."""
    weights = [STORE_NAMES[op.weight_storage] for op in record.ops if not op.binary]
    vectors = [STORE_NAMES[op.vector_storage] for op in record.ops]
    return {
        "weights": {s: weights.count(s) for s in STORAGES if s in weights},
        "vectors": {s: vectors.count(s) for s in STORAGES if s in vectors},
    }


def auto(record: ModelRecord, features: np.ndarray, min_agreement: float) -> ModelRecord:
    """The greedy per-group choice of `auto` (module docstring) for a float32 `record`."""
    reference = logits(encode(record), features)
    chosen = [["fp32", "fp32"] for _ in record.ops]  # (weights, vectors) per op
    candidates = []  # (bytes saved, op, group, storage)
    for i, op in enumerate(record.ops):
        vector_values = sum(v.size for v in (op.scale, op.shift, op.slope) if v is not None)
        candidates.append((2 * vector_values, i, 1, "fp16"))
        if not op.binary:
            candidates += [(3 * op.weight.size, i, 0, "int8"), (2 * op.weight.size, i, 0, "fp16")]
    current = record
    for _, i, group, storage in sorted(candidates, key=lambda c: -c[0]):
        if group == 0 and chosen[i][0] != "fp32":
            continue  # the weights already took the smaller int8
        trial = [list(c) for c in chosen]
        trial[i][group] = storage
        ops = list(current.ops)
        ops[i] = quantize_op(record.ops[i], *trial[i])
        candidate = dataclasses.replace(record, ops=ops)
        if _figures(encode(candidate), features, reference)["top1_agreement"] >= min_agreement:
            chosen, current = trial, candidate
    return current


def measure(
    record: ModelRecord, features: np.ndarray, requested: str, min_agreement: float
) -> tuple[ModelRecord, dict[str, Any]]:
    """The record to write for `requested` (a mode above) and what was measured on `features`: each uniform
    storage's bytes and agreement with float32 (top-1, changed clips, the largest logit change relative to the
    clip's largest float32 logit), and auto's, with the mix it chose."""
    reference = logits(encode(record), features)
    options = {s: _figures(encode(quantize(record, s)), features, reference) for s in STORAGES}
    chosen = auto(record, features, min_agreement) if requested == "auto" else quantize(record, requested)
    figures = options[requested] if requested != "auto" else _figures(encode(chosen), features, reference)
    return chosen, {"options": options, "chosen": {**figures, **summary(chosen)}}


def label(record: ModelRecord) -> str:
    """A record's storage in one word: fp32, fp16 or int8 when uniform, else "mixed"."""
    for s in STORAGES:
        weights, vectors = UNIFORM[s]
        if all(
            (op.binary or STORE_NAMES[op.weight_storage] == weights)
            and STORE_NAMES[op.vector_storage] == vectors
            for op in record.ops
        ):
            return s
    return "mixed"

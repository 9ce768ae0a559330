"""Packed dataset arrays on disk: what `featurize` writes and every training or evaluation stage reads.

Per split: `waves_<split>.npy` int16 (N, 16000), `labels_<split>.npy` int64 (N,), `features_<split>.npy` float32
(N, n_features, frames) and `names_<split>.json` (clip paths, `_silence_/<i>` for generated silence); plus
`classes.json`, the background noises (`noises.npy` float32 (K, longest), zero-padded, with `noises.json`
giving each noise's name and length) and `frontend.json`, the front-end settings the features were computed
with (what training applies to augmented waves, checked against the arrays). Plain `.npy` files are
memory-mapped, so a 3 GB split costs no RAM until rows are touched, and any tool (numpy, C) can read them.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bifsmn_cli.audio.config import FrontEndConfig
from bifsmn_cli.audio.wav import INT16_SCALE
from bifsmn_cli.config import dataclass_from_section
from bifsmn_cli.errors import UserError
from bifsmn_cli.fsutil import atomic_path, atomic_write_json, describe_os_error

CLASSES_FILE = "classes.json"
NOISES_FILE = "noises.npy"
NOISES_INDEX = "noises.json"
FRONTEND_FILE = "frontend.json"
_SPLIT_FILES = ("waves_{}.npy", "labels_{}.npy", "features_{}.npy", "names_{}.json")
# Every file of the layout (split files as patterns), for the featurize stage's declared outputs.
FILES = (CLASSES_FILE, NOISES_FILE, NOISES_INDEX, FRONTEND_FILE, *(f.format("*") for f in _SPLIT_FILES))
_MAGIC = b"\x93NUMPY\x01\x00"
_LOGMEL = (
    "power = |STFT|^2 (periodic Hann window of win_length, center=True with reflect padding), divided by "
    "sum(window^2) if normalized; mel = power x HTK-scale triangular filters (no filter norm); "
    "dB = 10*log10(max(mel, 1e-10)), floored per clip at its max - top_db when top_db is set"
)


def split_paths(directory: Path, split: str) -> dict[str, Path]:
    keys = ("waves", "labels", "features", "names")
    return {key: Path(directory) / name.format(split) for key, name in zip(keys, _SPLIT_FILES, strict=True)}


def _header(dtype: np.dtype, shape: tuple[int, ...], size: int | None = None) -> bytes:
    """A version 1.0 `.npy` header, space-padded to `size` bytes (default: the smallest multiple of 64)."""
    text = repr({"descr": np.lib.format.dtype_to_descr(dtype), "fortran_order": False, "shape": shape})
    body = text.encode("latin1")
    need = len(_MAGIC) + 2 + len(body) + 1
    size = size or -(-need // 64) * 64
    if need > size:
        raise ValueError("header does not fit")
    body = body + b" " * (size - need) + b"\n"
    return _MAGIC + (len(body)).to_bytes(2, "little") + body


class NpyAppender:
    """Write an `.npy` array row block by row block when the final row count is only known at the end.

    The header is reserved for `max_rows` and rewritten with the true count on `close()` (a smaller count never
    needs more digits); the file is written beside its target and renamed into place, so readers never see a
    partial array. Used as a context manager; an exception discards the file.
    """

    def __init__(self, path: Path, row_shape: tuple[int, ...], dtype: np.dtype | type, max_rows: int) -> None:
        self.path, self.row_shape, self.dtype = Path(path), tuple(row_shape), np.dtype(dtype)
        self.rows = 0
        self._max_rows = max_rows
        self._header_size = len(_header(self.dtype, (max_rows, *self.row_shape)))
        self._atomic = atomic_path(self.path)
        self._tmp = self._atomic.__enter__()
        try:
            self._fh = open(self._tmp, "wb")
            self._fh.write(b"\0" * self._header_size)
        except OSError as exc:
            raise describe_os_error(exc, self.path) from exc

    def append(self, rows: np.ndarray) -> None:
        rows = np.ascontiguousarray(rows, dtype=self.dtype)
        if rows.shape[1:] != self.row_shape or self.rows + len(rows) > self._max_rows:
            raise ValueError(f"rows of shape {rows.shape} do not fit {self.path.name}")
        try:
            self._fh.write(rows.tobytes())
        except OSError as exc:
            raise describe_os_error(exc, self.path) from exc
        self.rows += len(rows)

    def __enter__(self) -> NpyAppender:
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        try:
            try:
                if exc_type is None:
                    self._fh.seek(0)
                    self._fh.write(_header(self.dtype, (self.rows, *self.row_shape), self._header_size))
                    self._fh.flush()
                    os.fsync(self._fh.fileno())
            finally:
                self._fh.close()
        except OSError as err:  # buffered rows meet a full disk only here: discard the file, never rename it
            failure = describe_os_error(err, self.path)
            self._atomic.__exit__(UserError, failure, None)
            raise failure from None
        except BaseException as err:
            self._atomic.__exit__(type(err), err, err.__traceback__)
            raise
        self._atomic.__exit__(exc_type, exc, tb)


@dataclass
class PackedSplit:
    """One split as stored: memory-mapped arrays plus the clip names."""

    waves: np.ndarray  # (N, 16000) int16
    labels: np.ndarray  # (N,) int64
    features: np.ndarray  # (N, n_features, frames) float32
    names: list[str]

    def __len__(self) -> int:
        return len(self.labels)


def save_split(
    directory: Path,
    split: str,
    waves: np.ndarray,
    labels: np.ndarray,
    features: np.ndarray,
    names: list[str],
) -> None:
    """Write one split from in-memory arrays (featurize streams through NpyAppender instead)."""
    if not len(waves) == len(labels) == len(features) == len(names):
        raise ValueError("waves, labels, features and names must have the same length")
    paths = split_paths(directory, split)
    for key, array, dtype in (
        ("waves", waves, np.int16),
        ("labels", labels, np.int64),
        ("features", features, np.float32),
    ):
        array = np.asarray(array, dtype=dtype)
        with NpyAppender(paths[key], array.shape[1:], dtype, len(array)) as out:
            out.append(array)
    atomic_write_json(paths["names"], list(names))


def _load(path: Path, mmap: bool) -> np.ndarray:
    try:
        return np.load(path, mmap_mode="r" if mmap else None)
    except FileNotFoundError:
        raise UserError(f"{path}: missing; rerun `bifsmn featurize`") from None
    except (ValueError, OSError) as exc:
        raise UserError(f"{path}: unreadable array ({exc}); rerun `bifsmn featurize --force`") from None


def load_split(directory: Path, split: str, mmap: bool = True) -> PackedSplit:
    """Open one split (`train`, `validation` or `testing`); arrays are memory-mapped unless `mmap=False`."""
    paths = split_paths(directory, split)
    try:
        names = json.loads(paths["names"].read_text())
    except FileNotFoundError:
        raise UserError(f"{paths['names']}: missing; rerun `bifsmn featurize`") from None
    return PackedSplit(
        _load(paths["waves"], mmap), _load(paths["labels"], mmap), _load(paths["features"], mmap), names
    )


def save_classes(directory: Path, classes: list[str]) -> None:
    atomic_write_json(Path(directory) / CLASSES_FILE, list(classes))


def load_classes(directory: Path) -> list[str]:
    path = Path(directory) / CLASSES_FILE
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise UserError(f"{path}: missing; rerun `bifsmn featurize`") from None


def save_noises(directory: Path, noises: dict[str, np.ndarray]) -> None:
    """All background noises in one float32 array (K, longest), zero-padded; names and lengths beside it."""
    longest = max((len(w) for w in noises.values()), default=0)
    with NpyAppender(Path(directory) / NOISES_FILE, (longest,), np.float32, len(noises)) as out:
        for wave in noises.values():
            out.append(np.pad(np.asarray(wave, np.float32), (0, longest - len(wave)))[None])
    atomic_write_json(
        Path(directory) / NOISES_INDEX, [{"name": n, "length": len(w)} for n, w in noises.items()]
    )


def load_noises(directory: Path) -> dict[str, np.ndarray]:
    """name -> float32 waveform (memory-mapped views, each cut to its true length)."""
    index = json.loads((Path(directory) / NOISES_INDEX).read_text())
    data = _load(Path(directory) / NOISES_FILE, mmap=True)
    return {entry["name"]: data[i, : entry["length"]] for i, entry in enumerate(index)}


def save_frontend(directory: Path, config: FrontEndConfig, feature_shape: tuple[int, int]) -> None:
    """frontend.json: the settings, the (n_features, frames) they make, and the recipe in words for C readers."""
    atomic_write_json(
        Path(directory) / FRONTEND_FILE,
        {
            **config.to_dict(),
            "feature_shape": list(feature_shape),
            "waveform_scale": f"float = int16 / {INT16_SCALE:g}",
            "logmel": _LOGMEL,
        },
    )


def load_frontend(directory: Path) -> FrontEndConfig:
    """The front-end settings featurize computed the stored features with."""
    path = Path(directory) / FRONTEND_FILE
    try:
        return dataclass_from_section(FrontEndConfig, json.loads(path.read_text()))
    except FileNotFoundError:
        raise UserError(f"{path}: missing; rerun `bifsmn featurize`") from None
    except (ValueError, TypeError) as exc:
        raise UserError(
            f"{path}: unreadable front-end settings ({exc}); rerun `bifsmn featurize --force`"
        ) from None

"""The bad-input catalogue: every way a user can hand the toolkit a wrong file, key or value ends with exit code 1
and one line naming the offending file, key or value, never a traceback.

Each case builds its input in a fresh directory and returns the outcome of the command that meets it (the `bifsmn`
CLI in-process through its real entry point, the `bifsmn-infer` tool, or the Python binding's `Engine.load`, whose
UserError is reported as exit 1 with its message) plus the fragments the message must contain. Tiny artifacts (a
featurized corpus, a one-epoch teacher, a packed model, the C build of tests/test_engine_parity.py) are made once.
A second test pins down the inputs that are *fixed* rather than refused: other sample rates, short and long clips.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import json
import os
import shutil
import struct
import subprocess
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from unittest import mock

import numpy as np
import pytest
import soundfile as sf
import torch
import yaml
from helpers import (
    BUILD_DIR,
    TINY_CLASSES,
    FileServer,
    closed_port_url,
    invoke_cli,
    make_tar,
    sha,
    tiny_student,
    write_corpus,
)

from bifsmn_cli.audio.config import FrontEndConfig
from bifsmn_cli.data.packed import NpyAppender
from bifsmn_cli.engine.binding import Engine, Library
from bifsmn_cli.engine.build import build_library
from bifsmn_cli.errors import UserError
from bifsmn_cli.export.lowering import export_student
from bifsmn_cli.nn.config import ModelConfig
from bifsmn_cli.nn.dfsmn import DFSMN
from bifsmn_cli.nn.model_file import save_model
from stages.pipeline import registry, runner, schema

Outcome = tuple[subprocess.CompletedProcess, list[str]]
TINY_MODEL = {"num_blocks": 4, "backbone_size": 16, "hidden_size": 16, "stem_channels": 2}
TONE = 0.3 * np.sin(2 * np.pi * 440 * np.arange(16000) / 16000)


def _deep_merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in extra.items():
        out[key] = _deep_merge(out[key], value) if isinstance(value, dict) and key in out else value
    return out


class World:
    """The shared inputs, each built on first use."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def pipeline(self, tmp: Path, corpus: Path | None = None, **sections: Any) -> Path:
        """A pipeline file in `tmp` (workspace `tmp/ws`) on a folder corpus, task words [yes, no]."""
        doc = {
            "name": "bad",
            "workspace": str(tmp / "ws"),
            "download": {"source": "folder", "path": str(corpus or self.corpus)},
            "featurize": {"task": "words", "words": ["yes", "no"]},
            "model": TINY_MODEL,
            "train_teacher": {"epochs": 1, "batch_size": 8},
            "distill": {"epochs": 1, "batch_size": 8},
        }
        path = tmp / "p.yaml"
        path.write_text(yaml.safe_dump(_deep_merge(doc, sections)))
        return path

    @functools.cached_property
    def corpus(self) -> Path:
        root = self.root / "corpus"
        write_corpus(
            root, words=("yes", "no", "up"), speakers=("0000aaaa", "1111bbbb", "2222cccc"), noises=("w",)
        )
        # explicit lists: with so few speakers the hash rule could leave a split empty (a warning, not an error)
        (root / "validation_list.txt").write_text("yes/1111bbbb_nohash_0.wav\nno/1111bbbb_nohash_0.wav\n")
        (root / "testing_list.txt").write_text("yes/2222cccc_nohash_0.wav\nno/2222cccc_nohash_0.wav\n")
        return root

    def corpus_copy(self, tmp: Path) -> Path:
        return Path(shutil.copytree(self.corpus, tmp / "corpus"))

    @functools.cached_property
    def trained(self) -> Path:
        """A workspace with download, featurize and a one-epoch tiny teacher (4 classes)."""
        config = self.pipeline(self.root)
        for stage in ("download", "featurize", "train-teacher"):
            result = invoke_cli("-q", stage, "-c", str(config))
            assert result.returncode == 0, result.stderr
        return self.root / "ws"

    def trained_copy(self, tmp: Path) -> Path:
        """A private copy of `trained` and its pipeline file."""
        shutil.copytree(self.trained, tmp / "ws", symlinks=True)
        return self.pipeline(tmp)

    @functools.cached_property
    def lib(self) -> Library:
        return Library(build_library(BUILD_DIR))

    @property
    def infer_tool(self) -> Path:
        self.lib  # noqa: B018 - builds the tool along with the library
        return BUILD_DIR / "bifsmn-infer"

    @functools.cached_property
    def bfsm(self) -> bytes:
        path = self.root / "good.bfsm"
        export_student(tiny_student(), "1x", TINY_CLASSES, FrontEndConfig(), path)
        return path.read_bytes()

    @functools.cached_property
    def server(self) -> FileServer:
        return FileServer()


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Iterator[World]:
    w = World(tmp_path_factory.mktemp("bad_inputs"))
    yield w
    if "server" in w.__dict__:
        w.server.close()


CASES: dict[str, Callable[[World, Path], Outcome]] = {}


def case(fn: Callable[[World, Path], Outcome]) -> Callable[[World, Path], Outcome]:
    CASES[fn.__name__] = fn
    return fn


def _status(config: Path, *overrides: str) -> subprocess.CompletedProcess:
    return invoke_cli("status", "-c", str(config), *(f"--set={o}" for o in overrides))


def _no_manifest(tmp: Path, stage: str) -> None:
    assert not (tmp / "ws" / stage / "manifest.json").exists(), f"{stage} left a manifest behind"


# ---------------------------------------------------------------------------------------- pipeline files


@case
def yaml_syntax_error(w: World, tmp: Path) -> Outcome:
    path = tmp / "p.yaml"
    path.write_text("name: t\nworkspace: ws\nfeaturize: {n_mels: [32, 40\n")
    return _status(path), [f"{path}:", "YAML syntax error"]


@case
def yaml_not_a_mapping(w: World, tmp: Path) -> Outcome:
    path = tmp / "p.yaml"
    path.write_text("- download\n- featurize\n")
    return _status(path), [str(path), "expected a mapping at the top level, got list"]


@case
def unknown_section(w: World, tmp: Path) -> Outcome:
    path = w.pipeline(tmp, trian_teacher={"epochs": 3})
    return _status(path), ["trian_teacher: unknown key in", str(path)]


@case
def unknown_key(w: World, tmp: Path) -> Outcome:
    return _status(w.pipeline(tmp, featurize={"n_mel": 40})), ["featurize.n_mel: unknown key", "n_mels"]


@case
def wrong_type_integer(w: World, tmp: Path) -> Outcome:
    config = w.pipeline(tmp, featurize={"n_mels": "forty"})
    return _status(config), ["featurize.n_mels: expected", 'got "forty"']


@case
def wrong_type_boolean(w: World, tmp: Path) -> Outcome:
    return _status(w.pipeline(tmp, featurize={"strict": "yes"})), [
        'featurize.strict: expected a boolean, got "yes"'
    ]


@case
def wrong_type_list(w: World, tmp: Path) -> Outcome:
    config = w.pipeline(tmp, distill={"variants": "1x"})
    return _status(config), ['distill.variants: expected a list of strings, got "1x"']


@case
def negative_batch_size(w: World, tmp: Path) -> Outcome:
    return _status(w.pipeline(tmp), "train_teacher.batch_size=-8"), [
        "train_teacher.batch_size: expected",
        "got -8",
    ]


@case
def zero_epochs(w: World, tmp: Path) -> Outcome:
    return _status(w.pipeline(tmp), "distill.epochs=0"), [
        "distill.epochs: expected a positive integer, got 0"
    ]


@case
def zero_model_width(w: World, tmp: Path) -> Outcome:
    return _status(w.pipeline(tmp), "model.backbone_size=0"), ["model.backbone_size: expected", "got 0"]


@case
def negative_learning_rate(w: World, tmp: Path) -> Outcome:
    return _status(w.pipeline(tmp), "train_teacher.lr=-0.1"), ["train_teacher.lr: expected", "got -0.1"]


@case
def nan_learning_rate(w: World, tmp: Path) -> Outcome:
    return _status(w.pipeline(tmp), "train_teacher.lr=.nan"), ["train_teacher.lr: expected", "got nan"]


@case
def value_not_a_choice(w: World, tmp: Path) -> Outcome:
    return _status(w.pipeline(tmp), "featurize.task=13"), [
        "featurize.task: expected one of 12, 35, words, got"
    ]


@case
def negative_seed(w: World, tmp: Path) -> Outcome:
    return _status(w.pipeline(tmp, seed=-1)), ["seed: expected a non-negative integer, got -1"]


@case
def missing_workspace_key(w: World, tmp: Path) -> Outcome:
    path = tmp / "p.yaml"
    path.write_text("name: t\n")
    return _status(path), [f"workspace: missing in {path}"]


@case
def malformed_set_option(w: World, tmp: Path) -> Outcome:
    return invoke_cli("status", "-c", str(w.pipeline(tmp)), "--set", "featurize.n_mels"), [
        "--set featurize.n_mels: expected section.key=value"
    ]


@case
def pipeline_file_missing(w: World, tmp: Path) -> Outcome:
    return _status(tmp / "nope.yaml"), [f"{tmp / 'nope.yaml'}: pipeline file not found"]


# ---------------------------------------------------------------------------------------- workspace and stages


@case
def workspace_not_writable(w: World, tmp: Path) -> Outcome:
    (tmp / "file.txt").write_text("a regular file, not a folder")
    config = w.pipeline(tmp, workspace=str(tmp / "file.txt" / "ws"))
    return invoke_cli("-q", "download", "-c", str(config)), [
        f"workspace {tmp / 'file.txt' / 'ws'}: cannot create it"
    ]


@case
def missing_upstream_artifact(w: World, tmp: Path) -> Outcome:
    result = invoke_cli("-q", "train-teacher", "-c", str(w.pipeline(tmp)))
    return result, [
        f"missing artifact {tmp / 'ws' / 'featurize'} (needed by train-teacher)",
        "bifsmn featurize -c",
    ]


@case
def resume_without_state(w: World, tmp: Path) -> Outcome:
    result = invoke_cli("-q", "download", "--resume", "-c", str(w.pipeline(tmp)))
    return result, [f"{tmp / 'ws' / 'download' / 'state'}: nothing to resume", "run without --resume"]


class _NoSpace:
    """A writable file whose every write fails as on a full disk."""

    def __init__(self, fh: Any) -> None:
        self._fh = fh

    def write(self, data: bytes) -> int:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), self._fh.name)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._fh, name)

    def __enter__(self) -> _NoSpace:
        return self

    def __exit__(self, *exc: object) -> None:
        self._fh.close()


@case
def disk_full_simulated(w: World, tmp: Path) -> Outcome:
    """Every write under the featurize directory fails with ENOSPC (no root or special filesystem needed)."""
    config = w.pipeline(tmp)
    assert invoke_cli("-q", "download", "-c", str(config)).returncode == 0
    real_open, target = open, str(tmp / "ws" / "featurize")

    def full_open(file: Any, mode: str = "r", *args: Any, **kwargs: Any) -> Any:
        fh = real_open(file, mode, *args, **kwargs)
        writing = any(c in mode for c in "wax+")
        return _NoSpace(fh) if writing and str(file).startswith(target) else fh

    with mock.patch("builtins.open", full_open):
        result = invoke_cli("-q", "featurize", "-c", str(config))
    _no_manifest(tmp, "featurize")
    return result, [f"{target}/", "disk full while writing"]


@case
def disk_full_raw_os_error(w: World, tmp: Path) -> Outcome:
    """A library that meets a full disk on its own raises a bare OSError: the runner still makes it exit 1."""
    config = w.pipeline(tmp)
    assert invoke_cli("-q", "download", "-c", str(config)).returncode == 0
    noises = tmp / "ws" / "featurize" / "noises.npy"
    full = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(noises))
    with mock.patch("stages.featurize.save_noises", side_effect=full):
        result = invoke_cli("-q", "featurize", "-c", str(config))
    _no_manifest(tmp, "featurize")
    return result, [f"{noises}: disk full while writing"]


@contextlib.contextmanager
def _tiny_tmpfs(mount: Path, size: str) -> Iterator[None]:
    mount.mkdir()
    if (
        os.geteuid() != 0
        or subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mount)], capture_output=True
        ).returncode
    ):
        pytest.skip("mounting a small tmpfs needs root and CAP_SYS_ADMIN")
    try:
        yield
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=True)


@case
def disk_full_real(w: World, tmp: Path) -> Outcome:
    """A real full file system: the workspace on a 160 KiB tmpfs (root only; skipped otherwise)."""
    small = tmp / "small"
    with _tiny_tmpfs(small, "160k"):
        config = w.pipeline(tmp, workspace=str(small / "ws"))
        assert invoke_cli("-q", "download", "-c", str(config)).returncode == 0
        result = invoke_cli("-q", "featurize", "-c", str(config))
        assert not (small / "ws" / "featurize" / "manifest.json").exists()
        assert not [p for p in (small / "ws" / "featurize").iterdir() if p.name.endswith(".npy")]
    return result, [f"{small / 'ws' / 'featurize'}/", "disk full while writing"]


# ---------------------------------------------------------------------------------------- clips (strict featurize)


def _bad_clip(
    write: Callable[[Path], None], reason: str, folder: str = "yes"
) -> Callable[[World, Path], Outcome]:
    def run(w: World, tmp: Path) -> Outcome:
        corpus = w.corpus_copy(tmp)
        bad = corpus / folder / ("badclip0_nohash_0.wav" if folder == "yes" else "bad.wav")
        write(bad)
        config = w.pipeline(tmp, corpus, featurize={"strict": True})
        assert invoke_cli("-q", "download", "-c", str(config)).returncode == 0
        result = invoke_cli("-q", "featurize", "-c", str(config))
        _no_manifest(tmp, "featurize")
        return result, [f"{bad}: {reason}", "featurize.strict: false"]

    return run


def _float_wav(value: float) -> Callable[[Path], None]:
    return lambda p: sf.write(p, np.where(np.arange(16000) < 8000, TONE, value), 16000, subtype="FLOAT")


def _truncated(p: Path) -> None:
    sf.write(p, TONE, 16000, subtype="PCM_16")
    p.write_bytes(p.read_bytes()[:30])  # cut inside the fmt chunk


CASES["clip_empty"] = _bad_clip(lambda p: sf.write(p, np.zeros(0), 16000), "empty (no samples)")
CASES["clip_truncated"] = _bad_clip(_truncated, "cannot decode")
CASES["clip_not_wav"] = _bad_clip(lambda p: p.write_bytes(b"not audio at all " * 64), "cannot decode")
CASES["clip_stereo"] = _bad_clip(
    lambda p: sf.write(p, np.stack([TONE, TONE], axis=1), 16000),
    "2 channels (expected mono; set featurize.downmix",
)
CASES["clip_nan_samples"] = _bad_clip(_float_wav(np.nan), "contains NaN or infinite samples")
CASES["clip_inf_samples"] = _bad_clip(_float_wav(np.inf), "contains NaN or infinite samples")
CASES["noise_nan_samples"] = _bad_clip(
    _float_wav(np.nan), "contains NaN or infinite samples", "_background_noise_"
)


# ---------------------------------------------------------------------------------------- corpus and task


def _featurize(
    w: World, tmp: Path, corpus: Path | None = None, **sections: Any
) -> subprocess.CompletedProcess:
    config = w.pipeline(tmp, corpus, **sections)
    assert invoke_cli("-q", "download", "-c", str(config)).returncode == 0
    result = invoke_cli("-q", "featurize", "-c", str(config))
    _no_manifest(tmp, "featurize")
    return result


@case
def unknown_word_in_words(w: World, tmp: Path) -> Outcome:
    result = _featurize(w, tmp, featurize={"words": ["yes", "maybe"]})
    return result, ["featurize.words: 'maybe' is not a word of the corpus (words: no, up, yes)"]


@case
def words_with_task_12(w: World, tmp: Path) -> Outcome:
    return _featurize(w, tmp, featurize={"task": "12"}), ["featurize.words: only used with task: words"]


@case
def split_list_names_a_missing_file(w: World, tmp: Path) -> Outcome:
    corpus = w.corpus_copy(tmp)
    (corpus / "validation_list.txt").write_text("yes/0000aaaa_nohash_0.wav\nyes/deadbeef_nohash_0.wav\n")
    result = _featurize(w, tmp, corpus)
    return result, [
        f"{corpus / 'validation_list.txt'}: names yes/deadbeef_nohash_0.wav, which is not in the corpus"
    ]


@case
def corpus_folder_missing(w: World, tmp: Path) -> Outcome:
    result = invoke_cli("-q", "download", "-c", str(w.pipeline(tmp, tmp / "nowhere")))
    return result, [f"download.path: {tmp / 'nowhere'}", "is not a folder"]


@case
def corpus_folder_without_clips(w: World, tmp: Path) -> Outcome:
    (tmp / "empty" / "yes").mkdir(parents=True)
    result = invoke_cli("-q", "download", "-c", str(w.pipeline(tmp, tmp / "empty")))
    return result, [f"{tmp / 'empty'}: no <word>/<clip>.wav or .flac files found"]


@case
def synthetic_word_in_both_roles(w: World, tmp: Path) -> Outcome:
    config = w.pipeline(
        tmp, download={"source": "synthetic", "keywords": ["yes", "no"], "unknown_words": ["cat", "no"]}
    )
    return invoke_cli("-q", "download", "-c", str(config)), [
        "download.unknown_words: 'no' is also in download.keywords"
    ]


# ---------------------------------------------------------------------------------------- model files


def _distill_with_teacher(write: Callable[[Path], None]) -> Callable[[World, Path], Outcome]:
    def run(w: World, tmp: Path) -> Outcome:
        config = w.trained_copy(tmp)
        teacher = tmp / "ws" / "train-teacher" / "teacher.pt"
        write(teacher)
        result = invoke_cli("-q", "distill", "-c", str(config))
        _no_manifest(tmp, "distill")
        return result, [f"{teacher}: "]

    return run


def _teacher_of(num_classes: int = 4, **model: int) -> Callable[[Path], None]:
    cfg = ModelConfig(num_classes=num_classes, **{**TINY_MODEL, **model})
    return lambda p: save_model(p, DFSMN(cfg), [f"c{i}" for i in range(num_classes)], FrontEndConfig())


def _declares_another_width(p: Path) -> None:
    blob = torch.load(p, weights_only=False)
    blob["model_config"]["backbone_size"] = 24  # the weights stay those of width 16
    torch.save(blob, p)


MODEL_CASES = {
    "teacher_corrupt": (lambda p: p.write_bytes(os.urandom(2000)), "corrupt or unreadable model file"),
    "teacher_not_a_model_file": (lambda p: torch.save({"w": torch.ones(3)}, p), "not a bifsmn model file"),
    "teacher_weights_do_not_fit": (
        _declares_another_width,
        "weights do not fit the architecture it declares",
    ),
    "teacher_other_architecture": (
        _teacher_of(backbone_size=24),
        "the teacher's backbone width 24 differs from the student's 16",
    ),
    "teacher_wrong_class_count": (_teacher_of(num_classes=7), "model has 7 classes but the data has 4"),
}
for _name, (_write, _reason) in MODEL_CASES.items():

    def _model_case(w: World, tmp: Path, write=_write, reason=_reason) -> Outcome:
        result, fragments = _distill_with_teacher(write)(w, tmp)
        return result, [*fragments, reason]

    CASES[_name] = _model_case


@case
def training_checkpoint_corrupt(w: World, tmp: Path) -> Outcome:
    """A damaged `state/checkpoint.pt` from this very config: resuming must say so, not crash."""
    config = w.trained_copy(tmp)
    spec = registry.specs()["train-teacher"]
    state = tmp / "ws" / "train-teacher" / "state"
    state.mkdir(parents=True)
    (state / ".config_hash").write_text(
        runner.config_hash(spec, runner.stage_config(spec, schema.load(config)))
    )
    (state / "checkpoint.pt").write_bytes(b"PK\x03\x04" + os.urandom(500))
    result = invoke_cli("-q", "train-teacher", "--resume", "-c", str(config))
    return result, [f"{state / 'checkpoint.pt'}: corrupt or unreadable checkpoint", "--force"]


@case
def training_key_names_its_section(w: World, tmp: Path) -> Outcome:
    """A training error names the key as the pipeline file spells it (`distill.`, not the library's own name)."""
    config = w.trained_copy(tmp)
    result = invoke_cli("-q", "distill", "-c", str(config), "--set", "distill.variant_weights=[1.0]")
    _no_manifest(tmp, "distill")
    return result, ["distill.variant_weights: 1 weights for 3 variants"]


@case
def frontend_settings_disagree_with_features(w: World, tmp: Path) -> Outcome:
    """Training applies the front end featurize recorded (frontend.json) to augmented waves: settings that make
    other features than the stored ones stop before training, naming both files."""
    config = w.trained_copy(tmp)
    featurized = tmp / "ws" / "featurize"
    settings = json.loads((featurized / "frontend.json").read_text())
    (featurized / "frontend.json").write_text(json.dumps({**settings, "n_mels": 20}))
    result = invoke_cli("-q", "train-teacher", "--force", "-c", str(config))
    _no_manifest(tmp, "train-teacher")
    return result, [
        f"{featurized / 'features_train.npy'}: 32 x 32 features, but {featurized / 'frontend.json'} makes 20 x 32",
        "rerun `bifsmn featurize --force`",
    ]


@case
def training_device_names_its_section(w: World, tmp: Path) -> Outcome:
    if torch.cuda.is_available():
        pytest.skip("this machine has a CUDA device, so device: cuda is valid")
    config = w.trained_copy(tmp)
    result = invoke_cli(
        "-q", "train-teacher", "--force", "-c", str(config), "--set", "train_teacher.device=cuda"
    )
    _no_manifest(tmp, "train-teacher")
    return result, ["train_teacher.device: cuda was requested but no CUDA device is available"]


# ---------------------------------------------------------------------------------------- .bfsm files


def _patched(data: bytes, offset: int, value: bytes, fix_crc: bool = True) -> bytes:
    out = bytearray(data)
    out[offset : offset + len(value)] = value
    if fix_crc:
        out[12:16] = struct.pack("<I", zlib.crc32(bytes(out[16:])))
    return bytes(out)


# the first op (conv1) starts after the headers, the variant name, the class names and the block list
_FIRST_OP = 16 + 64 + 2 + len("1x") + sum(2 + len(c) for c in TINY_CLASSES) + 4 + 4 * 4
BFSM_CASES: dict[str, tuple[Callable[[bytes], bytes], str]] = {
    "bad_magic": (lambda d: b"GIF8" + d[4:], "not a .bfsm model (bad magic)"),
    "wrong_version": (lambda d: _patched(d, 4, struct.pack("<H", 7), fix_crc=False), "format version 7"),
    "truncated": (lambda d: d[: len(d) // 2], "but only"),
    "bad_crc": (lambda d: _patched(d, len(d) - 3, b"\xaa", fix_crc=False), "CRC"),
    # conv1 declared with 3 input channels: the network input has 1
    "shapes_do_not_match": (
        lambda d: _patched(d, _FIRST_OP + 12, struct.pack("<I", 3)),
        "op 0: conv2d expects input",
    ),
}


def _bad_bfsm(w: World, tmp: Path, name: str) -> Path:
    corrupt, _ = BFSM_CASES[name]
    path = tmp / f"{name}.bfsm"
    path.write_bytes(corrupt(w.bfsm))
    return path


def _as_outcome(fn: Callable[[], object]) -> subprocess.CompletedProcess:
    """A Python API call as a command outcome: its UserError is exit 1 with the message as the one line."""
    try:
        fn()
    except UserError as exc:
        return subprocess.CompletedProcess([], 1, "", f"error: {exc}\n")
    return subprocess.CompletedProcess([], 0, "", "")


def _infer(w: World, model: Path, *clips: Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(w.infer_tool), str(model), *map(str, clips)], capture_output=True, text=True)


def _clip(tmp: Path) -> Path:
    sf.write(tmp / "ok.wav", TONE, 16000, subtype="PCM_16")
    return tmp / "ok.wav"


for _name, (_, _reason) in BFSM_CASES.items():

    def _binding_case(w: World, tmp: Path, name=_name, reason=_reason) -> Outcome:
        path = _bad_bfsm(w, tmp, name)
        return _as_outcome(lambda: Engine.load(path, lib=w.lib)), [f"{path}: ", reason]

    def _infer_case(w: World, tmp: Path, name=_name, reason=_reason) -> Outcome:
        path = _bad_bfsm(w, tmp, name)
        return _infer(w, path, _clip(tmp)), [f"bifsmn-infer: {path}: ", reason]

    CASES[f"bfsm_{_name}_binding"] = _binding_case
    CASES[f"bfsm_{_name}_infer"] = _infer_case


# ---------------------------------------------------------------------------------------- clips (bifsmn-infer)


def _infer_clip(write: Callable[[Path], None], reason: str) -> Callable[[World, Path], Outcome]:
    def run(w: World, tmp: Path) -> Outcome:
        model = tmp / "good.bfsm"
        model.write_bytes(w.bfsm)
        clip = tmp / "clip.wav"
        write(clip)
        return _infer(w, model, clip), [f"bifsmn-infer: {clip}: ", reason]

    return run


CASES["infer_empty_wav"] = _infer_clip(lambda p: sf.write(p, np.zeros(0), 16000, subtype="PCM_16"), "empty")
CASES["infer_truncated_wav"] = _infer_clip(_truncated, "runs past the end of the file")
CASES["infer_not_wav"] = _infer_clip(
    lambda p: p.write_bytes(b"not audio at all " * 64), "not a RIFF/WAVE file"
)
CASES["infer_stereo"] = _infer_clip(
    lambda p: sf.write(p, np.stack([TONE, TONE], axis=1), 16000, subtype="PCM_16"), "2 channel(s) at 16000 Hz"
)
CASES["infer_8khz"] = _infer_clip(
    lambda p: sf.write(p, TONE[::2], 8000, subtype="PCM_16"), "at 8000 Hz; the model"
)
CASES["infer_48khz"] = _infer_clip(
    lambda p: sf.write(p, np.repeat(TONE, 3), 48000, subtype="PCM_16"),
    "at 48000 Hz; the model needs mono at 16000",
)
CASES["infer_float_nan_wav"] = _infer_clip(_float_wav(np.nan), "audio format 3 is not PCM")


# ---------------------------------------------------------------------------------------- downloads


def _download(
    w: World, tmp: Path, url: str, sha256: str, version: str = "v0.02"
) -> subprocess.CompletedProcess:
    config = w.pipeline(
        tmp, download={"source": "speech_commands", "version": version, "url": url, "sha256": sha256}
    )
    result = invoke_cli("-q", "download", "-c", str(config))
    _no_manifest(tmp, "download")
    return result


@case
def archive_path_traversal(w: World, tmp: Path) -> Outcome:
    archive = make_tar({"yes/a.wav": b"1", "../../evil.txt": b"x"})
    w.server.files["speech_commands_v0.02.tar.gz"] = archive
    result = _download(w, tmp, w.server.url, sha(archive))
    assert not (tmp / "evil.txt").exists() and not (tmp / "ws" / "evil.txt").exists()
    return result, ["speech_commands_v0.02.tar.gz: refusing to extract member '../../evil.txt'"]


@case
def archive_checksum_mismatch(w: World, tmp: Path) -> Outcome:
    w.server.files["speech_commands_v0.01.tar.gz"] = make_tar({"yes/a.wav": b"1"})
    result = _download(w, tmp, w.server.url, "ab" * 32, "v0.01")
    return result, [f"expected {'ab' * 32}", "sha256 mismatch", "speech_commands_v0.01.tar.gz.bad"]


@case
def http_404(w: World, tmp: Path) -> Outcome:
    result = _download(w, tmp, w.server.url + "gone/", "0" * 64)
    return result, [f"{w.server.url}gone/speech_commands_v0.02.tar.gz: HTTP 404 not found"]


@case
def connection_refused(w: World, tmp: Path) -> Outcome:
    url = closed_port_url()
    return _download(w, tmp, url, "0" * 64), [f"{url}speech_commands_v0.02.tar.gz: connection refused"]


# ---------------------------------------------------------------------------------------- the tests


@pytest.mark.parametrize("name", list(CASES))
def test_bad_input_is_one_clear_line(world: World, tmp_path: Path, name: str):
    result, fragments = CASES[name](world, tmp_path)
    output = result.stdout + result.stderr
    assert result.returncode == 1, (result.returncode, output)
    assert "Traceback" not in output and "internal error" not in output, output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, lines
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])


def test_disk_full_when_buffered_rows_are_flushed_leaves_no_file(tmp_path: Path):
    """Rows that fit the write buffer meet the full disk only when the array is finished: the partial file must
    be discarded, not renamed into place, and the error is still one UserError naming it."""
    real_open = open

    class FlushFails:
        def __init__(self, fh: Any) -> None:
            self._fh = fh

        def seek(self, *args: Any) -> int:  # seeking flushes the buffered rows first
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

        def __getattr__(self, name: str) -> Any:
            return getattr(self._fh, name)

    def full_open(file: Any, mode: str = "r", *args: Any, **kwargs: Any) -> Any:
        fh = real_open(file, mode, *args, **kwargs)
        return FlushFails(fh) if "w" in mode else fh

    with pytest.raises(UserError, match=r"labels\.npy: disk full while writing"):
        with (
            mock.patch("builtins.open", full_open),
            NpyAppender(tmp_path / "labels.npy", (), np.int64, 4) as out,
        ):
            out.append(np.arange(4))
    assert list(tmp_path.iterdir()) == []


def test_catalogue_size():
    assert len(CASES) >= 30


def test_fixable_clips_are_fixed_and_reported(world: World, tmp_path: Path):
    """Other rates are resampled, short clips padded and long ones trimmed, even with featurize.strict; the
    engine's tool pads and trims too (it refuses only other rates, which it cannot resample)."""
    corpus = world.corpus_copy(tmp_path)
    sf.write(corpus / "yes/rate8k00_nohash_0.wav", TONE[::2], 8000)
    sf.write(corpus / "yes/rate48k0_nohash_0.wav", np.repeat(TONE, 3), 48000)
    sf.write(corpus / "no/short000_nohash_0.wav", TONE[:3200], 16000, subtype="PCM_16")  # 0.2 s
    sf.write(corpus / "no/long0000_nohash_0.wav", np.tile(TONE, 10), 16000, subtype="PCM_16")  # 10 s
    config = world.pipeline(tmp_path, corpus, featurize={"strict": True})
    for stage in ("download", "featurize"):
        result = invoke_cli("-q", stage, "-c", str(config))
        assert result.returncode == 0, result.stderr
    report = json.loads((tmp_path / "ws" / "featurize" / "report.json").read_text())
    assert report["bad"] == [] and report["resampled"] == {"8000": 1, "48000": 1}
    assert (report["padded"], report["trimmed"]) == (1, 1)

    model = tmp_path / "good.bfsm"
    model.write_bytes(world.bfsm)
    result = _infer(world, model, corpus / "no/short000_nohash_0.wav", corpus / "no/long0000_nohash_0.wav")
    assert result.returncode == 0, result.stderr
    assert result.stdout.count(".wav\n") == 2 and result.stderr == ""

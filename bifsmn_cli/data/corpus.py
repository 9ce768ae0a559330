"""The Speech Commands layout, its splits and its classification tasks, and the record of a fetched corpus.

A corpus is `<root>/<word>/<speaker>_nohash_<n>.wav|flac`, optional `_background_noise_/`, and optional
`validation_list.txt` / `testing_list.txt`. Splits follow the lists when present, else TensorFlow's hash rule,
which keys on the speaker part of the file name so that a speaker never appears in two splits. Tasks follow
TensorFlow's `input_data.py` recipe: the 12-class task adds `_silence_` and `_unknown_` in fixed proportions,
drawn with a fixed seed so that every run evaluates on the same set.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import random
import re
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from bifsmn_cli.audio.wav import AUDIO_SUFFIXES
from bifsmn_cli.errors import UserError
from bifsmn_cli.fsutil import atomic_write_json

SILENCE = "_silence_"
UNKNOWN = "_unknown_"
BACKGROUND_DIR = "_background_noise_"
COMMAND_WORDS = ("yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go")
# Speech Commands v0.01's twenty auxiliary words (the `_unknown_` pool of the 12-class task).
AUXILIARY_WORDS = (
    "zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine",
    "bed", "bird", "cat", "dog", "happy", "house", "marvin", "sheila", "tree", "wow",
)  # fmt: skip
SPLITS = ("train", "validation", "testing")
LIST_FILES = {"validation": "validation_list.txt", "testing": "testing_list.txt"}
MAX_NUM_WAVS_PER_CLASS = 2**27 - 1  # ~134M, TensorFlow's constant: keeps the hash rule stable as data grows
TF_RANDOM_SEED = 59185  # TensorFlow's seed for drawing silence and unknown


@dataclass
class CorpusRecord:
    """What a data source fetched (`corpus.json`, written by download and read by featurize).

    `root` (and `test_root`, v0.02's separate official test set) is relative to the download directory, or
    absolute for a folder of your own; `trees` are the directories under it that hold the corpus (hashed by
    names and sizes); `details` are the source's own facts (version and archives, speakers, synthesis time).
    """

    source: str
    root: str
    test_root: str | None = None
    trees: list[str] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)
    words: dict[str, int] = field(default_factory=dict)  # clips per word folder, from `scan`
    noises: list[str] = field(default_factory=list)

    def root_path(self, directory: Path) -> Path:
        return Path(directory) / self.root

    def test_root_path(self, directory: Path) -> Path | None:
        return Path(directory) / self.test_root if self.test_root else None

    def save(self, path: Path) -> None:
        atomic_write_json(path, dataclasses.asdict(self))

    @classmethod
    def load(cls, path: Path) -> CorpusRecord:
        try:
            return cls(**json.loads(Path(path).read_text()))
        except FileNotFoundError:
            raise UserError(f"{path}: missing; rerun `bifsmn download`") from None
        except (ValueError, TypeError) as exc:
            raise UserError(f"{path}: not a corpus record ({exc}); rerun `bifsmn download --force`") from None


def speaker(relpath: str) -> str:
    """The speaker part of `word/<speaker>_nohash_<n>.wav`: everything before `_nohash_`."""
    return re.sub(r"_nohash_.*$", "", PurePosixPath(relpath).name)


def which_set(filename: str, validation_percentage: float = 10.0, testing_percentage: float = 10.0) -> str:
    """TensorFlow's deterministic split of a clip: hash the speaker part of its name (everything before `_nohash_`).

    Adding clips never moves an existing one to another split, and all clips of a speaker share a split.
    """
    hashed = int(hashlib.sha1(speaker(filename).encode()).hexdigest(), 16)
    percentage = (hashed % (MAX_NUM_WAVS_PER_CLASS + 1)) * (100.0 / MAX_NUM_WAVS_PER_CLASS)
    if percentage < validation_percentage:
        return "validation"
    if percentage < validation_percentage + testing_percentage:
        return "testing"
    return "train"


@dataclass
class Corpus:
    """A scanned corpus: clips per word (relative POSIX paths, sorted), background noises, split lists."""

    root: Path
    clips: dict[str, list[str]]
    noises: list[str] = field(default_factory=list)
    lists: dict[str, list[str] | None] = field(default_factory=dict)

    @property
    def words(self) -> list[str]:
        return sorted(self.clips)


def _audio_files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.is_file() and p.suffix.lower() in AUDIO_SUFFIXES)


def scan(root: Path) -> Corpus:
    """Read a corpus's layout; a UserError says what is wrong with a folder that is not one."""
    root = Path(root)
    if not root.is_dir():
        raise UserError(f"{root}: corpus folder not found; check download.path")
    clips: dict[str, list[str]] = {}
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        if folder.name == BACKGROUND_DIR or folder.name.startswith("."):
            continue
        names = _audio_files(folder)
        if names:
            clips[folder.name] = [f"{folder.name}/{n}" for n in names]
    if not clips:
        raise UserError(
            f"{root}: no <word>/<clip>.wav or .flac files found; expected the Speech Commands layout "
            "(one folder per word, e.g. yes/abc123_nohash_0.wav)"
        )
    noise_dir = root / BACKGROUND_DIR
    noises = [f"{BACKGROUND_DIR}/{n}" for n in _audio_files(noise_dir)] if noise_dir.is_dir() else []
    lists: dict[str, list[str] | None] = {}
    for split, name in LIST_FILES.items():
        path = root / name
        entries = (
            [line.strip() for line in path.read_text().splitlines() if line.strip()] if path.exists() else []
        )
        lists[split] = entries or None  # an empty list file says nothing: fall back to the hash rule
    return Corpus(root, clips, noises, lists)


def _stem(relpath: str) -> str:
    """`word/name` without its suffix: a list written for .wav still names the clips of a FLAC copy."""
    return str(PurePosixPath(relpath).with_suffix(""))


def assign_splits(
    corpus: Corpus, validation_percentage: float, testing_percentage: float, hash_missing: bool = True
) -> tuple[dict[str, dict[str, list[str]]], dict[str, str]]:
    """Each clip's split: from the list files when present, else by `which_set`; with `hash_missing` False a
    split whose list file is absent or empty stays empty (its clips train) instead.

    Returns {split: {word: [relpath]}} and, per split, where its membership came from.
    """
    by_stem = {_stem(p): p for paths in corpus.clips.values() for p in paths}
    listed: dict[str, str] = {}
    source = {"train": "everything not listed for validation or testing"}
    for split, entries in corpus.lists.items():
        if entries is None:
            source[split] = (
                f"hash rule ({LIST_FILES[split]} absent or empty)"
                if hash_missing
                else f"none ({LIST_FILES[split]} absent or empty; missing_list: train)"
            )
            continue
        source[split] = LIST_FILES[split]
        for entry in entries:
            path = by_stem.get(_stem(entry))
            if path is None:
                raise UserError(
                    f"{corpus.root / LIST_FILES[split]}: names {entry}, which is not in the corpus; "
                    "fix the list or restore the file"
                )
            listed[path] = split
    hashed = {s for s, entries in corpus.lists.items() if entries is None and hash_missing}
    result: dict[str, dict[str, list[str]]] = {s: {} for s in SPLITS}
    for word, paths in corpus.clips.items():
        for path in paths:
            split = listed.get(path)
            if split is None:
                rule = which_set(path, validation_percentage, testing_percentage)
                split = rule if rule in hashed else "train"
            result[split].setdefault(word, []).append(path)
    return result, source


@dataclass(frozen=True)
class Item:
    """One example of a task: a clip (relative path) or None for a generated `_silence_` example."""

    path: str | None
    label: int


def task_words(task: str, words: list[str], corpus_words: list[str]) -> list[str]:
    """The keyword classes of a task (without `_silence_` / `_unknown_`), checked against the corpus."""
    if task == "35":
        return sorted(w for w in corpus_words)
    if task == "12":
        if words:
            raise UserError(
                "featurize.words: only used with task: words; remove it or set featurize.task: words"
            )
        wanted = list(COMMAND_WORDS)
    else:
        if not words:
            raise UserError("featurize.words: empty; list the keywords to spot when featurize.task is words")
        wanted = list(dict.fromkeys(words))
    missing = [w for w in wanted if w not in corpus_words]
    if missing:
        raise UserError(
            f"featurize.words: {missing[0]!r} is not a word of the corpus (words: {', '.join(corpus_words)})"
        )
    return wanted


def build_task(
    splits: dict[str, dict[str, list[str]]],
    task: str,
    words: list[str],
    silence_percentage: float,
    unknown_percentage: float,
    seed: int = TF_RANDOM_SEED,
    all_unknown_in: tuple[str, ...] = (),
) -> tuple[list[str], dict[str, list[Item]]]:
    """Classes and items per split, as TensorFlow's `prepare_data_index` builds them.

    Task "35" uses every word as a class; "12" and "words" put `_silence_` and `_unknown_` first, add
    ceil(n * silence_percentage / 100) silence items and as many unknown clips (other words, drawn at random)
    to each split of n keyword clips; the splits in `all_unknown_in` keep every unknown clip instead.
    """
    corpus_words = sorted({w for per_word in splits.values() for w in per_word})
    wanted = task_words(task, words, corpus_words)
    if task == "35":
        classes = wanted
        index = {w: i for i, w in enumerate(classes)}
        items = {s: [Item(p, index[w]) for w in sorted(splits[s]) for p in splits[s][w]] for s in SPLITS}
        return classes, items
    classes = [SILENCE, UNKNOWN, *wanted]
    index = {w: i for i, w in enumerate(classes)}
    rng = random.Random(seed)
    data: dict[str, list[Item]] = {}
    for split in ("validation", "testing", "train"):  # TensorFlow's order, so the draws match its recipe
        per_word = splits[split]
        kept = [Item(p, index[w]) for w in sorted(per_word) if w in index for p in per_word[w]]
        unknown = [Item(p, index[UNKNOWN]) for w in sorted(per_word) if w not in index for p in per_word[w]]
        n = len(kept)
        kept += [Item(None, index[SILENCE])] * math.ceil(n * silence_percentage / 100)
        rng.shuffle(unknown)
        kept += unknown if split in all_unknown_in else unknown[: math.ceil(n * unknown_percentage / 100)]
        data[split] = kept
    for split in SPLITS:
        rng.shuffle(data[split])
    return classes, {s: data[s] for s in SPLITS}


def official_test_items(test_root: Path, classes: list[str]) -> list[Item]:
    """The separate v0.02 test archive: folders named after the 12 classes (`_silence_` and `_unknown_` included)."""
    test = scan(test_root)
    unexpected = sorted(set(test.clips) - set(classes))
    if unexpected:
        raise UserError(
            f"{test_root}: folder {unexpected[0]!r} is not a class of the task ({', '.join(classes)}); "
            "the official test set is for task 12"
        )
    return [Item(p, classes.index(w)) for w in sorted(test.clips) for p in test.clips[w]]

"""Corpus layout, TensorFlow's split rule and the task recipes (12 / 35 / custom words)."""

from __future__ import annotations

import math
from collections import Counter

import pytest
from helpers import write_corpus

from bifsmn_cli.data.corpus import (
    COMMAND_WORDS,
    SILENCE,
    UNKNOWN,
    assign_splits,
    build_task,
    official_test_items,
    scan,
    which_set,
)
from bifsmn_cli.errors import UserError

# Entries of the official Speech Commands list files, with the split the lists give them.
KNOWN_SPLITS = {
    "bed/6d818f6c_nohash_2.wav": "validation",
    "bird/6a27a9bf_nohash_0.wav": "validation",
    "down/099d52ad_nohash_1.wav": "validation",
    "bed/0c40e715_nohash_0.wav": "testing",
    "bed/0ea0e2f4_nohash_0.wav": "testing",
    "yes/004ae714_nohash_0.wav": "train",
    "right/988e2f9a_nohash_0.wav": "train",
}


def test_which_set_matches_the_official_lists():
    for name, split in KNOWN_SPLITS.items():
        assert which_set(name) == split, name
    # Only the speaker matters: the word folder, repetition and extension do not move a clip.
    assert which_set("zero/0c40e715_nohash_3.flac") == "testing"


def test_which_set_proportions_follow_the_percentages():
    names = [f"w/{i:08x}_nohash_0.wav" for i in range(4000)]
    counts = Counter(which_set(n, 10, 10) for n in names)
    assert abs(counts["validation"] / 4000 - 0.10) < 0.02 and abs(counts["testing"] / 4000 - 0.10) < 0.02
    assert Counter(which_set(n, 0, 0) for n in names) == {"train": 4000}


def test_scan_reads_the_layout(tmp_path):
    write_corpus(tmp_path, words=("yes", "no"), speakers=("a", "b"))
    (tmp_path / "yes" / "notes.txt").write_text("ignored")
    corpus = scan(tmp_path)
    assert corpus.words == ["no", "yes"]
    assert corpus.clips["yes"] == ["yes/a_nohash_0.wav", "yes/b_nohash_0.wav"]
    assert corpus.noises == ["_background_noise_/running_tap.wav", "_background_noise_/white_noise.wav"]
    assert corpus.lists == {"validation": None, "testing": None}


def test_scan_errors(tmp_path):
    with pytest.raises(UserError, match="corpus folder not found"):
        scan(tmp_path / "nope")
    (tmp_path / "empty_word").mkdir()
    with pytest.raises(UserError, match="no <word>/<clip>.wav or .flac files found"):
        scan(tmp_path)


def test_splits_by_hash_rule_keep_speakers_together(tmp_path):
    write_corpus(tmp_path)
    splits, source = assign_splits(scan(tmp_path), 10, 10)
    where = {p: s for s, per_word in splits.items() for paths in per_word.values() for p in paths}
    for path, split in where.items():
        assert split == which_set(path)
    assert (
        where["yes/0c40e715_nohash_0.wav"] == "testing" and where["no/6d818f6c_nohash_0.wav"] == "validation"
    )
    assert source["validation"].startswith("hash rule")


def test_splits_from_list_files_and_missing_entries(tmp_path):
    write_corpus(tmp_path, suffix=".flac")
    # Lists written for .wav still name the FLAC clips; the speaker the hash would test goes to validation.
    (tmp_path / "validation_list.txt").write_text("yes/0c40e715_nohash_0.wav\nno/0c40e715_nohash_0.wav\n")
    (tmp_path / "testing_list.txt").write_text("yes/aaaa0003_nohash_0.flac\n")
    splits, source = assign_splits(scan(tmp_path), 10, 10)
    assert splits["validation"] == {
        "yes": ["yes/0c40e715_nohash_0.flac"],
        "no": ["no/0c40e715_nohash_0.flac"],
    }
    assert splits["testing"] == {"yes": ["yes/aaaa0003_nohash_0.flac"]}
    assert source == {
        "train": "everything not listed for validation or testing",
        "validation": "validation_list.txt",
        "testing": "testing_list.txt",
    }
    (tmp_path / "testing_list.txt").write_text("yes/gone_nohash_0.wav\n")
    with pytest.raises(
        UserError, match=r"testing_list.txt: names yes/gone_nohash_0.wav, which is not in the corpus"
    ):
        assign_splits(scan(tmp_path), 10, 10)


def test_empty_list_file_falls_back_to_the_hash_rule(tmp_path):
    write_corpus(tmp_path)
    (tmp_path / "validation_list.txt").write_text("yes/aaaa0003_nohash_0.wav\n")
    (tmp_path / "testing_list.txt").write_text("")
    splits, source = assign_splits(scan(tmp_path), 10, 10)
    assert source["testing"].startswith("hash rule")
    assert splits["validation"] == {"yes": ["yes/aaaa0003_nohash_0.wav"]}
    # 6d818f6c hashes to validation, but the validation list rules that split: it trains.
    assert "no/6d818f6c_nohash_0.wav" in splits["train"]["no"]
    assert splits["testing"]["yes"] == ["yes/0c40e715_nohash_0.wav"]


def _splits(per_split: dict[str, int], words: tuple[str, ...]) -> dict[str, dict[str, list[str]]]:
    return {
        s: {w: [f"{w}/{s}{i}_nohash_0.wav" for i in range(n)] for w in words} for s, n in per_split.items()
    }


def test_task_12_follows_the_tensorflow_recipe():
    words = (*COMMAND_WORDS, "cat", "dog", "bed")
    splits = _splits({"train": 7, "validation": 3, "testing": 2}, words)
    classes, items = build_task(splits, "12", [], 10, 10)
    assert classes == [SILENCE, UNKNOWN, *COMMAND_WORDS]
    for split, per_word in (("train", 7), ("validation", 3), ("testing", 2)):
        labels = Counter(classes[i.label] for i in items[split])
        n = 10 * per_word
        assert labels[SILENCE] == labels[UNKNOWN] == math.ceil(n * 0.1)
        assert all(labels[w] == per_word for w in COMMAND_WORDS)
        assert all(i.path is None for i in items[split] if i.label == 0)
        assert all(i.path.split("/")[0] in ("cat", "dog", "bed") for i in items[split] if i.label == 1)
    again = build_task(splits, "12", [], 10, 10)[1]
    assert again == items  # the fixed seed makes the draws reproducible
    assert build_task(splits, "12", [], 10, 10, seed=1)[1] != items


def test_task_35_and_custom_words():
    splits = _splits({"train": 2, "validation": 1, "testing": 1}, ("yes", "no", "cat"))
    classes, items = build_task(splits, "35", [], 10, 10)
    assert classes == ["cat", "no", "yes"] and len(items["train"]) == 6
    classes, items = build_task(splits, "words", ["yes", "cat"], 50, 0)
    assert classes == [SILENCE, UNKNOWN, "yes", "cat"]
    assert Counter(classes[i.label] for i in items["train"]) == {"yes": 2, "cat": 2, SILENCE: 2}
    with pytest.raises(UserError, match=r"featurize.words: 'maybe' is not a word of the corpus"):
        build_task(splits, "words", ["yes", "maybe"], 10, 10)
    with pytest.raises(UserError, match="featurize.words: empty"):
        build_task(splits, "words", [], 10, 10)
    with pytest.raises(UserError, match=r"featurize.words: 'up' is not a word"):
        build_task(splits, "12", [], 10, 10)  # the corpus lacks the command words


def test_official_test_items(tmp_path):
    write_corpus(tmp_path, words=("yes", SILENCE, UNKNOWN), speakers=("a",), noises=())
    classes = [SILENCE, UNKNOWN, *COMMAND_WORDS]
    items = official_test_items(tmp_path, classes)
    assert sorted((i.path, classes[i.label]) for i in items) == [
        (f"{SILENCE}/a_nohash_0.wav", SILENCE),
        (f"{UNKNOWN}/a_nohash_0.wav", UNKNOWN),
        ("yes/a_nohash_0.wav", "yes"),
    ]
    write_corpus(tmp_path, words=("cat",), speakers=("a",), noises=())
    with pytest.raises(UserError, match="folder 'cat' is not a class of the task"):
        official_test_items(tmp_path, classes)

"""Featurize's options for a real corpus: a corpus with only a validation list, the clips a split was given but
leaves out, whole speakers moved to validation for rejection, synthetic non-keywords, and unknown oversampling."""

from __future__ import annotations

import json
import shutil
from collections import Counter
from pathlib import Path

import pytest
import torch
from helpers import assert_user_error, write_corpus

from bifsmn_cli.data.corpus import COMMAND_WORDS, UNKNOWN, speaker
from bifsmn_cli.data.packed import load_classes, load_split
from bifsmn_cli.data.unknown_split import move_speakers
from bifsmn_cli.train.sampling import epoch_length, epoch_order

SPEAKERS = tuple(f"spk{i:05d}" for i in range(12))


def _corpus(root: Path) -> None:
    """Command words + two non-keyword words; speaker 0 listed for validation, an empty testing list."""
    write_corpus(root, speakers=SPEAKERS)
    listed = [f"{w}/{SPEAKERS[0]}_nohash_0.wav" for w in (*COMMAND_WORDS, "cat", "dog")]
    (root / "validation_list.txt").write_text("\n".join(listed) + "\n")
    (root / "testing_list.txt").write_text("")


def _featurize(tmp_path: Path, cli, extra: str) -> tuple[dict, str]:
    corpus = tmp_path / "corpus"
    if not corpus.exists():
        _corpus(corpus)
    ws = tmp_path / "ws"
    shutil.rmtree(ws, ignore_errors=True)
    config = tmp_path / "p.yaml"
    config.write_text(
        f"name: t\nworkspace: {ws}\ndownload:\n  source: folder\n  path: {corpus}\n"
        f"featurize:\n  task: '12'\n  testing_percentage: 30\n{extra}"
    )
    assert cli("-q", "download", "-c", str(config)).returncode == 0
    result = cli("-q", "featurize", "-c", str(config))
    assert result.returncode == 0, result.stderr
    return json.loads((ws / "featurize" / "report.json").read_text()), result.stderr


def test_only_a_validation_list(tmp_path, cli):
    # hash (TensorFlow's rule): the empty testing list sends a hash share of the clips to testing
    report, stderr = _featurize(tmp_path, cli, "")
    assert report["split_source"]["testing"].startswith("hash rule")
    hashed_testing = report["clips"]["testing"]
    assert hashed_testing > 0
    # train: nothing is tested, every unlisted clip trains; validation still comes from its list
    report, stderr = _featurize(tmp_path, cli, "  missing_list: train\n")
    assert report["split_source"]["testing"].startswith("none")
    assert report["split_source"]["validation"] == "validation_list.txt"
    assert report["clips"]["testing"] == 0
    assert report["per_class"]["validation"]["yes"] == 1


def test_unused_clips_are_reported(tmp_path, cli):
    # 12 keyword clips per word in 12 speakers, 2 non-keyword words: unknown_percentage 10 keeps only some
    report, stderr = _featurize(tmp_path, cli, "  missing_list: train\n  unknown_percentage: 5\n")
    unused = report["assigned_unused"]["train"]
    train_keywords = 10 * (len(SPEAKERS) - 1)
    used = -(-train_keywords * 5 // 100)
    assert unused == {"non-keyword": 2 * (len(SPEAKERS) - 1) - used}
    assert report["per_class"]["train"][UNKNOWN] == used
    assert f"train: {unused['non-keyword']} of its {train_keywords + 2 * (len(SPEAKERS) - 1)} clips" in stderr
    assert "raise featurize.unknown_percentage" in stderr


@pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="needs espeak-ng")
def test_synthetic_non_keywords_only_in_training_unknown(tmp_path, cli):
    extra = "  missing_list: train\n  synthetic_unknown_per_word: 2\n  synthetic_unknown_words: [dawn, top, yes]\n"
    report, stderr = _featurize(tmp_path, cli, extra)
    assert report["synthetic_unknown_clips"] == 4  # yes is a keyword: never a non-keyword
    out = tmp_path / "ws" / "featurize"
    classes = load_classes(out)
    train = load_split(out, "train")
    synthetic = [
        (n, int(label))
        for n, label in zip(train.names, train.labels, strict=True)
        if "synthetic_unknown" in n
    ]
    assert sorted(Path(n).parent.name for n, _ in synthetic) == ["dawn", "dawn", "top", "top"]
    assert {classes[label] for _, label in synthetic} == {UNKNOWN}
    for split in ("validation", "testing"):
        assert not any("synthetic_unknown" in n for n in load_split(out, split).names)
    first = train.waves[[list(train.names).index(n) for n, _ in synthetic]].copy()
    # the same seed renders the same clips again
    _featurize(tmp_path, cli, extra)
    again = load_split(out, "train")
    names = list(again.names)
    assert (again.waves[[names.index(n) for n, _ in synthetic]] == first).all()


def _splits() -> dict[str, dict[str, list[str]]]:
    """Keyword speakers k*, non-keyword-only speakers u*; validation has one keyword speaker."""
    train: dict[str, list[str]] = {"yes": [], "no": [], "cat": [], "dog": []}
    for i in range(20):
        for w in ("yes", "no"):
            train[w].append(f"{w}/k{i:03d}_nohash_0.wav")
    for i in range(30):
        for w in ("cat", "dog"):
            train[w].append(f"{w}/u{i:03d}_nohash_0.wav")
    val = {"yes": ["yes/v000_nohash_0.wav"] * 1, "no": ["no/v000_nohash_0.wav"]}
    return {"train": train, "validation": val, "testing": {}}


def test_speaker_move_reaches_the_share_and_is_speaker_disjoint():
    splits = _splits()
    moved = move_speakers(splits, ["yes", "no"], share=20, silence_percentage=0, seed=1, keyword_share=0)
    val_unknown = [p for w in ("cat", "dog") for p in splits["validation"].get(w, [])]
    n_keyword = 2
    assert len(val_unknown) / (len(val_unknown) + n_keyword) >= 0.2 - 1e-9
    assert moved["clips_moved"] == len(val_unknown) and moved["speakers_moved"] == len(
        {speaker(p) for p in val_unknown}
    )
    train_speakers = {speaker(p) for ps in splits["train"].values() for p in ps}
    assert not train_speakers & {speaker(p) for p in val_unknown}
    assert all(speaker(p).startswith("u") for p in val_unknown)  # keyword speakers never move
    again = _splits()
    move_speakers(again, ["yes", "no"], share=20, silence_percentage=0, seed=1, keyword_share=0)
    assert again == splits
    other = _splits()
    move_speakers(other, ["yes", "no"], share=20, silence_percentage=0, seed=2, keyword_share=0)
    assert other["validation"] != splits["validation"]


def test_unknown_oversampling_order():
    labels = torch.tensor([0, 1, 1, 2, 2, 2, 1, 0, 2, 2])  # class 1 is _unknown_: rows 1, 2, 6
    g = torch.Generator().manual_seed(0)
    order = epoch_order(labels, 1, 2.5, g)
    assert len(order) == epoch_length(labels, 1, 2.5) == 10 + round(1.5 * 3)
    counts = Counter(order.tolist())
    assert all(counts[i] == 1 for i in range(10) if labels[i] != 1)
    assert sorted(counts[i] for i in (1, 2, 6)) in ([2, 2, 3], [2, 3, 3])
    assert sum(counts[i] for i in (1, 2, 6)) == 3 + 4
    assert torch.equal(
        epoch_order(labels, None, 2.5, torch.Generator().manual_seed(0)).sort().values, torch.arange(10)
    )


def test_real_corpus_option_errors(tmp_path, cli):
    corpus = tmp_path / "corpus"
    write_corpus(corpus)  # no list files at all
    for extra, message in (
        ("  missing_list: train\n", "featurize.missing_list: train leaves validation empty"),
        (
            "  task: '35'\n  synthetic_unknown_per_word: 1\n",
            "featurize.synthetic_unknown_per_word: the task has no",
        ),
    ):
        config = tmp_path / "p.yaml"
        config.write_text(
            f"name: t\nworkspace: {tmp_path / 'ws'}\ndownload:\n  source: folder\n  path: {corpus}\nfeaturize:\n{extra}"
        )
        assert cli("-q", "download", "-c", str(config)).returncode == 0
        assert_user_error(cli("-q", "featurize", "-c", str(config)), message)
        assert not (tmp_path / "ws" / "featurize" / "manifest.json").exists()

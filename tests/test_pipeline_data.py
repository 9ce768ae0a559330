"""download -> featurize through the real CLI: the quickstart pipeline (synthetic) and Speech Commands v0.02 with
its official test set served locally; staleness as `bifsmn status` and `bifsmn run` report it."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from helpers import ROOT, FileServer, assert_user_error, needs_espeak, sha, tar_directory, write_corpus

from bifsmn_cli.data.corpus import COMMAND_WORDS, SILENCE, UNKNOWN
from bifsmn_cli.data.packed import load_classes, load_split

pytestmark = pytest.mark.slow  # download and featurize through the real CLI

QUICKSTART = str(ROOT / "pipelines" / "quickstart.yaml")


@needs_espeak
def test_quickstart_download_featurize_and_staleness(tmp_path, cli):
    ws = tmp_path / "ws"
    tiny = [
        f"--set=workspace={ws}",
        "--set=download.clips_per_word=2",
        "--set=download.unknown_clips_per_word=1",
        "--set=download.noise_seconds=3",
    ]
    for stage in ("download", "featurize"):
        result = cli("-q", stage, "-c", QUICKSTART, *tiny)
        assert result.returncode == 0, result.stderr
    data = ws / "download" / "data"
    assert sorted(p.name for p in data.iterdir() if p.is_dir())[:3] == ["_background_noise_", "bed", "bird"]
    assert len(list((data / "yes").glob("*_nohash_*.wav"))) == 2
    assert (data / "validation_list.txt").exists() and (data / "testing_list.txt").exists()
    out = ws / "featurize"
    classes = load_classes(out)
    assert classes == [SILENCE, UNKNOWN, *COMMAND_WORDS]
    sizes = {s: len(load_split(out, s)) for s in ("train", "validation", "testing")}
    assert sum(sizes.values()) > 0 and load_split(out, "train").features.shape[1:] == (32, 32)

    result = cli("run", "-c", QUICKSTART, *tiny, "--to", "featurize")
    assert result.returncode == 0, result.stderr
    assert "download: up to date" in result.stderr and "featurize: up to date" in result.stderr

    result = cli("status", "-c", QUICKSTART, *tiny, "--set", "featurize.n_mels=20")
    rows = {line.split("│")[1].strip(): line for line in result.stderr.splitlines() if line.count("│") >= 3}
    assert "up to date" in rows["download"]
    assert "stale" in rows["featurize"] and "featurize.n_mels" in rows["featurize"]

    before = json.loads((ws / "download" / "manifest.json").read_text())
    result = cli("-q", "run", "-c", QUICKSTART, *tiny, "--set", "featurize.n_mels=20", "--to", "featurize")
    assert result.returncode == 0, result.stderr
    assert json.loads((ws / "download" / "manifest.json").read_text()) == before  # not rerun
    assert load_split(out, "validation").features.shape[1:] == (20, 32)


def test_speech_commands_v2_with_the_official_test_set(tmp_path, cli):
    main, test = tmp_path / "main", tmp_path / "test"
    write_corpus(main)
    (main / "validation_list.txt").write_text("yes/6d818f6c_nohash_0.wav\n")
    (main / "testing_list.txt").write_text("yes/0c40e715_nohash_0.wav\n")
    write_corpus(test, words=(*COMMAND_WORDS, SILENCE, UNKNOWN), speakers=("f00d0001",), noises=())
    archives = {"speech_commands_v0.02.tar.gz": tar_directory(main)}
    archives["speech_commands_test_set_v0.02.tar.gz"] = tar_directory(test)
    server = FileServer()
    server.files.update(archives)
    try:
        config = tmp_path / "p.yaml"
        config.write_text(
            f"name: t\nworkspace: {tmp_path / 'ws'}\n"
            f"download:\n  source: speech_commands\n  version: v0.02\n  test_set: true\n  url: {server.url}\n"
            f"  sha256: '{sha(archives['speech_commands_v0.02.tar.gz'])}'\n"
            f"  test_sha256: '{sha(archives['speech_commands_test_set_v0.02.tar.gz'])}'\n"
        )
        for stage in ("download", "featurize"):
            result = cli("-q", stage, "-c", str(config))
            assert result.returncode == 0, result.stderr
    finally:
        server.close()
    ws = tmp_path / "ws"
    corpus = json.loads((ws / "download" / "corpus.json").read_text())
    assert corpus["root"] == "data" and corpus["test_root"] == "test_data"
    report = json.loads((ws / "featurize" / "report.json").read_text())
    assert report["split_source"]["testing"] == "official test archive"
    testing = load_split(ws / "featurize", "testing")
    classes = load_classes(ws / "featurize")
    assert sorted(testing.names) == sorted(
        f"{w}/f00d0001_nohash_0.wav" for w in (*COMMAND_WORDS, SILENCE, UNKNOWN)
    )
    for name, label in zip(testing.names, testing.labels, strict=True):
        assert classes[label] == name.split("/")[0]
    assert np.count_nonzero(testing.waves) > 0
    # The main archive's own testing-list clips are held out of training.
    assert "yes/0c40e715_nohash_0.wav" not in load_split(ws / "featurize", "train").names

    config.write_text(config.read_text() + "featurize:\n  task: '35'\n")
    assert_user_error(
        cli("-q", "featurize", "-c", str(config)),
        "official v0.02 test set (download.test_set: true) is for task 12",
    )
    shutil.rmtree(ws)

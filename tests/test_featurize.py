"""The featurize stage on a folder corpus with bad clips: report, packed arrays, features, errors."""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from helpers import assert_user_error, write_corpus

from bifsmn_cli.audio.frontend import FrontEnd
from bifsmn_cli.audio.wav import BadClip, fit_length, from_int16, read_clip
from bifsmn_cli.data.corpus import COMMAND_WORDS, SILENCE
from bifsmn_cli.data.packed import load_classes, load_noises, load_split, save_split
from bifsmn_cli.fsutil import sha256_file

BAD = {
    "yes/stereo01_nohash_0.wav": "2 channels (expected mono",
    "left/corrupt1_nohash_0.wav": "cannot decode",
    "right/nan00001_nohash_0.wav": "NaN or infinite",
    "stop/empty001_nohash_0.wav": "empty (no samples)",
}


def add_problem_clips(root: Path) -> None:
    t = np.arange(16000) / 16000
    tone = 0.3 * np.sin(2 * np.pi * 440 * t)
    sf.write(root / "yes/stereo01_nohash_0.wav", np.stack([tone, tone], axis=1), 16000)
    sf.write(root / "no/rate8k01_nohash_0.wav", tone[::2], 8000)
    sf.write(root / "up/short001_nohash_0.flac", tone[:8000], 16000)
    sf.write(root / "down/long0001_nohash_0.wav", np.concatenate([tone, tone[:8000]]), 16000)
    (root / "left/corrupt1_nohash_0.wav").write_bytes(b"RIFF\x10\x00\x00\x00WAVEjunkjunk")
    sf.write(root / "right/nan00001_nohash_0.wav", np.where(t < 0.5, tone, np.nan), 16000, subtype="FLOAT")
    sf.write(root / "stop/empty001_nohash_0.wav", np.zeros(0), 16000)


def test_read_clip_fixes_what_it_can_and_names_the_rest(tmp_path):
    write_corpus(tmp_path, words=COMMAND_WORDS, speakers=("a",), noises=())
    add_problem_clips(tmp_path)
    for rel, reason in BAD.items():
        with pytest.raises(BadClip, match=re.escape(reason)):
            read_clip(tmp_path / rel)
    stereo = read_clip(tmp_path / "yes/stereo01_nohash_0.wav", downmix=True)
    assert stereo.downmixed and stereo.wave.shape == (16000,)
    low = read_clip(tmp_path / "no/rate8k01_nohash_0.wav")
    assert low.resampled_from == 8000 and low.wave.shape == (16000,)
    assert fit_length(read_clip(tmp_path / "up/short001_nohash_0.flac").wave)[1] == "padded"
    assert fit_length(read_clip(tmp_path / "down/long0001_nohash_0.wav").wave)[1] == "trimmed"


def _config(tmp_path: Path, corpus: Path, featurize: str = "") -> Path:
    config = tmp_path / "p.yaml"
    config.write_text(
        f"name: t\nworkspace: {tmp_path / 'ws'}\ndownload:\n  source: folder\n  path: {corpus}\n"
        f"featurize:\n  task: '12'\n{featurize}"
    )
    return config


@pytest.mark.slow
def test_featurize_folder_corpus(tmp_path, cli):
    corpus = tmp_path / "corpus"
    write_corpus(corpus)
    add_problem_clips(corpus)
    config = _config(tmp_path, corpus)
    assert cli("-q", "download", "-c", str(config)).returncode == 0
    result = cli("-q", "featurize", "-c", str(config))
    assert result.returncode == 0, result.stderr
    assert "4 bad clips skipped" in result.stderr
    out = tmp_path / "ws" / "featurize"
    report = json.loads((out / "report.json").read_text())
    assert {b["file"]: b["reason"] for b in report["bad"]}.keys() == BAD.keys()
    for entry in report["bad"]:
        assert BAD[entry["file"]] in entry["reason"]
    assert report["resampled"] == {"8000": 1} and report["padded"] == 1 and report["trimmed"] == 1
    assert report["split_source"]["validation"].startswith("hash rule")

    classes = load_classes(out)
    assert classes[:2] == [SILENCE, "_unknown_"] and classes[2:] == list(COMMAND_WORDS)
    frontend = FrontEnd()
    total = 0
    for split in ("train", "validation", "testing"):
        data = load_split(out, split)
        n = len(data)
        total += n
        assert (
            isinstance(data.waves, np.memmap)
            and data.waves.dtype == np.int16
            and data.waves.shape == (n, 16000)
        )
        assert data.labels.dtype == np.int64 and data.features.shape == (n, 32, 32) and len(data.names) == n
        assert report["clips"][split] == n
        # The stored features are the front end applied to exactly the stored waveforms.
        expected = frontend(torch.from_numpy(from_int16(data.waves))).numpy()
        np.testing.assert_allclose(data.features, expected, rtol=1e-5, atol=1e-4)
        silence = data.labels == 0
        assert silence.sum() == report["per_class"][split].get(SILENCE, 0) > 0
        assert all(name.startswith(f"{SILENCE}/") for name in np.array(data.names)[silence])
        if split == "train":
            assert not data.waves[silence].any()  # noise is added at training time
        else:
            assert all(row.any() for row in data.waves[silence])  # a fixed noise mix for evaluation
        for name, label in zip(data.names, data.labels, strict=True):
            if not name.startswith(SILENCE) and classes[label] != "_unknown_":
                assert name.split("/")[0] == classes[label]
    assert total == sum(Counter(report["clips"]).values())
    assert sorted(load_noises(out)) == ["running_tap", "white_noise"]
    assert json.loads((out / "frontend.json").read_text())["feature_shape"] == [32, 32]

    # Deterministic: forcing a rerun rewrites identical arrays.
    before = {p.name: sha256_file(p) for p in out.glob("*.npy")}
    assert cli("-q", "featurize", "-c", str(config), "--force").returncode == 0
    assert {p.name: sha256_file(p) for p in out.glob("*.npy")} == before


@pytest.mark.slow
def test_featurize_errors(tmp_path, cli):
    corpus = tmp_path / "corpus"
    write_corpus(corpus)
    add_problem_clips(corpus)
    config = _config(tmp_path, corpus, "  strict: true\n  downmix: true\n")
    assert cli("-q", "download", "-c", str(config)).returncode == 0
    result = cli("-q", "featurize", "-c", str(config))
    assert_user_error(result, "featurize.strict: false")
    assert any(
        name in result.stderr for name in BAD if not name.startswith("yes/stereo")
    )  # stereo is downmixed

    config = _config(tmp_path, corpus, "  task: words\n  words: [yes, maybe]\n")
    assert_user_error(
        cli("-q", "featurize", "-c", str(config)), "featurize.words: 'maybe' is not a word of the corpus"
    )

    (corpus / "validation_list.txt").write_text("yes/0c40e715_nohash_0.wav\nno/gone0001_nohash_0.wav\n")
    config = _config(tmp_path, corpus)
    assert_user_error(
        cli("-q", "featurize", "-c", str(config)),
        "validation_list.txt: names no/gone0001_nohash_0.wav, which is not",
    )


def test_folder_source_errors(tmp_path, cli):
    assert_user_error(
        cli("-q", "download", "-c", str(_config(tmp_path, tmp_path / "nowhere"))),
        "download.path:",
        "is not a folder",
    )
    (tmp_path / "flat").mkdir()
    (tmp_path / "flat" / "a.wav").write_bytes(b"")
    assert_user_error(
        cli("-q", "download", "-c", str(_config(tmp_path, tmp_path / "flat"))),
        "no <word>/<clip>.wav or .flac files",
    )


def test_save_and_load_split_round_trip(tmp_path):
    waves = np.arange(3 * 16000, dtype=np.int16).reshape(3, 16000)
    features = np.random.default_rng(0).standard_normal((3, 32, 32)).astype(np.float32)
    save_split(tmp_path, "validation", waves, [2, 0, 1], features, ["a", "b", "c"])
    data = load_split(tmp_path, "validation", mmap=False)
    assert np.array_equal(data.waves, waves) and data.labels.tolist() == [2, 0, 1]
    assert np.array_equal(data.features, features) and data.names == ["a", "b", "c"]
    assert np.load(tmp_path / "waves_validation.npy").shape == (3, 16000)  # plain .npy for any reader

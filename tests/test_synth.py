"""The synthetic espeak-ng corpus and the generated background noises."""

from __future__ import annotations

import shutil
import struct
from collections import defaultdict

import numpy as np
import pytest
import soundfile as sf
from helpers import assert_user_error, needs_espeak

from bifsmn_cli.audio.noise import GENERATORS, STATIONARY, generate_noises
from bifsmn_cli.audio.wav import parse_wav_bytes
from bifsmn_cli.data.corpus import assign_splits, scan
from bifsmn_cli.data.sources.espeak import speakers
from bifsmn_cli.data.sources.synthetic import plan, split_speakers, synthesize_corpus


@needs_espeak
def test_tiny_corpus_layout_format_and_speaker_splits(tmp_path):
    counts = {"yes": 2, "no": 2, "cat": 1}
    stats = synthesize_corpus(tmp_path / "c", counts, seed=3, noise_seconds=2.0, workers=2)
    root = tmp_path / "c"
    assert stats["clips"] == 5 and stats["speakers"] == 10
    corpus = scan(root)
    assert {w: len(p) for w, p in corpus.clips.items()} == counts
    for rel in [p for paths in corpus.clips.values() for p in paths]:
        info = sf.info(root / rel)
        assert (info.samplerate, info.channels, info.frames, info.subtype) == (16000, 1, 16000, "PCM_16")
        speaker = rel.split("/")[1].split("_nohash_")[0]
        assert speaker.startswith("en") and "_" not in speaker
        wave = sf.read(root / rel)[0]
        assert 0.05 < np.abs(wave).max() <= 1.0  # a word was placed, at its drawn level
    assert sorted(p.name for p in (root / "_background_noise_").iterdir()) == sorted(
        f"{n}.wav" for n in GENERATORS
    )
    # Lists split by speaker: no speaker in two splits.
    splits, source = assign_splits(corpus, 10, 10)
    assert source["validation"] == "validation_list.txt"
    speakers_of = defaultdict(set)
    for split, per_word in splits.items():
        for paths in per_word.values():
            for p in paths:
                speakers_of[p.split("/")[1].split("_nohash_")[0]].add(split)
    assert all(len(s) == 1 for s in speakers_of.values())


@needs_espeak
def test_same_seed_same_bytes(tmp_path):
    counts = {"go": 2, "stop": 1}
    for name in ("a", "b"):
        synthesize_corpus(tmp_path / name, counts, seed=7, noise_seconds=2.0, workers=1 if name == "a" else 3)
    files = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*") if p.is_file())
    assert len(files) == 3 + 6 + 3  # clips, noises, lists and readme
    for rel in files:
        assert (tmp_path / "a" / rel).read_bytes() == (tmp_path / "b" / rel).read_bytes(), rel


@needs_espeak
def test_speaker_pool_is_every_english_voice_and_variant():
    pool = speakers(shutil.which("espeak-ng"))
    voices = [s for s in pool if "+" not in s]
    assert "en-us" in voices and "en-gb" in voices and len(voices) >= 5
    assert f"{voices[0]}+f3" in pool and f"{voices[-1]}+m1" in pool
    assert len(pool) > 10 * len(voices)


def test_plan_spreads_words_over_speakers_deterministically():
    pool = [f"v{i}" for i in range(50)]
    utterances, chosen = plan({"yes": 30, "cat": 3}, pool, seed=1)
    assert len(chosen) == 30 and len(utterances) == 33
    assert len({u.relpath for u in utterances}) == 33  # (speaker, n) never repeats within a word
    assert plan({"yes": 30, "cat": 3}, pool, seed=1) == (utterances, chosen)
    splits = split_speakers(chosen, seed=1)
    assert [len(splits[s]) for s in ("validation", "testing", "train")] == [3, 3, 24]
    assert set(sum(splits.values(), [])) == set(chosen)


def test_espeak_missing_is_a_user_error(tmp_path, cli):
    config = tmp_path / "p.yaml"
    config.write_text(f"name: t\nworkspace: {tmp_path / 'ws'}\ndownload:\n  source: synthetic\n")
    empty_bin = tmp_path / "bin"
    empty_bin.mkdir()
    result = cli("-q", "download", "-c", str(config), env={"PATH": str(empty_bin)})
    assert_user_error(result, "espeak-ng not found on PATH", "apt-get install espeak-ng", "make setup")


def test_parse_streamed_wav_header():
    samples = np.array([0, 1000, -1000, 32767], dtype="<i2").tobytes()
    fmt = struct.pack("<4sIHHIIHH", b"fmt ", 16, 1, 1, 22050, 44100, 2, 16)
    # espeak-ng --stdout writes placeholder sizes (0x7fffffff) because it streams.
    data = (
        b"RIFF"
        + struct.pack("<I", 0x7FFFFFFF)
        + b"WAVE"
        + fmt
        + b"data"
        + struct.pack("<I", 0x7FFFFFFF)
        + samples
    )
    wave, rate = parse_wav_bytes(data)
    assert rate == 22050 and wave.tolist() == [0, 1000, -1000, 32767]
    with pytest.raises(ValueError, match="not a RIFF/WAVE"):
        parse_wav_bytes(b"nope")


def test_noises_are_deterministic_and_varied():
    a, b = generate_noises(3.0, seed=5), generate_noises(3.0, seed=5)
    assert list(a) == list(GENERATORS) and len(a) >= 6
    for name in a:
        assert a[name].dtype == np.float32 and a[name].shape == (48000,)
        assert np.array_equal(a[name], b[name])
        assert 0 < np.abs(a[name]).max() <= 0.9
    assert not np.array_equal(a["white_noise"], generate_noises(3.0, seed=6)["white_noise"])

    def level_spread(x: np.ndarray, frame: int) -> float:
        """Std of the frame levels in dB: small for stationary noise, large for non-stationary."""
        frames = x[: len(x) // frame * frame].reshape(-1, frame)
        return float(np.std(10 * np.log10((frames**2).mean(axis=1) + 1e-12)))

    for name in STATIONARY:
        assert level_spread(a[name], 4000) < 2.0, name  # 250 ms frames: brown noise's rumble averages out
    non_stationary = [n for n in a if n not in STATIONARY]
    assert len(non_stationary) >= 3
    for name in non_stationary:
        assert level_spread(a[name], 800) > 4.0, name  # 50 ms frames
    spectrum = {n: np.abs(np.fft.rfft(a[n])) ** 2 for n in ("white_noise", "pink_noise", "brown_noise")}
    low_share = {n: s[: len(s) // 16].sum() / s.sum() for n, s in spectrum.items()}
    assert low_share["white_noise"] < low_share["pink_noise"] < low_share["brown_noise"]

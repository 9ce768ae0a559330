"""Synthetic non-keyword words: the words asked for, never a keyword or its homophone, deterministic per seed."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from bifsmn_cli.audio.wav import read_clip
from bifsmn_cli.data.synthetic_unknown import default_words, plan_unknown, synthesize_unknown

SC10 = ["yes", "no", "up", "down", "left", "right", "stop", "go"]


def test_default_words_exclude_keywords_and_homophones():
    words = default_words(SC10)
    assert {"on", "off", "dawn", "light", "top", "app", "yet", "now"} <= set(words)
    assert not {"know", "write", *SC10} & set(words)
    assert len(words) == len(set(words)) > 200
    sc12 = default_words([*SC10, "on", "off"])
    assert "on" not in sc12 and "off" not in sc12 and "of" in sc12


def test_plan_is_deterministic_and_uses_the_pool():
    pool = [f"v{i}" for i in range(50)]
    a = plan_unknown(["dawn", "top"], 30, seed=3, pool=pool)
    assert a == plan_unknown(["dawn", "top"], 30, seed=3, pool=pool)
    assert a != plan_unknown(["dawn", "top"], 30, seed=4, pool=pool)
    assert [u.word for u in a] == ["dawn"] * 30 + ["top"] * 30
    assert len({u.speaker for u in a}) > 20


@pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="needs espeak-ng")
def test_rendered_clips_are_one_second_and_reproducible(tmp_path):
    paths = synthesize_unknown(tmp_path / "a", ["dawn", "top"], 2, seed=1)
    again = synthesize_unknown(tmp_path / "b", ["dawn", "top"], 2, seed=1)
    assert [p.parent.name for p in paths] == ["dawn", "dawn", "top", "top"]
    for p, q in zip(paths, again, strict=True):
        x, y = read_clip(p, False).wave, read_clip(q, False).wave
        assert len(x) == 16000 and np.abs(x).max() > 0.01
        np.testing.assert_array_equal(x, y)

"""Give validation enough non-keywords to measure rejection: move whole non-keyword speakers out of training.

Speech Commands' validation list holds few clips of the non-keyword words in a small corpus (30 of 1,489 in the
public real subset), so validation cannot see how often a model rejects a word it was not trained to spot. This
moves a seeded, speaker-disjoint share of the training speakers who said only non-keywords into validation until
non-keywords are `share` percent of it (silence included in the total), and validation then keeps every
non-keyword clip it holds instead of drawing `unknown_percentage` of them.

Rule: candidates are the speakers with training clips of non-keyword words and no training clip of a keyword (so
no speaker crosses splits for any class); they are taken in the order of sha1("<seed>:<speaker>") until
validation's non-keyword count reaches share / (100 - share) x (its keyword clips + its silence items).
"""

from __future__ import annotations

import hashlib
import math
import re
from pathlib import PurePosixPath


def speaker(relpath: str) -> str:
    """The speaker part of `word/<speaker>_nohash_<n>.wav`, as the hash split rule reads it."""
    return re.sub(r"_nohash_.*$", "", PurePosixPath(relpath).name)


def move_unknown_speakers(
    splits: dict[str, dict[str, list[str]]],
    keywords: list[str],
    share: float,
    silence_percentage: float,
    seed: int,
) -> dict[str, object]:
    """Move speakers (in place) from splits["train"] to splits["validation"]; returns what was moved."""
    train, val = splits["train"], splits["validation"]
    kw = set(keywords)
    keyword_speakers = {speaker(p) for w, ps in train.items() if w in kw for p in ps}
    by_speaker: dict[str, list[tuple[str, str]]] = {}
    for word, paths in train.items():
        if word in kw:
            continue
        for p in paths:
            by_speaker.setdefault(speaker(p), []).append((word, p))
    candidates = sorted(
        (s for s in by_speaker if s not in keyword_speakers),
        key=lambda s: hashlib.sha1(f"{seed}:{s}".encode()).hexdigest(),
    )
    n_keyword = sum(len(ps) for w, ps in val.items() if w in kw)
    n_silence = math.ceil(n_keyword * silence_percentage / 100)
    have = sum(len(ps) for w, ps in val.items() if w not in kw)
    target = math.ceil(share / (100 - share) * (n_keyword + n_silence)) if share < 100 else math.inf
    moved: list[str] = []
    for s in candidates:
        if have >= target:
            break
        for word, p in by_speaker[s]:
            train[word].remove(p)
            val.setdefault(word, []).append(p)
        have += len(by_speaker[s])
        moved.append(s)
    for word in list(train):
        if not train[word]:
            del train[word]
    for word in val:
        val[word].sort()
    return {
        "share": share,
        "target_clips": target,
        "validation_unknown_clips": have,
        "speakers_moved": len(moved),
        "clips_moved": sum(len(by_speaker[s]) for s in moved),
        "candidate_speakers": len(candidates),
    }

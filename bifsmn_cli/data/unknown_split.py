"""Give validation enough non-keywords (and rare keywords) to measure them: move whole speakers out of training.

Speech Commands' validation list holds few clips of the non-keyword words in a small corpus (30 of 1,489 in the
public real subset) and, in that subset, 2 clips each of `on` and `off`. So validation cannot see how often a
model rejects a word it was not trained to spot, nor how well it spots a rare keyword. This moves a seeded,
speaker-disjoint set of training speakers into validation until

- non-keyword clips are `share` percent of validation (its keyword clips + silence items + non-keywords), and
- every *rare* keyword (fewer than `keyword_share` percent of its clips in validation) has that share;

and validation then keeps every non-keyword clip it holds instead of drawing `unknown_percentage` of them.

Rule: candidates are the speakers with no training clip of a non-rare keyword (so no speaker crosses splits for a
class that is not topped up); they are visited in the order of sha1("<seed>:<speaker>"), twice: first a speaker
is moved, with all of its training clips, when every group it has clips of is still below its target (so topping
up one group does not drain another), then when any is. Deterministic per seed.
"""

from __future__ import annotations

import hashlib
import math
from collections import Counter

from bifsmn_cli.data.corpus import UNKNOWN as UNKNOWN_GROUP
from bifsmn_cli.data.corpus import speaker


def move_speakers(
    splits: dict[str, dict[str, list[str]]],
    keywords: list[str],
    share: float,
    silence_percentage: float,
    seed: int,
    keyword_share: float = 10.0,
) -> dict[str, object]:
    """Move speakers (in place) from splits["train"] to splits["validation"]; returns what was moved."""
    train, val = splits["train"], splits["validation"]
    kw = set(keywords)

    def count(split: dict[str, list[str]], word: str) -> int:
        return len(split.get(word, []))

    rare = {w for w in kw if count(val, w) < keyword_share / 100 * (count(val, w) + count(train, w))}
    rare_target = {w: math.ceil(keyword_share / 100 * (count(val, w) + count(train, w))) for w in rare}
    blocked = {speaker(p) for w, ps in train.items() if w in kw - rare for p in ps}
    by_speaker: dict[str, list[tuple[str, str]]] = {}
    for word, paths in train.items():
        for p in paths:
            by_speaker.setdefault(speaker(p), []).append((word, p))
    candidates = sorted(
        (s for s in by_speaker if s not in blocked),
        key=lambda s: hashlib.sha1(f"{seed}:{s}".encode()).hexdigest(),
    )
    have = Counter({w: count(val, w) for w in rare})
    have[UNKNOWN_GROUP] = sum(len(ps) for w, ps in val.items() if w not in kw)

    def unknown_target() -> float:
        if share >= 100:
            return math.inf
        n_keyword = sum(len(ps) for w, ps in val.items() if w in kw)
        return math.ceil(
            share / (100 - share) * (n_keyword + math.ceil(n_keyword * silence_percentage / 100))
        )

    def short(group: str) -> bool:
        return have[group] < (unknown_target() if group == UNKNOWN_GROUP else rare_target[group])

    moved: list[str] = []
    # first pass: only speakers all of whose groups are short (so topping up one group overfills no other);
    # second pass: any speaker with a short group
    for strict in (True, False):
        for s in candidates:
            if s in moved or not any(short(g) for g in [UNKNOWN_GROUP, *rare]):
                continue
            groups = {w if w in kw else UNKNOWN_GROUP for w, _ in by_speaker[s]}
            if not (all if strict else any)(short(g) for g in groups):
                continue
            for word, p in by_speaker[s]:
                train[word].remove(p)
                val.setdefault(word, []).append(p)
                have[word if word in kw else UNKNOWN_GROUP] += 1
            moved.append(s)
    for word in list(train):
        if not train[word]:
            del train[word]
    for word in val:
        val[word].sort()
    return {
        "share": share,
        "unknown_target": unknown_target(),
        "validation_counts": dict(sorted(have.items())),
        "rare_keywords": {w: rare_target[w] for w in sorted(rare)},
        "speakers_moved": len(moved),
        "clips_moved": sum(len(by_speaker[s]) for s in moved),
        "candidate_speakers": len(candidates),
    }

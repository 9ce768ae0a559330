"""Synthetic non-keyword words for the `_unknown_` class of a real corpus, spoken by espeak-ng.

A real corpus has few non-keyword clips (about 900 in the public real subset), so a model learns to reject
only the 20-odd words it saw. This renders many other English words, above all near-misses of the command words
(dawn for down, light for right, top for stop, ...), with every English espeak-ng voice and variant, at random
rate, pitch, level and position, exactly as the synthetic corpus does. Words that are keywords of the task and
homophones of a keyword (know = no, write = right: espeak-ng says them identically, so they would teach the
model that a keyword is a non-keyword) are left out. Deterministic per seed.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from bifsmn_cli.audio.wav import write_wav
from bifsmn_cli.console import progress
from bifsmn_cli.data.sources.espeak import Utterance, espeak_binary, render, speakers

# Near-misses of the ten Speech Commands command words, one group per word.
NEAR_MISSES = {
    "yes": "yet yell mess less guess chess dress bless yeast yak says yawn",
    "no": "now snow nose note low toe new gnaw nor known noon",
    "up": "app cup pup hop uh upon op ape pub cop",
    "down": "dawn town gown done don brown drown noun dune",
    "left": "lift loft laughed theft lest lend deft lent felt",
    "right": "light bright fright rate ride rye wide white kite night might bite",
    "stop": "top shop step stuff spot stock drop chop stoop",
    "go": "goat goal ghost gun though grow glow code coat crow",
    "on": "of own an in awn odd honest",
    "off": "often cough oft ought awful doff oaf if",
}
COMMON = (
    "time person year way day thing man world life hand part child eye woman place work week case point number "
    "group problem fact be have do say get make think take see come want look use find give tell call try ask "
    "need feel become leave put mean keep let begin seem help talk turn start show hear play run move like live "
    "believe hold bring happen sit stand lose pay meet set learn change lead watch follow create speak read "
    "allow add spend open walk win offer remember love buy wait send build stay fall cut reach good first last "
    "long great little other old big high small large next early young few bad same able water music coffee "
    "window table paper money color green blue red black apple banana orange computer garden kitchen "
    "morning evening summer winter city country river mountain ocean doctor teacher family friend"
)
HOMOPHONES = {"no": {"know"}, "right": {"write", "rite", "wright"}, "two": {"to", "too"}, "four": {"for"}}


def default_words(keywords: list[str]) -> list[str]:
    """The command words that are not keywords, the near-misses and common words, without the task's keywords
    and their homophones."""
    banned = set(keywords) | {h for k in keywords for h in HOMOPHONES.get(k, ())}
    words = list(NEAR_MISSES) + " ".join(NEAR_MISSES.values()).split() + COMMON.split()
    return [w for w in dict.fromkeys(words) if w not in banned]


def plan_unknown(words: list[str], per_word: int, seed: int, pool: list[str]) -> list[Utterance]:
    """`per_word` clips of each word, each from a voice drawn from the whole pool (every voice and variant)."""
    rng = np.random.default_rng([seed, 7])
    out = []
    for word in words:
        for n in range(per_word):
            out.append(
                Utterance(
                    word=word,
                    speaker=pool[int(rng.integers(len(pool)))],
                    n=n,
                    rate=int(rng.integers(110, 230)),
                    pitch=int(rng.integers(10, 90)),
                    peak=float(np.exp(rng.uniform(np.log(0.05), np.log(0.9)))),
                    offset=float(rng.uniform()),
                    snr_db=float(rng.uniform(15.0, 45.0)),
                    noise_seed=int(rng.integers(2**31)),
                )
            )
    return out


def synthesize_unknown(
    target: Path, words: list[str], per_word: int, seed: int, workers: int = 3
) -> list[Path]:
    """Write the clips under `target/<word>/` (reused when already there); returns their paths in order."""
    pool = speakers(espeak_binary())
    utterances = plan_unknown(words, per_word, seed, pool)
    paths = [target / f"{u.word}/{u.n}_{u.speaker.replace('+', '_')}.wav" for u in utterances]
    todo = [(u, p) for u, p in zip(utterances, paths, strict=True) if not p.exists()]
    if todo:
        with progress("synthesising non-keywords", len(todo), "clips") as bar:
            for (_u, clip), (_, path) in zip(render([u for u, _ in todo], workers), todo, strict=True):
                path.parent.mkdir(parents=True, exist_ok=True)
                write_wav(path, clip)
                bar.advance()
    return paths

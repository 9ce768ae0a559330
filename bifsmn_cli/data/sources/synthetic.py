"""The `synthetic` source: an offline keyword corpus in the exact Speech Commands layout, made with espeak-ng.

It exists so that the whole pipeline (and CI) runs without a 2.4 GB download: `<word>/<speaker>_nohash_<n>.wav`,
16 kHz mono 16-bit, one second each with the word at a random offset, `_background_noise_/`, and
`validation_list.txt` / `testing_list.txt` split by speaker. Speakers are every English espeak-ng voice
combined with every voice variant (`en-gb-x-rp+f3`), each with its own base pitch and rate; every clip then gets
its own rate, pitch, level and a little noise. All random choices are drawn up front from the seed, so the corpus
is byte-identical for a seed on a given espeak-ng installation whatever the number of workers.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from bifsmn_cli.audio.noise import generate_noises
from bifsmn_cli.audio.wav import write_wav
from bifsmn_cli.config import Float, Int, List
from bifsmn_cli.console import info, progress
from bifsmn_cli.data.corpus import AUXILIARY_WORDS, BACKGROUND_DIR, COMMAND_WORDS, CorpusRecord
from bifsmn_cli.data.sources.espeak import Utterance, espeak_binary, render, speakers
from bifsmn_cli.errors import UserError

NAME = "synthetic"
SCHEMA = {
    "keywords": List("str", list(COMMAND_WORDS), "synthetic: keyword classes"),
    "unknown_words": List("str", list(AUXILIARY_WORDS), "synthetic: other words (the _unknown_ pool)"),
    "clips_per_word": Int(100, "synthetic: clips of each keyword", min=1, max=100000),
    "unknown_clips_per_word": Int(
        None,
        "synthetic: clips of each other word (default: clips_per_word)",
        min=1,
        max=100000,
        nullable=True,
    ),
    "noise_seconds": Float(60.0, "synthetic: length of each generated background noise", min=2, max=600),
}


def fetch(config: dict[str, Any], out_dir: Path, state_dir: Path, seed: int) -> CorpusRecord:
    """Synthesise the corpus into `out_dir/data`."""
    keywords, others = config["keywords"], config["unknown_words"]
    overlap = sorted(set(keywords) & set(others))
    if overlap:
        raise UserError(
            f"download.unknown_words: {overlap[0]!r} is also in download.keywords; a word has one role"
        )
    for key, words in (("keywords", keywords), ("unknown_words", others)):
        bad = [w for w in words if not w or "/" in w or w.startswith(("_", "."))]
        if bad:
            raise UserError(
                f"download.{key}: {bad[0]!r} cannot be a folder name (no '/', no leading '_' or '.')"
            )
    unknown_clips = config["unknown_clips_per_word"] or config["clips_per_word"]
    counts = {w: config["clips_per_word"] for w in keywords} | {w: unknown_clips for w in others}
    started = time.perf_counter()
    stats = synthesize_corpus(out_dir / "data", counts, seed, config["noise_seconds"])
    seconds = time.perf_counter() - started
    info(
        f"synthesised {stats['clips']} clips in {seconds:.1f} s ({1000 * seconds / stats['clips']:.1f} ms each)"
    )
    details = {"ms_per_utterance": round(1000 * seconds / stats["clips"], 2), **stats}
    return CorpusRecord(NAME, root="data", trees=["data"], details=details)


def plan(counts: dict[str, int], voice_pool: list[str], seed: int) -> tuple[list[Utterance], list[str]]:
    """Draw every clip's parameters up front (deterministic), spreading each word's clips over the speakers.

    Returns the utterances and the speakers used. At least ten speakers are used so that even a tiny corpus has
    speakers to put in each split; each speaker has a base rate and pitch so that its clips sound alike.
    """
    rng = np.random.default_rng([seed, 0])
    n_speakers = min(len(voice_pool), max(10, max(counts.values(), default=0)))
    chosen = [voice_pool[i] for i in rng.permutation(len(voice_pool))[:n_speakers]]
    base = {s: (int(rng.integers(130, 200)), int(rng.integers(25, 75))) for s in chosen}
    utterances, said, start = [], {}, 0
    for word, count in counts.items():
        for i in range(count):
            speaker = chosen[(start + i) % n_speakers]
            n = said.get((speaker, word), 0)
            said[(speaker, word)] = n + 1
            rate, pitch = base[speaker]
            utterances.append(
                Utterance(
                    word=word,
                    speaker=speaker,
                    n=n,
                    rate=int(np.clip(rate + rng.integers(-20, 21), 110, 240)),
                    pitch=int(np.clip(pitch + rng.integers(-10, 11), 0, 99)),
                    peak=float(np.exp(rng.uniform(np.log(0.08), np.log(0.9)))),
                    offset=float(rng.uniform()),
                    snr_db=float(rng.uniform(20.0, 45.0)),
                    noise_seed=int(rng.integers(2**31)),
                )
            )
        start += count
    return utterances, chosen


def split_speakers(chosen: list[str], seed: int) -> dict[str, list[str]]:
    """10 % of the speakers for validation and 10 % for testing (at least one each), so no voice crosses splits."""
    order = [chosen[i] for i in np.random.default_rng([seed, 1]).permutation(len(chosen))]
    k = max(1, round(0.1 * len(order)))
    return {"validation": order[:k], "testing": order[k : 2 * k], "train": order[2 * k :]}


def synthesize_corpus(
    target: Path,
    counts: dict[str, int],
    seed: int,
    noise_seconds: float,
    workers: int | None = None,
) -> dict[str, object]:
    """Write a complete Speech Commands-style corpus into `target` (which must not exist yet); return its stats."""
    binary = espeak_binary()
    pool = speakers(binary)
    utterances, chosen = plan(counts, pool, seed)
    splits = split_speakers(chosen, seed)
    target.mkdir(parents=True)
    for word in counts:
        (target / word).mkdir()
    workers = workers or (os.cpu_count() or 1) + 1  # one extra keeps the cores busy while a child starts
    with progress("synthesising clips", len(utterances), "clips") as bar:
        for u, clip in render(utterances, workers):
            write_wav(target / u.relpath, clip)
            bar.advance()
    noise_dir = target / BACKGROUND_DIR
    noise_dir.mkdir()
    for name, wave in generate_noises(noise_seconds, seed).items():
        write_wav(noise_dir / f"{name}.wav", wave)
    for split in ("validation", "testing"):
        members = set(splits[split])
        lines = sorted(u.relpath for u in utterances if u.speaker in members)
        (target / f"{split}_list.txt").write_text("".join(line + "\n" for line in lines))
    (target / "README.txt").write_text(
        "Synthetic keyword corpus generated by bifsmn with espeak-ng "
        f"(seed {seed}); layout and splits follow Speech Commands.\n"
    )
    return {
        "clips": len(utterances),
        "speakers": len(chosen),
        "speakers_available": len(pool),
        "speakers_per_split": {k: len(v) for k, v in splits.items()},
    }

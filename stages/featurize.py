"""The `featurize` stage: check every clip, split, build the task, and pack waveforms and features per split.

Outputs (see `bifsmn_cli/data/packed.py`): per split `waves_*.npy` (int16), `labels_*.npy`, `features_*.npy`
(clean features, for evaluation), `names_*.json`; `classes.json`; the background noises (`noises.npy`,
`noises.json`) for the augmenter; `frontend.json` (the feature settings, for training and the C engine); and
`report.json` listing bad clips with their reasons and what was resampled, padded or trimmed.
"""

from __future__ import annotations

import json
import os
import random
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from bifsmn_cli.audio.frontend import FRONTEND_SCHEMA, FrontEnd, FrontEndConfig
from bifsmn_cli.audio.synth_unknown import default_words, synthesize_unknown
from bifsmn_cli.audio.wav import (
    CLIP_SAMPLES,
    SAMPLE_RATE,
    BadClip,
    Clip,
    fit_length,
    from_int16,
    ordered_map,
    read_clip,
    to_int16,
)
from bifsmn_cli.config import Bool, Float, Int, List, Str
from bifsmn_cli.console import info, progress, warn
from bifsmn_cli.data.corpus import (
    SILENCE,
    SPLITS,
    TF_RANDOM_SEED,
    UNKNOWN,
    Item,
    assign_splits,
    build_task,
    official_test_items,
    scan,
    task_words,
)
from bifsmn_cli.data.packed import NpyAppender, save_classes, save_noises, split_paths
from bifsmn_cli.data.unknown_split import move_speakers
from bifsmn_cli.errors import UserError
from bifsmn_cli.fsutil import atomic_write_json
from stages.base import StageContext, StageSpec

_BATCH = 256
_PERCENT = {"min": 0, "max": 100}

SPEC = StageSpec(
    name="featurize",
    schema={
        "task": Str(
            "12", "12 (10 words + silence + unknown) | 35 (every word) | words", choices=("12", "35", "words")
        ),
        "words": List("str", [], "keywords for task: words (silence and unknown are added)"),
        "silence_percentage": Float(
            10.0, "silence items per 100 keyword clips (tasks 12, words)", **_PERCENT
        ),
        "unknown_percentage": Float(
            10.0, "unknown-word items per 100 keyword clips (tasks 12, words)", **_PERCENT
        ),
        "validation_percentage": Float(
            10.0, "hash-rule share of validation (without list files)", **_PERCENT
        ),
        "testing_percentage": Float(10.0, "hash-rule share of testing (without list files)", **_PERCENT),
        "validation_unknown_share": Float(
            0.0,
            "percent of validation made of non-keywords, by moving seeded non-keyword-only speakers from "
            "training (0 = off; tasks 12, words)",
            min=0,
            max=50,
        ),
        "split_seed": Int(
            TF_RANDOM_SEED, "seed of the silence/unknown draws and of eval noise (TensorFlow's)", min=0
        ),
        "synthetic_unknown_per_word": Int(
            0, "espeak-ng clips per synthetic non-keyword word added to training's _unknown_ (0 = off)", min=0
        ),
        "synthetic_unknown_words": List(
            "str",
            [],
            "the synthetic non-keyword words; empty = near-misses of the command words + common words",
        ),
        "strict": Bool(False, "a bad clip is an error instead of being reported and skipped"),
        "downmix": Bool(False, "average multi-channel clips instead of rejecting them"),
        **FRONTEND_SCHEMA,
    },
    needs=("download",),
)


@dataclass
class _Report:
    bad: list[dict[str, str]] = field(default_factory=list)
    resampled: Counter[int] = field(default_factory=Counter)
    fixed: Counter[str] = field(default_factory=Counter)  # padded, trimmed, downmixed


def _eval_silence(noises: list[np.ndarray], seed: int, split: str, index: int) -> np.ndarray:
    """A fixed noise window at a random volume: evaluation silence must not change between runs."""
    if not noises:
        return np.zeros(CLIP_SAMPLES, np.float32)
    rng = np.random.default_rng([seed, SPLITS.index(split), index])
    noise = noises[int(rng.integers(len(noises)))]
    start = int(rng.integers(max(1, len(noise) - CLIP_SAMPLES + 1)))
    window, _ = fit_length(noise[start : start + CLIP_SAMPLES])
    return (window * rng.uniform(0.0, 1.0)).astype(np.float32)


def _strict_error(path: Path, reason: str) -> UserError:
    return UserError(f"{path}: {reason}; fix or remove the file, or set featurize.strict: false")


def _load_noises(
    root: Path, names: list[str], downmix: bool, strict: bool, report: _Report
) -> dict[str, np.ndarray]:
    noises = {}
    for rel in names:
        try:
            clip = read_clip(root / rel, downmix)
        except BadClip as exc:
            if strict:
                raise _strict_error(root / rel, str(exc)) from None
            report.bad.append({"file": rel, "reason": str(exc)})
            continue
        noises[Path(rel).stem] = clip.wave.astype(np.float32)
    return noises


def run(ctx: StageContext) -> dict[str, Any]:
    c = ctx.config
    download = ctx.input_dir("download")
    corpus_info = json.loads((download / "corpus.json").read_text())
    root = download / corpus_info["root"]
    frontend_config = FrontEndConfig.from_section(c)
    corpus = scan(root)
    splits, split_source = assign_splits(corpus, c["validation_percentage"], c["testing_percentage"])
    moved = None
    if c["validation_unknown_share"] > 0 and c["task"] != "35":
        keywords = task_words(c["task"], c["words"], corpus.words)
        moved = move_speakers(
            splits, keywords, c["validation_unknown_share"], c["silence_percentage"], c["split_seed"]
        )
        info(
            f"validation: {moved['speakers_moved']} non-keyword speakers ({moved['clips_moved']} clips) moved from training"
        )
    classes, items = build_task(
        splits,
        c["task"],
        c["words"],
        c["silence_percentage"],
        c["unknown_percentage"],
        c["split_seed"],
        all_unknown_in=("validation",) if moved else (),
    )
    synthetic = 0
    if c["synthetic_unknown_per_word"] > 0 and UNKNOWN in classes:
        keywords = [w for w in classes if w not in (SILENCE, UNKNOWN)]
        words = [w for w in c["synthetic_unknown_words"] if w not in keywords] or default_words(keywords)
        paths = synthesize_unknown(
            ctx.out_dir / "synthetic_unknown", words, c["synthetic_unknown_per_word"], c["split_seed"]
        )
        unknown_label = classes.index(UNKNOWN)
        items["train"] = items["train"] + [Item(str(p), unknown_label) for p in paths]
        random.Random(c["split_seed"]).shuffle(items["train"])
        synthetic = len(paths)
        info(f"train: {synthetic} synthetic non-keyword clips of {len(words)} words added to {UNKNOWN}")
    roots = dict.fromkeys(SPLITS, root)
    if corpus_info.get("test_root"):
        if c["task"] != "12":
            raise UserError(
                "featurize.task: the official v0.02 test set (download.test_set: true) is for task 12; "
                "set featurize.task: 12 or download.test_set: false"
            )
        roots["testing"] = download / corpus_info["test_root"]
        items["testing"] = official_test_items(roots["testing"], classes)
        split_source["testing"] = "official test archive"

    report = _Report()
    noises = _load_noises(root, corpus.noises, c["downmix"], c["strict"], report)
    if not noises:
        warn(f"{root}: no _background_noise_ clips; silence stays silent and the augmenter adds no noise")
    save_noises(ctx.out_dir, noises)
    frontend = FrontEnd(frontend_config).eval()
    shape = (frontend.n_features, frontend.frames())

    for split in SPLITS:
        if not items[split]:
            warn(f"split {split} is empty ({split_source.get(split, '')}); nothing to evaluate on it")
    started, total = time.perf_counter(), 0
    counts: dict[str, dict[str, int]] = {}
    for split in SPLITS:
        labels = _pack_split(
            ctx, split, items[split], roots[split], list(noises.values()), frontend, shape, report
        )
        counts[split] = {classes[k]: int(v) for k, v in sorted(Counter(labels).items())}
        total += len(labels)
    seconds = time.perf_counter() - started
    clips_per_second = total / max(seconds, 1e-9)
    info(f"featurized {total} clips in {seconds:.1f} s ({clips_per_second:.0f} clips/s)")

    save_classes(ctx.out_dir, classes)
    atomic_write_json(
        ctx.out_dir / "frontend.json",
        {
            **frontend_config.to_dict(),
            "sample_rate": SAMPLE_RATE,
            "clip_samples": CLIP_SAMPLES,
            "feature_shape": list(shape),
            "waveform_scale": "float = int16 / 32768",
            "logmel": "power = |STFT|^2 (periodic Hann window of win_length, center=True with reflect padding), "
            "divided by sum(window^2) if normalized; mel = power x HTK-scale triangular filters (no filter norm); "
            "dB = 10*log10(max(mel, 1e-10)), floored per clip at its max - top_db when top_db is set",
        },
    )
    atomic_write_json(
        ctx.out_dir / "report.json",
        {
            "task": c["task"],
            "classes": classes,
            "split_source": split_source,
            "validation_unknown_moved": moved,
            "synthetic_unknown_clips": synthetic,
            "clips": {s: sum(v.values()) for s, v in counts.items()},
            "per_class": counts,
            "bad": report.bad,
            "resampled": {str(k): v for k, v in sorted(report.resampled.items())},
            "padded": report.fixed["padded"],
            "trimmed": report.fixed["trimmed"],
            "downmixed": report.fixed["downmixed"],
            "noises": list(noises),
            "seconds": round(seconds, 2),
            "clips_per_second": round(clips_per_second, 1),
        },
    )
    if report.bad:
        warn(f"{len(report.bad)} bad clips skipped; see {ctx.out_dir / 'report.json'}")
    return {
        "classes": len(classes),
        "feature_shape": list(shape),
        **{f"clips_{s}": sum(v.values()) for s, v in counts.items()},
        "bad": len(report.bad),
        "resampled": sum(report.resampled.values()),
        "padded": report.fixed["padded"],
        "trimmed": report.fixed["trimmed"],
        "clips_per_second": round(clips_per_second, 1),
    }


def _pack_split(
    ctx: StageContext,
    split: str,
    items: list[Item],
    root: Path,
    noises: list[np.ndarray],
    frontend: FrontEnd,
    shape: tuple[int, int],
    report: _Report,
) -> list[int]:
    """Stream one split: decode clips on threads, write int16 waves and features batch by batch."""
    import torch

    strict, downmix, seed = ctx.config["strict"], ctx.config["downmix"], ctx.config["split_seed"]
    silence_count = 0

    def load(item: Item) -> tuple[Item, np.ndarray | None, Clip | None, str]:
        """Runs on worker threads: decode only; the report is updated by the main thread."""
        if item.path is None:
            return item, None, None, ""
        try:
            clip = read_clip(root / item.path, downmix)
        except BadClip as exc:
            return item, None, None, str(exc)
        wave, fix = fit_length(clip.wave)
        return item, wave, clip, fix or ""

    paths = split_paths(ctx.out_dir, split)
    labels: list[int] = []
    names: list[str] = []
    batch: list[np.ndarray] = []
    with (
        NpyAppender(paths["waves"], (CLIP_SAMPLES,), np.int16, len(items)) as waves_out,
        NpyAppender(paths["features"], shape, np.float32, len(items)) as features_out,
        progress(f"featurize {split}", len(items), "clips") as bar,
    ):

        def flush() -> None:
            packed = to_int16(np.stack(batch))
            waves_out.append(packed)
            with torch.no_grad():  # features of exactly what is stored, as training will see it
                features_out.append(frontend(torch.from_numpy(from_int16(packed))).numpy())
            batch.clear()

        for item, wave, clip, note in ordered_map(load, items, workers=min(4, os.cpu_count() or 1)):
            bar.advance()
            if item.path is not None and clip is None:
                if strict:
                    raise _strict_error(root / item.path, note)
                report.bad.append({"file": str(item.path), "reason": note})
                continue
            if clip is not None:
                report.fixed.update([f for f in (note, "downmixed" if clip.downmixed else "") if f])
                if clip.resampled_from:
                    report.resampled[clip.resampled_from] += 1
            if (
                wave is None
            ):  # generated silence: zeros for training (noise is added there), fixed noise for eval
                silent = split != "train"
                wave = (
                    _eval_silence(noises, seed, split, silence_count)
                    if silent
                    else np.zeros(CLIP_SAMPLES, np.float32)
                )
                names.append(f"{SILENCE}/{silence_count}")
                silence_count += 1
            else:
                names.append(str(item.path))
            labels.append(item.label)
            batch.append(wave)
            if len(batch) == _BATCH:
                flush()
        if batch:
            flush()
    with NpyAppender(paths["labels"], (), np.int64, len(labels)) as labels_out:
        labels_out.append(np.asarray(labels, np.int64))
    atomic_write_json(paths["names"], names)
    return labels

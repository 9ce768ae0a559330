"""The `featurize` stage: check every clip, split, build the task, and pack waveforms and features per split.

Outputs (see `bifsmn_cli/data/packed.py`): per split `waves_*.npy` (int16), `labels_*.npy`, `features_*.npy`
(clean features, for evaluation), `names_*.json`; `classes.json`; the background noises (`noises.npy`,
`noises.json`) for the augmenter; `frontend.json` (the front-end settings: training reads them, and checks
them against the features); and `report.json` listing bad clips with their reasons and what was resampled,
padded or trimmed.
"""

from __future__ import annotations

import os
import random
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from bifsmn_cli.audio.config import CLIP_FORMAT, FrontEndConfig
from bifsmn_cli.audio.wav import (
    CLIP_SAMPLES,
    BadClip,
    Clip,
    fit_length,
    from_int16,
    ordered_map,
    read_clip,
    to_int16,
)
from bifsmn_cli.config import Bool, Float, Int, List, Str, dataclass_from_section, schema_from_dataclass
from bifsmn_cli.console import info, progress, warn
from bifsmn_cli.data.corpus import (
    SILENCE,
    SPLITS,
    TF_RANDOM_SEED,
    UNKNOWN,
    CorpusRecord,
    Item,
    assign_splits,
    build_task,
    official_test_items,
    scan,
    task_words,
)
from bifsmn_cli.data.packed import FILES, NpyAppender, save_classes, save_frontend, save_noises, split_paths
from bifsmn_cli.data.unknown_split import UNKNOWN_GROUP, move_speakers
from bifsmn_cli.errors import UserError
from bifsmn_cli.fsutil import atomic_write_json
from stages.pipeline.stage import StageContext, StageSpec

if TYPE_CHECKING:
    from bifsmn_cli.audio.frontend import FrontEnd

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
        "missing_list": Str(
            "hash",
            "a split whose list file is absent or empty: hash = its share by the hash rule (TensorFlow's); "
            "train = none, those clips train (a corpus that ships only a validation list)",
            choices=("hash", "train"),
        ),
        "validation_unknown_share": Float(
            0.0,
            "percent of validation made of non-keywords, by moving seeded whole speakers from training "
            "(0 = off; tasks 12, words)",
            min=0,
            max=50,
        ),
        "synthetic_unknown_per_word": Int(
            0, "espeak-ng clips per synthetic non-keyword word added to training's _unknown_ (0 = off)", min=0
        ),
        "synthetic_unknown_words": List(
            "str", [], "those words; empty = near-misses of the command words and common English words"
        ),
        "split_seed": Int(
            TF_RANDOM_SEED, "seed of the silence/unknown draws and of eval noise (TensorFlow's)", min=0
        ),
        "strict": Bool(False, "a bad clip is an error instead of being reported and skipped"),
        "downmix": Bool(False, "average multi-channel clips instead of rejecting them"),
        **schema_from_dataclass(FrontEndConfig, exclude=CLIP_FORMAT),
    },
    needs=("download",),
    outputs=(*FILES, "report.json"),
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


def _move_to_validation(
    c: dict[str, Any], splits: dict[str, dict[str, list[str]]], corpus_words: list[str]
) -> dict[str, Any] | None:
    """validation_unknown_share: whole speakers moved from training so validation can measure rejection."""
    if c["validation_unknown_share"] <= 0 or c["task"] == "35":
        return None
    keywords = task_words(c["task"], c["words"], corpus_words)
    moved = move_speakers(
        splits, keywords, c["validation_unknown_share"], c["silence_percentage"], c["split_seed"]
    )
    info(
        f"validation: {moved['speakers_moved']} speakers ({moved['clips_moved']} clips) moved from training "
        f"(featurize.validation_unknown_share {c['validation_unknown_share']:g}); validation holds "
        f"{moved['validation_counts'][UNKNOWN_GROUP]} non-keyword clips"
    )
    return moved


def _assigned_unused(
    splits: dict[str, dict[str, list[str]]], items: dict[str, list[Item]], classes: list[str]
) -> tuple[dict[str, dict[str, int]], list[str]]:
    """Per split, the clips assigned to it that the task leaves out (non-keywords beyond unknown_percentage of
    its keyword clips: all of them in a split without keyword clips), and the warnings that say so: a dropped
    clip is data the user thinks they trained or tested on."""
    unused, warnings = {}, []
    for split in SPLITS:
        used = {it.path for it in items[split] if it.path is not None}
        left = [w for w, paths in splits[split].items() for p in paths if p not in used]
        if not left:
            continue
        unused[split] = dict(
            sorted(Counter("keyword" if w in classes else "non-keyword" for w in left).items())
        )
        assigned = sum(len(p) for p in splits[split].values())
        hint = "raise featurize.unknown_percentage to use more non-keywords"
        if _no_keywords(items[split], classes):
            hint = "it has no keyword clips; set featurize.missing_list: train to train on them"
        kinds = ", ".join(f"{n} {k}" for k, n in unused[split].items())
        warnings.append(
            f"featurize: {split}: {len(left)} of its {assigned} clips are not used ({kinds}): {hint}"
        )
    return unused, warnings


def _no_keywords(items: list[Item], classes: list[str]) -> bool:
    keywords = {i for i, name in enumerate(classes) if name not in (SILENCE, UNKNOWN)}
    return not any(it.label in keywords for it in items)


def _add_synthetic_unknown(
    ctx: StageContext, c: dict[str, Any], classes: list[str], items: dict[str, list[Item]]
) -> int:
    """synthetic_unknown_per_word: espeak-ng non-keywords appended to training's `_unknown_`; returns how many."""
    if c["synthetic_unknown_per_word"] <= 0:
        return 0
    if UNKNOWN not in classes:
        raise UserError(
            "featurize.synthetic_unknown_per_word: the task has no _unknown_ class (task 35); set it to 0"
        )
    from bifsmn_cli.data.synthetic_unknown import default_words, synthesize_unknown

    keywords = [w for w in classes if w not in (SILENCE, UNKNOWN)]
    words = [w for w in c["synthetic_unknown_words"] if w not in keywords] or default_words(keywords)
    paths = synthesize_unknown(
        ctx.state_dir / "synthetic_unknown", words, c["synthetic_unknown_per_word"], c["split_seed"]
    )
    label = classes.index(UNKNOWN)
    items["train"] = items["train"] + [Item(str(p), label) for p in paths]
    random.Random(c["split_seed"]).shuffle(items["train"])
    info(f"train: {len(paths)} synthetic non-keyword clips of {len(words)} words added to {UNKNOWN}")
    return len(paths)


def run(ctx: StageContext) -> dict[str, Any]:
    from bifsmn_cli.audio.frontend import FrontEnd

    c = ctx.config
    download = ctx.input_dir("download")
    record = CorpusRecord.load(ctx.input_file("download", "corpus.json"))
    root = record.root_path(download)
    frontend_config = dataclass_from_section(FrontEndConfig, c)
    corpus = scan(root)
    splits, split_source = assign_splits(
        corpus, c["validation_percentage"], c["testing_percentage"], hash_missing=c["missing_list"] == "hash"
    )
    if not splits["validation"]:
        raise UserError(
            f"featurize.missing_list: train leaves validation empty ({root} has no validation list); "
            "set featurize.missing_list: hash or add validation_list.txt"
        )
    moved = _move_to_validation(c, splits, corpus.words)
    classes, items = build_task(
        splits,
        c["task"],
        c["words"],
        c["silence_percentage"],
        c["unknown_percentage"],
        c["split_seed"],
        all_unknown_in=("validation",) if moved else (),
    )
    unused, unused_warnings = _assigned_unused(splits, items, classes)
    synthetic = _add_synthetic_unknown(ctx, c, classes, items)
    roots = dict.fromkeys(SPLITS, root)
    test_root = record.test_root_path(download)
    if test_root is not None:
        if c["task"] != "12":
            raise UserError(
                "featurize.task: the official v0.02 test set (download.test_set: true) is for task 12; "
                "set featurize.task: 12 or download.test_set: false"
            )
        roots["testing"] = test_root
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
    save_frontend(ctx.out_dir, frontend_config, shape)
    atomic_write_json(
        ctx.out_dir / "report.json",
        {
            "task": c["task"],
            "classes": classes,
            "split_source": split_source,
            "assigned_unused": unused,
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
    for line in unused_warnings:
        warn(line)
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

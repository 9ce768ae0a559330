"""What `train-teacher` and `distill` share: loading the featurized data, building the model, fitting, reporting."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import torch

from bifsmn_cli.audio.augment import Augmenter
from bifsmn_cli.audio.config import AugmentConfig
from bifsmn_cli.audio.frontend import FrontEnd
from bifsmn_cli.config import dataclass_from_section
from bifsmn_cli.console import info, progress
from bifsmn_cli.data import packed
from bifsmn_cli.data.corpus import SILENCE
from bifsmn_cli.errors import UserError
from bifsmn_cli.fsutil import atomic_write_json
from bifsmn_cli.nn.config import ModelConfig
from bifsmn_cli.nn.dfsmn import DFSMN
from bifsmn_cli.nn.model_file import save_model
from bifsmn_cli.train.config import TrainConfig
from bifsmn_cli.train.data import SplitTensors, TrainData
from bifsmn_cli.train.distributed import distributed
from bifsmn_cli.train.evaluate import EvalResult
from bifsmn_cli.train.loop import TrainResult, train
from bifsmn_cli.train.metrics import kws_metrics, kws_summary, plot_confusion, plot_history
from stages.pipeline.stage import StageContext


@dataclasses.dataclass
class Loaded:
    data: TrainData
    classes: list[str]
    frontend: FrontEnd  # featurize's front end (frontend.json), applied to augmented waves
    augment: Augmenter | None
    n_features: int
    frames: int


def _split(directory: Path, name: str, with_waves: bool) -> SplitTensors:
    stored = packed.load_split(directory, name)
    return SplitTensors(
        labels=torch.from_numpy(stored.labels.astype("int64")),
        waves=torch.from_numpy(stored.waves.copy()) if with_waves else None,
        features=torch.from_numpy(stored.features.copy()),
    )


def _check_shapes(directory: Path, frontend: FrontEnd, splits: dict[str, SplitTensors]) -> tuple[int, int]:
    """The front end training applies to augmented waves must make what featurize stored: one source, compared."""
    expected = (frontend.n_features, frontend.frames())
    for name, split in splits.items():
        got = tuple(split.features.shape[1:])
        if got != expected:
            raise UserError(
                f"{packed.split_paths(directory, name)['features']}: {got[0]} x {got[1]} features, but "
                f"{directory / packed.FRONTEND_FILE} makes {expected[0]} x {expected[1]}; "
                "rerun `bifsmn featurize --force`"
            )
    return expected


def load_data(ctx: StageContext) -> Loaded:
    """The featurize artifact as tensors, with the augmenter and the front end the training batches go through
    (the settings featurize recorded in frontend.json, checked against the stored features)."""
    directory = ctx.input_dir("featurize")
    classes = packed.load_classes(directory)
    aug_cfg = dataclass_from_section(AugmentConfig, ctx.section("augment"))
    train = _split(directory, "train", with_waves=aug_cfg.enabled)
    val, test = _split(directory, "validation", False), _split(directory, "testing", False)
    frontend = FrontEnd(packed.load_frontend(directory))
    n_features, frames = _check_shapes(
        directory, frontend, {"train": train, "validation": val, "testing": test}
    )
    augment = None
    if aug_cfg.enabled:
        noises = list(packed.load_noises(directory).values())
        silence = classes.index(SILENCE) if SILENCE in classes else None
        augment = Augmenter(aug_cfg, noises, silence_label=silence)
    data = TrainData(train, val, test if len(test) else None, classes)
    info(f"data: {len(train)} train / {len(val)} validation / {len(test)} test clips, {len(classes)} classes")
    return Loaded(data, classes, frontend, augment, n_features, frames)


def model_config(ctx: StageContext, loaded: Loaded) -> ModelConfig:
    return ModelConfig.from_dict(
        {
            **ctx.section("model"),
            "n_mels": loaded.n_features,
            "frames": loaded.frames,
            "num_classes": len(loaded.classes),
        }
    )


def new_model(ctx: StageContext, loaded: Loaded, **kwargs: Any) -> DFSMN:
    """The model at its initial weights, drawn from the pipeline seed: torch seeds its default generator
    randomly per process, so an unseeded init would make every run (and a resumed one's reference) differ."""
    torch.manual_seed(ctx.seed)
    return DFSMN(model_config(ctx, loaded), **kwargs)


def train_config(ctx: StageContext) -> TrainConfig:
    return dataclass_from_section(TrainConfig, ctx.config, seed=ctx.seed, key_prefix=ctx.spec.section)


def fit(
    ctx: StageContext,
    model: DFSMN,
    loaded: Loaded,
    cfg: TrainConfig,
    label: str,
    model_file: str,
    **kwargs: Any,
) -> dict[str, Any]:
    """Train (on every torchrun rank), then, on the writing rank, report and save the model file."""
    with distributed(cfg.device) as writer, EpochProgress(cfg.epochs, label) as bar:
        result = train(
            model,
            loaded.data,
            cfg,
            ctx.state_dir,
            resume=ctx.resume,
            augment=loaded.augment,
            frontend=loaded.frontend,
            progress=bar,
            **kwargs,
        )
        if not writer:
            return {}
        metrics = write_results(ctx, result, loaded.classes, label)
        save_model(ctx.out_dir / model_file, model.cpu(), loaded.classes, loaded.frontend.config, metrics)
    return metrics


class EpochProgress:
    """Turns the loop's batch/epoch events into a progress bar and one line per epoch."""

    def __init__(self, epochs: int, label: str) -> None:
        self.epochs, self.label = epochs, label
        self._bar = None
        self._ctx = None

    def __enter__(self) -> EpochProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._ctx is not None:
            self._ctx.__exit__(*exc)

    def __call__(self, event: dict[str, Any]) -> None:
        if event["event"] == "batch":
            if self._bar is None:
                self._ctx = progress(
                    f"{self.label} epoch {event['epoch'] + 1}/{self.epochs}", event["steps"], "steps"
                )
                self._bar = self._ctx.__enter__()
            self._bar.advance(1)
            return
        if self._ctx is not None:
            self._ctx.__exit__(None, None, None)
            self._ctx = self._bar = None
        accs = ", ".join(f"{v} {describe(m)}" for v, m in event["val_metrics"].items())
        info(
            f"{self.label} epoch {event['epoch'] + 1}/{self.epochs}: loss {event['train_loss']:.4f}, "
            f"validation {accs} ({event['seconds']:.1f} s)"
        )


def _eval_dict(result: EvalResult, classes: list[str]) -> dict[str, Any]:
    return {**kws_metrics(torch.tensor(result.confusion), classes), "confusion": result.confusion}


def describe(m: dict[str, Any]) -> str:
    """One variant's validation figures in a log line: accuracy, then the rejection figures when the task has
    them (balanced accuracy, non-keyword recall, false accepts)."""
    text = f"{100 * m['accuracy']:.2f}% (bal {100 * m['balanced_accuracy']:.2f}"
    if m["unknown_recall"] is not None:
        text += f", unk {100 * m['unknown_recall']:.1f}"
    if m["false_accept"] is not None:
        text += f", FA {100 * m['false_accept']:.1f}"
    return text + ")"


def write_results(ctx: StageContext, result: TrainResult, classes: list[str], title: str) -> dict[str, Any]:
    """metrics.json, history.json/png and one confusion PNG per variant; returns the manifest metrics."""
    out = ctx.out_dir
    evaluation = {
        "best_epoch": result.best_epoch + 1,
        "selection": result.selection,
        "skipped_steps": result.skipped_steps,
        "validation": {v: _eval_dict(r, classes) for v, r in result.val.items()},
        "test": {v: _eval_dict(r, classes) for v, r in (result.test or {}).items()},
    }
    atomic_write_json(out / "metrics.json", evaluation)
    atomic_write_json(out / "history.json", result.history)
    plot_history(result.history, out / "history.png", title=title)
    for variant, r in (result.test or result.val).items():
        split = "test" if result.test else "validation"
        plot_confusion(
            torch.tensor(r.confusion),
            classes,
            out / f"confusion_{variant}.png",
            f"{title} {variant} ({split})",
        )
    seconds = [h["seconds"] for h in result.history]
    metrics: dict[str, Any] = {
        "best_epoch": result.best_epoch + 1,
        "epochs_run": len(result.history),
        "seconds_per_epoch": sum(seconds) / len(seconds) if seconds else None,
    }
    for split, results in (("val", result.val), ("test", result.test or {})):
        for v, r in results.items():
            for key, value in kws_summary(r.confusion, classes).items():
                metrics[f"{split}_{key}_{v}"] = value
    summary = ", ".join(f"{v} {describe(kws_summary(r.confusion, classes))}" for v, r in result.val.items())
    info(f"{title}: best epoch {result.best_epoch + 1}, validation {summary}")
    return metrics

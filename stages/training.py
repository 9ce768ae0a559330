"""What `train-teacher` and `distill` share: their config sections, loading the featurized data, reporting."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import torch

from bifsmn_cli.audio.augment import AUGMENT_SCHEMA, AugmentConfig, Augmenter
from bifsmn_cli.audio.frontend import FrontEnd, FrontEndConfig
from bifsmn_cli.config import schema_from_dataclass
from bifsmn_cli.console import info, progress
from bifsmn_cli.data import packed
from bifsmn_cli.fsutil import atomic_write_json
from bifsmn_cli.nn.checkpoint import save_model
from bifsmn_cli.nn.dfsmn import DFSMN, ModelConfig
from bifsmn_cli.train.distributed import distributed
from bifsmn_cli.train.loop import EvalResult, Split, TrainConfig, TrainData, TrainResult, train
from bifsmn_cli.train.metrics import kws_metrics, plot_confusion, plot_history
from stages.base import StageContext

# The data decides these three; the pipeline file sets everything else about the model.
_FROM_DATA = ("n_mels", "frames", "num_classes")
MODEL_SCHEMA = {k: f for k, f in schema_from_dataclass(ModelConfig).items() if k not in _FROM_DATA}
# The pipeline's top-level `seed` seeds training, so the section has no seed of its own.
TRAIN_SCHEMA = {
    k: f for k, f in schema_from_dataclass(TrainConfig).items() if k not in ("seed", "key_prefix")
}
SHARED_SECTIONS = {"model": MODEL_SCHEMA, "augment": AUGMENT_SCHEMA}
SILENCE = "_silence_"


@dataclasses.dataclass
class Loaded:
    data: TrainData
    classes: list[str]
    frontend_cfg: FrontEndConfig
    frontend: FrontEnd
    augment: Augmenter | None
    n_features: int
    frames: int


def _split(directory: Path, name: str, with_waves: bool) -> Split:
    stored = packed.load_split(directory, name)
    return Split(
        labels=torch.from_numpy(stored.labels.astype("int64")),
        waves=torch.from_numpy(stored.waves.copy()) if with_waves else None,
        features=torch.from_numpy(stored.features.copy()),
    )


def load_data(ctx: StageContext) -> Loaded:
    """The featurize artifact as tensors, with the augmenter and front end the training batches go through."""
    directory = ctx.input_dir("featurize")
    classes = packed.load_classes(directory)
    aug_cfg = AugmentConfig.from_section(ctx.section("augment"))
    frontend_cfg = FrontEndConfig.from_section(ctx.section("featurize"))
    train = _split(directory, "train", with_waves=aug_cfg.enabled)
    val, test = _split(directory, "validation", False), _split(directory, "testing", False)
    augment = None
    if aug_cfg.enabled:
        noises = list(packed.load_noises(directory).values())
        silence = classes.index(SILENCE) if SILENCE in classes else None
        augment = Augmenter(aug_cfg, noises, silence_label=silence)
    data = TrainData(train, val, test if len(test) else None, classes)
    _, n_features, frames = train.features.shape
    info(f"data: {len(train)} train / {len(val)} validation / {len(test)} test clips, {len(classes)} classes")
    return Loaded(data, classes, frontend_cfg, FrontEnd(frontend_cfg), augment, n_features, frames)


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


def train_config(ctx: StageContext, section: dict[str, Any]) -> TrainConfig:
    keys = {f.name for f in dataclasses.fields(TrainConfig)}
    return TrainConfig(
        **{k: v for k, v in section.items() if k in keys}, seed=ctx.seed, key_prefix=ctx.spec.section
    )


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
        save_model(
            ctx.out_dir / model_file, model.cpu(), loaded.classes, loaded.frontend_cfg.to_dict(), metrics
        )
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
        accs = ", ".join(
            f"{v} {100 * a:.2f}% (bal {100 * m['balanced_accuracy']:.2f}, unk {100 * (m['unknown_recall'] or 0):.1f}, "
            f"FA {100 * (m['false_accept'] or 0):.1f})"
            for (v, a), m in zip(event["val_accuracy"].items(), event["val_metrics"].values(), strict=True)
        )
        info(
            f"{self.label} epoch {event['epoch'] + 1}/{self.epochs}: loss {event['train_loss']:.4f}, "
            f"validation {accs} ({event['seconds']:.1f} s)"
        )


def _eval_dict(result: EvalResult, classes: list[str]) -> dict[str, Any]:
    return {**kws_metrics(torch.tensor(result.confusion), classes), "confusion": result.confusion}


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
    for v, r in result.val.items():
        metrics[f"val_accuracy_{v}"] = r.accuracy
        kws = kws_metrics(torch.tensor(r.confusion), classes)
        for key in ("balanced_accuracy", "unknown_recall", "silence_recall", "false_accept"):
            metrics[f"val_{key}_{v}"] = kws[key]
    for v, r in (result.test or {}).items():
        metrics[f"test_accuracy_{v}"] = r.accuracy
    summary = ", ".join(f"{v} {100 * r.accuracy:.2f}%" for v, r in result.val.items())
    info(f"{title}: best epoch {result.best_epoch + 1}, validation {summary}")
    return metrics

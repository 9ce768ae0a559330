"""The training loop shared by the teacher and the distilled thinnable student.

Independent of manifests and the CLI: a stage gives it tensors (data.py), two callables and a state directory.
Per batch the joint loss (losses.py) of every trained variant, one backward, one update; after every epoch the
validation score (evaluate.py), the best-epoch bookkeeping (selection.py) and a checkpoint (checkpoint.py), so
`resume=True` continues bit-exactly. Under torchrun each process takes its slice of every batch
(distributed.py). The model ends holding the selected epoch's weights.

`progress(event)` (process 0 only) after every batch: {"event": "batch", epoch, step, steps, loss}; after every
epoch: {"event": "epoch", epoch, epochs, train_loss, val_accuracy: {variant: acc}, val_metrics: {variant:
kws_summary}, lr, seconds}. Epochs are
0-based.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from bifsmn_cli.audio.specaugment import SpecAugmentConfig, spec_augment
from bifsmn_cli.errors import UserError
from bifsmn_cli.nn.dfsmn import DFSMN, variant_blocks, variant_ratio
from bifsmn_cli.nn.hed import HED
from bifsmn_cli.train import checkpoint, distributed
from bifsmn_cli.train.config import TrainConfig
from bifsmn_cli.train.data import Augment, Frontend, TrainData, split_features, to_float
from bifsmn_cli.train.evaluate import EvalResult, evaluate
from bifsmn_cli.train.losses import JointLoss
from bifsmn_cli.train.metrics import kws_summary, unknown_class
from bifsmn_cli.train.optim import make_optimizer
from bifsmn_cli.train.sampling import epoch_length, epoch_order
from bifsmn_cli.train.selection import KINDS, BestEpochs

Progress = Callable[[dict[str, Any]], None]
MAX_BAD_STEPS = 20  # consecutive non-finite steps before giving up


@dataclass
class TrainResult:
    best_epoch: int  # 0-based epoch whose weights the model now holds
    selection: str  # "ordered" (1x >= 0.5x >= ...) or "best-1x" (fallback)
    val: dict[str, EvalResult]
    test: dict[str, EvalResult] | None
    history: list[dict[str, Any]]
    skipped_steps: int


class _Joint(nn.Module):
    """Runs every trained variant in one forward call, so DistributedDataParallel sees one forward per step."""

    def __init__(self, model: DFSMN, variants: Sequence[str], return_blocks: bool) -> None:
        super().__init__()
        self.model, self.variants, self.return_blocks = model, tuple(variants), return_blocks

    def forward(self, x: Tensor) -> dict[str, Any]:
        return self.model.forward_multi(x, self.variants, self.return_blocks)


def _variant_weights(model: DFSMN, cfg: TrainConfig, variants: Sequence[str] | None) -> dict[str, float]:
    """The trained variants and their loss weights (default: their depth ratios)."""
    variants = tuple(variants or model.variants)
    for v in variants:
        variant_blocks(v, model.cfg.num_blocks)
        if v not in model.variants:
            raise UserError(f"variant {v!r} is not one of the model's variants {list(model.variants)}")
    weights = list(cfg.variant_weights) or [variant_ratio(v) for v in variants]
    if len(weights) != len(variants):
        raise UserError(
            f"{cfg.key('variant_weights')}: {len(weights)} weights for {len(variants)} variants {list(variants)}"
        )
    return dict(zip(variants, weights, strict=True))


class _Batches:
    """One epoch's batches of (features, labels) on the device: this process's slice of every global batch, augmented
    and turned into features on the fly, or the cached features."""

    def __init__(
        self,
        data: TrainData,
        cfg: TrainConfig,
        frontend: Frontend | None,
        augment: Augment | None,
        device: torch.device,
    ) -> None:
        self.rank, self.world = distributed.world()
        self.data, self.cfg, self.frontend, self.augment, self.device = data, cfg, frontend, augment, device
        self.features = None if augment is not None else split_features(data.train, frontend, "train")
        self.unknown = unknown_class(data.class_names)
        n = epoch_length(data.train.labels, self.unknown, cfg.oversample_unknown)
        self.spec = SpecAugmentConfig(
            cfg.spec_time_masks, cfg.spec_time_width, cfg.spec_freq_masks, cfg.spec_freq_width
        )
        self.steps = n // cfg.batch_size if self.world > 1 else math.ceil(n / cfg.batch_size)
        if self.steps < 1:
            raise UserError(
                f"train split: {n} clips are fewer than one batch of {cfg.key('batch_size')} = "
                f"{cfg.batch_size} per process"
            )

    def __call__(self, order: Tensor, aug_gen: torch.Generator) -> Iterator[tuple[Tensor, Tensor]]:
        size, local = self.cfg.batch_size, self.cfg.batch_size // self.world
        for step in range(self.steps):
            batch = order[step * size : (step + 1) * size]
            if self.world > 1:
                batch = batch[self.rank * local : (self.rank + 1) * local]
            labels = self.data.train.labels[batch].long()
            if self.augment is not None:
                waves = self.augment(to_float(self.data.train.waves[batch]), labels, aug_gen)
                feats = self.frontend(waves).to(self.device)
            else:
                feats = self.features[batch].to(self.device)
            if self.spec.enabled:
                feats = spec_augment(feats, self.spec, aug_gen)
            yield feats, labels.to(self.device)


def train(
    model: DFSMN,
    data: TrainData,
    cfg: TrainConfig,
    state_dir: Path,
    resume: bool = False,
    *,
    teacher: DFSMN | None = None,
    hed: HED | None = None,
    variants: Sequence[str] | None = None,
    augment: Augment | None = None,
    frontend: Frontend | None = None,
    progress: Progress | None = None,
) -> TrainResult:
    """Train `model` (teacher, or student distilled from `teacher` with `hed`); see the module docstring."""
    rank, world = distributed.world()
    device = distributed.resolve_device(cfg.device, cfg.key("device"))
    weights = _variant_weights(model, cfg, variants)
    variants = tuple(weights)
    if cfg.batch_size % world:
        raise UserError(
            f"{cfg.key('batch_size')}: {cfg.batch_size} does not split evenly over {world} processes"
        )
    loss_fn = JointLoss(model, weights, cfg, teacher, hed)
    if augment is not None and (data.train.waves is None or frontend is None):
        raise UserError("training with augmentation needs the training waves and a frontend")
    model.to(device)
    loss_fn.to(device)
    batches = _Batches(data, cfg, frontend, augment, device)
    names = list(data.class_names) or [str(i) for i in range(model.cfg.num_classes)]
    val_feats = split_features(data.val, frontend, "val")
    optimizer, scheduler = make_optimizer(model, cfg, batches.steps)
    order_gen = torch.Generator().manual_seed(cfg.seed)  # identical on every process: one global order
    aug_gen = torch.Generator().manual_seed(cfg.seed * 7919 + 1 + rank)

    state_dir = Path(state_dir)
    ckpt_path = state_dir / checkpoint.CHECKPOINT
    fingerprint = checkpoint.fingerprint(model, cfg, variants, loss_fn.hed, world)
    start_epoch, history, skipped, best = 0, [], 0, BestEpochs(variants, tolerance=cfg.select_tolerance)
    if resume and ckpt_path.exists():
        ckpt = checkpoint.load(ckpt_path, fingerprint)
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        scheduler.load_state_dict(ckpt["scheduler"])
        checkpoint.set_rng_state(ckpt["rng"][rank], order_gen, aug_gen)
        start_epoch, history, skipped = ckpt["epoch"], ckpt["history"], ckpt["skipped"]
        best = BestEpochs(variants, ckpt["best"], cfg.select_tolerance)
    else:
        if rank == 0:
            checkpoint.discard(state_dir, KINDS)
        checkpoint.seed_everything(cfg.seed + rank)

    joint: nn.Module = _Joint(model, variants, loss_fn.needs_blocks)
    if world > 1:  # every parameter gets a gradient unless only some of the model's variants are trained
        unused = set(variants) != set(model.variants)
        joint = nn.parallel.DistributedDataParallel(
            joint, broadcast_buffers=False, find_unused_parameters=unused
        )
    params = [p for p in model.parameters() if p.requires_grad]
    bad_in_row, stall = 0, checkpoint.stall_point()

    with distributed.sync_batchnorm(model):
        for epoch in range(start_epoch, cfg.epochs):
            started = time.perf_counter()
            model.train()
            model.set_epoch(epoch, cfg.epochs)
            total_loss, steps_done = torch.zeros(()), 0
            order = epoch_order(data.train.labels, batches.unknown, cfg.oversample_unknown, order_gen)
            for step, (feats, labels) in enumerate(batches(order, aug_gen)):
                loss = loss_fn(joint, feats, labels)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                norm = nn.utils.clip_grad_norm_(params, cfg.grad_clip if cfg.grad_clip > 0 else math.inf)
                # a non-finite loss or gradient skips the update instead of poisoning the weights; with several
                # processes only the (already averaged, hence identical) gradient norm decides, so all agree
                if torch.isfinite(norm) and (world > 1 or torch.isfinite(loss)):
                    optimizer.step()
                    scheduler.step()
                    bad_in_row = 0
                    total_loss += loss.detach().cpu()
                    steps_done += 1
                else:
                    skipped += 1
                    bad_in_row += 1
                    if bad_in_row >= MAX_BAD_STEPS:
                        raise UserError(
                            f"training diverged: {bad_in_row} steps in a row with a non-finite loss at epoch "
                            f"{epoch + 1}; lower {cfg.key('lr')} (now {cfg.lr:g}) or raise {cfg.key('warmup_epochs')}"
                        )
                if progress is not None and rank == 0:
                    event = {"event": "batch", "epoch": epoch, "step": step, "steps": batches.steps}
                    progress({**event, "loss": float(loss.detach())})
                if stall is not None and stall[:2] == (epoch, step):
                    checkpoint.stall_forever(stall[2])

            val = evaluate(model, val_feats, data.val.labels, variants, cfg.eval_batch_size, device)
            summary = {v: kws_summary(r.confusion, names) for v, r in val.items()}
            record = {
                "epoch": epoch,
                "train_loss": distributed.mean_over_processes(float(total_loss) / max(steps_done, 1)),
                "val_accuracy": {v: r.accuracy for v, r in val.items()},
                "val_metrics": summary,
                "lr": optimizer.param_groups[0]["lr"],
                "seconds": time.perf_counter() - started,
            }
            history.append(record)
            improved = best.update(epoch, {v: m[cfg.select] for v, m in summary.items()})
            rng = distributed.gather_over_processes(checkpoint.rng_state(order_gen, aug_gen))
            if rank == 0:
                weights_now = {k: t.detach().cpu() for k, t in model.state_dict().items()}
                for kind in improved:
                    checkpoint.save(weights_now, checkpoint.best_path(state_dir, kind))
                state = {
                    "model": weights_now,
                    "optimizer": optimizer.state_dict(),
                    "scheduler": scheduler.state_dict(),
                }
                ckpt = {
                    "fingerprint": fingerprint,
                    "epoch": epoch + 1,
                    **state,
                    "rng": rng,
                    "history": history,
                }
                checkpoint.save({**ckpt, "best": best.state, "skipped": skipped}, ckpt_path)
            distributed.barrier()
            if progress is not None and rank == 0:
                progress({"event": "epoch", **record, "epochs": cfg.epochs})

    model.load_state_dict(
        torch.load(checkpoint.best_path(state_dir, best.kind), map_location="cpu", weights_only=True)
    )
    model.to(device)
    val_result = evaluate(model, val_feats, data.val.labels, variants, cfg.eval_batch_size, device)
    test_result = None
    if data.test is not None:
        test_feats = split_features(data.test, frontend, "test")
        test_result = evaluate(model, test_feats, data.test.labels, variants, cfg.eval_batch_size, device)
    return TrainResult(best.epoch, best.selection, val_result, test_result, history, skipped)

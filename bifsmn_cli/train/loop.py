"""The training loop shared by the teacher and the distilled thinnable student.

Independent of manifests and the CLI: a stage gives it tensors, two callables and a state directory.

- Data: `TrainData` of `Split`s (labels, int16 waves (N, L) and/or cached clean features (N, n_mels, frames)).
  With an `augment(waves, labels, generator)` callable, every training batch is augmented from the waves and turned into
  features by `frontend(waves)`; without one, training uses cached features (computed once with `frontend` if
  absent). Validation and test always use clean cached features.
- Loss per batch: sum over the trained variants v of w_v * (CE_v + alpha * HED_v) (+ the binarizer's extra loss,
  e.g. RAD), one backward. The frozen teacher runs once per batch, in eval mode under no_grad.
- Checkpoint after every epoch in `state_dir/checkpoint.pt` (model, optimizer, scheduler, every RNG including
  the data-order and augmentation generators, history, best), written atomically; `resume=True` continues
  from it and ends with bit-identical weights (same device and thread count).
- Best by validation: the highest 1x accuracy among epochs where accuracies do not increase as the variant gets
  thinner (1x >= 0.5x >= 0.25x); if no epoch satisfies that, the highest 1x accuracy. The model ends holding the
  selected weights.
- Data parallel: when torch.distributed is initialised with several processes, each takes an equal slice of
  every global batch, gradients are averaged by DistributedDataParallel and BatchNorm statistics are synchronised
  over the processes, so the update equals one process on the global batch (HED is normalised per process).
- `progress(event)` (process 0 only) after every batch: {"event": "batch", epoch, step, steps, loss}; after
  every epoch: {"event": "epoch", epoch, epochs, train_loss, val_accuracy: {variant: acc}, lr, seconds}.
  Epochs are 0-based.
"""

from __future__ import annotations

import dataclasses
import math
import os
import random
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor, nn

from bifsmn_cli.audio.specaugment import SpecAugmentConfig, spec_augment
from bifsmn_cli.errors import UserError
from bifsmn_cli.fsutil import atomic_path
from bifsmn_cli.nn.dfsmn import DFSMN, variant_blocks, variant_ratio
from bifsmn_cli.nn.hed import HED
from bifsmn_cli.train.metrics import accuracy, confusion_matrix, kws_metrics, per_class_accuracy

Augment = Callable[[Tensor, Tensor, torch.Generator], Tensor]  # (waves, labels, generator) -> waves
Frontend = Callable[[Tensor], Tensor]
Progress = Callable[[dict[str, Any]], None]

CHECKPOINT = "checkpoint.pt"
MAX_BAD_STEPS = 20  # consecutive non-finite steps before giving up
# Test hook, "EPOCH:STEP:PATH" (0-based): after that step's update, create PATH and block until killed, so a test
# can SIGKILL training mid-epoch at a known point whatever the machine's speed.
STALL_ENV = "BIFSMN_TEST_STALL"


def _stall_point() -> tuple[int, int, Path] | None:
    value = os.environ.get(STALL_ENV)
    if not value:
        return None
    epoch, step, path = value.split(":", 2)
    return int(epoch), int(step), Path(path)


def _stall_forever(path: Path) -> None:
    path.touch()
    while True:
        time.sleep(3600)


@dataclass
class TrainConfig:
    epochs: int = field(default=30, metadata={"min": 1, "help": "passes over the training set"})
    batch_size: int = field(default=96, metadata={"min": 2, "help": "global batch size"})
    optimizer: str = field(
        default="sgd", metadata={"choices": ("sgd", "adamw"), "help": "sgd (momentum) or adamw"}
    )
    lr: float = field(default=0.02, metadata={"min": 0.0, "help": "peak learning rate"})
    momentum: float = field(default=0.9, metadata={"min": 0.0, "max": 1.0, "help": "SGD momentum (Nesterov)"})
    weight_decay: float = field(
        default=1e-4, metadata={"min": 0.0, "help": "on conv/linear weights only (not BN, bias, PReLU)"}
    )
    schedule: str = field(
        default="cosine", metadata={"choices": ("cosine", "constant"), "help": "lr after warm-up"}
    )
    warmup_epochs: float = field(default=1.0, metadata={"min": 0.0, "help": "linear warm-up length"})
    label_smoothing: float = field(
        default=0.0, metadata={"min": 0.0, "max": 0.5, "help": "cross-entropy smoothing"}
    )
    grad_clip: float = field(
        default=5.0, metadata={"min": 0.0, "help": "max gradient norm; 0 disables clipping"}
    )
    variant_weights: list[float] = field(
        default_factory=list, metadata={"help": "loss weight per trained variant; empty = the depth ratios"}
    )
    kd_weight: float = field(
        default=0.0,
        metadata={
            "min": 0.0,
            "help": "weight of the teacher-logit distillation (KL) added to each variant's CE",
        },
    )
    kd_temperature: float = field(
        default=1.0, metadata={"min": 0.1, "help": "softmax temperature of that KL"}
    )
    select: str = field(
        default="accuracy",
        metadata={
            "choices": ("accuracy", "balanced_accuracy"),
            "help": "validation metric of the 1x variant that picks the best epoch",
        },
    )
    unknown_weight: float = field(
        default=1.0, metadata={"min": 0.0, "help": "cross-entropy weight of the _unknown_ class (others 1)"}
    )
    oversample_unknown: float = field(
        default=1.0, metadata={"min": 1.0, "help": "times each _unknown_ clip appears per epoch"}
    )
    mixup_alpha: float = field(
        default=0.0, metadata={"min": 0.0, "help": "mixup Beta(alpha, alpha) on features; 0 = off"}
    )
    spec_time_masks: int = field(default=0, metadata={"min": 0, "help": "SpecAugment time masks per clip"})
    spec_time_width: int = field(default=0, metadata={"min": 0, "help": "max frames per time mask"})
    spec_freq_masks: int = field(
        default=0, metadata={"min": 0, "help": "SpecAugment frequency masks per clip"}
    )
    spec_freq_width: int = field(default=0, metadata={"min": 0, "help": "max bins per frequency mask"})
    eval_batch_size: int = field(default=512, metadata={"min": 1, "help": "batch size of evaluation"})
    seed: int = field(default=0, metadata={"help": "seed of data order, augmentation and dropout"})
    device: str = field(
        default="auto", metadata={"choices": ("auto", "cpu", "cuda"), "help": "where to train"}
    )
    # Not a setting: where these settings live for the user (the pipeline section), named by error messages.
    key_prefix: str = "TrainConfig"

    def key(self, name: str) -> str:
        return f"{self.key_prefix}.{name}"


@dataclass
class Split:
    """One split: labels (N,), optional int16 waves (N, L), optional clean features (N, n_mels, frames)."""

    labels: Tensor
    waves: Tensor | None = None
    features: Tensor | None = None

    def __len__(self) -> int:
        return len(self.labels)


@dataclass
class TrainData:
    train: Split
    val: Split
    test: Split | None = None
    class_names: Sequence[str] = ()


@dataclass
class EvalResult:
    accuracy: float
    per_class: list[float | None]
    confusion: list[list[int]]


@dataclass
class TrainResult:
    best_epoch: int  # 0-based epoch whose weights the model now holds
    selection: str  # "ordered" (1x >= 0.5x >= ...) or "best-1x" (fallback)
    val: dict[str, EvalResult]
    test: dict[str, EvalResult] | None
    history: list[dict[str, Any]]
    skipped_steps: int


def resolve_device(name: str, key: str = "device") -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise UserError(f"{key}: cuda was requested but no CUDA device is available; use auto or cpu")
    return torch.device(name)


def _world() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def _features(split: Split, frontend: Frontend | None, name: str, chunk: int = 512) -> Tensor:
    """The split's cached features, computed once from its waves if absent."""
    if split.features is not None:
        return split.features
    if split.waves is None or frontend is None:
        raise UserError(f"{name} split: needs cached features, or waves and a frontend to compute them")
    with torch.no_grad():
        return torch.cat([frontend(_to_float(w)) for w in split.waves.split(chunk)])


def _to_float(waves: Tensor) -> Tensor:
    return waves.float() / 32768.0 if waves.dtype == torch.int16 else waves.float()


def _param_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """Weight decay only on conv/linear weights: on BN or PReLU it would pull scales and slopes to 0, and a
    zero PReLU slope makes the next binarizer see a constant +1."""
    decay, no_decay = [], []
    for module in model.modules():
        for name, p in module.named_parameters(recurse=False):
            is_weight = name == "weight" and isinstance(module, nn.Linear | nn.Conv1d | nn.Conv2d)
            (decay if is_weight else no_decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def _lr_lambda(cfg: TrainConfig, steps_per_epoch: int) -> Callable[[int], float]:
    total = cfg.epochs * steps_per_epoch
    warm = min(int(round(cfg.warmup_epochs * steps_per_epoch)), total)

    def factor(step: int) -> float:
        if step < warm:
            return (step + 1) / warm
        if cfg.schedule == "constant":
            return 1.0
        progress = (step - warm) / max(total - warm, 1)
        return 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0)))

    return factor


class _Joint(nn.Module):
    """Runs every trained variant in one forward call, so DistributedDataParallel sees one forward per step."""

    def __init__(self, model: DFSMN, variants: Sequence[str], return_blocks: bool) -> None:
        super().__init__()
        self.model, self.variants, self.return_blocks = model, tuple(variants), return_blocks

    def forward(self, x: Tensor) -> dict[str, Any]:
        return self.model.forward_multi(x, self.variants, self.return_blocks)


class _AllReduceSum(torch.autograd.Function):
    """Sum over processes; the backward sums the gradients of every process the same way."""

    @staticmethod
    def forward(ctx, x: Tensor) -> Tensor:  # type: ignore[override]
        x = x.clone()
        dist.all_reduce(x)
        return x

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:  # type: ignore[override]
        grad = grad.clone()
        dist.all_reduce(grad)
        return grad


def _synced_bn_forward(bn: nn.modules.batchnorm._BatchNorm, x: Tensor) -> Tensor:
    """BatchNorm whose batch statistics cover every process (torch's SyncBatchNorm is GPU-only)."""
    if not bn.training:
        return type(bn).forward(bn, x)
    c = x.shape[1]
    dims = [0, *range(2, x.dim())]
    shape = [1, c] + [1] * (x.dim() - 2)
    total = _AllReduceSum.apply(torch.cat([x.sum(dims), x.new_full((1,), x.numel() // c)]))
    n = total[-1]
    mean = total[:c] / n
    centred = x - mean.view(shape)
    # a second pass for the variance: E[x^2] - mean^2 cancels badly on near-constant channels
    var = _AllReduceSum.apply(centred.square().sum(dims)) / n
    with torch.no_grad():
        bn.running_mean.mul_(1 - bn.momentum).add_(mean, alpha=bn.momentum)
        bn.running_var.mul_(1 - bn.momentum).add_(var * n / (n - 1), alpha=bn.momentum)
        bn.num_batches_tracked.add_(1)
    scale = torch.rsqrt(var + bn.eps) * bn.weight
    return centred * scale.view(shape) + bn.bias.view(shape)


@contextmanager
def _sync_batchnorm(model: nn.Module, enabled: bool) -> Iterator[None]:
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)] if enabled else []
    for bn in bns:
        bn.forward = _synced_bn_forward.__get__(bn)  # instance attribute: removed again below
    try:
        yield
    finally:
        for bn in bns:
            del bn.forward


@torch.no_grad()
def evaluate(
    model: DFSMN,
    features: Tensor,
    labels: Tensor,
    variants: Sequence[str],
    batch_size: int = 512,
    device: torch.device | str = "cpu",
) -> dict[str, EvalResult]:
    """Accuracy, per-class accuracy and confusion matrix of each variant on clean features.

    Under torch.distributed each process scores a slice and the confusion matrices are summed."""
    rank, world = _world()
    was_training = model.training
    model.eval()
    n_cls = model.cfg.num_classes
    confusion = {v: torch.zeros(n_cls, n_cls, dtype=torch.int64) for v in variants}
    try:
        index = torch.arange(rank, len(labels), world)
        for chunk in index.split(batch_size):
            out = model.forward_multi(features[chunk].to(device), variants)
            for v in variants:
                confusion[v] += confusion_matrix(out[v].argmax(dim=1), labels[chunk], n_cls)
    finally:
        model.train(was_training)
    if world > 1:
        for cm in confusion.values():
            dist.all_reduce(cm)
    return {v: EvalResult(accuracy(cm), per_class_accuracy(cm), cm.tolist()) for v, cm in confusion.items()}


def _epoch_order(labels: Tensor, unknown: int | None, factor: float, g: torch.Generator) -> Tensor:
    """A random permutation of the training rows; with factor > 1 every _unknown_ row appears floor(factor)
    times plus a random share for the fraction."""
    if factor <= 1 or unknown is None:
        return torch.randperm(len(labels), generator=g)
    rows = (labels == unknown).nonzero().squeeze(1)
    whole, frac = int(factor), factor - int(factor)
    extra = [rows] * (whole - 1)
    n_frac = int(round(frac * len(rows)))
    if n_frac:
        extra.append(rows[torch.randperm(len(rows), generator=g)[:n_frac]])
    pool = torch.cat([torch.arange(len(labels)), *extra])
    return pool[torch.randperm(len(pool), generator=g)]


def _rng_state(order: torch.Generator, aug: torch.Generator) -> dict[str, Any]:
    state = {
        "torch": torch.get_rng_state(),
        "numpy": np.random.get_state(),
        "python": random.getstate(),
        "order": order.get_state(),
        "augment": aug.get_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict[str, Any], order: torch.Generator, aug: torch.Generator) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])
    order.set_state(state["order"])
    aug.set_state(state["augment"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _ordered(accs: dict[str, float], variants: Sequence[str]) -> bool:
    by_depth = sorted(variants, key=variant_ratio, reverse=True)
    return all(accs[a] >= accs[b] for a, b in zip(by_depth, by_depth[1:], strict=False))


def _kd(logits: Tensor, teacher_logits: Tensor, temperature: float) -> Tensor:
    """Hinton's KL(teacher || student) on softened logits, scaled by T^2 so its gradients keep their size."""
    t = temperature
    return F.kl_div(
        F.log_softmax(logits / t, dim=1),
        F.log_softmax(teacher_logits / t, dim=1),
        log_target=True,
        reduction="batchmean",
    ) * (t * t)


def _joint_loss(
    outputs: dict[str, Any],
    labels: Tensor,
    weights: dict[str, float],
    criterion: nn.Module,
    hed: HED | None,
    targets: list[Tensor] | None,
    teacher_logits: Tensor | None = None,
    cfg: TrainConfig | None = None,
    mix: tuple[float, Tensor] | None = None,
) -> Tensor:
    """sum_v w_v (CE_v + alpha HED_v [+ kd KL_v]); `outputs[v]` is logits, or (logits, blocks) when distilling."""
    loss = labels.new_zeros((), dtype=torch.float32)
    for v, w in weights.items():
        if targets is None:
            logits, term = outputs[v], 0.0
        else:
            logits, blocks = outputs[v]
            term = hed.cfg.alpha * hed(blocks, targets)
        if mix is None:
            term = term + criterion(logits, labels)
        else:
            lam, other = mix
            term = term + lam * criterion(logits, labels) + (1 - lam) * criterion(logits, other)
        if teacher_logits is not None:
            term = term + cfg.kd_weight * _kd(logits, teacher_logits, cfg.kd_temperature)
        loss = loss + w * term
    return loss


def _fingerprint(
    model: DFSMN, cfg: TrainConfig, variants: Sequence[str], hed: HED | None, world: int
) -> dict:
    return {
        "model": dataclasses.asdict(model.cfg),
        "binarizer": model.binarizer_name,
        "train": dataclasses.asdict(cfg),
        "variants": list(variants),
        "hed": dataclasses.asdict(hed.cfg) if hed is not None else None,
        "world": world,
    }


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
    rank, world = _world()
    device = resolve_device(cfg.device, cfg.key("device"))
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
    if cfg.batch_size % world:
        raise UserError(
            f"{cfg.key('batch_size')}: {cfg.batch_size} does not split evenly over {world} processes"
        )
    distill = hed is not None and hed.enabled
    use_kd = cfg.kd_weight > 0
    if (distill or use_kd) and teacher is None:
        raise UserError("distillation (HED or kd_weight) needs a teacher model")
    if augment is not None and (data.train.waves is None or frontend is None):
        raise UserError("training with augmentation needs the training waves and a frontend")

    model.to(device)
    if distill or use_kd:
        teacher.to(device).eval()
        for p in teacher.parameters():
            p.requires_grad_(False)
    if distill:
        hed.to(device)
    train_feats = None if augment is not None else _features(data.train, frontend, "train")
    val_feats = _features(data.val, frontend, "val")
    names = list(data.class_names) or [str(i) for i in range(model.cfg.num_classes)]
    unknown_index = names.index("_unknown_") if "_unknown_" in names else None
    n_train = len(data.train)
    if cfg.oversample_unknown > 1 and unknown_index is not None:
        n_unknown = int((data.train.labels == unknown_index).sum())
        n_train += int(round((cfg.oversample_unknown - 1) * n_unknown))
    steps_per_epoch = n_train // cfg.batch_size if world > 1 else math.ceil(n_train / cfg.batch_size)
    if steps_per_epoch < 1:
        raise UserError(
            f"train split: {n_train} clips are fewer than one batch of {cfg.key('batch_size')} = "
            f"{cfg.batch_size} per process"
        )

    groups = _param_groups(model, cfg.weight_decay)
    if cfg.optimizer == "sgd":
        optimizer = torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.momentum > 0)
    else:
        optimizer = torch.optim.AdamW(groups, lr=cfg.lr)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, _lr_lambda(cfg, steps_per_epoch))
    order_gen = torch.Generator().manual_seed(cfg.seed)  # identical on every process: one global order
    aug_gen = torch.Generator().manual_seed(cfg.seed * 7919 + 1 + rank)

    state_dir = Path(state_dir)
    ckpt_path = state_dir / CHECKPOINT
    fingerprint = _fingerprint(model, cfg, variants, hed if distill else None, world)
    start_epoch, history, skipped = 0, [], 0
    best: dict[str, dict[str, Any] | None] = {"ordered": None, "any": None}
    if resume and ckpt_path.exists():
        try:
            ckpt = torch.load(ckpt_path, map_location="cpu", weights_only=False)
        except Exception as exc:  # torch raises many types for a damaged zip/pickle
            raise UserError(
                f"{ckpt_path}: corrupt or unreadable checkpoint ({type(exc).__name__}); "
                "rerun with --force to start the stage over"
            ) from None
        if not isinstance(ckpt, dict) or ckpt.get("fingerprint") != fingerprint:
            raise UserError(
                f"{ckpt_path}: written with different settings; rerun without resuming (force the stage)"
            )
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        scheduler.load_state_dict(ckpt["scheduler"])
        _set_rng_state(ckpt["rng"][rank], order_gen, aug_gen)
        start_epoch, history, best, skipped = ckpt["epoch"], ckpt["history"], ckpt["best"], ckpt["skipped"]
    else:
        if rank == 0:  # a fresh run must not pick up the best weights of an older one
            for stale in (ckpt_path, *(state_dir / f"best_{kind}.pt" for kind in best)):
                stale.unlink(missing_ok=True)
        torch.manual_seed(cfg.seed + rank)
        np.random.seed(cfg.seed + rank)
        random.seed(cfg.seed + rank)

    # every parameter gets a gradient unless only some of the model's variants are trained (DDP must know)
    unused = set(variants) != set(model.variants)
    joint: nn.Module = _Joint(model, variants, distill)
    if world > 1:
        joint = nn.parallel.DistributedDataParallel(
            joint, broadcast_buffers=False, find_unused_parameters=unused
        )
    local_batch = cfg.batch_size // world
    class_weight = None
    if cfg.unknown_weight != 1.0 and unknown_index is not None:
        class_weight = torch.ones(model.cfg.num_classes)
        class_weight[unknown_index] = cfg.unknown_weight
        class_weight = class_weight.to(device)
    criterion = nn.CrossEntropyLoss(weight=class_weight, label_smoothing=cfg.label_smoothing)
    spec_cfg = SpecAugmentConfig(
        cfg.spec_time_masks, cfg.spec_time_width, cfg.spec_freq_masks, cfg.spec_freq_width
    )
    params = [p for p in model.parameters() if p.requires_grad]
    bad_in_row = 0
    stall = _stall_point()

    with _sync_batchnorm(model, world > 1):
        for epoch in range(start_epoch, cfg.epochs):
            started = time.perf_counter()
            model.train()
            model.set_epoch(epoch, cfg.epochs)
            order = _epoch_order(data.train.labels, unknown_index, cfg.oversample_unknown, order_gen)
            total_loss, steps_done = torch.zeros(()), 0
            for step in range(steps_per_epoch):
                batch = order[step * cfg.batch_size : (step + 1) * cfg.batch_size]
                if world > 1:
                    batch = batch[rank * local_batch : (rank + 1) * local_batch]
                labels = data.train.labels[batch].long()
                if augment is not None:
                    waves = augment(_to_float(data.train.waves[batch]), labels, aug_gen)
                    feats = frontend(waves).to(device)
                else:
                    feats = train_feats[batch].to(device)
                labels = labels.to(device)
                if spec_cfg.enabled:
                    feats = spec_augment(feats, spec_cfg, aug_gen)
                mix = None
                if cfg.mixup_alpha > 0:
                    lam = float(torch.distributions.Beta(cfg.mixup_alpha, cfg.mixup_alpha).sample())
                    perm = torch.randperm(len(labels), generator=aug_gen).to(device)
                    feats = lam * feats + (1 - lam) * feats[perm]
                    mix = (lam, labels[perm])
                targets = teacher_logits = None
                if distill or use_kd:
                    with torch.no_grad():
                        teacher_logits, teacher_blocks = teacher(feats, return_blocks=True)
                    targets = hed.targets(teacher_blocks) if distill else None
                    teacher_logits = teacher_logits if use_kd else None
                loss = _joint_loss(
                    joint(feats),
                    labels,
                    dict(zip(variants, weights, strict=True)),
                    criterion,
                    hed,
                    targets,
                    teacher_logits,
                    cfg,
                    mix,
                )
                extra = model.pop_extra_loss()
                if extra is not None:
                    loss = loss + extra
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
                    event = {"event": "batch", "epoch": epoch, "step": step, "steps": steps_per_epoch}
                    progress({**event, "loss": float(loss.detach())})
                if stall is not None and stall[:2] == (epoch, step):
                    _stall_forever(stall[2])

            val = evaluate(model, val_feats, data.val.labels, variants, cfg.eval_batch_size, device)
            accs = {v: r.accuracy for v, r in val.items()}
            summary = {
                v: {
                    k: m for k, m in kws_metrics(torch.tensor(r.confusion), names).items() if k != "per_class"
                }
                for v, r in val.items()
            }
            scores = {v: summary[v][cfg.select] for v in variants}
            train_loss = float(total_loss) / max(steps_done, 1)
            if world > 1:
                reduced = torch.tensor([train_loss])
                dist.all_reduce(reduced)
                train_loss = float(reduced) / world
            record = {
                "epoch": epoch,
                "train_loss": train_loss,
                "val_accuracy": accs,
                "val_metrics": summary,
                "lr": optimizer.param_groups[0]["lr"],
                "seconds": time.perf_counter() - started,
            }
            history.append(record)
            primary = max(variants, key=variant_ratio)
            improved = []
            for kind, eligible in (("ordered", _ordered(accs, variants)), ("any", True)):
                if eligible and (best[kind] is None or scores[primary] > best[kind]["accuracy"]):
                    best[kind] = {"epoch": epoch, "accuracy": scores[primary]}
                    improved.append(kind)
            rng_states = [_rng_state(order_gen, aug_gen)]
            if world > 1:
                rng_states = [None] * world
                dist.all_gather_object(rng_states, _rng_state(order_gen, aug_gen))
            if rank == 0:
                weights_now = {k: t.detach().cpu() for k, t in model.state_dict().items()}
                for kind in improved:
                    _atomic_save(weights_now, state_dir / f"best_{kind}.pt")
                _atomic_save(
                    {
                        "fingerprint": fingerprint,
                        "epoch": epoch + 1,
                        "model": weights_now,
                        "optimizer": optimizer.state_dict(),
                        "scheduler": scheduler.state_dict(),
                        "rng": rng_states,
                        "history": history,
                        "best": best,
                        "skipped": skipped,
                    },
                    ckpt_path,
                )
            if world > 1:
                dist.barrier()
            if progress is not None and rank == 0:
                progress({"event": "epoch", **record, "epochs": cfg.epochs})

    kind = "ordered" if best["ordered"] is not None else "any"
    chosen = best[kind]
    model.load_state_dict(torch.load(state_dir / f"best_{kind}.pt", map_location="cpu", weights_only=True))
    model.to(device)
    val_result = evaluate(model, val_feats, data.val.labels, variants, cfg.eval_batch_size, device)
    test_result = None
    if data.test is not None:
        test_feats = _features(data.test, frontend, "test")
        test_result = evaluate(model, test_feats, data.test.labels, variants, cfg.eval_batch_size, device)
    return TrainResult(
        best_epoch=chosen["epoch"],
        selection="ordered" if kind == "ordered" else "best-1x",
        val=val_result,
        test=test_result,
        history=history,
        skipped_steps=skipped,
    )


def _atomic_save(obj: Any, path: Path) -> None:
    # through a Python file object: torch.save to a path reports a full disk as a bare RuntimeError
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        torch.save(obj, fh)

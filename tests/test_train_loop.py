"""The training loop: learning, exact resume, data parallel equivalence, metrics and plots."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from bifsmn_cli.errors import UserError
from bifsmn_cli.nn.config import HEDConfig, ModelConfig
from bifsmn_cli.nn.dfsmn import DFSMN, load_teacher_into_student
from bifsmn_cli.nn.hed import HED
from bifsmn_cli.train.config import TrainConfig
from bifsmn_cli.train.data import SplitTensors, TrainData, to_float
from bifsmn_cli.train.loop import MAX_BAD_STEPS, train
from bifsmn_cli.train.metrics import (
    accuracy,
    confusion_matrix,
    per_class_accuracy,
    plot_confusion,
    plot_history,
)
from bifsmn_cli.train.selection import BestEpochs, is_ordered

ROOT = Path(__file__).resolve().parents[1]
TINY = ModelConfig(
    n_mels=16,
    frames=16,
    num_classes=4,
    num_blocks=4,
    stem_channels=4,
    backbone_size=16,
    hidden_size=24,
    student_dropout=0.1,
)


def _waves(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """int16 'clips' of 256 samples whose class is a fixed pattern plus noise."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % 4
    patterns = torch.randn(4, 256, generator=torch.Generator().manual_seed(99))
    x = patterns[labels] + 0.7 * torch.randn(n, 256, generator=g)
    return (x * 3000).round().clamp(-32768, 32767).to(torch.int16), labels


def _frontend(waves: torch.Tensor) -> torch.Tensor:
    return waves.reshape(-1, 16, 16) * 10.0


def _augment(waves: torch.Tensor, labels: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    return waves * (0.8 + 0.4 * torch.rand(waves.shape[0], 1, generator=gen))


def _data(with_waves: bool = True) -> TrainData:
    splits = []
    for n, seed in ((96, 1), (48, 2), (48, 3)):
        waves, labels = _waves(n, seed)
        features = _frontend(to_float(waves))
        splits.append(SplitTensors(labels, waves=waves if with_waves else None, features=features))
    return TrainData(*splits, class_names=["a", "b", "c", "d"])


def test_teacher_learns_and_reports_metrics(tmp_path):
    torch.manual_seed(0)
    model = DFSMN(TINY)
    data = _data(with_waves=False)
    seen = []
    result = train(model, data, TrainConfig(epochs=4, batch_size=16, lr=0.05), tmp_path, progress=seen.append)
    assert result.val["1x"].accuracy >= 0.9
    assert result.test is not None and result.test["1x"].accuracy >= 0.85
    cm = torch.tensor(result.test["1x"].confusion)
    assert cm.sum() == 48 and len(result.test["1x"].per_class) == 4
    assert [h["epoch"] for h in result.history] == [0, 1, 2, 3]
    assert result.selection == "ordered" and result.skipped_steps == 0
    assert sum(e["event"] == "batch" for e in seen) == 4 * 6 and sum(e["event"] == "epoch" for e in seen) == 4
    assert (tmp_path / "checkpoint.pt").exists() and (tmp_path / "best_ordered.pt").exists()


class _Interrupt(Exception):
    pass


def _distil(state_dir: Path, resume: bool, stop_epoch: int | None = None) -> tuple[DFSMN, list]:
    torch.manual_seed(7)
    teacher = DFSMN(TINY)
    student = DFSMN(TINY, "bifsmn", ("1x", "0.5x", "0.25x"))
    load_teacher_into_student(student, teacher.state_dict())

    def progress(event):
        if event["event"] == "batch" and event["epoch"] == stop_epoch and event["step"] == 2:
            raise _Interrupt

    cfg = TrainConfig(epochs=3, batch_size=24, lr=0.05, warmup_epochs=0.5, label_smoothing=0.1)
    result = train(
        student,
        _data(),
        cfg,
        state_dir,
        resume,
        teacher=teacher,
        hed=HED(HEDConfig()),
        augment=_augment,
        frontend=_frontend,
        progress=progress,
    )
    return student, result.history


@pytest.mark.slow
def test_resume_after_interruption_is_bit_exact(tmp_path):
    straight, history = _distil(tmp_path / "a", resume=False)
    with pytest.raises(_Interrupt):
        _distil(tmp_path / "b", resume=False, stop_epoch=2)  # dies inside epoch 3, after 2 checkpoints
    resumed, resumed_history = _distil(tmp_path / "b", resume=True)
    for (name, a), b in zip(straight.state_dict().items(), resumed.state_dict().values(), strict=True):
        assert torch.equal(a, b), name
    last_a = torch.load(tmp_path / "a" / "checkpoint.pt", weights_only=False)["model"]
    last_b = torch.load(tmp_path / "b" / "checkpoint.pt", weights_only=False)["model"]
    assert all(torch.equal(last_a[k], last_b[k]) for k in last_a)
    strip = [{k: v for k, v in h.items() if k != "seconds"} for h in history]
    assert strip == [{k: v for k, v in h.items() if k != "seconds"} for h in resumed_history]


def test_resume_with_other_settings_is_refused(tmp_path):
    torch.manual_seed(0)
    data = _data(with_waves=False)
    train(DFSMN(TINY), data, TrainConfig(epochs=1, batch_size=32), tmp_path)
    with pytest.raises(UserError, match="different settings"):
        train(DFSMN(TINY), data, TrainConfig(epochs=2, batch_size=32), tmp_path, resume=True)


DDP_SCRIPT = """
import sys
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from bifsmn_cli.nn.config import ModelConfig
from bifsmn_cli.nn.dfsmn import DFSMN
from bifsmn_cli.train.config import TrainConfig
from bifsmn_cli.train.data import SplitTensors, TrainData
from bifsmn_cli.train.loop import train

# PReLU everywhere: a dead ReLU channel has zero variance, and the activation kink at exactly 0 would turn
# last-bit differences in its BN statistics into different gradients
CFG = ModelConfig(n_mels=16, frames=16, num_classes=4, num_blocks=2, stem_channels=4,
                  backbone_size=16, hidden_size=24, dropout=0.0, activation="prelu")


def run(state_dir):
    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = DFSMN(CFG, None, ("1x", "0.5x"))
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(16, 16, 16, generator=g), torch.arange(16) % 4
    data = TrainData(SplitTensors(y, features=x), SplitTensors(y[:8], features=x[:8]))
    initial = {k: v.clone() for k, v in model.state_dict().items()}
    cfg = TrainConfig(epochs=1, batch_size=16, lr=0.1, warmup_epochs=0, grad_clip=1.0)
    train(model, data, cfg, Path(state_dir))
    torch.save(initial, Path(state_dir).parent / "initial.pt")
    return model


def worker(rank, port, out):
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    model = run(f"{out}/ddp_state")
    if rank == 0:
        torch.save(model.state_dict(), f"{out}/ddp.pt")
    dist.destroy_process_group()


if __name__ == "__main__":
    port, out = sys.argv[1], sys.argv[2]
    torch.save(run(f"{out}/single_state").state_dict(), f"{out}/single.pt")
    mp.spawn(worker, args=(port, out), nprocs=2)
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_two_gloo_processes_match_one_process(tmp_path):
    script = tmp_path / "ddp_run.py"
    script.write_text(textwrap.dedent(DDP_SCRIPT))
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, str(script), str(_free_port()), str(tmp_path)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    single = torch.load(tmp_path / "single.pt")
    ddp = torch.load(tmp_path / "ddp.pt")
    initial = torch.load(tmp_path / "initial.pt")
    assert not torch.equal(initial["fc1.weight"], single["fc1.weight"])  # one real update happened
    for name, value in single.items():
        torch.testing.assert_close(ddp[name], value, atol=2e-6, rtol=1e-5, msg=name)


@pytest.mark.slow
def test_diverging_training_stops_with_a_user_error(tmp_path):
    data = _data(with_waves=False)
    data.train.features[:] = float("nan")
    torch.manual_seed(0)
    with pytest.raises(UserError, match="training diverged"):
        train(DFSMN(TINY), data, TrainConfig(epochs=MAX_BAD_STEPS, batch_size=8), tmp_path)


def test_argument_errors(tmp_path):
    data = _data(with_waves=False)
    student = DFSMN(TINY, "bifsmn", ("1x", "0.5x"))
    with pytest.raises(UserError, match="variant_weights"):
        train(student, data, TrainConfig(variant_weights=[1.0]), tmp_path)
    with pytest.raises(UserError, match="augmentation needs"):
        train(student, data, TrainConfig(), tmp_path, augment=_augment)
    with pytest.raises(UserError, match="needs a teacher"):
        train(student, data, TrainConfig(), tmp_path, hed=HED(HEDConfig()))


def test_best_requires_thinner_variants_not_to_beat_thicker():
    variants = ("1x", "0.5x", "0.25x")
    assert is_ordered({"1x": 0.9, "0.5x": 0.9, "0.25x": 0.8}, variants)
    assert not is_ordered({"1x": 0.9, "0.5x": 0.91, "0.25x": 0.8}, variants)
    assert is_ordered({"1x": 0.5}, ("1x",))


def test_an_ordered_epoch_wins_only_within_the_tolerance():
    variants = ("1x", "0.5x", "0.25x")
    best = BestEpochs(variants, tolerance=0.01)
    assert best.update(0, {"1x": 0.80, "0.5x": 0.79, "0.25x": 0.78}) == ["ordered", "any"]
    assert best.update(1, {"1x": 0.805, "0.5x": 0.79, "0.25x": 0.80}) == ["any"]  # not ordered
    assert (best.epoch, best.selection) == (0, "ordered")  # 0.5 point below the best: still preferred
    assert best.update(2, {"1x": 0.89, "0.5x": 0.85, "0.25x": 0.88}) == ["any"]
    assert (best.epoch, best.selection) == (2, "best-1x")  # 9 points better than the ordered epoch: it wins
    strict = BestEpochs(variants, best.state, tolerance=1.0)
    assert (strict.epoch, strict.selection) == (
        0,
        "ordered",
    )  # tolerance 1: the old rule, ordered always first


def test_metrics_and_plots(tmp_path):
    labels = torch.tensor([0, 0, 1, 1, 2, 2])
    preds = torch.tensor([0, 1, 1, 1, 2, 0])
    cm = confusion_matrix(preds, labels, 4)
    assert cm.tolist() == [[1, 1, 0, 0], [0, 2, 0, 0], [1, 0, 1, 0], [0, 0, 0, 0]]
    assert accuracy(cm) == pytest.approx(4 / 6)
    assert per_class_accuracy(cm) == [0.5, 1.0, 0.5, None]
    plot_confusion(cm, ["a", "b", "c", "d"], tmp_path / "cm.png")
    history = [
        {"epoch": e, "train_loss": 1.0 / (e + 1), "val_accuracy": {"1x": 0.5 + e / 10}} for e in range(3)
    ]
    plot_history(history, tmp_path / "curve.png", title="teacher")
    for name in ("cm.png", "curve.png"):
        assert (tmp_path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

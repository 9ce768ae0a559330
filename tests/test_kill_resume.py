"""Interrupted work: `bifsmn` processes killed with SIGKILL part-way resume exactly where they stopped.

Every kill lands at a point fixed by the test, not by a timer, so the outcome is the same on a fast idle machine
and a slow loaded one: the local server holds its response at a known byte until released, and training blocks at
a known step through the loop's test hook (`BIFSMN_TEST_STALL`) until it is killed.

- `download` killed mid-transfer resumes its `.part` file with an HTTP Range request and ends with the right
  sha256;
- `train-teacher` and `distill` killed mid-epoch after a checkpoint continue (`--resume`, `bifsmn run`) and end
  with weights bit-identical to an uninterrupted run (CPU, fixed seed, one thread everywhere);
- a killed stage leaves no manifest: `bifsmn status` calls it interrupted and the next stage refuses to start;
- a second process on a busy workspace stops at the lock and writes nothing.
"""

from __future__ import annotations

import io
import json
import random
import re
import shutil
import signal
import tarfile
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from helpers import FileServer, assert_user_error, invoke_cli, sha, start_cli, write_corpus

from bifsmn_cli.train.checkpoint import CHECKPOINT, STALL_ENV

# Bit-identical resume needs the same thread count in every run.
ONE_THREAD = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
EPOCHS = 12
ARCHIVE = "speech_commands_v0.01.tar.gz"
MiB = 1 << 20


def _status(config: Path) -> dict[str, str]:
    """stage -> the whole `bifsmn status` row (state and reason)."""
    result = invoke_cli("status", "-c", str(config))
    assert result.returncode == 0, result.stderr
    rows = [line.split("│") for line in result.stderr.splitlines() if line.count("│") >= 3]
    return {cells[1].strip(): " ".join(c.strip() for c in cells[2:]) for cells in rows}


def _wait_for(proc, ready: Callable[[], bool], what: str, timeout: float = 600) -> None:
    """Poll until `ready()`; `proc` must not end first. The work before that point is small and bounded, so the
    deadline only turns a hung run into a failure (it is not a race: the process cannot get past the point)."""
    deadline = time.monotonic() + timeout
    while not ready():
        if proc.poll() is not None:
            pytest.fail(f"the process ended (exit {proc.returncode}) before {what}: {proc.stderr.read()}")
        assert time.monotonic() < deadline, f"timed out waiting until {what}"
        time.sleep(0.01)


def _kill(proc) -> None:
    proc.send_signal(signal.SIGKILL)
    proc.communicate()
    assert proc.returncode == -signal.SIGKILL


# ------------------------------------------------------------------------------------------------- download


def _archive(root: Path) -> bytes:
    """A Speech Commands-like .tar.gz of ~6 MiB (a small corpus plus incompressible padding)."""
    write_corpus(root, words=("yes", "no"), speakers=("a1", "b2"))
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for path in sorted(root.rglob("*")):
            tar.add(path, arcname=path.relative_to(root).as_posix(), recursive=False)
        padding = random.Random(0).randbytes(6 * MiB)
        info = tarfile.TarInfo("padding.bin")
        info.size = len(padding)
        tar.addfile(info, io.BytesIO(padding))
    return buf.getvalue()


def test_download_killed_mid_transfer_resumes_with_range(server: FileServer, tmp_path: Path):
    archive = _archive(tmp_path / "corpus")
    server.files[ARCHIVE] = archive
    # each request is held at one of these bytes: the client has then written every whole 1 MiB block before it
    server.holds[ARCHIVE] = [5 * MiB // 2, 9 * MiB // 2, 11 * MiB // 2]
    assert len(archive) > 11 * MiB // 2
    ws = tmp_path / "ws"
    config = tmp_path / "p.yaml"
    config.write_text(
        f"name: t\nworkspace: {ws}\ndownload:\n  source: speech_commands\n  version: v0.01\n"
        f"  url: {server.url}\n  sha256: '{sha(archive)}'\n"
    )
    part = ws / "download" / "state" / f"{ARCHIVE}.part"
    kept = 0
    for attempt, held_block in enumerate((2 * MiB, 4 * MiB)):
        before = len(server.requests)
        proc = start_cli("-q", "download", "-c", str(config))
        _wait_for(
            proc, lambda b=held_block: part.exists() and part.stat().st_size >= b, f"{held_block} bytes"
        )
        _kill(proc)
        assert server.requests[before] == (ARCHIVE, f"bytes={kept}-" if kept else None)
        kept = part.stat().st_size
        assert kept == held_block
        assert not (ws / "download" / "manifest.json").exists()
        if attempt == 0:
            assert "interrupted" in _status(config)["download"]
            assert_user_error(
                invoke_cli("-q", "featurize", "-c", str(config)), f"missing artifact {ws / 'download'}"
            )

    # While a download holds the workspace (its response held by the server), a second process stops at the
    # lock and touches nothing.
    before = len(server.requests)
    proc = start_cli("-q", "download", "-c", str(config))
    _wait_for(proc, lambda: len(server.requests) > before, "the third request")
    assert_user_error(
        invoke_cli("-q", "featurize", "-c", str(config)),
        f"workspace {ws} is in use by bifsmn process {proc.pid}",
    )
    assert not (ws / "featurize").exists()
    server.release.set()
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    assert server.requests[before] == (ARCHIVE, f"bytes={kept}-")
    assert sha((ws / "download" / "state" / ARCHIVE).read_bytes()) == sha(archive)
    assert (ws / "download" / "data" / "padding.bin").stat().st_size == 6 * MiB
    assert (
        json.loads((ws / "download" / "manifest.json").read_text())["metrics"]["source"] == "speech_commands"
    )
    assert "up to date" in _status(config)["download"]


# ------------------------------------------------------------------------------------------------- training


@pytest.fixture(scope="module")
def featurized(tmp_path_factory) -> Path:
    """A pipeline file whose workspace holds `download` and `featurize` of a tiny folder corpus."""
    root = tmp_path_factory.mktemp("train")
    speakers = tuple(f"{i:08x}" for i in range(8))
    write_corpus(root / "corpus", words=("yes", "no", "up", "down"), speakers=speakers, noises=("white",))
    config = root / "p.yaml"
    config.write_text(
        f"name: t\nworkspace: {root / 'ws'}\nseed: 3\n"
        f"download: {{source: folder, path: {root / 'corpus'}}}\n"
        "featurize: {task: words, words: [yes, no, up]}\n"
        "model: {num_blocks: 4, backbone_size: 16, hidden_size: 24, stem_channels: 4}\n"
        f"train_teacher: {{epochs: {EPOCHS}, batch_size: 4, lr: 0.05}}\n"
        f"distill: {{epochs: {EPOCHS}, batch_size: 4, lr: 0.005, optimizer: adamw}}\n"
    )
    for stage in ("download", "featurize"):
        result = invoke_cli("-q", stage, "-c", str(config))
        assert result.returncode == 0, result.stderr
    return config


def _reference(config: Path, tmp_path: Path) -> Path:
    """The same pipeline in a second workspace holding copies of the upstream artifacts (for uninterrupted runs)."""
    ws = tmp_path / "ref"
    for stage in ("download", "featurize"):
        shutil.copytree(_workspace(config) / stage, ws / stage, symlinks=True)
    ref = tmp_path / "ref.yaml"
    ref.write_text(re.sub(r"(?m)^workspace: .*$", f"workspace: {ws}", config.read_text()))
    return ref


def _workspace(config: Path) -> Path:
    return Path(re.search(r"(?m)^workspace: (.*)$", config.read_text())[1])


def _weights(path: Path) -> dict[str, torch.Tensor]:
    return torch.load(path, map_location="cpu", weights_only=False)["state_dict"]


def _assert_same_weights(a: Path, b: Path) -> None:
    wa, wb = _weights(a), _weights(b)
    assert wa.keys() == wb.keys()
    different = [k for k in wa if not torch.equal(wa[k], wb[k])]
    assert not different, f"weights differ after resuming: {different[:5]}"


def _kill_mid_training(config: Path, stage: str, epoch: int, step: int) -> int:
    """Run `stage`, SIGKILL it while it is held after `step` of 0-based `epoch` (so `epoch` epochs are
    checkpointed and part of the next is lost); returns the epochs the checkpoint holds."""
    state = _workspace(config) / stage / "state"
    stalled = _workspace(config).parent / f"{stage}.stalled"
    proc = start_cli(
        "-q", stage, "-c", str(config), env={**ONE_THREAD, STALL_ENV: f"{epoch}:{step}:{stalled}"}
    )
    _wait_for(proc, stalled.exists, f"training reached epoch {epoch} step {step}")
    _kill(proc)
    done = torch.load(state / CHECKPOINT, map_location="cpu", weights_only=False)["epoch"]
    assert done == epoch
    assert not (_workspace(config) / stage / "manifest.json").exists()
    return done


def _epochs_run(stderr: str, label: str) -> list[int]:
    return [int(m) for m in re.findall(rf"{label} epoch (\d+)/{EPOCHS}: loss", stderr)]


@pytest.mark.slow
def test_training_killed_mid_epoch_resumes_bit_identical(featurized: Path, tmp_path: Path):
    ws, ref = _workspace(featurized), _reference(featurized, tmp_path)
    # The uninterrupted reference runs alongside the interrupted one: each uses one thread.
    reference = start_cli("-q", "run", "-c", str(ref), "--to", "distill", env=ONE_THREAD)

    done = _kill_mid_training(featurized, "train-teacher", epoch=2, step=1)
    status = _status(featurized)
    assert "missing" in status["train-teacher"] and "interrupted" in status["train-teacher"]
    assert_user_error(
        invoke_cli("-q", "distill", "-c", str(featurized)), f"missing artifact {ws / 'train-teacher'}"
    )
    resumed = start_cli("train-teacher", "--resume", "-c", str(featurized), env=ONE_THREAD)
    _, err = resumed.communicate(timeout=600)
    assert resumed.returncode == 0, err
    assert _epochs_run(err, "teacher") == list(range(done + 1, EPOCHS + 1))

    done = _kill_mid_training(featurized, "distill", epoch=5, step=0)
    assert "interrupted" in _status(featurized)["distill"]
    assert_user_error(invoke_cli("-q", "thin", "-c", str(featurized)), f"missing artifact {ws / 'distill'}")
    resumed = start_cli("run", "-c", str(featurized), "--to", "distill", env=ONE_THREAD)
    _, err = resumed.communicate(timeout=600)
    assert resumed.returncode == 0, err
    assert "train-teacher: up to date" in err
    assert _epochs_run(err, "student") == list(range(done + 1, EPOCHS + 1))

    _, err = reference.communicate(timeout=600)
    assert reference.returncode == 0, err
    ref_ws = _workspace(ref)
    _assert_same_weights(ws / "train-teacher" / "teacher.pt", ref_ws / "train-teacher" / "teacher.pt")
    _assert_same_weights(ws / "distill" / "student.pt", ref_ws / "distill" / "student.pt")
    for stage in ("train-teacher", "distill"):
        mine = json.loads((ws / stage / "history.json").read_text())
        theirs = json.loads((ref_ws / stage / "history.json").read_text())
        assert [h["train_loss"] for h in mine] == [h["train_loss"] for h in theirs]
        assert not (ws / stage / "state").exists()  # state is dropped once the stage finished
        assert [h["val_metrics"] for h in mine] == [h["val_metrics"] for h in theirs]
    # the keyword-spotting figures are first-class: per epoch, in metrics.json and in the manifest
    metrics = json.loads((ws / "distill" / "metrics.json").read_text())
    for v, m in metrics["validation"].items():
        assert {"accuracy", "balanced_accuracy", "unknown_recall", "false_accept", "per_class"} <= m.keys()
        assert m == {**m, **mine[metrics["best_epoch"] - 1]["val_metrics"][v]}  # the selected epoch's figures
    manifest = json.loads((ws / "distill" / "manifest.json").read_text())
    assert manifest["metrics"]["val_balanced_accuracy_1x"] == metrics["validation"]["1x"]["balanced_accuracy"]

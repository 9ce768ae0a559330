"""Interrupted work: `bifsmn` processes killed with SIGKILL at random points resume exactly where they stopped.

- `download` killed mid-transfer (a slow local server) resumes its `.part` file with an HTTP Range request and ends
  with the right sha256;
- `train-teacher` and `distill` killed mid-epoch after their first checkpoint continue (`--resume`, `bifsmn run`)
  and end with weights bit-identical to an uninterrupted run (CPU, fixed seed, one thread everywhere);
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
from conftest import FileServer, assert_user_error, invoke_cli, start_cli
from test_corpus import write_corpus
from test_download import sha

from bifsmn_cli.train.loop import CHECKPOINT

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


def _kill_when(
    proc, ready: Callable[[], bool], rng: random.Random, jitter: float, timeout: float = 300
) -> None:
    """SIGKILL `proc` a random moment (up to `jitter` s) after `ready()` turns true; it must still be running."""
    deadline = time.monotonic() + timeout
    while not ready():
        if proc.poll() is not None:
            pytest.fail(
                f"the process ended (exit {proc.returncode}) before it could be killed: {proc.stderr.read()}"
            )
        assert time.monotonic() < deadline, "timed out waiting for the process to make progress"
        time.sleep(0.005)
    time.sleep(rng.uniform(0, jitter))
    proc.send_signal(signal.SIGKILL)
    proc.communicate()
    assert proc.returncode == -signal.SIGKILL, "the process finished before the kill landed"


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
    server.chunk_delay = 0.02  # ~3 MiB/s: a run needs about two seconds, so a kill lands mid-transfer
    ws = tmp_path / "ws"
    config = tmp_path / "p.yaml"
    config.write_text(
        f"name: t\nworkspace: {ws}\ndownload:\n  source: speech_commands\n  version: v0.01\n"
        f"  url: {server.url}\n  sha256: '{sha(archive)}'\n"
    )
    part = ws / "download" / "state" / f"{ARCHIVE}.part"
    rng = random.Random(1)
    kept = 0
    for attempt in range(2):
        before = len(server.requests)
        proc = start_cli("-q", "download", "-c", str(config))
        # the client writes 1 MiB blocks: wait for one more than the last run kept, then kill at a random moment
        _kill_when(proc, lambda k=kept: part.exists() and part.stat().st_size > k, rng, jitter=0.3)
        first = server.requests[before]
        assert first == (ARCHIVE, f"bytes={kept}-" if kept else None)
        kept = part.stat().st_size
        assert 0 < kept < len(archive)
        assert not (ws / "download" / "manifest.json").exists()
        if attempt == 0:
            assert "interrupted" in _status(config)["download"]
            assert_user_error(
                invoke_cli("-q", "featurize", "-c", str(config)), f"missing artifact {ws / 'download'}"
            )

    # While a download holds the workspace, a second process stops at the lock and touches nothing.
    server.chunk_delay = 0.05  # the rest now takes seconds: the lock is surely still held when we knock
    before = len(server.requests)
    proc = start_cli("-q", "download", "-c", str(config))
    deadline = time.monotonic() + 120
    while len(server.requests) == before:
        assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read() if proc.stderr else ""
        time.sleep(0.01)
    assert_user_error(
        invoke_cli("-q", "featurize", "-c", str(config)),
        f"workspace {ws} is in use by bifsmn process {proc.pid}",
    )
    assert not (ws / "featurize").exists()
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
        "model: {num_blocks: 4, backbone_size: 16, hidden_size: 24, frontend_channels: 4}\n"
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


def _kill_mid_training(config: Path, stage: str, rng: random.Random) -> int:
    """Run `stage`, SIGKILL it after its first checkpoint; returns the epochs the checkpoint holds."""
    state = _workspace(config) / stage / "state"
    proc = start_cli("-q", stage, "-c", str(config), env=ONE_THREAD)
    _kill_when(proc, (state / CHECKPOINT).exists, rng, jitter=0.4)
    done = torch.load(state / CHECKPOINT, map_location="cpu", weights_only=False)["epoch"]
    assert 1 <= done < EPOCHS
    assert not (_workspace(config) / stage / "manifest.json").exists()
    return done


def _epochs_run(stderr: str, label: str) -> list[int]:
    return [int(m) for m in re.findall(rf"{label} epoch (\d+)/{EPOCHS}: loss", stderr)]


def test_training_killed_mid_epoch_resumes_bit_identical(featurized: Path, tmp_path: Path):
    ws, ref = _workspace(featurized), _reference(featurized, tmp_path)
    rng = random.Random(2)
    # The uninterrupted reference runs alongside the interrupted one: each uses one thread.
    reference = start_cli("-q", "run", "-c", str(ref), "--to", "distill", env=ONE_THREAD)

    done = _kill_mid_training(featurized, "train-teacher", rng)
    status = _status(featurized)
    assert "missing" in status["train-teacher"] and "interrupted" in status["train-teacher"]
    assert_user_error(
        invoke_cli("-q", "distill", "-c", str(featurized)), f"missing artifact {ws / 'train-teacher'}"
    )
    resumed = start_cli("train-teacher", "--resume", "-c", str(featurized), env=ONE_THREAD)
    _, err = resumed.communicate(timeout=600)
    assert resumed.returncode == 0, err
    assert _epochs_run(err, "teacher") == list(range(done + 1, EPOCHS + 1))

    done = _kill_mid_training(featurized, "distill", rng)
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

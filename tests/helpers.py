"""Helpers the tests share: the real CLI (subprocess, background or in-process), a local HTTP file server, tiny
corpora and archives, and tiny randomised models (with the C engine built once for them)."""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import re
import shutil
import socket
import subprocess
import sys
import tarfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
import torchaudio
from torch import Tensor, nn

from bifsmn_cli.audio.config import FrontEndConfig
from bifsmn_cli.data.corpus import COMMAND_WORDS
from bifsmn_cli.engine.build import CSRC
from bifsmn_cli.engine.stream import DetectorSettings
from bifsmn_cli.nn.config import ModelConfig
from bifsmn_cli.nn.dfsmn import DFSMN

ROOT = Path(__file__).resolve().parents[1]
# The host engine every test that needs one builds (once) and shares.
BUILD_DIR = CSRC / "build" / "pytest"
needs_espeak = pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng is not installed")

# ------------------------------------------------------------------------------------------------- the CLI


def run_cli(*args: str, cwd: Path | None = None, env: dict[str, str] | None = None, timeout: float = 600):
    """Run `bifsmn ARGS...` in a fresh interpreter; returns the CompletedProcess (text mode)."""
    full_env = {**os.environ, "COLUMNS": "200", **(env or {})}
    full_env.pop("BIFSMN_DEBUG", None)
    return subprocess.run(
        [sys.executable, "-m", "bifsmn_cli", *args],
        cwd=cwd or ROOT,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def assert_user_error(result, *fragments: str) -> None:
    """Exit 1, one line on stderr naming what is wrong, and no traceback."""
    assert result.returncode == 1, (result.returncode, result.stdout, result.stderr)
    err = result.stderr.strip()
    assert "Traceback" not in result.stderr and "Traceback" not in result.stdout, result.stderr
    assert len([line for line in err.splitlines() if line.strip()]) == 1, err
    for fragment in fragments:
        assert fragment in err, (fragment, err)


def start_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.Popen:
    """Start `bifsmn ARGS...` without waiting, so a test can kill it part-way (output goes to pipes)."""
    full_env = {**os.environ, "COLUMNS": "200", **(env or {})}
    full_env.pop("BIFSMN_DEBUG", None)
    return subprocess.Popen(
        [sys.executable, "-m", "bifsmn_cli", *args],
        cwd=ROOT,
        env=full_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def invoke_cli(*args: str) -> subprocess.CompletedProcess:
    """Run `bifsmn ARGS...` in this process through the real entry point: the same exit code and output as
    `run_cli` (a BifsmnError or any other exception becomes one line) without paying a fresh interpreter and
    torch import per call."""
    from bifsmn_cli.commands import main

    out, err = io.StringIO(), io.StringIO()
    argv = sys.argv
    sys.argv = ["bifsmn", *args]
    code: int | str | None = 0
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            main()
    except SystemExit as exc:
        code = exc.code
    finally:
        sys.argv = argv
    returncode = code if isinstance(code, int) else (0 if code is None else 1)
    return subprocess.CompletedProcess(["bifsmn", *args], returncode, out.getvalue(), err.getvalue())


# ------------------------------------------------------------------------------------------------- HTTP


class FileServer:
    """Serves in-memory files on 127.0.0.1 with HTTP Range support; can cut a response short, ignore Range or
    hold a response part-way until `release` is set, and logs every request as (name, Range)."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        # name -> bytes to send before dropping the connection, per request
        self.cuts: dict[str, list[int]] = {}
        # name -> file offset at which the response stops and waits for `release`, per request: a client is
        # then stuck mid-transfer at a known byte, however fast or loaded the machine is
        self.holds: dict[str, list[int]] = {}
        self.release = threading.Event()
        self.ignore_range: set[str] = set()
        self.requests: list[tuple[str, str | None]] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                name = self.path.lstrip("/")
                server.requests.append((name, self.headers.get("Range")))
                if name not in server.files:
                    self.send_error(404)
                    return
                data, start = server.files[name], 0
                match = re.fullmatch(r"bytes=(\d+)-", self.headers.get("Range") or "")
                if match and name not in server.ignore_range:
                    start = int(match[1])
                    if start >= len(data):
                        self.send_error(416)
                        return
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                else:
                    self.send_response(200)
                self.send_header("Content-Length", str(len(data) - start))
                self.end_headers()
                cut = server.cuts.get(name, [])
                body = data[start:]
                if cut:
                    self.wfile.write(body[: cut.pop(0)])
                    self.wfile.flush()
                    self.connection.shutdown(socket.SHUT_RDWR)
                    self.close_connection = True
                    return
                holds = server.holds.get(name, [])
                split = max(holds.pop(0) - start, 0) if holds else len(body)
                try:
                    self.wfile.write(body[:split])
                    self.wfile.flush()
                    if split < len(body):
                        server.release.wait()
                        self.wfile.write(body[split:])
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client was killed while the response was held, which is what holding is for

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/"
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.release.set()
        self.httpd.shutdown()
        self.httpd.server_close()


def closed_port_url() -> str:
    """A URL on a local port nothing listens on: connecting to it is refused."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    return f"http://127.0.0.1:{port}/"


# ------------------------------------------------------------------------------------------------- corpora


def write_corpus(
    root: Path,
    words: tuple[str, ...] = (*COMMAND_WORDS, "cat", "dog"),
    speakers: tuple[str, ...] = ("0c40e715", "6d818f6c", "004ae714", "988e2f9a", "aaaa0003", "aaaa0004"),
    suffix: str = ".wav",
    seconds: float = 1.0,
    noises: tuple[str, ...] = ("white_noise", "running_tap"),
) -> list[str]:
    """A tiny corpus in the Speech Commands layout: one tone clip per (word, speaker); returns the clip paths."""
    rng = np.random.default_rng(0)
    paths = []
    n = int(seconds * 16000)
    for w, word in enumerate(words):
        (root / word).mkdir(parents=True, exist_ok=True)
        for s, speaker in enumerate(speakers):
            t = np.arange(n) / 16000
            wave = 0.3 * np.sin(2 * np.pi * (200 + 50 * w + 7 * s) * t) + 0.01 * rng.standard_normal(n)
            rel = f"{word}/{speaker}_nohash_0{suffix}"
            sf.write(root / rel, wave, 16000, subtype="PCM_16")
            paths.append(rel)
    if noises:
        (root / "_background_noise_").mkdir(exist_ok=True)
        for name in noises:
            sf.write(root / "_background_noise_" / f"{name}.wav", 0.2 * rng.standard_normal(3 * 16000), 16000)
    return paths


def make_tar(members: dict[str, bytes], links: dict[str, tuple[str, bytes]] | None = None) -> bytes:
    """A .tar.gz in memory; `links` maps a member name to (target, SYMTYPE or LNKTYPE)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        for name, (target, kind) in (links or {}).items():
            info = tarfile.TarInfo(name)
            info.type, info.linkname = kind, target
            tar.addfile(info)
    return buf.getvalue()


def tar_directory(root: Path) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for path in sorted(root.rglob("*")):
            tar.add(path, arcname="./" + path.relative_to(root).as_posix(), recursive=False)
    return buf.getvalue()


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# ------------------------------------------------------------------------------------------------- tiny models

# Widths chosen off the 64-bit word size: conv2 K = 150, fc1 K = 96, backbone 48, hidden 80.
TINY_CFG = ModelConfig(num_classes=5, num_blocks=4, stem_channels=6, backbone_size=48, hidden_size=80)
TINY_CLASSES = ["yes", "no", "up", "_silence_", "_unknown_"]
VARIANTS = ("1x", "0.5x", "0.25x")


def randomise(model: DFSMN, seed: int, negative_gammas: float = 0.2, negative_slopes: bool = False) -> DFSMN:
    """Non-trivial BatchNorm statistics/affines (a `negative_gammas` share of negative gammas: negative binary
    scales) and PReLU slopes (in [0.05, 0.45), or in [-0.1, 0.4) with `negative_slopes`); eval mode."""
    g = torch.Generator().manual_seed(seed)
    low = -0.1 if negative_slopes else 0.05
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm1d | nn.BatchNorm2d):
                n = m.num_features
                m.running_mean.copy_(0.2 * torch.randn(n, generator=g))
                m.running_var.copy_(0.5 + 1.5 * torch.rand(n, generator=g))
                flip = torch.where(torch.rand(n, generator=g) < negative_gammas, -1.0, 1.0)
                m.weight.copy_((0.5 + torch.rand(n, generator=g)) * flip)
                m.bias.copy_(0.2 * torch.randn(n, generator=g))
            elif isinstance(m, nn.PReLU):
                m.weight.copy_(
                    low + (0.5 if negative_slopes else 0.4) * torch.rand(m.weight.shape, generator=g)
                )
    return model.eval()


def tiny_student(seed: int = 0, binarizer: str = "bifsmn") -> DFSMN:
    torch.manual_seed(seed)
    return randomise(DFSMN(TINY_CFG, binarizer, VARIANTS), seed)


def tiny_teacher(seed: int = 0) -> DFSMN:
    torch.manual_seed(seed)
    return randomise(DFSMN(TINY_CFG), seed + 1)


def dB_features(n: int, seed: int) -> Tensor:
    return (
        15 * torch.randn(n, TINY_CFG.n_mels, TINY_CFG.frames, generator=torch.Generator().manual_seed(seed))
        - 40
    )


# ------------------------------------------------------------------------------------------------- front end
# Clips and the torchaudio comparison every C front-end test uses.

SR = 16000
TOLERANCE_DB = 0.01
FLOOR_DB = -80.0


def speech_like(seed: int) -> np.ndarray:
    """Glottal pulse train (120-180 Hz, gliding) through three formant resonators, syllable envelope."""
    rng = np.random.default_rng(seed)
    t = np.arange(SR) / SR
    f0 = 120 + 60 * np.sin(2 * np.pi * 1.5 * t + rng.uniform(0, 6))
    phase = np.cumsum(f0) / SR
    pulses = (np.diff(np.floor(phase), prepend=0) > 0).astype(np.float64)
    wave = np.zeros(SR)
    for formant, bw, gain in ((700, 90, 1.0), (1200, 110, 0.6), (2600, 160, 0.3)):
        r = np.exp(-np.pi * bw / SR)
        a1, a2 = 2 * r * np.cos(2 * np.pi * formant / SR), -r * r
        y = np.zeros(SR)
        for i in range(SR):
            y[i] = pulses[i] + a1 * (y[i - 1] if i else 0) + a2 * (y[i - 2] if i > 1 else 0)
        wave += gain * y
    envelope = np.exp(-(((t - 0.5) / 0.18) ** 2))
    wave = wave * envelope + 1e-4 * rng.standard_normal(SR)
    wave[: SR // 8] = 0.0  # digital silence: -100 dB frames
    return (0.5 * wave / np.abs(wave).max()).astype(np.float32)


CLIPS = {
    "noise": lambda: (0.3 * np.random.default_rng(0).standard_normal(SR)).astype(np.float32),
    "quiet": lambda: (3e-4 * np.random.default_rng(1).standard_normal(SR)).astype(np.float32),
    "speech_like": lambda: speech_like(2),
}


def torchaudio_db(wave: np.ndarray, s: FrontEndConfig, dtype: torch.dtype) -> np.ndarray:
    mel = torchaudio.transforms.MelSpectrogram(
        s.sample_rate,
        n_fft=s.n_fft,
        win_length=s.win_length,
        hop_length=s.hop_length,
        f_min=s.f_min,
        f_max=s.f_max,
        n_mels=s.n_mels,
        normalized=s.normalized,
    ).to(dtype)
    power = mel(torch.from_numpy(wave).to(dtype)[None])
    return torchaudio.transforms.AmplitudeToDB("power", s.top_db)(power)[0].numpy()


def assert_close_db(got: np.ndarray, want: np.ndarray) -> None:
    assert got.shape == want.shape
    audible = want > FLOOR_DB
    assert audible.any()
    worst = float(np.abs(got - want)[audible].max())
    assert worst <= TOLERANCE_DB, f"max difference {worst:.4g} dB above {FLOOR_DB} dB"
    # below the floor both sides still agree on where the clamp is
    np.testing.assert_array_equal(got <= -99.999, want <= -99.999)


# ------------------------------------------------------------------------------------------------- streams

STREAM_CLASSES = ["yes", "no", "up", "_silence_", "_unknown_"]
# a random model's posteriors barely move: a low threshold, re-arming below it, a short refractory time and
# average give events to compare; BUSY_ARGS are the same for bifsmn-infer --stream and bifsmn detect, stride 2
BUSY_ARGS = ["--threshold", "0.5", "--rearm", "1", "--refractory", "100", "--average", "100", "--stride", "2"]
BUSY = DetectorSettings(threshold=0.5, rearm=1.0, refractory_ms=100.0, average_ms=100.0)  # for the binding


def stream_model(path: Path) -> Path:
    """A small random-weight 1x student at the default front end, for the streaming tests."""
    from bifsmn_cli.export.lowering import export_student

    torch.manual_seed(3)
    cfg = ModelConfig(
        num_classes=len(STREAM_CLASSES), num_blocks=2, stem_channels=4, backbone_size=32, hidden_size=48
    )
    export_student(DFSMN(cfg, "bifsmn", ("1x",)).eval(), "1x", STREAM_CLASSES, FrontEndConfig(), path)
    return path


def busy_signal(seconds: float = 6.0, seed: int = 0) -> np.ndarray:
    """Silence, noise bursts, gliding tones and clicks in 0.5-s segments, as int16 at 16 kHz."""
    rng = np.random.default_rng(seed)
    n = int(seconds * SR)
    t = np.arange(n) / SR
    seg = (np.arange(n) // 8000) % 4
    x = np.where(seg == 1, 0.3 * rng.standard_normal(n), 0.0)
    x = np.where(seg == 2, 0.4 * np.sin(2 * np.pi * (300 + 400 * t) * t), x)
    x = np.where((seg == 3) & (np.arange(n) % 700 == 0), 0.9, x)
    return np.clip(x * 32767, -32768, 32767).astype(np.int16)

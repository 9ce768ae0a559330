"""Shared test helpers: the real CLI (subprocess, background or in-process) and a local HTTP file server."""

from __future__ import annotations

import contextlib
import io
import os
import re
import socket
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


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


@pytest.fixture
def cli():
    return run_cli


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
    from bifsmn_cli.cli import main

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


@pytest.fixture
def server():
    s = FileServer()
    yield s
    s.close()


def closed_port_url() -> str:
    """A URL on a local port nothing listens on: connecting to it is refused."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    return f"http://127.0.0.1:{port}/"

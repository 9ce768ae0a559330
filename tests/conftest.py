"""Shared fixtures: a way to run the real CLI in a subprocess, as a user would."""

from __future__ import annotations

import os
import subprocess
import sys
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

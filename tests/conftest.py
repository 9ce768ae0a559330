"""The shared fixtures; the helpers themselves are in helpers.py."""

from __future__ import annotations

import pytest
from helpers import BUILD_DIR, FileServer, run_cli

from bifsmn_cli.engine.binding import Library
from bifsmn_cli.engine.build import build_library


@pytest.fixture
def cli():
    return run_cli


@pytest.fixture
def server():
    s = FileServer()
    yield s
    s.close()


@pytest.fixture(scope="session")
def lib() -> Library:
    """The host engine, built once into csrc/build/pytest for every test that runs it."""
    return Library(build_library(BUILD_DIR))


@pytest.fixture(scope="session", autouse=True)
def _private_cache(tmp_path_factory):
    """The per-user cache (the QEMU insn plugin bench builds) in a temporary directory: no test reads or fills
    the real one."""
    mp = pytest.MonkeyPatch()
    mp.setenv("XDG_CACHE_HOME", str(tmp_path_factory.mktemp("xdg-cache")))
    yield
    mp.undo()

"""File-system primitives every stage relies on: atomic writes, hashing, and the workspace lock."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TypeGuard

from bifsmn_cli.errors import UserError

_IO_ERRORS = {
    errno.ENOSPC: "disk full",
    errno.EDQUOT: "disk quota exceeded",
    errno.EACCES: "permission denied",
    errno.EROFS: "read-only file system",
}


def is_storage_error(exc: BaseException) -> TypeGuard[OSError]:
    """A full disk, a quota or a read-only or forbidden directory: the user's to fix, wherever it surfaces."""
    return isinstance(exc, OSError) and exc.errno in _IO_ERRORS


def describe_os_error(exc: OSError, path: Path | str) -> UserError:
    """Turn the OS errors a user can fix into a one-line UserError naming the file."""
    what = _IO_ERRORS.get(exc.errno or 0, exc.strerror or str(exc))
    return UserError(f"{path}: {what} while writing; free space or fix permissions and rerun")


@contextlib.contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yield a temporary path beside `path`; rename it into place only if the block succeeds.

    Readers therefore see either the old file or the complete new one, never a half-written file.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        os.close(fd)
    except OSError as exc:
        raise describe_os_error(exc, path) from exc
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.replace(tmp_path, path)
    except OSError as exc:
        raise describe_os_error(exc, path) from exc
    finally:
        tmp_path.unlink(missing_ok=True)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode())


def atomic_write_json(path: Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False, default=str) + "\n")


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def sha256_json(obj: Any) -> str:
    """A stable hash of a JSON-able value (sorted keys), used for config sections and fingerprints."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()


class WorkspaceLock:
    """An exclusive lock on a workspace so that two bifsmn processes never write it at once.

    The kernel releases an flock when its holder dies, even by SIGKILL, so a stale lock cannot block forever.
    """

    def __init__(self, workspace: Path) -> None:
        self.path = Path(workspace) / ".lock"
        self._fd: int | None = None

    def __enter__(self) -> WorkspaceLock:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise UserError(
                f"workspace {self.path.parent}: cannot create it ({exc.strerror}); "
                "choose a writable `workspace:` or fix permissions"
            ) from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "another process"
            os.close(fd)
            raise UserError(
                f"workspace {self.path.parent} is in use by bifsmn process {holder}; "
                "wait for it to finish or use another workspace"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        self._fd = fd
        return self

    def __exit__(self, *exc: object) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

"""One rich console for the whole toolkit, so `--quiet` silences every progress bar and message at once."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

console = Console(stderr=True, highlight=False)
_quiet = False


def set_quiet(quiet: bool) -> None:
    """Scripts pass `--quiet`: no bars, no chatter, only errors."""
    global _quiet
    _quiet = quiet


def is_quiet() -> bool:
    return _quiet


def info(message: str) -> None:
    if not _quiet:
        console.print(message)


def warn(message: str) -> None:
    console.print(f"[yellow]warning:[/yellow] {message}")


class Task:
    """A handle to one progress bar; a no-op when quiet, so callers never branch on it."""

    def __init__(self, progress: Progress | None, task_id: int | None) -> None:
        self._progress = progress
        self._id = task_id

    def advance(self, amount: float = 1) -> None:
        if self._progress is not None:
            self._progress.advance(self._id, amount)

    def update(self, **fields: object) -> None:
        if self._progress is not None:
            self._progress.update(self._id, **fields)


@contextlib.contextmanager
def progress(description: str, total: float | None, unit: str = "items") -> Iterator[Task]:
    """A progress bar for a long loop; `unit="bytes"` shows sizes and transfer speed."""
    if _quiet:
        yield Task(None, None)
        return
    if unit == "bytes":
        columns = [TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn()]
    else:
        columns = [TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn(unit)]
    columns += [TimeElapsedColumn(), TimeRemainingColumn()]
    bar = Progress(*columns, console=console)
    with bar:
        yield Task(bar, bar.add_task(description, total=total))

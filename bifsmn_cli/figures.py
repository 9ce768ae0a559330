"""matplotlib for the toolkit's PNG plots: pyplot on the headless Agg backend, and figures written atomically."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bifsmn_cli.fsutil import atomic_path


def pyplot() -> Any:
    """matplotlib.pyplot on the Agg backend (no display needed), imported when a plot is first drawn."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_png(fig: Any, path: Path, dpi: int = 120) -> None:
    """Write `fig` as PNG through a temporary file (never a half-written plot), then close it."""
    with atomic_path(Path(path)) as tmp:
        fig.savefig(tmp, format="png", dpi=dpi)
    pyplot().close(fig)

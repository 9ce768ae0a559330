"""`bifsmn detect`: keyword events in long recordings with an exported model (bifsmn_cli.engine.detect)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def detect_cmd(
    model: Annotated[
        Path, typer.Argument(help="A .bfsm model (written by `bifsmn export`).", show_default=False)
    ],
    files: Annotated[
        list[Path], typer.Argument(help="WAV or FLAC recordings of any length.", show_default=False)
    ],
    threshold: Annotated[
        list[str] | None,
        typer.Option(
            "--threshold",
            help="Every keyword's threshold T in (0, 1] (default 0.8), or CLASS=T for one class (above 1 "
            "disables it; _silence_ and _unknown_ fire only when named). Repeatable.",
            show_default=False,
        ),
    ] = None,
    stride: Annotated[
        int | None,
        typer.Option(
            "--stride", help="Hops between network runs (default 3: a run every 96 ms).", show_default=False
        ),
    ] = None,
    average: Annotated[
        float | None,
        typer.Option("--average", help="Posterior averaging window, ms (default 500).", show_default=False),
    ] = None,
    refractory: Annotated[
        float | None,
        typer.Option(
            "--refractory", help="No event within this long after one, ms (default 500).", show_default=False
        ),
    ] = None,
    rearm: Annotated[
        float | None,
        typer.Option(
            "--rearm",
            help="A keyword fires again once its average falls below rearm x threshold (default 0.5).",
            show_default=False,
        ),
    ] = None,
    min_count: Annotated[
        int | None,
        typer.Option(
            "--min-count", help="Runs needed before the first event (default 1).", show_default=False
        ),
    ] = None,
    edge: Annotated[
        str, typer.Option("--edge", help="Edge frames: audio (real neighbours) or reflect (clip parity).")
    ] = "audio",
    json_out: Annotated[bool, typer.Option("--json", help="JSON instead of text.")] = False,
    out: Annotated[
        Path | None,
        typer.Option("--out", help="Write the output to this file (atomically) instead of printing it."),
    ] = None,
    kernel: Annotated[
        str, typer.Option("--kernel", help="Kernels: auto, ref, avx2, avx512 or neon.")
    ] = "auto",
) -> None:
    """Detect keywords in long recordings with an exported .bfsm model in the C engine's stream: one event per
    spoken keyword, at the end of the 1-s window that fired (the rule: csrc/include/bifsmn.h)."""
    from bifsmn_cli.engine.detect import detect, format_json, format_text, parse_thresholds
    from bifsmn_cli.engine.stream import DetectorSettings
    from bifsmn_cli.errors import UserError
    from bifsmn_cli.fsutil import atomic_write_text

    if out is not None and not out.parent.is_dir():
        raise UserError(f"--out: {out.parent} is not a directory")
    common, per_class = parse_thresholds(threshold or [])
    given = {"average_ms": average, "refractory_ms": refractory, "rearm": rearm, "min_count": min_count}
    settings = DetectorSettings(
        thresholds=per_class or None,
        **({} if common is None else {"threshold": common}),
        **{k: v for k, v in given.items() if v is not None},
    )
    results = detect(model, list(files), settings, stride=stride, edge=edge, kernel=kernel)
    text = format_json(results) if json_out else format_text(results)
    if out is None:
        typer.echo(text)
    else:
        atomic_write_text(out, text + "\n")


def register(app: typer.Typer) -> None:
    app.command("detect")(detect_cmd)

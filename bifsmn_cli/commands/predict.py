"""`bifsmn predict`: classify clips with an exported model in the C engine (bifsmn_cli.engine.predict)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def predict_cmd(
    model: Annotated[
        Path, typer.Argument(help="A .bfsm model (written by `bifsmn export`).", show_default=False)
    ],
    clips: Annotated[list[Path], typer.Argument(help="WAV or FLAC clips to classify.", show_default=False)],
    top: Annotated[int, typer.Option("--top", help="Classes shown per clip.")] = 3,
    json_out: Annotated[
        bool, typer.Option("--json", help="Print JSON (scores and logits) instead of text.")
    ] = False,
    kernel: Annotated[
        str, typer.Option("--kernel", help="Kernels: auto, ref, avx2, avx512 or neon.")
    ] = "auto",
) -> None:
    """Classify audio clips with an exported .bfsm model in the C engine (built on first use if needed)."""
    import json

    from bifsmn_cli.engine.predict import format_text, predict

    results = predict(model, list(clips), top=top, kernel=kernel)
    typer.echo(json.dumps([r.as_dict() for r in results], indent=2) if json_out else format_text(results))


def register(app: typer.Typer) -> None:
    app.command("predict")(predict_cmd)

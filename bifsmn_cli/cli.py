"""The `bifsmn` command: thin Typer wrappers over the stage runner; errors become one line and an exit code."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer
from typer.exceptions import TyperException

from bifsmn_cli import __version__
from bifsmn_cli.console import console, set_quiet
from bifsmn_cli.errors import BifsmnError
from stages import STAGES

app = typer.Typer(
    name="bifsmn",
    help="Binary neural networks for keyword spotting: from raw audio to 1-bit CPU kernels (BiFSMN, IJCAI 2022).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

ConfigOpt = Annotated[Path, typer.Option("--config", "-c", help="Pipeline YAML file.", show_default=False)]
SetOpt = Annotated[
    Optional[list[str]],  # noqa: UP045 - typer needs Optional here
    typer.Option("--set", help="Override a key: section.key=value (repeatable).", show_default=False),
]
ForceOpt = Annotated[bool, typer.Option("--force", help="Rerun even if up to date; discard resumable state.")]

HELP = {
    "download": "Fetch or synthesise the speech corpus (Speech Commands, synthetic espeak-ng, or your folder).",
    "featurize": "Check clips, split them, pack waveforms and log-mel features per split.",
    "train-teacher": "Train the full-precision D-FSMN teacher.",
    "distill": "Train the 1-bit thinnable student from the teacher with HED.",
    "thin": "Evaluate the 1x/0.5x/0.25x variants and pick the deployable ones.",
    "export": "Write the packed 1-bit model (.bfsm), its C header and the teacher's ONNX.",
    "build-kernel": "Build and test the C engine and kernels for each target (host, aarch64).",
    "bench": "Measure accuracy, latency, kernel throughput and size; write JSON, a report and plots.",
}


@app.callback()
def _root(
    quiet: Annotated[
        bool, typer.Option("--quiet", "-q", help="No progress bars or messages, only errors.")
    ] = False,
    version: Annotated[bool, typer.Option("--version", help="Print the version and exit.")] = False,
) -> None:
    set_quiet(quiet)
    if version:
        print(__version__)
        raise typer.Exit(0)


def _stage_command(name: str) -> None:
    def command(
        config: ConfigOpt,
        set_: SetOpt = None,
        force: ForceOpt = False,
        resume: Annotated[
            bool,
            typer.Option("--resume", help="Continue from the last checkpoint (an error if there is none)."),
        ] = False,
    ) -> None:
        from stages import runner

        pipeline = runner.load(config, set_ or [])
        runner.run_stages(pipeline, [name], force=force, resume=resume)

    command.__doc__ = HELP[name]
    app.command(name)(command)


for _name in STAGES:
    _stage_command(_name)


@app.command("run")
def run_cmd(
    config: ConfigOpt,
    set_: SetOpt = None,
    start: Annotated[Optional[str], typer.Option("--from", help="First stage to run.")] = None,  # noqa: UP045
    stop: Annotated[Optional[str], typer.Option("--to", help="Last stage to run.")] = None,  # noqa: UP045
    force: ForceOpt = False,
) -> None:
    """Run the pipeline's stages in order, skipping those that are up to date."""
    from stages import runner

    pipeline = runner.load(config, set_ or [])
    runner.run_stages(pipeline, runner.select(start, stop), force=force, skip_up_to_date=True)


@app.command("status")
def status_cmd(config: ConfigOpt, set_: SetOpt = None) -> None:
    """Show each stage of a pipeline: up to date, stale, missing or failed, with the reason."""
    from rich.table import Table

    from stages import runner

    pipeline = runner.load(config, set_ or [])
    table = Table(title=f"{pipeline.name} ({pipeline.workspace})")
    for column in ("stage", "state", "reason"):
        table.add_column(column)
    colours = {"up to date": "green", "stale": "yellow", "missing": "dim", "failed": "red"}
    for s in runner.statuses(pipeline):
        table.add_row(s.stage, f"[{colours[s.state]}]{s.state}[/]", s.reason)
    console.print(table)


@app.command("predict")
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


def main() -> None:
    """Entry point: a BifsmnError prints one line (no traceback) and exits with its code."""
    try:
        app(standalone_mode=False)
    except BifsmnError as exc:
        console.print(f"[red]error:[/red] {exc}", soft_wrap=True)
        if os.environ.get("BIFSMN_DEBUG"):
            raise
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        console.print("[red]interrupted[/red]")
        sys.exit(130)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except typer.Abort:
        sys.exit(1)
    except TyperException as exc:  # usage errors: a user error, so exit 1 rather than click's 2
        show = getattr(exc, "show", None)
        show() if show else console.print(f"[red]error:[/red] {exc}")
        sys.exit(1)
    except Exception as exc:  # a bug: one line unless debugging
        console.print(
            f"[red]internal error:[/red] {type(exc).__name__}: {exc} (set BIFSMN_DEBUG=1 for a traceback)"
        )
        if os.environ.get("BIFSMN_DEBUG"):
            raise
        sys.exit(2)

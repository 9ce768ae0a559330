"""The pipeline commands: one per stage, `run` (stages in order, skipping those up to date) and `status`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from bifsmn_cli.console import console
from stages.pipeline import registry

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


def _stage_command(app: typer.Typer, name: str) -> None:
    def command(
        config: ConfigOpt,
        set_: SetOpt = None,
        force: ForceOpt = False,
        resume: Annotated[
            bool,
            typer.Option("--resume", help="Continue from the last checkpoint (an error if there is none)."),
        ] = False,
    ) -> None:
        from stages.pipeline import runner, schema

        runner.run_stages(schema.load(config, set_ or []), [name], force=force, resume=resume)

    command.__doc__ = HELP[name]
    app.command(name)(command)


def run_cmd(
    config: ConfigOpt,
    set_: SetOpt = None,
    start: Annotated[Optional[str], typer.Option("--from", help="First stage to run.")] = None,  # noqa: UP045
    stop: Annotated[Optional[str], typer.Option("--to", help="Last stage to run.")] = None,  # noqa: UP045
    force: ForceOpt = False,
) -> None:
    """Run the pipeline's stages in order, skipping those that are up to date."""
    from stages.pipeline import runner, schema

    pipeline = schema.load(config, set_ or [])
    runner.run_stages(pipeline, registry.select(start, stop), force=force, skip_up_to_date=True)


def status_cmd(config: ConfigOpt, set_: SetOpt = None) -> None:
    """Show each stage of a pipeline: up to date, stale, missing or failed, with the reason."""
    from rich.table import Table

    from stages.pipeline import runner, schema

    pipeline = schema.load(config, set_ or [])
    table = Table(title=f"{pipeline.name} ({pipeline.workspace})")
    for column in ("stage", "state", "reason"):
        table.add_column(column)
    colours = {"up to date": "green", "stale": "yellow", "missing": "dim", "failed": "red"}
    for s in runner.statuses(pipeline):
        table.add_row(s.stage, f"[{colours[s.state]}]{s.state}[/]", s.reason)
    console.print(table)


def register(app: typer.Typer) -> None:
    for name in registry.STAGES:
        _stage_command(app, name)
    app.command("run")(run_cmd)
    app.command("status")(status_cmd)

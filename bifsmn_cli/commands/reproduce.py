"""`bifsmn reproduce`: the paper's Tables 1-3 on a pipeline's data, every row a workspace of its own.

The rows and the tables are the library's (bifsmn_cli/reproduce/); this command runs the stages of the shared
workspace and of each row through the stage runner, in one process (one torch import for all rows), then
writes the tables. A failing row is reported and the others still run.
"""

from __future__ import annotations

from typing import Annotated

import typer

from bifsmn_cli.commands.pipeline import ConfigOpt, SetOpt
from bifsmn_cli.console import console, info
from bifsmn_cli.errors import BifsmnError, UserError
from bifsmn_cli.reproduce import plan, tables
from stages.pipeline import registry


def reproduce_cmd(
    config: ConfigOpt,
    set_: SetOpt = None,
    budget: Annotated[
        str,
        typer.Option(
            "--budget", help="quick (the pipeline's recipe, 6 distill epochs) or full (the paper's)."
        ),
    ] = "quick",
    latency: Annotated[
        bool, typer.Option("--latency/--no-latency", help="Build the engine and time Table 3's models in it.")
    ] = True,
) -> None:
    """Reproduce the BiFSMN paper's Tables 1-3 (BiFSMNv2's methods beside them) into <workspace>/reproduce/."""
    from stages.pipeline import runner, schema

    user = list(set_ or [])
    root = plan.root_of(plan.workspace_of(config, user), budget)
    common = plan.budget_args(budget) + user  # the user's --set can still change the budget's
    shared = [*common, f"workspace={root / 'shared'}"]
    info(f"[bold]== shared[/bold]: data and teacher -> {root / 'shared'}")
    stages = registry.select(None, "train-teacher") + (
        registry.select("build-kernel", "build-kernel") if latency else []
    )
    runner.run_stages(schema.load(config, shared), stages, skip_up_to_date=True)
    failed = []
    for p in plan.prepare(root, latency, common):
        info(f"[bold]== {p.row.name}[/bold]: {p.row.label} -> {p.workspace}")
        try:
            pipeline = schema.load(config, [*common, *p.overrides])
            runner.run_stages(pipeline, registry.select(p.first, p.last), skip_up_to_date=True)
        except BifsmnError as exc:
            failed.append(p.row.name)
            console.print(f"[red]row {p.row.name} failed[/red]: {exc}")
    command = [
        "bifsmn",
        "reproduce",
        "-c",
        str(config),
        "--budget",
        budget,
        *(["--no-latency"] if not latency else []),
    ]
    command += [a for s in user for a in ("--set", s)]
    for path in tables.write_tables(root, budget, command, latency):
        if path.suffix == ".md":
            typer.echo(path.read_text())
            info(f"wrote {path} and {path.with_suffix('.json')}")
    if failed:
        raise UserError(
            f"rows {', '.join(failed)} failed (their tables say 'not run'); rerun the same command"
        )


def register(app: typer.Typer) -> None:
    app.command("reproduce")(reproduce_cmd)

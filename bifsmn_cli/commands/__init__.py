"""The `bifsmn` command: a Typer app of thin wrappers over the stages and the library.

The commands are the only importers of `stages`; errors become one line and an exit code here (0 ok, 1 user
error, 2 internal error, 130 interrupted). `main` is the console script's entry point.
"""

from __future__ import annotations

import os
import sys
from typing import Annotated

import typer
from typer.exceptions import TyperException

from bifsmn_cli import __version__
from bifsmn_cli.commands import detect, pipeline, predict, reproduce
from bifsmn_cli.console import console, set_quiet
from bifsmn_cli.errors import BifsmnError

app = typer.Typer(
    name="bifsmn",
    help="Binary neural networks for keyword spotting: from raw audio to 1-bit CPU kernels (BiFSMN, IJCAI 2022).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


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


pipeline.register(app)
predict.register(app)
detect.register(app)
reproduce.register(app)


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

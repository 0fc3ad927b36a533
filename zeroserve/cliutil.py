"""What every stage's CLI shares: consoles, common options, error handling, JSON output.

Stage CLI modules import from here (never from zeroserve.cli, which imports them).
"""

from __future__ import annotations

import enum
import functools
import json
import os
import sys
from pathlib import Path
from typing import Annotated, Any, Callable

import typer
from rich.console import Console
from rich.markup import escape

from zeroserve import formats as F
from zeroserve.errors import ZeroserveError

PIPED_WIDTH = 200  # piped output (CI logs, `make demo`) would otherwise be cut to 80 columns ("cnn_m…")


def _console(stderr: bool = False) -> Console:
    stream = sys.stderr if stderr else sys.stdout
    piped = not stream.isatty() and "COLUMNS" not in os.environ
    return Console(stderr=stderr, width=PIPED_WIDTH if piped else None)


console = _console()
err_console = _console(stderr=True)


def choices(name: str, values: tuple[str, ...] | list[str]) -> type[enum.StrEnum]:
    """A string enum of `values` for a Typer choice option: `--help` lists them and Typer refuses others."""
    return enum.StrEnum(name, {v: v for v in values})


APP_SETTINGS = dict(
    name="zeroserve",
    help="The PyTorch Zero to All course models, from training to a verified, load-tested Triton deployment.\n\n"
         "Stages: train -> export -> deploy -> serve -> client. Exit codes: 0 success; 1 a check or gate failed "
         "or requests failed; 2 usage or input error; 3 server unreachable or failed to start; 4 perf unstable.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

# Options shared by several commands, declared once.
ModelsArg = Annotated[list[str], typer.Argument(help="Registry model names (comma or space separated), or 'all'.",
                                                show_default=False)]
ArtifactsOpt = Annotated[Path, typer.Option("--artifacts", help="Folder of per-model artifacts and records.")]
DataDirOpt = Annotated[Path, typer.Option("--data-dir", envvar="ZEROSERVE_DATA_DIR",
                                          help="Folder with the course data files and MNIST IDX files.")]
ModelFilesOpt = Annotated[list[Path] | None, typer.Option(
    "--model-file", envvar="ZEROSERVE_MODEL_FILES", show_default=False, metavar="PATH",
    help="A Python file defining zeroserve_models() -> list[ModelSpec]: your own models, named beside the "
         "course's (repeatable; env ZEROSERVE_MODEL_FILES, a path list). See the README.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON instead of a table.")]
FormatsOpt = Annotated[str | None, typer.Option(
    "--format", help=f"Formats, comma separated: {', '.join(F.keys())} (default: {','.join(F.primary())}).",
    show_default=False)]


def handle_errors(fn: Callable) -> Callable:
    """Turn a ZeroserveError into one clear line on stderr and its exit code."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except ZeroserveError as exc:
            err_console.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True)
            raise typer.Exit(exc.exit_code) from None
        except KeyboardInterrupt:
            err_console.print("interrupted")
            raise typer.Exit(130) from None

    return wrapper


def print_json(obj: Any) -> None:
    sys.stdout.write(json.dumps(obj, indent=2, default=str) + "\n")


def skip_line(name: str, reason: str) -> None:
    err_console.print(f"[yellow]skipped[/] {name}: {escape(reason)}", highlight=False, soft_wrap=True)


def show_warning(message, category, filename, lineno, file=None, line=None):
    err_console.print(f"[yellow]warning:[/] {escape(str(message))}", highlight=False, soft_wrap=True)



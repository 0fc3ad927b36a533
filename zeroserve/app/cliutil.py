"""What every stage's CLI shares: consoles, common options, error handling, JSON output.

Stage CLI modules import from here (never from zeroserve.app.cli, which imports them).
"""

from __future__ import annotations

import enum
import functools
import inspect
import math
import os
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape

from zeroserve import formats as F
from zeroserve import records
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
    return enum.StrEnum(name, {v: v for v in values})  # type: ignore[return-value]  # the functional API makes a class


APP_SETTINGS: dict[str, Any] = dict(
    name="zeroserve",
    help="The PyTorch Zero to All course models, from training to a verified, load-tested Triton deployment.\n\n"
    "Stages: train -> export -> deploy -> serve -> client. Exit codes: 0 success; 1 a check or gate failed "
    "or requests failed; 2 usage or input error; 3 server unreachable or failed to start; 4 perf unstable.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

_LIST_ITEM = re.compile(r"^\s*(?:[-*]|\d+[.)])\s")


def reflow(text: str) -> str:
    """A docstring as help: its paragraphs' hard line breaks joined, list items kept on their own lines.

    Typer's rich help keeps single line breaks after the first paragraph, so a docstring wrapped at 110
    columns was wrapped again at the terminal's width.
    """
    paragraphs = []
    for paragraph in inspect.cleandoc(text).split("\n\n"):
        lines: list[str] = []
        for line in paragraph.splitlines():
            if lines and not _LIST_ITEM.match(line):
                lines[-1] += " " + line.strip()
            else:
                lines.append(line.rstrip())
        paragraphs.append("\n".join(lines))
    return "\n\n".join(paragraphs)


def reflow_help(app: typer.Typer) -> None:
    """Every command's help reflowed (see reflow), sub-apps included."""
    for info in app.registered_commands:
        text = info.help or (info.callback.__doc__ if info.callback else None)
        if text:
            info.help = reflow(text)
    for group in app.registered_groups:
        if group.typer_instance is not None:
            reflow_help(group.typer_instance)


def usage_error(message: str) -> None:
    """A bad option value, found while the command line is parsed: one line on stderr, exit 2 (InputError's)."""
    err_console.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
    raise typer.Exit(2)


PORT_MAX = 65535


def port_callback(allow_zero: bool = False) -> Callable:
    """An option callback accepting a TCP port 1-65535 (0 too where it means "pick a free port"), or None."""

    def check(param: typer.CallbackParam, value: int | None) -> int | None:
        low = 0 if allow_zero else 1
        if value is not None and not low <= value <= PORT_MAX:
            usage_error(
                f"{param.opts[0]} {value} is not a port: give 1-{PORT_MAX}"
                + (" (or 0 for a free port)" if allow_zero else "")
            )
        return value

    return check


def positive_seconds(param: typer.CallbackParam, value: float | None) -> float | None:
    """An option callback accepting a finite number of seconds > 0 (a timeout), or None."""
    if value is not None and not (math.isfinite(value) and value > 0):
        usage_error(f"{param.opts[0]} {value:g} must be a number of seconds greater than 0")
    return value


def _existing_data_dir(ctx: typer.Context, param: typer.CallbackParam, value: Path | None) -> Path | None:
    """--data-dir given on the command line must be a folder; env and default are checked where they are read."""
    source = ctx.get_parameter_source(str(param.name))
    if value is not None and source is not None and source.name == "COMMANDLINE" and not value.is_dir():
        from zeroserve.data.fetch import fetch_command

        usage_error(
            f"--data-dir {value} "
            + ("is not a folder" if value.exists() else "does not exist")
            + f": give the folder holding the course data, or fill it with `{fetch_command('all', value)}`"
        )
    return value


def data_dir_in_use(data_dir: Path | None, specs=None) -> Path:
    """The data folder a command reads (`--data-dir`, else ZEROSERVE_DATA_DIR, else data/); warns when it is missing.

    A folder given with --data-dir was checked while parsing (exit 2); a defaulted one that does
    not exist is only a warning naming it, since a command may go on without data (random inputs).

    Args:
        specs: the models the command works on; no warning when none of them has a data source.
    """
    from zeroserve.data.readers import default_data_dir

    path = Path(data_dir) if data_dir is not None else default_data_dir()
    reads_data = specs is None or any(spec.data is not None for spec in specs)
    if reads_data and not path.is_dir():
        how = "from ZEROSERVE_DATA_DIR" if os.environ.get("ZEROSERVE_DATA_DIR") else "the default"
        err_console.print(
            f"[yellow]warning:[/] data folder {escape(str(path))} ({how}) does not exist: models "
            "that need data go without it (`zeroserve data fetch all` fills it, --data-dir names "
            "another)",
            highlight=False,
            soft_wrap=True,
        )
    return path


# Options shared by several commands, declared once.
ModelsArg = Annotated[
    list[str], typer.Argument(help="Registry model names (comma or space separated), or 'all'.", show_default=False)
]
ArtifactsOpt = Annotated[Path, typer.Option("--artifacts", help="Folder of per-model artifacts and records.")]
DataDirOpt = Annotated[
    Path | None,
    typer.Option(
        "--data-dir",
        envvar="ZEROSERVE_DATA_DIR",
        callback=_existing_data_dir,
        help="Folder with the course data files and MNIST IDX files (must exist when given; env ZEROSERVE_DATA_DIR, "
        "else data/).",
    ),
]
# data fetch writes the folder, so it need not exist yet
FetchDataDirOpt = Annotated[
    Path | None,
    typer.Option(
        "--data-dir", envvar="ZEROSERVE_DATA_DIR", help="Folder to download the data sets into (created if needed)."
    ),
]
ModelFilesOpt = Annotated[
    list[Path] | None,
    typer.Option(
        "--model-file",
        envvar="ZEROSERVE_MODEL_FILES",
        show_default=False,
        metavar="PATH",
        help="A Python file defining zeroserve_models() -> list[ModelSpec]: your own models, named beside the "
        "course's (repeatable; env ZEROSERVE_MODEL_FILES, a path list). See docs/own-models.md.",
    ),
]
# metavar "": a flag takes no value (typer would show `<bool>` beside it)
JsonOpt = Annotated[bool, typer.Option("--json", metavar="", help="Print machine-readable JSON instead of a table.")]
FormatsOpt = Annotated[
    str | None,
    typer.Option(
        "--format",
        help=f"Formats, comma separated: {', '.join(F.keys())} (default: {','.join(F.primary())}).",
        show_default=False,
    ),
]


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
    sys.stdout.write(records.dumps(obj, indent=2, default=str) + "\n")


def skip_line(name: str, reason: str) -> None:
    err_console.print(f"[yellow]skipped[/] {name}: {escape(reason)}", highlight=False, soft_wrap=True)


def show_warning(message, category, filename, lineno, file=None, line=None):
    err_console.print(f"[yellow]warning:[/] {escape(str(message))}", highlight=False, soft_wrap=True)

"""The `zeroserve` command: a thin shell over the library, one sub-command per stage."""

from __future__ import annotations

import functools
import json
import sys
import warnings
from pathlib import Path
from typing import Annotated, Any, Callable

import typer
from rich.console import Console
from rich.table import Table

from zeroserve import __version__, registry
from zeroserve.errors import ZeroserveError

console = Console()
err_console = Console(stderr=True)

app = typer.Typer(
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
JsonOpt = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON instead of a table.")]


def handle_errors(fn: Callable) -> Callable:
    """Turn a ZeroserveError into one clear line on stderr and its exit code."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except ZeroserveError as exc:
            err_console.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
            raise typer.Exit(exc.exit_code) from None
        except KeyboardInterrupt:
            err_console.print("interrupted")
            raise typer.Exit(130) from None

    return wrapper


def print_json(obj: Any) -> None:
    sys.stdout.write(json.dumps(obj, indent=2, default=str) + "\n")


def skip_line(name: str, reason: str) -> None:
    err_console.print(f"[yellow]skipped[/] {name}: {reason}", highlight=False, soft_wrap=True)


def _show_warning(message, category, filename, lineno, file=None, line=None):
    err_console.print(f"[yellow]warning:[/] {message}", highlight=False, soft_wrap=True)


def version_callback(value: bool):
    if value:
        console.print(f"zeroserve {__version__}")
        raise typer.Exit()


@app.callback()
def root(version: Annotated[bool, typer.Option("--version", callback=version_callback, is_eager=True,
                                               help="Print the version and exit.")] = False):
    """The PyTorch Zero to All course models, from training to a verified, load-tested Triton deployment."""


@app.command("models")
@handle_errors
def models_cmd(as_json: JsonOpt = False):
    """List the course models in the registry, with their tensor specs (--json)."""
    if as_json:
        print_json([m.as_json() for m in registry.REGISTRY.values()])
        return
    table = Table(title="zeroserve model registry")
    for col in ("model", "lesson", "task", "inputs", "outputs", "max batch", "data"):
        table.add_column(col)
    fmt = lambda specs: "\n".join(f"{t.name} {t.dtype}[{', '.join(map(str, ('batch', *t.dims)))}]"  # noqa: E731
                                  for t in specs)
    for m in registry.REGISTRY.values():
        table.add_row(m.name, m.lesson, m.task, fmt(m.inputs), fmt(m.outputs), str(m.max_batch_size),
                      m.data.description)
    console.print(table)


def _register_stages() -> None:
    """Each stage's `cli` module adds its commands; stages are imported in flow order."""
    import importlib

    for stage in ("train.cli", "export.cli", "serve.deploy_cli", "serve.cli", "client.cli"):
        name = f"zeroserve.{stage}"
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name in (name, name.rsplit(".", 1)[0]):
                continue  # a stage not built yet
            raise
        module.register(app)


_register_stages()


def main() -> None:
    warnings.showwarning = _show_warning
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    warnings.filterwarnings("ignore", category=FutureWarning)
    app()



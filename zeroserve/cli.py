"""The `zeroserve` command: a thin shell over the library, one sub-command per stage."""

from __future__ import annotations

import warnings
from typing import Annotated

import typer
from rich.table import Table

from zeroserve import __version__, registry
from zeroserve.cliutil import APP_SETTINGS, JsonOpt, console, handle_errors, print_json, show_warning

app = typer.Typer(**APP_SETTINGS)


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
    fmt = lambda specs: "\n".join(f"{t.name} {t.dtype}({', '.join(map(str, ('batch', *t.dims)))})"  # noqa: E731
                                  + (f" {t.kind.name}" if t.kind else "") for t in specs)
    for m in registry.REGISTRY.values():
        table.add_row(m.name, m.lesson, m.task.name, fmt(m.inputs), fmt(m.outputs), str(m.max_batch_size),
                      m.data.description)
    console.print(table)


def _register_stages() -> None:
    """Each stage's `cli` module adds its commands; stages are imported in flow order."""
    import importlib

    for stage in ("data_cli", "train.cli", "export.cli", "serve.deploy_cli", "serve.cli", "client.cli"):
        importlib.import_module(f"zeroserve.{stage}").register(app)


_register_stages()


def main() -> None:
    warnings.showwarning = show_warning
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    warnings.filterwarnings("ignore", category=FutureWarning)
    app()



"""The `zeroserve` command: a thin shell over the library, one sub-command per stage."""

from __future__ import annotations

import warnings
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from zeroserve import __version__, registry
from zeroserve.app.cliutil import (
    APP_SETTINGS,
    JsonOpt,
    ModelFilesOpt,
    console,
    err_console,
    handle_errors,
    print_json,
    reflow_help,
    show_warning,
)
from zeroserve.client import cli as client_cli
from zeroserve.data import cli as data_cli
from zeroserve.deploy import cli as deploy_cli
from zeroserve.errors import InputError
from zeroserve.export import cli as export_cli
from zeroserve.serve import cli as serve_cli
from zeroserve.train import cli as train_cli
from zeroserve.tune import cli as tune_cli

app = typer.Typer(**APP_SETTINGS)


def version_callback(value: bool):
    if value:
        console.print(f"zeroserve {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=version_callback, is_eager=True, metavar="", help="Print the version and exit."
        ),
    ] = False,
):
    """The PyTorch Zero to All course models, from training to a verified, load-tested Triton deployment."""


@app.command("models")
@handle_errors
def models_cmd(model_files: ModelFilesOpt = None, as_json: JsonOpt = False):
    """List the course models and your own (--model-file, entry points), with their tensor specs (--json).

    Your own models are checked as every command checks them: the example input through forward,
    the outputs against their specs, the checkpoint against the module. A model file (or model) that
    fails is reported in one line and the rest are listed; the exit code is then 2.
    """
    from zeroserve import user_models

    broken: list[InputError] = []
    specs = []
    for spec in registry.models(model_files, on_error=broken.append).values():
        try:
            specs.append(user_models.verify(spec))
        except InputError as exc:
            broken.append(exc)
    if as_json:
        print_json([m.as_json() for m in specs])
    else:
        _models_table(specs)
    for problem in broken:
        err_console.print(f"[bold red]error:[/] {escape(str(problem))}", highlight=False, soft_wrap=True)
    if broken:
        raise typer.Exit(2)


def _models_table(specs) -> None:
    yours = sum(m.origin != "course" for m in specs)
    table = Table(title="zeroserve models" + (f": {len(specs) - yours} course, {yours} yours" if yours else ""))
    for col in ("model", "lesson / origin", "task", "inputs", "outputs", "max batch", "data"):
        table.add_column(col)

    def fmt(specs) -> str:
        return "\n".join(
            f"{t.name} {t.dtype}({', '.join(map(str, ('batch', *t.dims)))})" + (f" {t.kind.name}" if t.kind else "")
            for t in specs
        )

    for m in specs:
        course = m.origin == "course"
        table.add_row(
            m.name if course else f"{m.name} [bold](yours)[/]",
            m.lesson if course else m.origin,
            "\n".join(dict.fromkeys(t.name for t in m.tasks)),
            fmt(m.inputs),
            fmt(m.outputs),
            str(m.max_batch_size),
            m.data.description if m.data else (f"checkpoint {m.checkpoint}" if m.checkpoint else "none"),
        )
    console.print(table)


def _register_stages() -> None:
    """Each stage's `cli` module adds its commands, in flow order."""
    for stage_cli in (data_cli, train_cli, export_cli, deploy_cli, serve_cli, client_cli, tune_cli):
        stage_cli.register(app)


_register_stages()
reflow_help(app)


def main() -> None:
    warnings.showwarning = show_warning
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    warnings.filterwarnings("ignore", category=FutureWarning)
    app()

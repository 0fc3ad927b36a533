"""`zeroserve train`."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from zeroserve import registry
from zeroserve.app.cliutil import (
    ArtifactsOpt,
    DataDirOpt,
    JsonOpt,
    ModelFilesOpt,
    ModelsArg,
    choices,
    console,
    data_dir_in_use,
    err_console,
    handle_errors,
    print_json,
    skip_line,
)
from zeroserve.artifacts import DEFAULT_ARTIFACTS
from zeroserve.data.fetch import fetch_command
from zeroserve.data.models import dataset_names_for_model
from zeroserve.errors import CheckFailed, InputError
from zeroserve.records.train import TrainRecord
from zeroserve.train.trainer import train_model

if TYPE_CHECKING:  # mypy sees the value each choice stands for; typer gets the choice Enum at run time
    Device = str
else:
    Device = choices("Device", ("auto", "cpu", "cuda"))


def register(app: typer.Typer) -> None:
    app.command("train")(train_cmd)


@handle_errors
def train_cmd(
    models: ModelsArg,
    epochs: Annotated[int | None, typer.Option(help="Epochs (default: the registry's per model).")] = None,
    batch_size: Annotated[int | None, typer.Option(help="Mini-batch size (default: the registry's).")] = None,
    lr: Annotated[float | None, typer.Option(help="Learning rate (default: the registry's).")] = None,
    seed: Annotated[int, typer.Option(help="Seed for initialisation and shuffling; seeded runs repeat.")] = 0,
    device: Annotated[Device, typer.Option(help="cuda without a GPU falls back to cpu.")] = "auto",
    data_dir: DataDirOpt = None,
    artifacts: ArtifactsOpt = DEFAULT_ARTIFACTS,
    model_files: ModelFilesOpt = None,
    as_json: JsonOpt = False,
    require_bar: Annotated[
        bool,
        typer.Option(
            "--require-bar",
            metavar="",
            help="Exit 1 when a model ends below its bar (BELOW_BAR); without it that is exit 0, "
            "since short runs end below the bar on purpose.",
        ),
    ] = False,
):
    """Train course models on real data; writes artifacts/<model>/checkpoint.pt, train.json, loss.png.

    Asked for one model whose data file is missing, fails (exit 2); under 'all' such a model is skipped.
    A model that falls back (no MNIST/Fashion-MNIST IDX files) or is skipped is told the
    `zeroserve data fetch ...` command that fetches its data. When the output is not a terminal (a CI
    log, a pipe), each epoch prints one line as it ends: epoch, training loss, held-out metric, elapsed.

    Exit codes: 0 trained (also BELOW_BAR, unless --require-bar: then 1); 2 a usage or input error.
    """
    specs, explicit = registry.select(models, model_files)
    data_dir = data_dir_in_use(data_dir, specs)
    done: list[TrainRecord] = []
    skipped: list[dict] = []
    on_epoch = None if console.is_terminal else _epoch_line(err_console if as_json else console)
    with Progress(*progress_columns(), console=console, transient=True, disable=as_json) as progress:
        for spec in specs:
            try:
                rec = train_model(
                    spec,
                    data_dir,
                    artifacts,
                    epochs=epochs,
                    batch_size=batch_size,
                    lr=lr,
                    seed=seed,
                    device=device,
                    progress=progress,
                    on_epoch=on_epoch,
                )
            except InputError as exc:  # missing data, or a model of your own that is not trained here
                if explicit:
                    raise
                skipped.append({"model": spec.name, "reason": str(exc), "fix": getattr(exc, "fix", "")})
                skip_line(spec.name, str(exc))
                continue
            done.append(rec)
            if not as_json:
                m = rec.metric
                mark = "[green]PASS[/]" if rec.status == "PASS" else "[yellow]below bar[/]"
                progress.console.print(
                    f"{spec.name}: {m.name} {m.value:.4f} {mark} in {rec.seconds or 0:.1f} s on {rec.data.source}",
                    highlight=False,
                )
                if rec.data.note:
                    progress.console.print(f"  note: {rec.data.note}", highlight=False, soft_wrap=True)
    fix = _fetch_hint(specs, done, skipped, data_dir)
    if as_json:
        print_json({"trained": [r.to_json() for r in done], "skipped": skipped, "fix": fix})
        _require_bar(done, require_bar)
        return
    by_name = {spec.name: spec for spec in specs}
    table = Table(title=f"trained into {artifacts}/")
    for col in ("model", "metric", "value", "bar", "status", "seconds"):
        table.add_column(col)
    for rec in done:
        table.add_row(
            rec.model,
            rec.metric.name,
            f"{rec.metric.value:.4f}",
            by_name[rec.model].bar_text,
            rec.status,
            f"{rec.seconds or 0:.1f}",
        )
    for s in skipped:
        table.add_row(s["model"], "", "", "", "skipped", "")
    console.print(table)
    if fix:
        console.print(f"to train on the real data sets: {fix}", highlight=False, soft_wrap=True)
        if data_dir.is_dir() and not os.access(data_dir, os.W_OK):
            console.print(
                f"  ({data_dir} is read-only: fetch every data set into a writable folder instead, "
                f"`{fetch_command('all', 'data')}`, and train with --data-dir data)",
                highlight=False,
                soft_wrap=True,
            )


def progress_columns() -> tuple:
    """The terminal's progress bars: a task's `figures` field is empty until its first loss is known."""
    return (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[figures]}"),
        TimeElapsedColumn(),
    )


def _epoch_line(out):
    """An `on_epoch` callback printing one line per epoch (for output that is not a terminal)."""

    def line(e: dict) -> None:
        out.print(
            f"{e['model']} epoch {e['epoch']}/{e['epochs']}: loss {e['loss']:.4f}, held-out {e['metric']} "
            f"{e['metric_value']:.4f}, {e['seconds']:.1f} s",
            highlight=False,
            soft_wrap=True,
        )

    return line


def _require_bar(done: list[TrainRecord], require_bar: bool) -> None:
    """With --require-bar, CheckFailed (exit 1) naming each model that ended below its bar."""
    below = [
        f"{r.model} ({r.metric.name} {r.metric.value:.4f}, bar {r.metric.bar})" for r in done if r.status == "BELOW_BAR"
    ]
    if require_bar and below:
        raise CheckFailed(f"below the bar (--require-bar): {', '.join(below)}")


def _fetch_hint(specs, done: list[TrainRecord], skipped: list[dict], data_dir: Path) -> str:
    """One `zeroserve data fetch` command for every model that fell back or was skipped ('' when none did)."""
    lacking = {r.model for r in done if r.data.note} | {s["model"] for s in skipped}
    names = list(dict.fromkeys(n for spec in specs if spec.name in lacking for n in dataset_names_for_model(spec)))
    return fetch_command(names, data_dir) if names else ""

"""`zeroserve data fetch`: download the data sets the course models train on."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn, TransferSpeedColumn
from rich.table import Table

from zeroserve.app.cliutil import (
    FetchDataDirOpt,
    JsonOpt,
    console,
    err_console,
    handle_errors,
    positive_seconds,
    print_json,
)
from zeroserve.data import fetch as F
from zeroserve.data import models as DM
from zeroserve.data.readers import default_data_dir
from zeroserve.errors import InputError

data_app = typer.Typer(
    name="data", help="The data sets the course models train on.", no_args_is_help=True, add_completion=False
)


def register(app: typer.Typer) -> None:
    app.add_typer(data_app, name="data")


def _names_help() -> str:
    uses = "; ".join(
        f"{name} ({', '.join(models) or 'no model yet'})" for name, models in DM.models_by_dataset().items()
    )
    return (
        f"What to fetch: a data set name, or a model name (fetches the data sets that model trains on), "
        f"or 'all' (default). Data sets (and the models that train on them): {uses}."
    )


def _read_checksums(path: Path | None) -> dict[str, str] | None:
    if path is None:
        return None
    try:
        table = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise InputError(f"--checksums {path}: not a readable JSON file ({exc})") from None
    if not isinstance(table, dict) or not all(isinstance(v, str) and len(v) in (32, 64) for v in table.values()):
        raise InputError(f'--checksums {path}: expected {{"<path in the data folder>": "<sha256 or md5 hex>"}}')
    return table


@data_app.command("fetch")
@handle_errors
def fetch_cmd(
    names: Annotated[
        list[str] | None, typer.Argument(help=_names_help(), metavar="NAME|all", show_default=False)
    ] = None,
    data_dir: FetchDataDirOpt = None,
    source: Annotated[
        str | None,
        typer.Option(
            "--source",
            envvar=F.MIRROR_ENV,
            show_default=False,
            help="Mirror to download from instead of the recorded sources: an http(s):// or file:// URL or a folder, "
            "laid out like a data folder (URL/diabetes.csv.gz, URL/MNIST/raw/<file>.gz; MNIST files also as "
            "URL/<file>.gz). A fetched data/ served over HTTP is a mirror.",
        ),
    ] = None,
    force: Annotated[
        bool,
        typer.Option(
            "--force",
            help="Download again and replace files already present (also ones that differ from the recorded checksum).",
        ),
    ] = False,
    timeout: Annotated[
        float,
        typer.Option(
            "--timeout", help="Seconds (> 0) to wait for a server before giving up.", callback=positive_seconds
        ),
    ] = F.DEFAULT_TIMEOUT,
    checksums: Annotated[
        Path | None,
        typer.Option(
            "--checksums",
            envvar=F.CHECKSUMS_ENV,
            show_default=False,
            help="JSON table {path in the data folder: sha256 or md5} replacing recorded checksums, for a mirror "
            "of other versions of the files.",
        ),
    ] = None,
    as_json: JsonOpt = False,
):
    """Download the data sets the course models train on into the data folder, verified by checksum.

    diabetes and names come from the course repository (github.com/hunkim/PyTorchZeroToAll, data/), checked against sha256 sums recorded in zeroserve; mnist and fashion-mnist come from torchvision's mirrors, checked against torchvision's md5 sums, into <data>/MNIST/raw and <data>/FashionMNIST/raw.

    Files present and matching are not downloaded again. Each data set is downloaded into a temporary folder beside the target and renamed into place only when all its files are verified: a failure leaves nothing behind.

    Exit codes: 0 present or fetched; 1 a file did not match its checksum; 3 a download failed (offline, unreachable, HTTP error, dropped connection); 2 a usage error.
    """  # noqa: E501 - the --help text: typer reflows each paragraph, so one line per paragraph
    data_dir = Path(data_dir or default_data_dir())
    wanted = DM.resolve(names or ["all"])
    if not wanted:
        if as_json:
            print_json({"data_dir": str(data_dir), "datasets": [], "exit_code": 0})
        else:
            console.print(
                f"{', '.join(names or [])}: trains on inline or generated data; nothing to fetch", highlight=False
            )
        return
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=err_console, transient=True, disable=as_json) as progress:
        rows = F.fetch(
            wanted,
            data_dir,
            source=source,
            checksums=_read_checksums(checksums),
            force=force,
            timeout=timeout,
            progress=progress,
        )
    code = F.exit_code(rows)
    if as_json:
        print_json({"data_dir": str(data_dir), "datasets": rows, "exit_code": code})
        raise typer.Exit(code)
    table = Table(title=f"data sets in {data_dir}/")
    for col in ("data set", "state", "files written"):
        table.add_column(col)
    paint = {"present": "green", "fetched": "green", "failed": "red"}
    for r in rows:
        table.add_row(r["dataset"], f"[{paint[r['state']]}]{r['state']}[/]", str(len(r["files"])))
    console.print(table)
    for r in rows:
        if r["state"] == "failed":
            err_console.print(
                f"[bold red]error:[/] {r['dataset']}: {escape(r['error'])}", highlight=False, soft_wrap=True
            )
    if code == 3:
        err_console.print(
            "nothing half-written was left; when online, run the same command again, or point "
            f"--source / {F.MIRROR_ENV} at a mirror (a data folder served over HTTP, or a folder)",
            highlight=False,
            soft_wrap=True,
        )
    raise typer.Exit(code)

"""`zeroserve export`."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from zeroserve import registry
from zeroserve.artifacts import DEFAULT_ARTIFACTS
from zeroserve import formats as F
from zeroserve import parity
from zeroserve.cliutil import (ArtifactsOpt, DataDirOpt, FormatsOpt, JsonOpt, ModelFilesOpt, ModelsArg, choices,
                               console, data_dir_in_use, err_console, handle_errors, print_json, skip_line)
from zeroserve.errors import CheckFailed, InputError
from zeroserve.export import exporter


Exporter = choices("Exporter", ("legacy", "dynamo"))


def register(app: typer.Typer) -> None:
    app.command("export")(export_cmd)


@handle_errors
def export_cmd(
    models: ModelsArg,
    fmt: FormatsOpt = None,
    opset: Annotated[int, typer.Option(help="ONNX opset.")] = exporter.DEFAULT_OPSET,
    exporter_name: Annotated[Exporter, typer.Option("--exporter", help="ONNX exporter: legacy (TorchScript-based) "
                                                                       "or dynamo.")]
    = exporter.DEFAULT_EXPORTER,
    atol: Annotated[float | None, typer.Option(
        help=f"Gate: absolute tolerance (default: the model's own, else {parity.ATOL}).", show_default=False)] = None,
    rtol: Annotated[float | None, typer.Option(
        help=f"Gate: relative tolerance (default: the model's own, else {parity.RTOL}).", show_default=False)] = None,
    data_dir: DataDirOpt = None,
    artifacts: ArtifactsOpt = DEFAULT_ARTIFACTS,
    model_files: ModelFilesOpt = None,
    as_json: JsonOpt = False,
):
    """Export trained models to TorchScript (model.pt) and ONNX (model.onnx) behind a parity gate.

    Every format is compared with eager PyTorch on batch sizes 1, 2, 7 and max_batch_size (and the
    RNNs' sequence lengths, mixed in one batch), on random and real held-out inputs. For every output,
    each element must satisfy |exported - eager| <= atol + rtol*|eager|, and every top-1 decision must
    agree except at a near tie (eager's top two closer than the tolerance there; counted). A failure
    prints the worst case, exits 1, keeps the previous artifacts and writes export-failed.json.
    """
    formats = F.parse(fmt)
    exporter.check_opset(opset, exporter_name)
    data_dir = data_dir_in_use(data_dir)
    specs, explicit = registry.select(models, model_files)
    done, skipped, failed = [], [], []
    for spec in specs:
        with console.status(f"exporting {spec.name} ({', '.join(formats)}) and running the gate", spinner="dots"):
            try:
                rec = exporter.export_model(spec, artifacts, formats=formats, opset=opset, exporter=exporter_name,
                                            atol=atol, rtol=rtol, data_dir=data_dir)
            except CheckFailed as exc:
                if explicit and len(specs) == 1:
                    raise
                err_console.print(f"[bold red]FAIL[/] {exc}", highlight=False, soft_wrap=True)
                failed.append({"model": spec.name, "reason": str(exc)})
                continue
            except InputError as exc:
                if explicit:
                    raise
                skipped.append({"model": spec.name, "reason": str(exc)})
                skip_line(spec.name, str(exc))
                continue
        done.append(rec)
    if as_json:
        print_json({"exported": done, "skipped": skipped, "failed": failed})
    else:
        _table(done, artifacts)
    if failed:
        raise typer.Exit(CheckFailed.exit_code)


def _table(done: list[dict], artifacts) -> None:
    table = Table(title=f"export gate (artifacts in {artifacts}/)")
    for col in ("model", "format", "gate", "max abs err", "max rel err", "top-1", "grid points", "eager b1 ms",
                "this b1 ms"):
        table.add_column(col)
    for rec in done:
        lat = rec.get("latency_ms", {}).get("batch_1", {})
        for fmt, e in rec["formats"].items():
            w = e["worst"]
            top1 = "" if w.get("top1_agreement") is None else f"{w['top1_agreement']:.0%}"
            this = lat.get(fmt)
            table.add_row(rec["model"], fmt, e["status"], f"{w['max_abs']:.2e}", f"{w['max_rel']:.2e}", top1,
                          str(len(e["grid"])), f"{lat.get('eager', 0):.3f}", f"{this:.3f}" if this else "")
    console.print(table)

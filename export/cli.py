"""`zeroserve export`."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from zeroserve import formats as F
from zeroserve import parity, registry
from zeroserve.app.cliutil import (
    ArtifactsOpt,
    DataDirOpt,
    FormatsOpt,
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
from zeroserve.errors import CheckFailed, InputError
from zeroserve.export import exporter
from zeroserve.export import variants as V
from zeroserve.export.failures import variant_failures
from zeroserve.records.export import ExportRecord, GatePoint

if TYPE_CHECKING:  # mypy sees the value each choice stands for; typer gets the choice Enum at run time
    Exporter = str
    Calibration = str
else:
    Exporter = choices("Exporter", ("legacy", "dynamo"))
    Calibration = choices("Calibration", V.CALIBRATION_METHODS)


def register(app: typer.Typer) -> None:
    app.command("export")(export_cmd)


@handle_errors
def export_cmd(
    models: ModelsArg,
    fmt: FormatsOpt = None,
    opset: Annotated[int, typer.Option(help="ONNX opset.")] = exporter.DEFAULT_OPSET,
    exporter_name: Annotated[
        Exporter,
        typer.Option(
            "--exporter",
            help="ONNX exporter: dynamo (torch.export-based) or legacy (TorchScript-based, deprecated upstream).",
        ),
    ] = exporter.DEFAULT_EXPORTER,
    atol: Annotated[
        float | None,
        typer.Option(
            help=f"Gate: absolute tolerance (default: the model's own, else {parity.ATOL}).", show_default=False
        ),
    ] = None,
    rtol: Annotated[
        float | None,
        typer.Option(
            help=f"Gate: relative tolerance (default: the model's own, else {parity.RTOL}).", show_default=False
        ),
    ] = None,
    variant: Annotated[
        list[str] | None,
        typer.Option(
            "--variant",
            show_default=False,
            help=f"Also make a faster variant of the gated ONNX (repeatable or comma separated): "
            f"{', '.join(F.VARIANTS)}. Without --format, only the variants are made, from the recorded export.",
        ),
    ] = None,
    calibration_samples: Annotated[
        int, typer.Option(help="int8: training-split samples to calibrate on.")
    ] = V.DEFAULT_CALIBRATION_SAMPLES,
    calibration_method: Annotated[Calibration, typer.Option(help="int8: calibration method.")] = "minmax",
    max_metric_drop: Annotated[
        float, typer.Option(help="Variant gate: accuracy points a variant may lose against fp32 on the held-out set.")
    ] = parity.VariantRule.max_metric_drop,
    min_agreement: Annotated[
        float, typer.Option(help="Variant gate: percent of top-1 decisions that must agree with eager PyTorch.")
    ] = parity.VariantRule.min_agreement,
    max_mse_increase: Annotated[
        float, typer.Option(help="Variant gate, regression: percent a variant's held-out MSE may exceed fp32's.")
    ] = parity.VariantRule.max_mse_increase,
    report: Annotated[
        Path | None,
        typer.Option(
            "--report",
            metavar="DIR",
            help="Write the format comparison (formats.md, .json: export time, size, gate, in-process latency) "
            "and, with --variant, the variant report (variants.md, .json, .png) here.",
        ),
    ] = None,
    data_dir: DataDirOpt = None,
    artifacts: ArtifactsOpt = DEFAULT_ARTIFACTS,
    model_files: ModelFilesOpt = None,
    as_json: JsonOpt = False,
):
    """Export trained models to TorchScript (model.pt) and ONNX (model.onnx) behind a parity gate.

    --format pt2 also makes an AOTInductor package (model.pt2: torch.export compiled with g++ for this
    machine's CPU, ~30 s a model); a model torch.export cannot trace is refused naming the op (skipped
    under `all`).

    --variant makes faster variants of the gated ONNX (int8, int8-dynamic, optimized, fp16), each
    held to a gate of its own on the whole held-out set: its task metric within --max-metric-drop
    accuracy points of fp32's (regression: MSE at most --max-mse-increase percent above) and top-1
    agreement with eager at least --min-agreement percent. A variant that fails is recorded FAIL in
    export.json (never deployed) and the command exits 1; fp16 without a GPU is recorded UNVERIFIED.

    Every format is compared with eager PyTorch on batch sizes 1, 2, 7 and max_batch_size (and the
    RNNs' sequence lengths, mixed in one batch), on random and real held-out inputs. For every output,
    each element must satisfy |exported - eager| <= atol + rtol*|eager|, and every top-1 decision must
    agree except at a near tie (eager's top two closer than the tolerance there; counted). A failure
    prints the worst case, exits 1, keeps the previous artifacts and writes export-failed.json.
    """
    variants = F.parse_variants(variant)
    formats = F.parse(fmt) if fmt or not variants else ()
    options = V.VariantOptions(
        calibration_samples,
        str(calibration_method),
        parity.VariantRule(max_metric_drop, min_agreement, max_mse_increase),
    )
    exporter.check_opset(opset, exporter_name)
    for key in (*formats, *variants):
        F.get(key).handler.preflight()  # once, not once per model (pt2 without a C++ compiler)
    specs, explicit = registry.select(models, model_files)
    data_dir = data_dir_in_use(data_dir, specs)
    done: list[ExportRecord] = []
    skipped: list[dict] = []
    failed: list[dict] = []  # lines for the user (and --json), not records
    for spec in specs:
        with console.status(
            f"exporting {spec.name} ({', '.join((*formats, *variants))}) and running the gate", spinner="dots"
        ):
            try:
                rec = exporter.export_model(
                    spec,
                    artifacts,
                    formats=formats or None,
                    variants=variants,
                    opset=opset,
                    exporter=exporter_name,
                    atol=atol,
                    rtol=rtol,
                    data_dir=data_dir,
                    variant_options=options,
                    skip_unfit=not explicit,
                )
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
                skip_line(spec.name, str(exc).removeprefix(f"{spec.name}: "))
                continue
        for unfit in rec.skipped_variants or []:  # under `all`: this variant only, the others were made
            skipped.append({"model": spec.name, "variant": unfit.variant, "reason": unfit.reason})
            skip_line(f"{spec.name} {unfit.variant}", unfit.reason.removeprefix(f"{spec.name}: "))
        done.append(rec)
        for line in variant_failures(spec, rec, variants):
            failed.append({"model": spec.name, "reason": line})
            if not as_json:
                err_console.print(
                    f"[bold red]FAIL[/] {line} (recorded in export.json; never deployed)",
                    highlight=False,
                    soft_wrap=True,
                )
    paths, rows = _reports(done, specs, formats, variants, report, as_json)
    if as_json:
        print_json(
            {
                "exported": [r.to_json() for r in done],
                "skipped": skipped,
                "failed": failed,
                **({"report": {k: str(v) for k, v in paths.items()}} if paths else {}),
            }
        )
    else:
        if formats:
            _table(done, artifacts, formats)
        if variants:
            from zeroserve.export import report as variant_report

            console.print(variant_report.table(rows if report is not None else variant_report.rows(done, variants)))
        if "md" in paths:
            console.print(f"variant report: {paths['md']} ({paths['json'].name}, {paths['png'].name})", highlight=False)
        if "formats_md" in paths:
            console.print(f"format comparison: {paths['formats_md']} ({paths['formats_json'].name})", highlight=False)
    if failed:
        raise typer.Exit(CheckFailed.exit_code)


def _reports(
    done: list[ExportRecord], specs, formats, variants, report: Path | None, as_json: bool
) -> tuple[dict, list]:
    """--report: the format comparison of the formats exported, and the variant report of the variants made."""
    paths: dict[str, Path] = {}
    rows: list[dict] = []
    if report is None:
        return paths, rows
    if formats:
        from zeroserve.export import format_report

        written = format_report.write(format_report.from_records(done, {s.name: s for s in specs}), report)
        paths.update({f"formats_{k}": v for k, v in written.items()})
    if variants:
        from zeroserve.export import report as variant_report

        rows = variant_report.rows(done, variants)
        # served figures need the client stage: asked for only here, at the command line's edge
        from zeroserve.bench.variants import served_figures

        served, note = served_figures(rows)
        rows = variant_report.rows(done, variants, served=served)
        if not as_json:
            err_console.print(note, highlight=False, soft_wrap=True)
        paths.update(variant_report.write(rows, report))
    return paths, rows


def _table(done: list[ExportRecord], artifacts, formats) -> None:
    """The gate's verdict per model and format (of `formats`), with the in-process latency at batch 1."""
    table = Table(title=f"export gate (artifacts in {artifacts}/)")
    for col in (
        "model",
        "format",
        "gate",
        "max abs err",
        "max rel err",
        "top-1",
        "grid points",
        "eager b1 ms",
        "this b1 ms",
    ):
        table.add_column(col)
    for rec in done:
        lat = (rec.latency_ms.at(1) if rec.latency_ms else None) or {}
        for fmt, e in ((k, e) for k, e in rec.formats.items() if k in formats):
            w = e.worst or GatePoint(point="")
            top1 = "" if w.top1_agreement is None else f"{w.top1_agreement:.0%}"
            this = lat.get(fmt)
            table.add_row(
                rec.model,
                fmt,
                e.status,
                f"{w.max_abs:.2e}" if w.max_abs is not None else "",
                f"{w.max_rel:.2e}" if w.max_rel is not None else "",
                top1,
                str(len(e.grid or [])),
                f"{lat.get('eager', 0):.3f}",
                f"{this:.3f}" if this else "",
            )
    console.print(table)

"""`zeroserve deploy`: write the canonical Triton model repository from gated exports."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape
from rich.table import Table

from zeroserve import formats as F
from zeroserve import registry
from zeroserve.artifacts import DEFAULT_ARTIFACTS
from zeroserve.cliutil import (
    ArtifactsOpt,
    FormatsOpt,
    JsonOpt,
    ModelFilesOpt,
    ModelsArg,
    choices,
    console,
    err_console,
    handle_errors,
    print_json,
    skip_line,
)
from zeroserve.errors import CheckFailed, InputError
from zeroserve.serve.config import DEFAULT_MAX_QUEUE_DELAY_US
from zeroserve.serve.kserve import DEFAULT_STORAGE_URI, KSERVE_MANIFEST
from zeroserve.serve.repository import DEFAULT_REPOSITORY, default_formats, deploy_model, read_export_record
from zeroserve.serve.target import TARGET

if TYPE_CHECKING:  # mypy sees the value each choice stands for; typer gets the choice Enum at run time
    Device = str
    Precision = str
    Target = str
else:
    Device = choices("Device", ("gpu", "cpu"))
    Precision = choices("Precision", ("fp16", "fp32"))
    Target = choices("Target", ("triton", "kserve"))


def register(app: typer.Typer) -> None:
    app.command("deploy")(deploy_cmd)


@handle_errors
def deploy_cmd(
    models: ModelsArg,
    artifacts: ArtifactsOpt = DEFAULT_ARTIFACTS,
    repository: Annotated[
        Path, typer.Option("--repository", help="Triton model repository to write.")
    ] = DEFAULT_REPOSITORY,
    fmt: FormatsOpt = None,
    max_batch_size: Annotated[
        int | None, typer.Option(help="Lower the max batch size (never above what the export gate checked).")
    ] = None,
    max_queue_delay_us: Annotated[
        int | None,
        typer.Option(
            help=f"Dynamic batching: how long Triton waits to fill a batch, in microseconds (default: the tuned "
            f"setting, else {DEFAULT_MAX_QUEUE_DELAY_US}).",
            show_default=False,
        ),
    ] = None,
    device: Annotated[
        Device, typer.Option(help="Instance kind: gpu (KIND_GPU, the default) or cpu (KIND_CPU).")
    ] = "gpu",
    instances: Annotated[
        int | None,
        typer.Option(help="Model instances per device (default: the tuned setting, else 1).", show_default=False),
    ] = None,
    tensorrt: Annotated[
        Precision | None,
        typer.Option(help="ONNX only: run through ONNX Runtime's TensorRT accelerator at fp16 or fp32."),
    ] = None,
    target: Annotated[
        Target, typer.Option(help="triton, or kserve to also write a KServe InferenceService manifest.")
    ] = "triton",
    storage_uri: Annotated[
        str, typer.Option(help="kserve: where the repository will be uploaded (gs://, s3://, pvc://...).")
    ] = DEFAULT_STORAGE_URI,
    reset_tuning: Annotated[
        bool,
        typer.Option(
            "--reset-tuning",
            help="Forget the settings `zeroserve tune --apply` recorded (default: a redeploy keeps "
            "them; an option given here beats them).",
        ),
    ] = False,
    model_files: ModelFilesOpt = None,
    as_json: JsonOpt = False,
):
    """Deploy gated exports into the canonical Triton repository (one <model>_<format>/ per format).

    Without --format: the primary formats and every variant whose gate passed, each as its own Triton
    model (<model>_onnx_int8); fp16 (UNVERIFIED without a GPU at export) goes in as a KIND_GPU model.
    A variant that failed its gate is never deployed: listed as skipped, or refused when asked by --format.

    Asked for one model whose export is missing or not PASS, fails (exit 2); under 'all' such a
    model is skipped with the reason. A config that does not lint against its artifact fails (exit 1).
    """
    formats = F.parse(fmt) if fmt else None  # None: the primary formats and every variant fit to deploy
    specs, explicit = registry.select(models, model_files)
    deployed, skipped, failed = [], [], []
    for spec in specs:
        try:
            deployed += deploy_model(
                spec,
                artifacts,
                repository,
                formats=formats,
                max_batch_size=max_batch_size,
                max_queue_delay_us=max_queue_delay_us,
                device=device,
                instances=instances,
                tensorrt=tensorrt,
                target=target,
                storage_uri=storage_uri,
                reset_tuning=reset_tuning,
            )
            if formats is None:
                record, _ = read_export_record(spec, artifacts)
                for s in default_formats(record, str(device))[1]:
                    skipped.append({"model": spec.triton_name(s["format"]), "reason": s["reason"]})
                    skip_line(spec.triton_name(s["format"]), s["reason"])
        except InputError as exc:
            if explicit:
                raise
            skipped.append({"model": spec.name, "reason": str(exc)})
            skip_line(spec.name, str(exc))
        except CheckFailed as exc:
            if explicit:
                raise
            failed.append({"model": spec.name, "reason": str(exc)})
            err_console.print(f"[bold red]failed[/] {spec.name}: {escape(str(exc))}", highlight=False, soft_wrap=True)
    target_info = {
        "image": TARGET.image,
        "triton": TARGET.triton,
        "onnxruntime": TARGET.onnxruntime,
        "libtorch": TARGET.libtorch,
    }
    if as_json:
        print_json(
            {
                "repository": str(repository),
                "target": target_info,
                "deployed": deployed,
                "skipped": skipped,
                "failed": failed,
            }
        )
    else:
        table = Table(title=f"deployed into {repository}/ for {TARGET.image}")
        for col in ("triton model", "backend", "max batch", "queue µs", "instances", "warmup", "artifact sha256"):
            table.add_column(col)
        for e in deployed:
            group = e["instance_group"]
            backend = e["backend"] + (f" + TensorRT {e['tensorrt']}" if e["tensorrt"] else "")
            table.add_row(
                e["name"],
                backend,
                str(e["max_batch_size"]),
                str(e["max_queue_delay_us"]),
                f"{group['count']} × {group['kind']}",
                e["warmup"],
                e["artifact_sha256"][:12],
            )
        for s in skipped + failed:
            table.add_row(s["model"], "", "", "", "", "skipped" if s in skipped else "FAILED", "")
        console.print(table)
        if target == "kserve" and deployed:
            console.print(
                escape(f"KServe manifest: {repository / KSERVE_MANIFEST} (storageUri {storage_uri})"), highlight=False
            )
    if failed:
        raise typer.Exit(CheckFailed.exit_code)
    if not deployed and not explicit:
        raise InputError(
            f"nothing deployed: no model under {artifacts}/ has a PASS export; run `zeroserve export all` first"
        )

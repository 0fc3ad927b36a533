"""`zeroserve deploy`: write the canonical Triton model repository from gated exports."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape

from zeroserve import formats as F
from zeroserve import registry
from zeroserve.app.cliutil import (
    ArtifactsOpt,
    FormatsOpt,
    JsonOpt,
    ModelFilesOpt,
    choices,
    console,
    err_console,
    handle_errors,
    print_json,
    skip_line,
)
from zeroserve.artifacts import DEFAULT_ARTIFACTS
from zeroserve.deploy import kserve as KS
from zeroserve.deploy import plan as P
from zeroserve.deploy.checks import default_formats
from zeroserve.deploy.cli_kserve import check_manifest_file, kserve_options, kserve_plans
from zeroserve.deploy.cli_views import print_deployed
from zeroserve.deploy.config import DEFAULT_MAX_QUEUE_DELAY_US
from zeroserve.deploy.kserve import DEFAULT_STORAGE_URI
from zeroserve.deploy.release import TARGET
from zeroserve.deploy.repository import DEFAULT_REPOSITORY, deploy_model, read_export_record
from zeroserve.errors import CheckFailed, InputError
from zeroserve.records.manifest import ManifestEntry

if TYPE_CHECKING:  # mypy sees the value each choice stands for; typer gets the choice Enum at run time
    Device = str
    Precision = str
    Target = str
    Protocol = str
    Mode = str
else:
    Device = choices("Device", ("gpu", "cpu"))
    Precision = choices("Precision", ("fp16", "fp32"))
    Target = choices("Target", ("triton", "kserve"))
    Protocol = choices("Protocol", ("http", "grpc"))
    Mode = choices("Mode", ("knative", "standard"))
TargetRpsOpt = Annotated[
    float | None,
    typer.Option(
        "--target-rps",
        help="Size for this load (requests/s) from the recorded tune/perf figures (`zeroserve plan`).",
        show_default=False,
    ),
]
BudgetOpt = Annotated[
    float | None,
    typer.Option(
        "--latency-budget-ms",
        help="The latency budget the target load must be served within (the record's percentile, p99).",
        show_default=False,
    ),
]
RecordOpt = Annotated[
    list[Path] | None,
    typer.Option(
        "--record",
        help="A tune or perf record (JSON) to plan from (repeatable; default reports/tune/<model>/tune.json).",
        show_default=False,
    ),
]
AssumeSameOpt = Annotated[
    bool,
    typer.Option(
        "--assume-same",
        help="Use figures measured on another engine or machine kind than the target's, as if the "
        "same (the plan lists the assumptions).",
    ),
]
HeadroomOpt = Annotated[float, typer.Option(help="Fraction of a replica's measured capacity kept free.")]


def _deploy_each(
    specs, explicit: bool, artifacts: Path, repository: Path, formats, **options
) -> tuple[list[ManifestEntry], list[dict], list[dict]]:
    """Deploy each model; under `all` a model that cannot be deployed is skipped (input) or failed (lint), and said."""
    deployed: list[ManifestEntry] = []
    skipped: list[dict] = []
    failed: list[dict] = []
    for spec in specs:
        try:
            deployed += deploy_model(spec, artifacts, repository, formats=formats, **options)
            if formats is None:
                record, _ = read_export_record(spec, artifacts)
                for s in default_formats(record, str(options["device"]))[1]:
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
    return deployed, skipped, failed


def register(app: typer.Typer) -> None:
    app.command("deploy")(deploy_cmd)
    app.command("plan")(plan_cmd)


@handle_errors
def deploy_cmd(
    models: Annotated[
        list[str] | None,
        typer.Argument(help="Registry model names (comma or space separated), or 'all'.", show_default=False),
    ] = None,
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
    name: Annotated[
        str | None,
        typer.Option(
            help="kserve: the InferenceService's name (with --per-model, the "
            "prefix of each); underscores become dashes."
        ),
    ] = None,
    namespace: Annotated[str | None, typer.Option(help="kserve: its namespace.")] = None,
    protocol: Annotated[Protocol, typer.Option(help="kserve: http (protocolVersion v2) or grpc (grpc-v2).")] = "http",
    per_model: Annotated[
        bool,
        typer.Option(
            "--per-model",
            help="kserve: one InferenceService per Triton model, "
            "each from its own storageUri (default: one for the repository).",
        ),
    ] = False,
    deployment_mode: Annotated[
        Mode, typer.Option(help="kserve: knative (autoscale on rps) or standard (HPA on cpu).")
    ] = "knative",
    cpu_limit: Annotated[
        str | None, typer.Option(help="kserve: a CPU limit (none by default: limits throttle p99).")
    ] = None,
    target_rps: TargetRpsOpt = None,
    latency_budget_ms: BudgetOpt = None,
    record: RecordOpt = None,
    assume_same: AssumeSameOpt = False,
    headroom: HeadroomOpt = P.DEFAULT_HEADROOM,
    check: Annotated[
        Path | None,
        typer.Option(
            "--check",
            help="kserve: only validate this InferenceService YAML (exit 0 valid, 1 violations listed, 2 unreadable).",
            show_default=False,
        ),
    ] = None,
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
    if check is not None:
        return check_manifest_file(check, target, as_json)
    if not models:
        raise InputError("name the models to deploy (or 'all')")
    kserve = kserve_options(
        target,
        name,
        namespace,
        storage_uri,
        protocol,
        deployment_mode,
        per_model,
        cpu_limit,
        target_rps,
        latency_budget_ms,
    )
    formats = F.parse(fmt) if fmt else None  # None: the primary formats and every variant fit to deploy
    specs, explicit = registry.select(models, model_files)
    deployed, skipped, failed = _deploy_each(
        specs,
        explicit,
        artifacts,
        repository,
        formats,
        max_batch_size=max_batch_size,
        max_queue_delay_us=max_queue_delay_us,
        device=device,
        instances=instances,
        tensorrt=tensorrt,
        target="triton",
        storage_uri=storage_uri,
        reset_tuning=reset_tuning,
    )
    target_info = {
        "image": TARGET.image,
        "triton": TARGET.triton,
        "onnxruntime": TARGET.onnxruntime,
        "libtorch": TARGET.libtorch,
    }
    manifests = []
    if kserve is not None and deployed:
        plans = kserve_plans(
            specs, deployed, formats, target_rps, latency_budget_ms, record, assume_same, headroom, repository
        )
        manifests = KS.write_kserve_manifests(repository, kserve, plans=plans)
    if as_json:
        print_json(
            {
                "repository": str(repository),
                "target": target_info,
                "deployed": [e.to_json() for e in deployed],
                "skipped": skipped,
                "failed": failed,
                **({"kserve": manifests} if kserve else {}),
            }
        )
    else:
        print_deployed(repository, deployed, skipped, failed, manifests)
    if failed:
        raise typer.Exit(CheckFailed.exit_code)
    if not deployed and not explicit:
        raise InputError(
            f"nothing deployed: no model under {artifacts}/ has a PASS export; run `zeroserve export all` first"
        )


@handle_errors
def plan_cmd(
    model: Annotated[str, typer.Argument(help="Registry model name.", show_default=False)],
    target_rps: Annotated[float, typer.Option("--target-rps", help="The load to serve, requests/s.")],
    latency_budget_ms: Annotated[
        float, typer.Option("--latency-budget-ms", help="Within this latency (the record's percentile, p99).")
    ],
    fmt: Annotated[str, typer.Option("--format", help="The deployed format planned for.")] = F.DEFAULT_FORMAT,
    record: RecordOpt = None,
    assume_same: AssumeSameOpt = False,
    headroom: HeadroomOpt = P.DEFAULT_HEADROOM,
    repository: Annotated[
        Path, typer.Option("--repository", help="Where the model is deployed (a tuning applied there is read).")
    ] = DEFAULT_REPOSITORY,
    as_json: JsonOpt = False,
):
    """Replicas for a target load from the recorded tune/perf figures, and the KServe fields that follow.

    Refuses figures from another engine or machine kind than the target's (KServe's Triton runtime on
    the cluster's nodes: always so for figures measured here) unless --assume-same.
    """
    result = P.plan(
        model,
        target_rps,
        latency_budget_ms,
        fmt=fmt,
        record_paths=record,
        assume_same=assume_same,
        headroom=headroom,
        repository=repository,
    )
    if as_json:
        print_json(result)
        return
    best = result["per_replica"]
    res = result["resources"]
    lines = [
        f"{result['triton_model']}: one replica sustained {best['throughput']:.0f} infer/s at concurrency "
        f"{best['concurrency']} ({best['latency_metric'][:-3]} {best['latency_ms']:.2f} ms <= "
        f"{latency_budget_ms:g} ms; {best['config']}; {best['record']})",
        f"planned at {result['usable_per_replica']:.0f} infer/s per replica (headroom "
        f"{100 * result['headroom']:.0f}%): {result['replicas']} replica(s) for {target_rps:g} rps",
        "server under that load: "
        + (
            f"{res['cpu_cores']:g} cores busy, {res['rss_mb']:g} MB RSS"
            if res
            else "not recorded (requests fall back to the runtime's 1 CPU, 2Gi)"
        ),
    ]
    for mode, fields in result["kserve"].items():
        lines.append(f"KServe {mode}: " + ", ".join(f"{k}: {v}" for k, v in fields.items()))
    for line in lines:
        console.print(escape(line), highlight=False, soft_wrap=True)
    for line in result["assumed"]:
        console.print(f"[yellow]assumed:[/] {escape(line)}", highlight=False, soft_wrap=True)

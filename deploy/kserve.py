"""KServe: `InferenceService` manifests that serve the canonical repository with the Triton runtime.

What is written is checked before it is written (deploy/kserve_check.py: the CRD's schema with closed
objects, the Triton runtime's formats and protocols); a manifest that would be refused is never written.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from zeroserve import records
from zeroserve.deploy import kserve_check as K
from zeroserve.deploy.plan import DEFAULT_HEADROOM, kserve_fields, resource_requests
from zeroserve.deploy.release import TARGET, TargetRelease
from zeroserve.errors import CheckFailed, InputError

KSERVE_MANIFEST = "inferenceservice.yaml"
DEFAULT_STORAGE_URI = "pvc://zeroserve-models/model_repository"
DEFAULT_NAME = "zeroserve"
TRITON_MODEL_STORE = "/mnt/models"  # where the runtime's tritonserver finds the files of storageUri
GRPC_CONTAINER_PORT = 9000  # the runtime's --grpc-port; Knative routes gRPC to a port named h2c
PROTOCOLS = {"http": "v2", "grpc": "grpc-v2"}
MODES = {"knative": "Knative", "standard": "Standard"}

Device = Literal["gpu", "cpu"]


@dataclass(frozen=True)
class KServeOptions:
    """How the InferenceService(s) are written.

    Args:
        name: metadata.name (one manifest) or the prefix of each model's name (per_model); mapped to KServe's rule.
        namespace: metadata.namespace, or None to leave it to kubectl's context.
        protocol: http (protocolVersion v2) or grpc (grpc-v2, with the runtime's gRPC port named h2c).
        deployment_mode: knative (autoscales on rps per replica) or standard (HPA on cpu).
        per_model: one InferenceService per Triton model, each with a storageUri holding only its folder.
        cpu_limit: a CPU limit (none by default: a CPU limit throttles the tail latency).
    """

    name: str | None = None
    namespace: str | None = None
    storage_uri: str = DEFAULT_STORAGE_URI
    protocol: Literal["http", "grpc"] = "http"
    deployment_mode: Literal["knative", "standard"] = "knative"
    per_model: bool = False
    cpu_limit: str | None = None


def check_storage_uri(storage_uri: str) -> None:
    """InputError unless the URI has a scheme KServe can fetch from."""
    if "://" not in storage_uri:
        raise InputError(f"--storage-uri {storage_uri!r} needs a scheme KServe can fetch (gs://, s3://, pvc://, ...)")


def kserve_name(text: str, what: str = "--name") -> str:
    """`text` under KServe's name rule: underscores become dashes, a leading digit gets a letter; else InputError."""
    name = text.replace("_", "-")
    if name[:1].isdigit():
        name = "m-" + name
    if not K.NAME_RULE.fullmatch(name):
        raise InputError(
            f"{what} {text!r} cannot be a KServe InferenceService name: it must match "
            f"{K.NAME_RULE.pattern} (lower case letters, digits and dashes, starting with a letter)"
        )
    return name


def check_options(options: KServeOptions) -> None:
    """InputError for an option KServe would refuse, before anything is deployed."""
    check_storage_uri(options.storage_uri)
    if options.name is not None:
        kserve_name(options.name)
    if options.namespace is not None and not (
        K.NAMESPACE_RULE.fullmatch(options.namespace) and len(options.namespace) <= 63
    ):
        raise InputError(
            f"--namespace {options.namespace!r} is not a Kubernetes namespace name "
            f"({K.NAMESPACE_RULE.pattern}, at most 63 characters)"
        )
    if options.protocol not in PROTOCOLS or options.deployment_mode not in MODES:
        raise InputError("--protocol is http or grpc; --deployment-mode is knative or standard")


def kserve_manifest(
    name: str = DEFAULT_NAME,
    *,
    storage_uri: str = DEFAULT_STORAGE_URI,
    device: Device = "gpu",
    release: TargetRelease = TARGET,
    options: KServeOptions | None = None,
    plan: dict | None = None,
    models: list[str] | None = None,
) -> dict:
    """One `InferenceService` serving `storage_uri` (a Triton repository) with the Triton runtime.

    `device` gpu puts `nvidia.com/gpu: 1` in the limits; `plan` (deploy/plan.py) gives the replicas,
    the autoscaling target and measured requests, else one replica and the runtime's default requests.
    """
    o = options or KServeOptions()
    requests, requests_from = resource_requests(plan["resources"] if plan else None)
    limits = {"memory": requests["memory"]}
    if o.cpu_limit:
        limits["cpu"] = o.cpu_limit
    if device == "gpu":
        limits["nvidia.com/gpu"] = "1"
    model: dict = {
        "modelFormat": {"name": "triton", "version": "2"},
        "protocolVersion": PROTOCOLS[o.protocol],
        "runtime": K.RUNTIME,
        "runtimeVersion": release.tag,
        "storageUri": storage_uri,
        "resources": {"requests": requests, "limits": limits},
    }
    if o.protocol == "grpc":
        model["ports"] = [{"name": "h2c", "protocol": "TCP", "containerPort": GRPC_CONTAINER_PORT}]
    annotations = {K.DEPLOYMENT_MODE: MODES[o.deployment_mode]}
    if o.deployment_mode == "standard":
        annotations[K.AUTOSCALER_CLASS] = "hpa"
    annotations["zeroserve/triton-image"] = release.image
    annotations["zeroserve/resources-from"] = requests_from
    if models:
        annotations["zeroserve/models"] = ",".join(models)
    if plan:
        annotations["zeroserve/plan"] = (
            f"{plan['target_rps']:g} rps within {plan['latency_budget_ms']:g} ms: "
            f"{plan['per_replica']['throughput']:.0f} infer/s per replica measured, "
            f"headroom {100 * plan['headroom']:.0f}% (assumed same machine and engine)"
        )
    fields = kserve_fields(
        o.deployment_mode,
        plan["replicas"] if plan else None,
        plan["usable_per_replica"] if plan else None,
        plan["headroom"] if plan else DEFAULT_HEADROOM,
    )
    metadata: dict = {"name": name}
    if o.namespace:
        metadata["namespace"] = o.namespace
    metadata["annotations"] = annotations
    return {
        "apiVersion": K.API_VERSION,
        "kind": K.KIND,
        "metadata": metadata,
        "spec": {"predictor": {**fields, "model": model}},
    }


def _device(repository: Path, names: list[str]) -> Device:
    """gpu when any of the models' configs asks for KIND_GPU instances (Triton then needs a GPU), else cpu."""
    from zeroserve.deploy import config as C

    for name in names:
        path = Path(repository) / name / "config.pbtxt"
        if path.is_file() and C.parse(path.read_text()).instance_kind == "KIND_GPU":
            return "gpu"
    return "cpu"


def _write(path: Path, manifest: dict, header: str) -> Path:
    import yaml

    problems = K.violations(manifest)
    if problems:  # our own writer broke a rule: say which, write nothing
        raise CheckFailed(f"the InferenceService for {path.name} would be refused by KServe: " + "; ".join(problems))
    records.write_bytes(path, (header + yaml.safe_dump(manifest, sort_keys=False, width=4096)).encode())
    return path


def write_kserve_manifests(
    repository: Path,
    options: KServeOptions | None = None,
    *,
    plans: dict[str, dict] | None = None,
    release: TargetRelease = TARGET,
) -> list[dict]:
    """Write the repository's InferenceService(s) (validated first, atomic); one row per file written.

    Args:
        plans: Triton model name -> serve.plan.plan(...) for the models sized from measurements.

    Returns:
        [{"path", "name", "models", "storage_uri", "upload" (what goes where), "device", "plan"}]
    """
    from zeroserve.deploy.contents import canonical_models

    o = options or KServeOptions()
    check_options(o)
    repository = Path(repository)
    names = canonical_models(repository)
    plans = plans or {}
    base = o.storage_uri.rstrip("/")
    rows = []
    if o.per_model:
        groups = [(kserve_name(f"{o.name}-{n}" if o.name else n), [n], f"{base}/{n}") for n in names]
    else:
        if len(plans) > 1:
            raise InputError(
                "one InferenceService for the whole repository takes one plan; use --per-model to size each model"
            )
        groups = [(kserve_name(o.name or DEFAULT_NAME), names, base)]
    for name, models, uri in groups:
        plan = next((plans[m] for m in models if m in plans), None)
        device = _device(repository, models)
        manifest = kserve_manifest(
            name, storage_uri=uri, device=device, release=release, options=o, plan=plan, models=models
        )
        file = repository / (KSERVE_MANIFEST if not o.per_model else f"inferenceservice-{name}.yaml")
        upload = (
            f"upload {repository}/{models[0]}/ so that {uri}/{models[0]}/config.pbtxt exists (the storageUri "
            f"root holds only that folder; KServe copies it to {TRITON_MODEL_STORE})"
            if o.per_model
            else f"upload the contents of {repository}/ to {uri}/ (each model folder at its top; KServe copies "
            f"it to {TRITON_MODEL_STORE}, which Triton serves whole)"
        )
        header = (
            f"# KServe InferenceService for {release.image}'s Triton; {upload}.\n"
            f"# Checked offline against KServe's CRD schema (closed objects) and the {K.RUNTIME} runtime's "
            "formats and protocols.\n"
        )
        _write(file, manifest, header)
        rows.append(
            {
                "path": str(file),
                "name": name,
                "models": models,
                "storage_uri": uri,
                "upload": upload,
                "device": device,
                "plan": plan is not None,
            }
        )
    return rows


def write_kserve_manifest(
    repository: Path,
    *,
    storage_uri: str = DEFAULT_STORAGE_URI,
    device: Device = "gpu",
    name: str = DEFAULT_NAME,
    release: TargetRelease = TARGET,
) -> Path:
    """The whole repository's `inferenceservice.yaml` with the default options (deploy_model's target kserve).

    `device` is kept for callers; the GPU limit follows the written configs' instance kinds.
    """
    del device
    rows = write_kserve_manifests(repository, KServeOptions(name=name, storage_uri=storage_uri), release=release)
    return Path(rows[0]["path"])

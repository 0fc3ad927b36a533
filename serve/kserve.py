"""KServe: an `InferenceService` manifest that serves the canonical repository with the Triton runtime."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from zeroserve import records
from zeroserve.errors import InputError
from zeroserve.serve.target import TARGET, TargetRelease

KSERVE_MANIFEST = "inferenceservice.yaml"
DEFAULT_STORAGE_URI = "pvc://zeroserve-models/model_repository"

Device = Literal["gpu", "cpu"]


def check_storage_uri(storage_uri: str) -> None:
    """InputError unless the URI has a scheme KServe can fetch from."""
    if "://" not in storage_uri:
        raise InputError(f"--storage-uri {storage_uri!r} needs a scheme KServe can fetch (gs://, s3://, pvc://, ...)")


def kserve_manifest(
    name: str = "zeroserve",
    *,
    storage_uri: str = DEFAULT_STORAGE_URI,
    device: Device = "gpu",
    release: TargetRelease = TARGET,
) -> dict:
    """A KServe `InferenceService` serving the whole repository with the Triton runtime."""
    model = {
        "modelFormat": {"name": "triton"},
        "runtime": "kserve-tritonserver",
        "runtimeVersion": release.tag,
        "storageUri": storage_uri,
    }
    if device == "gpu":
        model["resources"] = {"limits": {"nvidia.com/gpu": "1"}}
    return {
        "apiVersion": "serving.kserve.io/v1beta1",
        "kind": "InferenceService",
        "metadata": {"name": name, "annotations": {"zeroserve/triton-image": release.image}},
        "spec": {"predictor": {"model": model}},
    }


def write_kserve_manifest(
    repository: Path,
    *,
    storage_uri: str = DEFAULT_STORAGE_URI,
    device: Device = "gpu",
    name: str = "zeroserve",
    release: TargetRelease = TARGET,
) -> Path:
    """Write `inferenceservice.yaml` into the repository folder (atomic) and return its path."""
    import yaml

    check_storage_uri(storage_uri)
    path = Path(repository) / KSERVE_MANIFEST
    text = (
        "# KServe InferenceService for this Triton repository; upload the folder to storageUri first.\n"
        + yaml.safe_dump(
            kserve_manifest(name, storage_uri=storage_uri, device=device, release=release), sort_keys=False
        )
    )
    records.write_bytes(path, text.encode())
    return path

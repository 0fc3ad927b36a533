"""What deploy checks before it writes: its options, the export record, each artifact against the target release."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from zeroserve import formats as F
from zeroserve.deploy.kserve import check_storage_uri
from zeroserve.deploy.release import TargetRelease
from zeroserve.errors import InputError
from zeroserve.export.exporter import sha256
from zeroserve.records.export import ExportRecord, FormatEntry
from zeroserve.records.layout import ModelFolder
from zeroserve.spec import ModelSpec

Device = Literal["gpu", "cpu"]


def checked_entry(spec: ModelSpec, record: ExportRecord, fmt: str, artifacts: Path) -> tuple[FormatEntry, Path]:
    """The record's entry for `fmt` and its artifact path, or InputError saying why it cannot deploy."""
    entry = record.formats.get(fmt)
    if entry is None:
        raise InputError(
            f"{spec.name}: the export record has no {fmt} artifact; run `zeroserve export {spec.name} --format {fmt}`"
        )
    variant = F.get(fmt)
    unverified_ok = variant.gpu_only and entry.status == "UNVERIFIED"  # measured where a GPU serves it
    if entry.status != "PASS" and not unverified_ok:
        worst = entry.worst
        reason = (
            "; ".join(entry.failed_rules or [])
            or entry.error
            or (worst.error if worst else None)
            or f"worst point {worst.point if worst else '?'}"
        )
        raise InputError(
            f"{spec.name} {fmt}: export status is {entry.status}, not PASS "
            f"({reason}); only gated artifacts are deployed"
        )
    if variant.base is not None and entry.base_sha256 is not None:
        base = record.formats.get(variant.base)
        if base is None or base.sha256 != entry.base_sha256:
            raise InputError(
                f"{spec.name} {fmt}: made from a {variant.base} artifact that is no longer the recorded "
                f"one; run `zeroserve export {spec.name} --variant {variant.variant}` again"
            )
    path = ModelFolder.of(artifacts, spec.name).file(entry.file)
    if not path.is_file():
        raise InputError(f"{spec.name} {fmt}: artifact {path} is missing; run `zeroserve export {spec.name}` again")
    if sha256(path) != entry.sha256:
        raise InputError(
            f"{spec.name} {fmt}: {path} does not match the sha256 in its export record "
            f"(changed since export); run `zeroserve export {spec.name}` again"
        )
    return entry, path


def default_formats(record: ExportRecord, device: str = "gpu") -> tuple[tuple[str, ...], list[dict]]:
    """What deploy writes when no --format is given: the primary formats, and each variant the export
    record holds that may be deployed; the variants left out, each with the reason.

    A variant deploys when its gate passed; a gpu_only variant (fp16) also when UNVERIFIED (no GPU at
    export), and only for --device gpu. An opt-in format (pt2) deploys when it was exported and passed.
    """
    keys, skipped = list(F.primary()), []
    for key, entry in record.formats.items():
        fmt = F.FORMATS.get(key)
        if fmt is None or (fmt.base is None and fmt.default):
            continue
        if fmt.base is None:  # opt-in, and exported: deployed when it passed (a FAIL record is never kept)
            if entry.status == "PASS":
                keys.append(key)
            continue
        status = entry.status
        if fmt.gpu_only and device != "gpu":
            skipped.append({"format": key, "reason": f"{key} runs on GPU instances only; deploy with --device gpu"})
        elif status == "PASS" or (fmt.gpu_only and status == "UNVERIFIED"):
            keys.append(key)
        else:
            why = "; ".join(entry.failed_rules or []) or entry.error or "no reason recorded"
            skipped.append({"format": key, "reason": f"{key} export status is {status}, not PASS ({why})"})
    return tuple(k for k in F.FORMATS if k in keys), skipped


def check_deploy_options(
    device: str,
    instances: int | None,
    max_queue_delay_us: int | None,
    tensorrt: str | None,
    formats,
    target: str,
    storage_uri: str,
) -> tuple[Device, str | None]:
    """Deploy's options checked before anything is read: the device, and TensorRT's precision (or None)."""
    device = device.lower()  # a CLI string, checked on the next line
    if device not in ("gpu", "cpu"):
        raise InputError(f"unknown device {device!r}; use gpu or cpu")
    if instances is not None and instances < 1:
        raise InputError("--instances must be at least 1")
    if max_queue_delay_us is not None and max_queue_delay_us < 0:
        raise InputError("--max-queue-delay-us must not be negative")
    precision = None
    if tensorrt is not None:
        precision = tensorrt.upper()
        if precision not in ("FP16", "FP32"):
            raise InputError(f"unknown --tensorrt precision {tensorrt!r}; use fp16 or fp32")
        if device != "gpu":
            raise InputError("--tensorrt needs --device gpu: TensorRT runs on the GPU only")
        if formats and not any(F.get(f).backend is F.ONNXRUNTIME for f in F.parse(formats)):
            raise InputError("--tensorrt applies to the ONNX formats; add one to --format")
    if target not in ("triton", "kserve"):
        raise InputError(f"unknown target {target!r}; use triton or kserve")
    if target == "kserve":
        check_storage_uri(storage_uri)
    return device, precision  # type: ignore[return-value]  # checked to be gpu or cpu above


def check_export_record(
    spec: ModelSpec, record: ExportRecord, formats, device: str, max_batch_size: int | None
) -> tuple[tuple[str, ...], int]:
    """The formats to deploy and the largest batch the export gate checked, against the export record."""
    formats = F.parse(formats) if formats else default_formats(record, device)[0]
    gpu_only = [f for f in formats if F.get(f).gpu_only]
    if gpu_only and device != "gpu":
        raise InputError(
            f"{spec.name}: {', '.join(gpu_only)} runs on GPU instances only (ONNX Runtime's CPU "
            "provider lacks most float16 kernels); deploy it with --device gpu"
        )
    recorded = ((record.inputs, spec.inputs), (record.outputs, spec.outputs))
    if any(tensors is not None and tensors != [t.as_json() for t in now] for tensors, now in recorded):
        raise InputError(
            f"{spec.name}: the export record's tensors differ from the registry's (changed since "
            f"export); run `zeroserve export {spec.name}` again"
        )
    gated = record.max_batch_size if record.max_batch_size is not None else spec.max_batch_size
    if max_batch_size is not None and not 1 <= max_batch_size <= gated:
        raise InputError(
            f"{spec.name}: --max-batch-size {max_batch_size} must be between 1 and {gated}, "
            f"the largest batch the export gate checked"
        )
    return formats, gated


def check_artifacts(
    spec: ModelSpec, record: ExportRecord, formats, artifacts: Path, max_batch_size: int | None, release: TargetRelease
) -> dict[str, tuple[FormatEntry, Path, dict]]:
    """Each format's export entry, artifact and what the target release says of it, before anything is written."""
    checked = {}
    for fmt in formats:
        entry, path = checked_entry(spec, record, fmt, artifacts)
        handler = F.get(fmt).handler
        handler.check_max_batch_size(f"{spec.name} {fmt}", max_batch_size)
        info = handler.check_target(F.get(fmt).triton_name(spec.name), path, entry, release)
        checked[fmt] = (entry, path, info)
    return checked

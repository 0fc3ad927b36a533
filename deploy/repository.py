"""The canonical Triton model repository: `zeroserve deploy` writes it, a GPU host's Triton serves it as is.

Each `<model>_<format>/` folder (config.pbtxt, `1/model.*`, `warmup/`) is built in a staging
folder beside the repository, linted against its artifact, and only then renamed into place,
so a failed deploy never leaves a half-written model and deploying one model leaves the others
untouched. `manifest.json` records what was deployed from which export record, for which
Triton release.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import time
from dataclasses import asdict
from pathlib import Path
from typing import Literal

import numpy as np

from zeroserve import formats as F
from zeroserve import records
from zeroserve.artifacts import model_dir
from zeroserve.deploy.config import (
    DEFAULT_MAX_QUEUE_DELAY_US,
    VERSION,
    WARMUP_DIR,
    DeployedModel,
    TensorConfig,
    Warmup,
    WarmupInput,
    render,
)
from zeroserve.deploy.kserve import DEFAULT_STORAGE_URI, check_storage_uri, write_kserve_manifest
from zeroserve.deploy.lint import lint_model
from zeroserve.deploy.release import TARGET, TargetRelease
from zeroserve.errors import InputError
from zeroserve.export.exporter import sha256
from zeroserve.spec import ModelSpec

DEFAULT_REPOSITORY = Path("model_repository")
MANIFEST = "manifest.json"

# DEFAULT_MAX_QUEUE_DELAY_US (deploy/config.py) was measured by bench/serve.py (cnn_mnist, HTTP and
# gRPC): 100 µs added 0.1-0.2 ms to c=1 p50 and no more than noise to c=16 throughput, since Triton
# batches what is already queued under load.

Device = Literal["gpu", "cpu"]
Target = Literal["triton", "kserve"]


def read_export_record(spec: ModelSpec, artifacts: Path) -> tuple[dict, Path]:
    """The model's export.json (through the export stage's own reader) and its path."""
    from zeroserve.export import read_export

    return read_export(spec, artifacts), model_dir(artifacts, spec) / "export.json"


def _checked_entry(spec: ModelSpec, record: dict, fmt: str, artifacts: Path) -> tuple[dict, Path]:
    """The record's entry for `fmt` and its artifact path, or InputError saying why it cannot deploy."""
    entry = record.get("formats", {}).get(fmt)
    if entry is None:
        raise InputError(
            f"{spec.name}: the export record has no {fmt} artifact; run `zeroserve export {spec.name} --format {fmt}`"
        )
    variant = F.get(fmt)
    unverified_ok = variant.gpu_only and entry.get("status") == "UNVERIFIED"  # measured where a GPU serves it
    if entry.get("status") != "PASS" and not unverified_ok:
        worst = entry.get("worst") or {}
        reason = (
            "; ".join(entry.get("failed_rules") or [])
            or entry.get("error")
            or worst.get("error")
            or f"worst point {worst.get('point', '?')}"
        )
        raise InputError(
            f"{spec.name} {fmt}: export status is {entry.get('status', 'missing')}, not PASS "
            f"({reason}); only gated artifacts are deployed"
        )
    if variant.base is not None and "base_sha256" in entry:
        base = record.get("formats", {}).get(variant.base, {})
        if base.get("sha256") != entry["base_sha256"]:
            raise InputError(
                f"{spec.name} {fmt}: made from a {variant.base} artifact that is no longer the recorded "
                f"one; run `zeroserve export {spec.name} --variant {variant.variant}` again"
            )
    path = model_dir(artifacts, spec) / entry.get("file", F.get(fmt).file)
    if not path.is_file():
        raise InputError(f"{spec.name} {fmt}: artifact {path} is missing; run `zeroserve export {spec.name}` again")
    if sha256(path) != entry.get("sha256"):
        raise InputError(
            f"{spec.name} {fmt}: {path} does not match the sha256 in its export record "
            f"(changed since export); run `zeroserve export {spec.name}` again"
        )
    return entry, path


def default_formats(record: dict, device: str = "gpu") -> tuple[tuple[str, ...], list[dict]]:
    """What deploy writes when no --format is given: the primary formats, and each variant the export
    record holds that may be deployed; the variants left out, each with the reason.

    A variant deploys when its gate passed; a gpu_only variant (fp16) also when UNVERIFIED (no GPU at
    export), and only for --device gpu. An opt-in format (pt2) deploys when it was exported and passed.
    """
    keys, skipped = list(F.primary()), []
    for key, entry in record.get("formats", {}).items():
        fmt = F.FORMATS.get(key)
        if fmt is None or (fmt.base is None and fmt.default):
            continue
        if fmt.base is None:  # opt-in, and exported: deployed when it passed (a FAIL record is never kept)
            if entry.get("status") == "PASS":
                keys.append(key)
            continue
        status = entry.get("status")
        if fmt.gpu_only and device != "gpu":
            skipped.append({"format": key, "reason": f"{key} runs on GPU instances only; deploy with --device gpu"})
        elif status == "PASS" or (fmt.gpu_only and status == "UNVERIFIED"):
            keys.append(key)
        else:
            why = "; ".join(entry.get("failed_rules") or []) or entry.get("error") or "no reason recorded"
            skipped.append({"format": key, "reason": f"{key} export status is {status}, not PASS ({why})"})
    return tuple(k for k in F.FORMATS if k in keys), skipped


def _warmup(spec: ModelSpec, sample: dict[str, np.ndarray] | None, folder: Path) -> Warmup:
    """Warmup from row 0 of the real held-out sample (raw little-endian files), else each input's safe value.

    A safe value that is all zeros is written as `zero_data`; any other (a lengths input, where a
    zero length is not a valid request) as a file, at the dynamic axes' length 1.
    """
    inputs: dict[str, WarmupInput] = {}
    (folder / WARMUP_DIR).mkdir()
    for t in spec.inputs:
        tc = TensorConfig.from_spec(t)
        if sample is not None:
            row = np.asarray(sample[t.name][0], dtype=np.dtype(t.dtype).newbyteorder("<"))
            dims = tuple(int(d) for d in (row.shape or (1,)))  # a per-sample scalar travels as [1]
        else:
            dims = tuple(1 if d == -1 else d for d in tc.dims)
            row = t.domain.safe((1, *dims), t.dtype)[0].astype(np.dtype(t.dtype).newbyteorder("<"))
            if not row.any():
                inputs[t.name] = WarmupInput(t.dtype, dims, None)
                continue
        (folder / WARMUP_DIR / t.name).write_bytes(np.ascontiguousarray(row).tobytes())
        inputs[t.name] = WarmupInput(t.dtype, dims, t.name)
    return Warmup("sample" if sample is not None else "safe values", inputs)


def _load_sample(spec: ModelSpec, artifacts: Path, record: dict) -> dict[str, np.ndarray] | None:
    """`sample.npz` keyed by input name, checked against the spec; None when there is none."""
    path = model_dir(artifacts, spec) / record.get("sample", "sample.npz")
    if not path.is_file():
        return None
    try:
        with np.load(path) as data:
            sample = {k: data[k] for k in data.files}
    except (OSError, ValueError) as exc:
        raise InputError(f"{spec.name}: {path} is not a readable .npz ({exc}); run export again") from None
    for t in spec.inputs:
        a = sample.get(t.name)
        if a is None or a.ndim != 1 + len(t.dims) or len(a) == 0:
            raise InputError(f"{spec.name}: {path} lacks a usable {t.name} (expected [batch, *{list(t.dims)}])")
    return sample


def place(staged: Path, final: Path) -> None:
    """Rename `staged` to `final`, moving any previous folder aside first and deleting it after."""
    aside = None
    if final.exists():
        aside = records.scratch_dir(staged.parent, f".zs-old-{final.name}-")
        os.replace(final, aside / final.name)
    try:
        os.replace(staged, final)
    except OSError:
        if aside is not None:  # put the previous model back before reporting the failure
            os.replace(aside / final.name, final)
        raise
    if aside is not None:
        shutil.rmtree(aside, ignore_errors=True)


def staging_parent(repository: Path) -> Path:
    """Beside the repository (same filesystem, so renames are atomic, and never seen by Triton as a model)."""
    parent = repository.resolve().parent
    return parent if os.access(parent, os.W_OK) else repository


def prune_stale(staging: Path, name: str) -> None:
    """Remove staging and set-aside folders of `name` left by a deploy that was killed mid-way."""
    for prefix in (f".zs-deploy-{name}-", f".zs-old-{name}-"):
        records.prune_scratch(staging, prefix)


def deploy_model(
    spec: ModelSpec,
    artifacts: Path,
    repository: Path = DEFAULT_REPOSITORY,
    *,
    formats: str | tuple[str, ...] | None = None,
    max_batch_size: int | None = None,
    max_queue_delay_us: int | None = None,
    device: Device = "gpu",
    instances: int | None = None,
    tensorrt: str | None = None,
    target: Target = "triton",
    storage_uri: str = DEFAULT_STORAGE_URI,
    release: TargetRelease = TARGET,
    reset_tuning: bool = False,
) -> list[dict]:
    """Deploy one model's gated artifacts into the canonical repository.

    `formats` None deploys `default_formats`: the primary formats and every variant fit to deploy.
    Every requested format is checked (export PASS, sha256, IR/opset for the target release)
    before anything is written; each `<model>_<fmt>/` is then staged, linted and renamed into
    place, and the manifest updated.

    Settings: an option given here beats a setting `zeroserve tune --apply` recorded in the
    manifest, which beats the default (1 instance, the gated max batch size, a 0 µs queue delay,
    1 thread); `reset_tuning` forgets the recorded tuning.

    Raises:
        InputError: missing or non-PASS export, changed artifact, bad option, target mismatch.
        CheckFailed: the written config does not lint against its artifact (nothing is placed).

    Returns:
        The manifest entries written, one per format.
    """
    device = device.lower()  # type: ignore[assignment]  # a CLI string, checked on the next line
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

    record, record_path = read_export_record(spec, artifacts)
    formats = F.parse(formats) if formats else default_formats(record, device)[0]
    gpu_only = [f for f in formats if F.get(f).gpu_only]
    if gpu_only and device != "gpu":
        raise InputError(
            f"{spec.name}: {', '.join(gpu_only)} runs on GPU instances only (ONNX Runtime's CPU "
            "provider lacks most float16 kernels); deploy it with --device gpu"
        )
    specs_now = {"inputs": [t.as_json() for t in spec.inputs], "outputs": [t.as_json() for t in spec.outputs]}
    if any(k in record and record[k] != v for k, v in specs_now.items()):
        raise InputError(
            f"{spec.name}: the export record's tensors differ from the registry's (changed since "
            f"export); run `zeroserve export {spec.name}` again"
        )
    gated = record.get("max_batch_size", spec.max_batch_size)
    if max_batch_size is not None and not 1 <= max_batch_size <= gated:
        raise InputError(
            f"{spec.name}: --max-batch-size {max_batch_size} must be between 1 and {gated}, "
            f"the largest batch the export gate checked"
        )

    checked = {}
    for fmt in formats:
        entry, path = _checked_entry(spec, record, fmt, artifacts)
        handler = F.get(fmt).handler
        handler.check_max_batch_size(f"{spec.name} {fmt}", max_batch_size)
        info = handler.check_target(F.get(fmt).triton_name(spec.name), path, entry, release)
        checked[fmt] = (entry, path, info)
    sample = _load_sample(spec, artifacts, record)

    repository = records.ensure_writable_dir(Path(repository))
    staging = staging_parent(repository)
    record_sha = sha256(record_path)
    manifest_models = read_manifest(repository).get("models", {})
    written = []
    for fmt, (entry, path, info) in checked.items():
        backend = F.get(fmt).backend
        name = F.get(fmt).triton_name(spec.name)
        tuning = None if reset_tuning else (manifest_models.get(name) or {}).get("tuning")
        chosen = _settings(
            tuning, gated, max_batch_size=max_batch_size, max_queue_delay_us=max_queue_delay_us, instances=instances
        )
        prune_stale(staging, name)
        tmp = records.scratch_dir(staging, f".zs-deploy-{name}-")
        try:
            os.chmod(tmp, 0o755)  # mkdtemp's 0700 would hide the model from a Triton running as another user
            (tmp / VERSION).mkdir()
            shutil.copyfile(path, tmp / VERSION / backend.default_file)
            if sha256(tmp / VERSION / backend.default_file) != entry["sha256"]:
                raise InputError(f"{name}: the copy of {path} does not match its sha256; check the disk")
            model = DeployedModel(
                name=name,
                backend=backend.name,
                max_batch_size=chosen["max_batch_size"],
                inputs=tuple(TensorConfig.from_spec(t) for t in spec.inputs),
                outputs=tuple(TensorConfig.from_spec(t) for t in spec.outputs),
                max_queue_delay_us=chosen["max_queue_delay_us"],
                instance_kind="KIND_GPU" if device == "gpu" else "KIND_CPU",
                instance_count=chosen["instances"],
                warmup=_warmup(spec, sample, tmp),
                tensorrt=precision if backend is F.ONNXRUNTIME else None,
                preferred_batch_sizes=chosen["preferred_batch_sizes"],
                parameters={backend.threads_parameter: str(chosen["threads"])} if chosen["threads"] else {},
            )
            model = backend.handler.configure(model, entry)  # what the runtime's backend needs (pt2: torch_aoti)
            notes, warns = backend.handler.deploy_notes(entry)
            text = render(model)
            (tmp / "config.pbtxt").write_text(text)
            lint_model(tmp)
            entry_out = {
                "name": name,
                "model": spec.name,
                "format": fmt,
                "version": int(VERSION),
                "backend": backend.name,
                **({"platform": model.platform} if model.platform else {}),
                "artifact": f"{VERSION}/{backend.default_file}",
                "artifact_sha256": entry["sha256"],
                "export_record": {"path": str(record_path.resolve()), "sha256": record_sha},
                "config_sha256": hashlib.sha256(text.encode()).hexdigest(),
                "max_batch_size": model.max_batch_size,
                "max_queue_delay_us": model.max_queue_delay_us,
                "instance_group": {"kind": model.instance_kind, "count": model.instance_count},
                "tensorrt": model.tensorrt,
                "gated_max_batch_size": gated,
                **({"preferred_batch_sizes": list(model.preferred_batch_sizes)} if model.preferred_batch_sizes else {}),
                **({backend.threads_parameter: chosen["threads"]} if chosen["threads"] else {}),
                **({"tuning": {**tuning, "overridden": chosen["overridden"]}} if tuning else {}),
                "warmup": "sample.npz row 0" if sample is not None else "safe values (no sample.npz)",
                **info,
                **notes,
                **({"warnings": warns} if warns else {}),
                "deployed": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            }
            place(tmp, repository / name)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        write_manifest(repository, [entry_out], release)  # per folder, so the manifest never lags a placed model
        written.append(entry_out)
    if target == "kserve":
        write_kserve_manifest(repository, storage_uri=storage_uri, device=device, release=release)
    return written


def _settings(tuning: dict | None, gated: int, **given) -> dict:
    """The serving settings of one deployed format: an explicit option, else the tuned value, else the default.

    Returns the settings and `overridden`, the tuned settings an explicit option replaced.
    """
    tuned = (tuning or {}).get("settings", {})
    defaults = {"max_batch_size": gated, "max_queue_delay_us": DEFAULT_MAX_QUEUE_DELAY_US, "instances": 1}
    out: dict = {"overridden": []}
    for key, default in defaults.items():
        if given.get(key) is not None:
            out[key] = given[key]
            if key in tuned and tuned[key] != given[key]:
                out["overridden"].append(key)
        else:
            out[key] = tuned.get(key, default)
    out["max_batch_size"] = min(out["max_batch_size"], gated)
    out["preferred_batch_sizes"] = tuple(
        b for b in tuned.get("preferred_batch_sizes", ()) if b <= out["max_batch_size"]
    )
    out["threads"] = tuned.get("threads")
    return out


def read_manifest(repository: Path) -> dict:
    """The repository's manifest, or an empty one when none was written yet."""
    path = Path(repository) / MANIFEST
    if not path.is_file():
        return {"schema": records.SCHEMA, "models": {}}
    return records.read_json(path, "repository manifest")


def write_manifest(repository: Path, entries: list[dict], release: TargetRelease = TARGET) -> dict:
    """Merge `entries` into `manifest.json` (atomic), dropping models whose folders are gone."""
    repository = Path(repository)
    manifest = read_manifest(repository)
    models = {k: v for k, v in manifest.get("models", {}).items() if (repository / k / "config.pbtxt").is_file()}
    models.update({e["name"]: e for e in entries})
    manifest = {
        "schema": records.SCHEMA,
        "target": {**asdict(release), "sources": list(release.sources)},
        "models": dict(sorted(models.items())),
        "versions": records.versions("onnx", "tritonclient", "protobuf"),
    }
    records.write_json(repository / MANIFEST, manifest)
    return manifest

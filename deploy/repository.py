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
from zeroserve.deploy.checks import (
    Device,
    check_artifacts,
    check_deploy_options,
    check_export_record,
)
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
from zeroserve.deploy.kserve import DEFAULT_STORAGE_URI, write_kserve_manifest
from zeroserve.deploy.lint import lint_model
from zeroserve.deploy.release import TARGET, TargetRelease
from zeroserve.errors import InputError
from zeroserve.export.exporter import sha256
from zeroserve.records.export import ExportRecord
from zeroserve.records.layout import ModelFolder, RepositoryLayout
from zeroserve.records.manifest import Manifest, ManifestEntry, TunedSettings, Tuning
from zeroserve.spec import ModelSpec

DEFAULT_REPOSITORY = Path("model_repository")

# DEFAULT_MAX_QUEUE_DELAY_US (deploy/config.py) was measured by bench/serve.py (cnn_mnist, HTTP and
# gRPC): 100 µs added 0.1-0.2 ms to c=1 p50 and no more than noise to c=16 throughput, since Triton
# batches what is already queued under load.

Target = Literal["triton", "kserve"]


def read_export_record(spec: ModelSpec, artifacts: Path) -> tuple[ExportRecord, Path]:
    """The model's export record (through the export stage's own reader) and its path."""
    from zeroserve.export import read_export

    return read_export(spec, artifacts), ModelFolder.of(artifacts, spec.name).export_record


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


def _load_sample(spec: ModelSpec, artifacts: Path, record: ExportRecord) -> dict[str, np.ndarray] | None:
    """The export's held-out sample keyed by input name, checked against the spec; None when there is none."""
    folder = ModelFolder.of(artifacts, spec.name)
    path = folder.file(record.sample) if record.sample else folder.sample
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
) -> list[ManifestEntry]:
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
    device, precision = check_deploy_options(
        device, instances, max_queue_delay_us, tensorrt, formats, target, storage_uri
    )
    record, record_path = read_export_record(spec, artifacts)
    formats, gated = check_export_record(spec, record, formats, device, max_batch_size)
    checked = check_artifacts(spec, record, formats, artifacts, max_batch_size, release)
    sample = _load_sample(spec, artifacts, record)

    repository = records.ensure_writable_dir(Path(repository))
    staging = staging_parent(repository)
    record_sha = sha256(record_path)
    manifest_models = read_manifest(repository).models
    written = []
    for fmt, (entry, path, info) in checked.items():
        backend = F.get(fmt).backend
        name = F.get(fmt).triton_name(spec.name)
        tuning = None if reset_tuning else _tuning(manifest_models.get(name))
        chosen = _settings(
            tuning, gated, max_batch_size=max_batch_size, max_queue_delay_us=max_queue_delay_us, instances=instances
        )
        prune_stale(staging, name)
        tmp = records.scratch_dir(staging, f".zs-deploy-{name}-")
        try:
            os.chmod(tmp, 0o755)  # mkdtemp's 0700 would hide the model from a Triton running as another user
            (tmp / VERSION).mkdir()
            shutil.copyfile(path, tmp / VERSION / backend.default_file)
            if sha256(tmp / VERSION / backend.default_file) != entry.sha256:
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
                "artifact_sha256": entry.sha256,
                "export_record": {"path": str(record_path.resolve()), "sha256": record_sha},
                "config_sha256": hashlib.sha256(text.encode()).hexdigest(),
                "max_batch_size": model.max_batch_size,
                "max_queue_delay_us": model.max_queue_delay_us,
                "instance_group": {"kind": model.instance_kind, "count": model.instance_count},
                "tensorrt": model.tensorrt,
                "gated_max_batch_size": gated,
                **({"preferred_batch_sizes": list(model.preferred_batch_sizes)} if model.preferred_batch_sizes else {}),
                **({backend.threads_parameter: chosen["threads"]} if chosen["threads"] else {}),
                **({"tuning": {**tuning.to_json(), "overridden": chosen["overridden"]}} if tuning else {}),
                "warmup": "sample.npz row 0" if sample is not None else "safe values (no sample.npz)",
                **info,
                **notes,
                **({"warnings": warns} if warns else {}),
                "deployed": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            }
            place(tmp, repository / name)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        written.append(ManifestEntry.model_validate(entry_out))
        write_manifest(repository, written[-1:], release)  # per folder, so the manifest never lags a placed model
    if target == "kserve":
        write_kserve_manifest(repository, storage_uri=storage_uri, device=device, release=release)
    return written


def _tuning(entry: ManifestEntry | None) -> Tuning | None:
    """The tuning a manifest entry records (`tune --apply`), or None."""
    return entry.tuning if entry is not None else None


def _settings(tuning: Tuning | None, gated: int, **given) -> dict:
    """The serving settings of one deployed format: an explicit option, else the tuned value, else the default.

    Returns the settings and `overridden`, the tuned settings an explicit option replaced.
    """
    settings = (tuning.settings if tuning is not None else None) or TunedSettings()
    tuned = settings.to_json()  # the settings the tuning wrote (one absent is not tuned)
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
    out["preferred_batch_sizes"] = tuple(b for b in settings.preferred_batch_sizes or () if b <= out["max_batch_size"])
    out["threads"] = settings.threads
    return out


def read_manifest(repository: Path) -> Manifest:
    """The repository's manifest, or an empty one when none was written yet."""
    return Manifest.of(RepositoryLayout(repository).manifest)


def write_manifest(repository: Path, entries: list[ManifestEntry], release: TargetRelease = TARGET) -> Manifest:
    """Merge `entries` into `manifest.json` (atomic), dropping models whose folders are gone."""
    layout = RepositoryLayout(Path(repository))
    models = {
        k: v for k, v in read_manifest(layout.root).models.items() if (layout.model(k) / "config.pbtxt").is_file()
    }
    models.update({e.name: e for e in entries})
    manifest = Manifest(
        target={**asdict(release), "sources": list(release.sources)},
        models=dict(sorted(models.items())),
        versions=records.versions("onnx", "tritonclient", "protobuf"),
    )
    manifest.save(layout.manifest)
    return manifest

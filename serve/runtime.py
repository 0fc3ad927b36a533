"""The runtime repository: the embedded engine's Python-backend copy of the canonical repository.

The nvidia-pytriton wheel's Triton carries only the Python backend, so each canonical model
(backend `onnxruntime` or `pytorch`) is served as a Python-backend model in a runtime folder
under the cache (never inside the canonical repository). Its config is a transform of the
deployed config object (`deploy/config.py`'s `DeployedModel`): same name, tensors, reshape,
max_batch_size, dynamic batching, instance count and warmup, with `backend: "python"`, the
parameters zeroserve's shared `model.py` (serve/triton_model.py) reads, and ragged batching on
inputs with a variable axis (model.py groups requests by shape within one execute()). It is
rendered by the same `render` as the canonical config.

The runtime copy is a copy: every file is written anew (never a hard link), so nothing served
shares an inode with the canonical repository or the artifacts, and an artifact overwritten in
place after `serve` started does not reach the running server. The copied artifact's sha256 is
checked against the repository manifest's `artifact_sha256` (when the model has an entry) and
recorded, so a reload or restart can verify what it is about to serve (`verify_artifact`).
"""

from __future__ import annotations

import hashlib
import os
import secrets
import shutil
import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from pathlib import Path

from zeroserve import formats as F
from zeroserve.deploy import autocomplete
from zeroserve.deploy.config import DeployedModel, render
from zeroserve.deploy.contents import read_deployed
from zeroserve.errors import InputError
from zeroserve.records.layout import RepositoryLayout
from zeroserve.records.manifest import Manifest
from zeroserve.triton.wheel import gpu_available

MODEL_PY = Path(__file__).with_name("triton_model.py")
NOOP_SUFFIX = "_noop"


@dataclass
class RuntimeModel:
    """One model of the runtime repository: its Triton name, format and where it came from."""

    name: str
    fmt: str
    source: Path
    instances: int
    kind: str
    artifact: str = ""  # the artifact's path inside the runtime model folder (`1/model.onnx`)
    sha256: str = ""  # what was copied there (and matched the manifest, when it has the model)


def served_by(model: DeployedModel, folder: Path) -> F.Backend:
    """The backend a canonical config names, or InputError when zeroserve does not serve it."""
    backend = F.for_backend(model.backend, model.platform)
    if backend is None:
        raise InputError(f"{folder}: backend {model.backend!r} is not one zeroserve serves ({', '.join(F.BACKENDS)})")
    return backend


def configured_threads(model: DeployedModel, backend: F.Backend) -> int | None:
    """The canonical config's own intra-op thread count, when it sets one (0 means the backend's default)."""
    value = model.parameters.get(backend.threads_parameter, "")
    try:
        threads = int(value)
    except ValueError:
        return None
    return threads if threads >= 1 else None


def runtime_model(
    canonical: DeployedModel,
    backend: F.Backend,
    fmt: str,
    threads: int,
    gpu: bool,
    *,
    name: str | None = None,
    queue_delay_us: int | None = None,
) -> DeployedModel:
    """The Python-backend twin of one canonical model.

    Args:
        backend: the canonical config's backend (its artifact file is what `model.py` loads).
        fmt: what `model.py` runs: the backend's runtime, or noop (zeros, the serving path's floor).
        threads: intra-op threads of the runtime inside `model.py`.
        gpu: keep a KIND_GPU instance group; without a GPU every group runs as KIND_CPU.
        name: another Triton name (the no-op twin); the canonical name by default.
        queue_delay_us: overrides the dynamic-batching queue delay (tests, benchmark).
    """
    # model.py runs requests of different lengths in one execute(), grouped by shape: let Triton merge them.
    inputs = tuple(
        replace(t, allow_ragged_batch=True) if canonical.max_batch_size > 0 and -1 in t.dims else t
        for t in canonical.inputs
    )
    return replace(
        canonical,
        name=name or canonical.name,
        backend="python",
        platform=None,
        inputs=inputs,
        instance_kind=canonical.instance_kind if gpu else "KIND_CPU",
        max_queue_delay_us=canonical.max_queue_delay_us if queue_delay_us is None else queue_delay_us,
        tensorrt=None,  # execution accelerators belong to the native onnxruntime backend
        parameters={"ZS_FORMAT": fmt, "ZS_ARTIFACT": artifact_file(canonical, backend), "ZS_THREADS": str(threads)},
        default_model_filename=None,  # the Python backend's file is model.py; the artifact is ZS_ARTIFACT
    )


def artifact_file(model: DeployedModel, backend: F.Backend) -> str:
    """The file Triton loads from the version folder: the config's default_model_filename, else the backend's."""
    return model.default_model_filename or backend.default_file


def servable(src: Path) -> tuple[DeployedModel, F.Backend, Path, str]:
    """(config, backend, version folder, artifact file) of a canonical folder, or InputError saying why the
    embedded engine cannot serve it."""
    version = _latest_version(src)
    canonical = read_deployed(src) if (src / "config.pbtxt").is_file() else autocomplete.configless(src, version)
    backend = served_by(canonical, src)
    artifact = artifact_file(canonical, backend)
    if not (version / artifact).is_file():
        raise InputError(
            f"{src}: artifact {version / artifact} is missing; run `zeroserve deploy` again "
            "(or put the model's file there)"
        )
    path = version / artifact
    graph = autocomplete.graph_io(path) if backend.runtime == "onnx" else None  # the file read once
    canonical = autocomplete.complete(canonical, path, backend, graph)  # as Triton does, for ONNX
    _check_artifact(path, backend, canonical, graph)
    return canonical, backend, version, artifact


def _check_artifact(path: Path, backend: F.Backend, model: DeployedModel, graph: autocomplete.GraphIO | None) -> None:
    """InputError when the artifact is plainly not a model of its backend, or (ONNX, `graph` its
    `autocomplete.graph_io`) lacks a configured tensor: cheap checks at build time (no session is made), so
    such a folder is reported and skipped."""
    if graph is None:  # not ONNX: the runtime's own cheap check of its file
        backend.handler.check_artifact(path)
        return
    for kind, declared, present in (
        ("input", model.inputs, {name for name, _, _ in graph[0]}),
        ("output", model.outputs, {name for name, _, _ in graph[1]}),
    ):
        missing = [t.name for t in declared if t.name not in present]
        if missing:
            raise InputError(
                f"{path}: config {kind}s {', '.join(missing)} are not {kind}s of the graph "
                f"({', '.join(sorted(present))})"
            )


def _latest_version(model_dir: Path) -> Path:
    versions = sorted((p for p in model_dir.iterdir() if p.is_dir() and p.name.isdigit()), key=lambda p: int(p.name))
    if not versions:
        raise InputError(f"{model_dir} has no version folder (1/); run `zeroserve deploy` again")
    return versions[-1]


CHUNK = 1 << 20


def file_sha256(path: Path) -> str:
    """The sha256 hex digest of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def manifest_sha256(repository: Path, name: str) -> str | None:
    """The artifact sha256 that `deploy` recorded for a model folder, or None (no manifest, no entry, unreadable)."""
    entry = Manifest.entry_if_valid(RepositoryLayout(repository).manifest, name)
    value = entry.artifact_sha256 if entry is not None else None
    return value if isinstance(value, str) and len(value) == 64 else None


def copy_verified(src: Path, dst: Path, expected: str | None = None) -> str:
    """Copy `src` to `dst` as new bytes (a temp file renamed into place), hashing what is written.

    Returns the sha256 of the copy. InputError (nothing left at `dst`) when `expected` is given and
    the bytes differ: the canonical file changed since it was deployed.
    """
    tmp = dst.with_name(f".{dst.name}.{secrets.token_hex(4)}")
    digest = hashlib.sha256()
    try:
        with open(src, "rb") as fin, open(tmp, "wb") as fout:
            while chunk := fin.read(CHUNK):
                digest.update(chunk)
                fout.write(chunk)
        if expected and digest.hexdigest() != expected:
            raise InputError(
                f"{src}: sha256 {digest.hexdigest()[:12]} is not the {expected[:12]} that deploy recorded "
                "in manifest.json (the file changed after deploy); run `zeroserve deploy` again"
            )
        os.replace(tmp, dst)
    finally:
        tmp.unlink(missing_ok=True)
    return digest.hexdigest()


def verify_artifact(folder: Path, artifact: str, expected: str) -> str | None:
    """None when the runtime model folder's artifact still has the sha256 it was copied with, else why not."""
    path = Path(folder) / artifact
    try:
        found = file_sha256(path)
    except OSError as exc:
        return f"runtime artifact {path} cannot be read ({exc.strerror or exc})"
    if found != expected:
        return f"runtime artifact {path} changed since it was copied (sha256 {found[:12]}, served copy {expected[:12]})"
    return None


def write_runtime_model(
    src: Path,
    canonical: DeployedModel,
    target: Path,
    *,
    name: str | None = None,
    noop: bool = False,
    ort_threads: int | None = None,
    gpu: bool = False,
    queue_delay_us: int | None = None,
) -> RuntimeModel:
    """Write the runtime twin of one canonical model folder `src` as `target/<name>/`.

    `canonical` is the config to transform: `src`'s own (a served model), or a variant of it
    (`zeroserve tune`'s candidates: another instance count, batching or thread setting) whose
    artifact and warmup are still `src`'s. Threads: `ort_threads`, else the config's own setting, else 1.
    """
    backend = served_by(canonical, src)
    version = _latest_version(src)
    artifact = artifact_file(canonical, backend)
    if not (version / artifact).is_file():
        raise InputError(f"{src}: artifact {version / artifact} is missing; run `zeroserve deploy` again")
    threads = ort_threads or configured_threads(canonical, backend) or 1
    serve_fmt = "noop" if noop else backend.runtime
    name = name or canonical.name
    model = runtime_model(canonical, backend, serve_fmt, threads, gpu, name=name, queue_delay_us=queue_delay_us)
    dst = target / name
    shutil.rmtree(dst, ignore_errors=True)
    (dst / version.name).mkdir(parents=True)
    try:
        digest = copy_verified(version / artifact, dst / version.name / artifact, manifest_sha256(src.parent, src.name))
    except BaseException:
        shutil.rmtree(dst, ignore_errors=True)
        raise
    shutil.copyfile(MODEL_PY, dst / version.name / "model.py")
    if (src / "warmup").is_dir():
        shutil.copytree(src / "warmup", dst / "warmup", copy_function=shutil.copyfile)
    (dst / "config.pbtxt").write_text(render(model))
    return RuntimeModel(
        name, serve_fmt, src, model.instance_count, model.instance_kind, f"{version.name}/{artifact}", digest
    )


def build_runtime_repository(
    repository: Path,
    names: list[str],
    target: Path,
    ort_threads: int | None = None,
    gpu: bool | None = None,
    queue_delay_us: int | None = None,
    noop_of: Iterable[str] = (),
    on_skip: Callable[[str, str], None] | None = None,
) -> list[RuntimeModel]:
    """Write the runtime copy of `names` into `target`; the canonical repository is only read.

    A folder the engine cannot serve (a config that does not parse, another backend, no version
    folder, a missing artifact) is left out and reported through `on_skip(name, reason)` (default: a
    warning); the others are built. InputError when none of `names` can be served.

    Args:
        ort_threads: intra-op threads per instance for every model; when None, each canonical
            config's own thread setting (its backend's `threads_parameter`), else 1.
        noop_of: Triton names that also get a `<name>_noop` twin with the same tensors that
            answers zeros: the serving path's own floor (benchmark).
    """
    gpu = gpu_available() if gpu is None else gpu
    if ort_threads is not None and ort_threads < 1:
        raise InputError(f"--ort-threads must be at least 1, got {ort_threads}")
    target.mkdir(parents=True, exist_ok=True)
    built: list[RuntimeModel] = []
    downgraded: list[str] = []
    skipped: dict[str, str] = {}
    gpu_only = [] if gpu else [n for n in names if (F.split_triton_name(n) or ("", F.FORMATS["onnx"]))[1].gpu_only]
    if gpu_only and len(gpu_only) == len(names):
        raise InputError(
            f"nothing to serve: {', '.join(gpu_only)} run on GPU instances only (float16; ONNX Runtime's "
            "CPU provider lacks most float16 kernels) and this machine has no GPU"
        )
    if gpu_only:
        warnings.warn(
            f"no GPU here: not serving {', '.join(gpu_only)} (float16 variants run on GPU instances only; "
            "the canonical repository keeps them for a GPU host)",
            stacklevel=2,
        )
    for name, source_name in [
        *((n, n) for n in names if n not in gpu_only),
        *((f"{n}{NOOP_SUFFIX}", n) for n in noop_of),
    ]:
        src = Path(repository) / source_name
        try:
            canonical = servable(src)[0]
            model = write_runtime_model(
                src,
                canonical,
                target,
                name=name,
                noop=name != source_name,
                ort_threads=ort_threads,
                gpu=gpu,
                queue_delay_us=queue_delay_us,
            )
        except InputError as exc:  # unservable, or its artifact changed since deploy: reported, the others built
            skipped[name] = str(exc)
            if on_skip is not None:
                on_skip(name, str(exc))
            else:
                warnings.warn(f"not serving {name}: {exc}", stacklevel=2)
            continue
        if model.kind != canonical.instance_kind:
            downgraded.append(name)
        built.append(model)
    if skipped and not built:
        raise InputError(
            f"none of the {len(skipped)} model(s) can be served here: "
            + "; ".join(f"{n}: {why}" for n, why in skipped.items())
        )
    if downgraded:
        warnings.warn(
            f"no GPU here: {len(downgraded)} model(s) configured KIND_GPU run as KIND_CPU with the "
            "CPU execution provider in the embedded engine (the canonical repository is unchanged)",
            stacklevel=2,
        )
    return built

"""Which engine a figure was measured on: Triton's version, the backend and runtime that ran the model, the device.

What zeroserve measures is not always what it deploys: the embedded engine (the nvidia-pytriton
wheel's Triton 2.51) runs every model in the Python backend (zeroserve's `model.py` running ONNX
Runtime or TorchScript in a stub), while `deploy` writes native `onnxruntime`/`pytorch` configs
for the target release (deploy/release.py). Every perf, tune, check and bench record carries
`measured_on` (zeroserve/triton/machine.py) with this description, and report titles print `line(...)`.

The description is read from the served model's own config where a server answers (the backend,
and zeroserve's `ZS_FORMAT` parameter in the embedded engine's Python-backend configs), so a
server zeroserve did not start is described by what it says, not by what zeroserve assumes.
"""

from __future__ import annotations

from importlib import metadata
from typing import Any

EMBEDDED = "embedded"
NATIVE = "native"
EMBEDDED_TRITON = "2.51.0"  # the Triton inside the nvidia-pytriton wheel (its server metadata says so)

# what zeroserve's model.py runs a format with (its ZS_FORMAT parameter), and the package it imports
RUNTIMES = {"onnx": ("onnxruntime", "onnxruntime-gpu"), "torchscript": ("torch", "torch"), "noop": ("none", None)}
# a native backend and the runtime inside it
NATIVE_RUNTIMES = {
    "onnxruntime": "onnxruntime",
    "onnxruntime_onnx": "onnxruntime",
    "pytorch": "torch",
    "pytorch_libtorch": "torch",
}


def _version(dist: str | None) -> str | None:
    if dist is None:
        return None
    for name in (dist, dist.removesuffix("-gpu")):
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return None


def runtime_versions() -> dict[str, str | None]:
    """The runtimes the embedded engine's stubs import (they run in this environment): ONNX Runtime, torch."""
    return {"onnxruntime": _version("onnxruntime-gpu"), "torch": _version("torch")}


def device(gpus: list[str], instance_kind: str | None = None) -> str:
    """Where the model ran: a GPU (named) when the config's instances are KIND_GPU and one is visible, else CPU."""
    if gpus and instance_kind in (None, "KIND_GPU", "KIND_AUTO"):
        return "GPU (" + ", ".join(gpus) + ")"
    return "CPU"


def embedded(
    fmt: str | None, gpus: list[str] | None = None, triton: str | None = None, kind: str | None = None
) -> dict:
    """The embedded engine running `fmt` (`onnx`, `torchscript`, `noop`; None: not known) in the Python backend."""
    runtime, dist = RUNTIMES.get(fmt or "", (None, None))
    return {
        "kind": EMBEDDED,
        "triton": triton or EMBEDDED_TRITON,
        "backend": "python",
        "runtime": runtime,
        "runtime_version": _version(dist),
        "runtime_versions": runtime_versions(),
        "device": device(gpus or [], kind),
    }


def native(
    backend: str,
    triton: str | None,
    gpus: list[str] | None = None,
    kind: str | None = None,
    release: dict | None = None,
) -> dict:
    """A Triton running `backend` natively (docker, a cluster). `release` (deploy/release.py's target as a dict:
    triton, image, onnxruntime, libtorch): when the server is that release, its runtime version and image."""
    runtime = NATIVE_RUNTIMES.get(backend)
    known = release is not None and triton == release.get("triton")
    return {
        "kind": NATIVE,
        "triton": triton,
        "backend": backend,
        "runtime": runtime,
        "runtime_version": _release_runtime(release, runtime) if known else None,
        "image": release.get("image") if known and release else None,
        "device": device(gpus or [], kind),
    }


def _release_runtime(release: dict | None, runtime: str | None) -> str | None:
    if not release:
        return None
    return release.get("onnxruntime") if runtime == "onnxruntime" else release.get("libtorch")


def target_release(release: dict, backend: str = "onnxruntime", kind: str = "KIND_GPU") -> dict:
    """The engine a repository is written for: `release` (a manifest's `target`, or deploy/release.py's TARGET as
    a dict: triton, image, onnxruntime, libtorch) running `backend` natively, on a GPU for KIND_GPU instances."""
    runtime = NATIVE_RUNTIMES.get(backend)
    return {
        "kind": NATIVE,
        "triton": release.get("triton"),
        "backend": backend,
        "runtime": runtime,
        "runtime_version": _release_runtime(release, runtime),
        "image": release.get("image"),
        "device": "GPU (the target host's)" if kind in ("KIND_GPU", "KIND_AUTO") else "CPU",
    }


def from_config(
    config: dict | None, triton: str | None, gpus: list[str] | None = None, release: dict | None = None
) -> dict | None:
    """The engine a served model runs on, from its served config (Triton's JSON) and the server's version
    (`release`: the target release, to name its runtime when the server is it)."""
    if not config:
        return None
    config = config.get("config", config)
    groups = config.get("instance_group") or [{}]
    kind = groups[0].get("kind")
    backend = config.get("backend") or config.get("platform") or ""
    if backend == "python":
        fmt = ((config.get("parameters") or {}).get("ZS_FORMAT") or {}).get("string_value")
        if fmt is not None:  # zeroserve's model.py: the embedded engine
            return embedded(fmt, gpus, triton, kind)
    return native(backend, triton, gpus, kind, release)


def line(engine: dict | None) -> str:
    """One line for a title: `Triton 2.51.0, Python backend running onnxruntime 1.24.1, on CPU`."""
    if not engine:
        return "engine not known (a server zeroserve did not start)"
    runtime = engine.get("runtime")
    ran = f"{runtime} {engine.get('runtime_version') or '(version not known)'}" if runtime and runtime != "none" else ""
    if engine.get("kind") == EMBEDDED:
        what = "Python backend " + (f"running {ran}" if ran else "running a no-op model.py" if runtime else "")
        head = f"embedded Triton {engine.get('triton')}"
    else:
        what = f"native {engine.get('backend')} backend" + (f" ({ran})" if ran else "")
        head = f"Triton {engine.get('triton') or '(version not known)'}" + (
            f" [{engine['image']}]" if engine.get("image") else ""
        )
    return f"{head}, {what.strip()}, on {engine.get('device', 'CPU')}"


def differs(measured: dict | None, target: dict) -> list[str]:
    """How the engine a figure was measured on differs from the one it is applied to (empty: the same)."""
    if not measured:
        return ["the engine measured on is not known"]
    out = []
    for key, what in (("triton", "Triton version"), ("backend", "backend"), ("runtime_version", "runtime version")):
        if measured.get(key) != target.get(key):
            out.append(f"{what} {measured.get(key)} measured, {target.get(key)} targeted")
    if measured.get("device", "CPU").split(" ")[0] != target.get("device", "CPU").split(" ")[0]:
        out.append(f"measured on {measured.get('device')}, targeted {target.get('device')}")
    return out


def describe(machine_facts: dict[str, Any]) -> str:
    """The engine and machine of a `measured_on` block in one line (report titles)."""
    engine = machine_facts.get("engine_detail")
    where = f"{machine_facts.get('cpu_model')} x {machine_facts.get('cores')} cores"
    return f"{line(engine) if engine else machine_facts.get('engine') or line(None)}; {where}"

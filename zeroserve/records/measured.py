"""Where a measurement was made: the engine and the machine (perf, tune, check, bench; the manifest's tuning)."""

from __future__ import annotations

from zeroserve.records.base import Block


class EngineDetail(Block):
    """The engine as the server described the model (zeroserve/engine.py)."""

    kind: str | None = None
    """"embedded" (zeroserve's Python-backend model.py) or "native" (Triton's own backend)."""
    triton: str | None = None
    """The Triton server version."""
    backend: str | None = None
    """The Triton backend ("python", "onnxruntime", "pytorch", ...)."""
    runtime: str | None = None
    """The runtime that ran the model ("onnxruntime", "torch", "none" for the no-op twin)."""
    runtime_version: str | None = None
    """The runtime's version (null when not known, e.g. the no-op twin)."""
    runtime_versions: dict[str, str | None] | None = None
    """The embedded engine's runtime libraries and their versions."""
    device: str | None = None
    """"CPU" or "GPU (names)"."""
    image: str | None = None
    """The native engine's container image, when it is the target release."""


class MeasuredOn(Block):
    """The engine and the machine a figure was measured on."""

    engine: str | None = None
    """The engine in one line (what report titles print and `plan` compares); null when the server did not
    describe the model."""
    engine_detail: EngineDetail | None = None
    """The description `engine` was made from (zeroserve/engine.py)."""
    cpu_model: str | None = None
    """This machine's CPU model."""
    cores: int | None = None
    """Its core count."""
    machine: str | None = None
    """Its architecture (`platform.machine()`)."""
    gpu: list[str] | None = None
    """The GPUs visible here (names); empty without one."""

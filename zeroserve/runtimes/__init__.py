"""Runtimes: what each kind of artifact needs from every stage, one object per runtime and its module.

A format of the table (`zeroserve.formats`) is served by a backend, and the backend by a runtime:
`onnx` (ONNX Runtime), `torchscript` (libtorch), `pt2` (AOTInductor). The runtime object says how
its artifact is exported and run in-process (export's gate and latency figures), what deploy writes
and checks for the target release (config, names on the wire, lint), and which loader the embedded
engine's `model.py` runs it with (`key`, its ZS_FORMAT). A new runtime is one `Runtime` subclass in
its own module here, named in `RUNTIMES` and by a backend of the format table.

Heavy imports (torch, onnx, onnxruntime) happen inside the methods, so the table stays cheap to import.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np

    from zeroserve.deploy.config import DeployedModel
    from zeroserve.records.export import FormatEntry
    from zeroserve.spec import ModelSpec


class Runtime:
    """One runtime's behaviour; every stage asks the format's runtime instead of switching on a string.

    Attributes:
        key: its name in the format table and the embedded engine's ZS_FORMAT (`model.py`'s loader).
        label: how messages name it (`ONNX Runtime`).
        default: exported by `zeroserve export` when no --format is given.
        max_batch_size: the largest batch the target release's backend serves this runtime with.
    """

    key = ""
    label = ""
    default = True
    max_batch_size: int | None = None  # the most the target's backend batches for this runtime (None: no cap)

    def preflight(self) -> None:
        """InputError when this machine lacks what making the artifact needs (pt2: a C++ compiler)."""

    def build(self, spec: ModelSpec, module: Any, path: Path, **options: Any) -> dict:
        """Write the artifact of `module` to `path`; what export.json keeps about it."""
        raise NotImplementedError

    def info(self, path: Path) -> dict:
        """Facts read from a written artifact that export.json records (what deploy checks later)."""
        return {}

    def runner(self, path: Path, spec: ModelSpec, threads: int | None = None) -> Callable:
        """A function running the artifact in-process: list of input arrays -> list of output arrays."""
        raise NotImplementedError

    def check_target(self, name: str, path: Path, entry: FormatEntry | None, release: Any) -> dict:
        """Deploy: InputError when the target release cannot load the artifact; the facts read from it."""
        return {}

    def check_max_batch_size(self, what: str, requested: int | None) -> None:
        """Deploy: InputError when `--max-batch-size` is above what the target serves this runtime with."""

    def configure(self, model: DeployedModel, entry: FormatEntry) -> DeployedModel:
        """Deploy: the config as this runtime's Triton backend needs it (the default config unchanged)."""
        return model

    def lint(self, model: DeployedModel, path: Path, warmup: list[np.ndarray] | None) -> list[np.ndarray] | None:
        """Deploy: CheckFailed when the written config and the artifact disagree; the outputs of the warmup
        request (`warmup`: its arrays in config order, graph shapes), which deploy checks against the config."""
        return None

    def check_artifact(self, path: Path) -> None:
        """Embedded engine: InputError when the file is plainly not this runtime's artifact (cheap, no load)."""

    def wire_names(self, spec: ModelSpec) -> tuple[tuple[str, ...], tuple[str, ...]]:
        """The served tensors' names (inputs, outputs) for the spec's: the client's one mapping."""
        return tuple(t.name for t in spec.inputs), tuple(t.name for t in spec.outputs)

    def deploy_notes(self, entry: FormatEntry) -> tuple[dict, list[str]]:
        """Deploy: what the manifest adds for this artifact, and warnings for the user."""
        return {}, []


RUNTIMES = {"onnx": "zeroserve.runtimes.onnx", "torchscript": "zeroserve.runtimes.torchscript"}
RUNTIMES["pt2"] = "zeroserve.runtimes.pt2"
_loaded: dict[str, Runtime] = {}


def get(key: str) -> Runtime:
    """The runtime object named `key` (its module's RUNTIME), imported on first use."""
    if key not in _loaded:
        if key not in RUNTIMES:
            raise KeyError(f"no runtime {key!r} (known: {', '.join(RUNTIMES)})")
        _loaded[key] = importlib.import_module(RUNTIMES[key]).RUNTIME
    return _loaded[key]

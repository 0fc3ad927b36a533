"""Deploy's lint: a written model folder's config checked against its artifact, the way Triton will use it.

ONNX: input/output names, dtypes and ranks against the graph, then the warmup request through ONNX
Runtime; TorchScript: a forward on the warmup sample in the config's input order. Both check the
outputs' count, dtypes and shapes. `zeroserve deploy` lints each folder before it is renamed into
place; `zeroserve tune --apply` lints a tuned config the same way.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from zeroserve import formats as F
from zeroserve.deploy.config import VERSION, WARMUP_DIR, DeployedModel, parse
from zeroserve.errors import CheckFailed, InputError


def _warmup_arrays(model: DeployedModel, folder: Path) -> list[np.ndarray]:
    """The warmup request as graph-shaped arrays (batch 1), in the config's input order."""
    arrays = []
    for t in model.inputs:
        w = model.warmup.inputs[t.name]
        dtype = np.dtype(w.dtype).newbyteorder("<")
        if w.file is None:  # zero_data (random_data is linted with zeros too: any valid value will do)
            a = np.zeros((1, *w.dims), dtype=dtype)
        else:
            raw = (folder / WARMUP_DIR / w.file).read_bytes()
            if len(raw) != int(np.prod(w.dims)) * dtype.itemsize:
                raise CheckFailed(
                    f"{model.name}: warmup file {w.file} holds {len(raw)} bytes, not one {w.dtype}{list(w.dims)} sample"
                )
            a = np.frombuffer(raw, dtype=dtype).reshape(1, *w.dims)
        if t.reshape is not None:
            a = a.reshape(1, *t.reshape)
        arrays.append(a.astype(w.dtype))
    return arrays


def _check_outputs(model: DeployedModel, outs: list[np.ndarray], runtime: str) -> None:
    """The warmup request's outputs against the config: count, dtypes, and shapes at batch 1."""
    if len(outs) != len(model.outputs):
        raise CheckFailed(
            f"{model.name}: {runtime} returned {len(outs)} outputs, the config declares {len(model.outputs)}"
        )
    for t, o in zip(model.outputs, outs):
        shape, dtype, want = list(o.shape), str(o.dtype), [1, *t.graph_dims]
        if dtype != t.dtype or len(shape) != len(want) or any(w not in (-1, s) for w, s in zip(want, shape)):
            raise CheckFailed(
                f"{model.name}: output {t.name} is {dtype}{shape} on the warmup sample, the config "
                f"declares {t.dtype}{want}"
            )


def lint_model(folder: Path) -> DeployedModel:
    """Parse a written model folder's config and check it against its artifact.

    ONNX: input/output names, dtypes and ranks (batch axis included, after reshape) against the
    graph, then the warmup request through ONNX Runtime. TorchScript: a forward on the warmup
    sample with the config's input order. Both check output count, dtypes and shapes.

    Raises:
        CheckFailed: the config and the artifact disagree.
    """
    folder = Path(folder)
    try:
        model = parse((folder / "config.pbtxt").read_text())
    except FileNotFoundError:
        raise CheckFailed(f"{folder.name}: no config.pbtxt") from None
    except InputError as exc:
        raise CheckFailed(f"{folder.name}: {exc}") from None
    backend = F.for_backend(model.backend, model.platform)
    if backend is None:
        raise CheckFailed(f"{model.name}: backend {model.backend!r} is not one deploy writes")
    path = folder / VERSION / backend.default_file
    if not path.is_file():
        raise CheckFailed(f"{model.name}: no artifact at {path}")
    if model.warmup is not None:
        for t in model.inputs:
            if t.name not in model.warmup.inputs:
                raise CheckFailed(f"{model.name}: warmup lacks input {t.name}")
    outs = backend.handler.lint(model, path, _warmup_arrays(model, folder) if model.warmup is not None else None)
    if outs is not None:
        _check_outputs(model, outs, backend.handler.label)
    return model

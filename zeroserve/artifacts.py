"""Where each model's artifacts live, loading a trained checkpoint, and the task metrics."""

from __future__ import annotations

import pickle
import zipfile
from pathlib import Path

import numpy as np
import torch

from zeroserve.errors import InputError
from zeroserve.spec import ModelSpec

DEFAULT_ARTIFACTS = Path("artifacts")


def model_dir(artifacts: Path, spec: ModelSpec) -> Path:
    return Path(artifacts) / spec.name


def load_trained(spec: ModelSpec, artifacts: Path) -> torch.nn.Module:
    """The course module with its trained weights, in eval mode, or InputError saying what to do."""
    path = model_dir(artifacts, spec) / "checkpoint.pt"
    if not path.is_file():
        raise InputError(f"{spec.name}: no checkpoint at {path}; run `zeroserve train {spec.name}` first")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except (RuntimeError, EOFError, OSError, zipfile.BadZipFile, ValueError, pickle.UnpicklingError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise InputError(f"{spec.name}: checkpoint {path} is corrupt ({first}); "
                         f"run `zeroserve train {spec.name}` again") from None
    model = spec.build()
    try:
        model.load_state_dict(state)
    except (RuntimeError, TypeError, AttributeError) as exc:
        first = str(exc).strip().splitlines()
        detail = first[1].strip() if len(first) > 1 else first[0] if first else type(exc).__name__
        raise InputError(f"{spec.name}: checkpoint {path} does not fit the {spec.name} architecture "
                         f"({detail}); run `zeroserve train {spec.name}` again") from None
    return model.eval()


@torch.no_grad()
def eager_outputs(model: torch.nn.Module, inputs: list[np.ndarray], batch_size: int = 256) -> np.ndarray:
    """Run eager PyTorch over arrays in batches; the first output as one numpy array."""
    n = len(inputs[0])
    chunks = []
    for start in range(0, n, batch_size):
        tensors = [torch.from_numpy(np.ascontiguousarray(a[start:start + batch_size])) for a in inputs]
        chunks.append(model(*tensors).numpy())
    return np.concatenate(chunks)


def task_metric(spec: ModelSpec, outputs: np.ndarray, target: np.ndarray) -> float:
    """The held-out metric: max abs error (regression) or accuracy (per sequence for `sequence`)."""
    if spec.task == "regression":
        return float(np.max(np.abs(outputs.reshape(target.shape) - target)))
    if spec.task == "binary":
        return float(np.mean((outputs.reshape(target.shape) >= 0.5) == (target >= 0.5)))
    if spec.task == "multiclass":
        return float(np.mean(outputs.argmax(-1) == target))
    return float(np.mean(np.all(outputs.argmax(-1) == target, axis=-1)))

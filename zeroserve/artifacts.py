"""Where each model's artifacts live, loading a trained checkpoint, and running it eagerly."""

from __future__ import annotations

import pickle
import zipfile
from pathlib import Path
from typing import cast

import numpy as np
import torch

from zeroserve.errors import InputError
from zeroserve.records.layout import ModelFolder
from zeroserve.spec import ModelSpec

DEFAULT_ARTIFACTS = Path("artifacts")


def model_dir(artifacts: Path, spec: ModelSpec) -> Path:
    return ModelFolder.of(artifacts, spec.name).root


def checkpoint_path(spec: ModelSpec, artifacts: Path) -> Path:
    """The model's weights: the spec's own checkpoint if it gives one, else what `zeroserve train` wrote."""
    return spec.checkpoint if spec.checkpoint is not None else ModelFolder.of(artifacts, spec.name).checkpoint


def load_trained(spec: ModelSpec, artifacts: Path) -> torch.nn.Module:
    """The model's module with its trained weights, in eval mode, or InputError saying what to do."""
    path = checkpoint_path(spec, artifacts)
    todo = (
        f"point the spec's checkpoint= at a state dict of the module ({spec.origin})"
        if spec.checkpoint
        else f"run `zeroserve train {spec.name}` again"
    )
    if not path.is_file():
        raise InputError(
            f"{spec.name}: no checkpoint at {path}; "
            + (todo if spec.checkpoint else f"run `zeroserve train {spec.name}` first")
        )
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except (RuntimeError, EOFError, OSError, zipfile.BadZipFile, ValueError, pickle.UnpicklingError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise InputError(f"{spec.name}: checkpoint {path} is corrupt or not a state dict ({first}); {todo}") from None
    model = cast(torch.nn.Module, spec.build())
    try:
        model.load_state_dict(state)
    except (RuntimeError, TypeError, AttributeError) as exc:
        lines = str(exc).strip().splitlines()
        detail = lines[1].strip() if len(lines) > 1 else lines[0] if lines else type(exc).__name__
        raise InputError(
            f"{spec.name}: checkpoint {path} does not fit the {spec.name} architecture ({detail}); {todo}"
        ) from None
    return model.eval()


def output_arrays(result) -> list[np.ndarray]:
    """A module's return value (one tensor, or a tuple/list of them) as a list of numpy arrays."""
    items = result if isinstance(result, (tuple, list)) else (result,)
    return [t.detach().cpu().numpy() if isinstance(t, torch.Tensor) else np.asarray(t) for t in items]


@torch.no_grad()
def eager_outputs(
    model: torch.nn.Module, inputs: list[np.ndarray], batch_size: int = 256, device: torch.device | None = None
) -> list[np.ndarray]:
    """Run eager PyTorch over arrays in batches (on `device`, default the CPU); every output as one numpy array."""
    n = len(inputs[0])
    chunks: list[list[np.ndarray]] = []
    for start in range(0, n, batch_size):
        tensors = [
            torch.from_numpy(np.ascontiguousarray(a[start : start + batch_size])).to(device or "cpu") for a in inputs
        ]
        chunks.append(output_arrays(model(*tensors)))
    return [np.concatenate([c[i] for c in chunks]) for i in range(len(chunks[0]))]

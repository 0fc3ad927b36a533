"""What Triton fills in for an ONNX model whose config leaves out its tensors, done the same way here.

Triton (auto-complete on, its default) serves a folder with no `config.pbtxt` when the version folder
holds a file a backend recognises (`model.onnx`: onnxruntime), and Triton's onnxruntime backend
completes a config that lists no inputs or no outputs from the graph itself
(onnxruntime_backend `ModelState::AutoCompleteConfig`):

- a model whose every input and output has a dynamic first dim can batch: an unset max_batch_size
  becomes the backend's `default-max-batch-size` (4), and above 1 an empty `dynamic_batching` is
  added when no batcher is configured; a model that cannot batch with a non-zero max_batch_size is
  an error;
- the missing side (inputs, outputs or both) is filled with each graph tensor's name, datatype and
  dims (the first dim left out when batching; symbolic or unknown dims as -1; a per-sample scalar as
  `dims: [1]` with an empty reshape).

The embedded engine runs `--disable-auto-complete-config` on its own runtime copy, whose configs are
written complete by serve/runtime.py from what this module returns. PyTorch models are not completed
(Triton's pytorch backend does not either): their configs must list every tensor.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from zeroserve import formats as F
from zeroserve.deploy.config import DeployedModel, TensorConfig
from zeroserve.errors import InputError
from zeroserve.runtimes.onnx import GraphIO, graph_io  # noqa: F401 - graph_io is read through this module too

DEFAULT_MAX_BATCH_SIZE = 4  # Triton's --backend-config=default-max-batch-size default


def configless(folder: Path, version: Path) -> DeployedModel:
    """The config Triton starts from for a folder without `config.pbtxt`: named by the folder, its backend
    recognised from the file in the version folder, nothing else set."""
    for backend in F.BACKENDS.values():
        if (version / backend.default_file).is_file():
            return DeployedModel(
                name=folder.name,
                backend=backend.name,
                platform=backend.platform,
                max_batch_size=0,
                inputs=(),
                outputs=(),
                max_queue_delay_us=None,
                instance_kind="KIND_CPU",
            )
    known = ", ".join(b.default_file for b in F.BACKENDS.values())
    raise InputError(f"{folder}: no config.pbtxt, and {version} holds no model file Triton recognises ({known})")


def complete(model: DeployedModel, path: Path, backend: F.Backend, graph: GraphIO | None) -> DeployedModel:
    """`model` with what Triton's backend fills in from the artifact at `path` (see the module docstring).

    Args:
        graph: `graph_io(path)` for an ONNX artifact (read once by the caller), else None.
    """
    if model.inputs and model.outputs:
        return model
    if graph is None:
        raise InputError(
            f"{path.parent.parent}: the config lists no inputs or no outputs, and Triton's "
            f"{backend.name} backend does not complete them: declare every input and output"
        )
    inputs, outputs = graph
    batching = all(dims and dims[0] == -1 for _, _, dims in (*inputs, *outputs))
    max_batch_size = model.max_batch_size
    if batching and max_batch_size == 0:
        max_batch_size = DEFAULT_MAX_BATCH_SIZE
    elif not batching and max_batch_size != 0:
        raise InputError(
            f"{path.parent.parent}: autofill failed: the model does not batch (not every input and "
            f"output has a dynamic first dim) while max_batch_size {max_batch_size} is set"
        )
    queue = model.max_queue_delay_us
    if max_batch_size > 1 and queue is None:
        queue = 0  # an empty dynamic_batching {}

    def tensors(found):
        out = []
        for name, dtype, dims in found:
            per_sample = tuple(dims[1:] if max_batch_size > 0 else dims)
            if per_sample:
                out.append(TensorConfig(name, dtype, per_sample))
            else:  # a scalar per sample: dims [1], reshaped to the graph's [] (only with a batch axis)
                out.append(TensorConfig(name, dtype, (1,), () if max_batch_size > 0 else None))
        return tuple(out)

    return replace(
        model,
        max_batch_size=max_batch_size,
        max_queue_delay_us=queue,
        inputs=model.inputs or tensors(inputs),
        outputs=model.outputs or tensors(outputs),
    )

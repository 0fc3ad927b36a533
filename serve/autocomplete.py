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
from zeroserve.errors import InputError
from zeroserve.serve.config import DeployedModel, TensorConfig

DEFAULT_MAX_BATCH_SIZE = 4  # Triton's --backend-config=default-max-batch-size default

GraphIO = tuple[list[tuple[str, str, list[int]]], list[tuple[str, str, list[int]]]]  # (inputs, outputs)


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


def graph_io(path: Path) -> GraphIO:
    """(name, numpy dtype name, dims with -1 where not fixed) of an ONNX graph's inputs (initializers left out,
    as Triton's backend sees them) and outputs; InputError when the file is not ONNX."""
    import onnx

    try:
        graph = onnx.load(str(path), load_external_data=False).graph
    except Exception as exc:  # noqa: BLE001 - protobuf raises several types for a file that is not ONNX
        raise InputError(f"{path} does not load as ONNX ({type(exc).__name__}: {str(exc)[:200]})") from None
    init = {i.name for i in graph.initializer}

    def info(v) -> tuple[str, str, list[int]]:
        tt = v.type.tensor_type
        try:
            dtype = str(onnx.helper.tensor_dtype_to_np_dtype(tt.elem_type))
        except (KeyError, ValueError, TypeError):
            raise InputError(
                f"{path}: tensor {v.name} has an element type Triton cannot name ({tt.elem_type})"
            ) from None
        dims = [d.dim_value if d.HasField("dim_value") else -1 for d in tt.shape.dim]
        return v.name, dtype, dims

    return [info(v) for v in graph.input if v.name not in init], [info(v) for v in graph.output]

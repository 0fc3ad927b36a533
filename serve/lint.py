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
from zeroserve.errors import CheckFailed, InputError
from zeroserve.serve.autocomplete import graph_io
from zeroserve.serve.config import VERSION, WARMUP_DIR, DeployedModel, parse


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


def _lint_onnx(model: DeployedModel, path: Path) -> None:
    try:
        inputs, outputs = graph_io(path)
    except InputError as exc:
        raise CheckFailed(f"{model.name}: {exc}") from None
    for kind, declared, actual in (("input", model.inputs, inputs), ("output", model.outputs, outputs)):
        if [t.name for t in declared] != [name for name, _, _ in actual]:
            raise CheckFailed(
                f"{model.name}: config {kind}s {[t.name for t in declared]} do not match the ONNX "
                f"graph's {[name for name, _, _ in actual]}"
            )
        for t, (_, dtype, graph_dims) in zip(declared, actual):
            if dtype != t.dtype:
                raise CheckFailed(f"{model.name}: {kind} {t.name} is {t.dtype} in the config, {dtype} in the graph")
            config_dims = [-1, *t.graph_dims]  # the batch axis, then what the model sees after reshape
            if len(graph_dims) != len(config_dims):
                raise CheckFailed(
                    f"{model.name}: {kind} {t.name} has rank {len(config_dims)} in the config "
                    f"(batch + {list(t.graph_dims)}) but {len(graph_dims)} in the graph"
                )
            for c, g in zip(config_dims, graph_dims):
                if c != -1 and g != -1 and c != g:
                    raise CheckFailed(
                        f"{model.name}: {kind} {t.name} dims {config_dims} do not fit the graph's {graph_dims}"
                    )


def _lint_onnx_and_warmup(model: DeployedModel, path: Path, folder: Path) -> None:
    _lint_onnx(model, path)
    if model.warmup is not None:
        _run_onnx(model, path, folder)


def _lint_torchscript(model: DeployedModel, path: Path, folder: Path) -> None:
    import torch

    try:
        module = torch.jit.load(str(path), map_location="cpu").eval()
    except Exception as exc:
        raise CheckFailed(f"{model.name}: torch.jit.load failed: {str(exc).strip().splitlines()[0][:200]}") from None
    if model.warmup is None:
        raise CheckFailed(f"{model.name}: no warmup sample to run the TorchScript forward on")
    arrays = _warmup_arrays(model, folder)
    try:
        with torch.no_grad():
            out = module(*(torch.from_numpy(np.ascontiguousarray(a)) for a in arrays))
    except Exception as exc:
        first = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
        raise CheckFailed(
            f"{model.name}: TorchScript forward on the warmup sample, inputs in config order "
            f"{[t.name for t in model.inputs]}, failed: {first}"
        ) from None
    outs = list(out) if isinstance(out, (tuple, list)) else [out]
    _check_outputs(model, [o.numpy() for o in outs], "TorchScript")


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


def _run_onnx(model: DeployedModel, path: Path, folder: Path) -> None:
    """Run the warmup request through ONNX Runtime (CPU) with the config's input names."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    opts.intra_op_num_threads = 1
    try:
        session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        feed = {t.name: a for t, a in zip(model.inputs, _warmup_arrays(model, folder))}
        outs = session.run([t.name for t in model.outputs], feed)
    except CheckFailed:
        raise
    except Exception as exc:
        first = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
        raise CheckFailed(f"{model.name}: ONNX Runtime on the warmup sample failed: {first}") from None
    _check_outputs(model, outs, "ONNX Runtime")


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
    backend.handler.lint(model, path, folder)
    return model

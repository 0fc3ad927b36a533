"""How an exported artifact is run in-process, by runtime: for the gate, the variants' gates and the latency figures."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from zeroserve.artifacts import eager_outputs, output_arrays
from zeroserve.spec import ModelSpec


def onnx_runner(
    path: Path, spec: ModelSpec, threads: int | None = None, providers: tuple[str, ...] = ("CPUExecutionProvider",)
) -> Callable:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    if threads:
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    session = ort.InferenceSession(str(path), opts, providers=list(providers))
    names = [t.name for t in spec.inputs]
    return lambda inputs: session.run(None, dict(zip(names, inputs)))


def torchscript_runner(path: Path, spec: ModelSpec, threads: int | None = None) -> Callable:
    with warnings.catch_warnings():
        warnings.simplefilter(
            "ignore", FutureWarning
        )  # torch.jit is deprecated upstream; Triton's pytorch backend still loads it
        module = torch.jit.load(str(path), map_location="cpu").eval()

    def run(inputs):
        with torch.no_grad():
            return output_arrays(module(*[torch.from_numpy(np.ascontiguousarray(a)) for a in inputs]))

    return run


def eager_runner(model: torch.nn.Module) -> Callable:
    """The trained module itself, as the reference the exported artifacts are measured against."""
    return lambda inputs: eager_outputs(model, inputs, batch_size=len(inputs[0]))


RUNNERS: dict[str, Callable[..., Callable]] = {"onnx": onnx_runner, "torchscript": torchscript_runner}

"""How an exported artifact is run in-process: eager, the reference; a format by its runtime (`handler.runner`)."""

from __future__ import annotations

from collections.abc import Callable

import torch

from zeroserve.artifacts import eager_outputs
from zeroserve.runtimes.onnx import session_runner


def eager_runner(model: torch.nn.Module) -> Callable:
    """The trained module itself, as the reference the exported artifacts are measured against."""
    return lambda inputs: eager_outputs(model, inputs, batch_size=len(inputs[0]))


onnx_runner = session_runner  # the variants' gates run their ONNX files on a given provider

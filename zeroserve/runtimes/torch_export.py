"""torch.export for zeroserve's models: the dynamic shapes a spec declares, and recurrent layers as loops.

Both torch.export paths use this: the dynamo ONNX exporter (`torch.onnx.export(..., dynamo=True)`)
and the pt2 format (`torch.export.export`, then AOTInductor). Two things are needed beyond a plain
`torch.export.export(module, example, dynamic_shapes=...)`:

- Every axis the spec names (batch, time) is `Dim.DYNAMIC`, so one graph serves every batch size
  and sequence length of the gate's grid.
- Recurrent layers keep a dynamic time axis. PyTorch's default decompositions of `aten.rnn_tanh`,
  `aten.rnn_relu`, `aten.gru` and `aten.lstm` unroll a Python loop over the time steps, so
  torch.export specializes the time axis to the example's length ("You marked L['x'].size()[1] as
  dynamic but your code specialized it to be a constant (5)": hello_rnn's nn.RNN). torch 2.14 ships
  while_loop decompositions for GRU and LSTM only (`torch.export._patches`, which the dynamo ONNX
  exporter applies for itself); `rnn_loops()` registers those and the same formulation for the
  Elman RNN (tanh and relu): h_t = act(x_t W_ih^T + b_ih + h_{t-1} W_hh^T + b_hh), one step per
  iteration of a `while_loop`, exactly the recurrence nn.RNN computes.
"""

from __future__ import annotations

import contextlib
import io
import logging
import warnings
from collections.abc import Callable, Iterator
from functools import partial

import numpy as np
import torch

from zeroserve.spec import ModelSpec

EXAMPLE_BATCH = 2  # batch 1 would let torch.export specialize the batch axis to 1
EXAMPLE_TIME = 5


def example(spec: ModelSpec) -> tuple[torch.Tensor, ...]:
    """Seeded example inputs of batch 2 (time 5 for sequence models): what every exporter traces with."""
    time = EXAMPLE_TIME if spec.seq_lengths else None
    rng = np.random.default_rng(0)
    return tuple(torch.from_numpy(a) for a in spec.random_inputs(EXAMPLE_BATCH, rng, time=time))


def dynamic_shapes(spec: ModelSpec) -> tuple[dict[int, object], ...]:
    """One `{axis: Dim.DYNAMIC}` per input, for every axis the spec names (batch included)."""
    return tuple({i: torch.export.Dim.DYNAMIC for i in t.dynamic_axes} for t in spec.inputs)


def _one_layer(inp, hidden, params, has_biases, reverse=False, activation: Callable = torch.tanh):
    """One Elman RNN layer over [time, batch, features] as a while_loop (torch.export._patches' GRU form)."""
    from torch._higher_order_ops.while_loop import while_loop
    from torch.export._patches import _clone_tensors_that_alias

    ih_weight, hh_weight = params[0], params[1]
    ih_bias = params[2] if has_biases else None
    hh_bias = params[3] if has_biases else None
    steps = torch.nn.functional.linear(inp, ih_weight, ih_bias)
    steps = steps.flip(0) if reverse else steps
    hh_weight, hh_bias = _clone_tensors_that_alias((hh_weight, hh_bias))
    start = hidden.unsqueeze(0)
    outputs = torch.empty(steps.size(0), *tuple(start.shape[1:]), dtype=start.dtype, device=start.device)

    def cond_fn(i, out, h):
        return i < steps.size(0)

    def body_fn(idx, out, h):
        i = idx.item()
        torch._check_is_size(i)
        torch._check_is_size(i, max=steps.size(0) - 1)
        h = activation(torch.nn.functional.linear(h, hh_weight, hh_bias) + steps[i])
        out = out.clone()
        out[i] = h.squeeze(0)
        return idx + 1, out, h

    _, out, final = while_loop(cond_fn, body_fn, [torch.tensor(0, dtype=torch.int64), outputs, start])
    return (out.flip(0) if reverse else out), final.squeeze(0)


def _rnn_impl(activation: Callable) -> Callable:
    """`aten.rnn_<activation>.input` with the layers as while_loops (layers and directions as PyTorch's)."""
    from torch._decomp.decompositions import _rnn_helper, gather_params

    def rnn(input, hx, params, has_biases, num_layers, dropout, train, bidirectional, batch_first):
        layer = partial(_one_layer, activation=activation)
        grouped = gather_params(params, has_biases, False)
        hidden = list(hx.unbind(0))
        args = (has_biases, num_layers, dropout, train, bidirectional, batch_first, layer)
        out, finals = _rnn_helper(input, hidden, grouped, *args)
        return out, torch.stack(finals, 0)

    return rnn


@contextlib.contextmanager
def rnn_loops() -> Iterator[None]:
    """Within: RNN, GRU and LSTM layers trace as while_loops, keeping their time axis dynamic."""
    from torch.export._patches import (
        _register_rnn_while_loop_decomposition,
        register_gru_while_loop_decomposition,
        register_lstm_while_loop_decomposition,
    )

    with (
        register_lstm_while_loop_decomposition(),
        register_gru_while_loop_decomposition(),
        _register_rnn_while_loop_decomposition(torch.ops.aten.rnn_tanh.input, _rnn_impl(torch.tanh)),
        _register_rnn_while_loop_decomposition(torch.ops.aten.rnn_relu.input, _rnn_impl(torch.relu)),
    ):
        yield


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """torch's own log lines and warnings silenced: a failure is reported once, by the caller, in one line."""
    logger = logging.getLogger("torch")
    level = logger.level
    logger.setLevel(logging.CRITICAL)
    try:
        # torch.export prints the partial graph of a failed export to sys.stderr itself
        with warnings.catch_warnings(), contextlib.redirect_stderr(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        logger.setLevel(level)


def export_program(spec: ModelSpec, module: torch.nn.Module, device: str = "cpu") -> torch.export.ExportedProgram:
    """`torch.export.export` (non-strict) of `module` with the spec's dynamic axes and recurrent layers as loops."""
    inputs = tuple(t.to(device) for t in example(spec))
    with quiet(), rnn_loops():
        return torch.export.export(module, inputs, dynamic_shapes=dynamic_shapes(spec), strict=False)

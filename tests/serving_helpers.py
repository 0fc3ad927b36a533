"""Shared test helpers for the serving tests: a canonical model folder as deploy writes it (untrained), free ports.

Imported by test modules (tests/ is on sys.path through its conftest); no test imports another test module.
"""

from __future__ import annotations

import dataclasses
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

from zeroserve import registry
from zeroserve.deploy.config import DeployedModel, TensorConfig, Warmup, WarmupInput, render
from zeroserve.records.state import ServerState


def canonical_folder(
    repository: Path, name: str, fmt: str, corrupt: bool = False, warmups: int = 0, parameters: dict | None = None
) -> None:
    """One canonical model folder as deploy writes it (untrained weights; KIND_GPU; TensorRT for ONNX).

    Args:
        warmups: a zeros warmup request run this many times at load (a slow load on purpose).
    """
    spec = registry.get(name)
    torch.manual_seed(0)
    module = spec.build().eval()
    module = spec.export_module(module).eval() if spec.export_module else module
    example = tuple(torch.from_numpy(a) for a in spec.random_inputs(2, np.random.default_rng(0), time=3))
    folder = repository / spec.triton_name(fmt)
    (folder / "1").mkdir(parents=True)
    if fmt == "onnx":
        path = folder / "1" / "model.onnx"
        torch.onnx.export(
            module,
            example,
            path,
            dynamo=False,
            opset_version=17,
            input_names=[t.name for t in spec.inputs],
            output_names=[t.name for t in spec.outputs],
            dynamic_axes={t.name: t.dynamic_axes for t in (*spec.inputs, *spec.outputs)},
        )
    else:
        path = folder / "1" / "model.pt"
        torch.jit.trace(module, example).save(str(path))
    if corrupt:  # a well-formed graph (build-time checks pass) with an op no runtime has: fails at load time
        import onnx

        proto = onnx.load(str(path))
        proto.graph.node[0].op_type = "NoSuchOp"
        onnx.save(proto, str(path))
    model = DeployedModel(
        name=spec.triton_name(fmt),
        backend="onnxruntime" if fmt == "onnx" else "pytorch",
        max_batch_size=spec.max_batch_size,
        inputs=tuple(TensorConfig.from_spec(t) for t in spec.inputs),
        outputs=tuple(TensorConfig.from_spec(t) for t in spec.outputs),
        max_queue_delay_us=100,
        instance_kind="KIND_GPU",
        instance_count=2,
        tensorrt="FP16" if fmt == "onnx" else None,
        parameters=parameters or {},
    )
    if warmups:
        inputs = {t.name: WarmupInput(t.dtype, tuple(1 if d == -1 else d for d in t.dims)) for t in model.inputs}
        model = dataclasses.replace(model, warmup=Warmup("slow", inputs, count=warmups))
    (folder / "config.pbtxt").write_text(render(model))


def three_ports() -> dict[str, int]:
    """Three distinct free ports: every socket is held until all are chosen."""
    socks = [socket.socket() for _ in range(3)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return dict(zip(("http_port", "grpc_port", "metrics_port"), (s.getsockname()[1] for s in socks)))
    finally:
        for s in socks:
            s.close()


def zeroserve(*args: str, cwd: Path | None = None, timeout: float = 300, **env: str) -> subprocess.CompletedProcess:
    """Run the real CLI in a subprocess (`python -m zeroserve ARGS`), wide output, extra environment `env`."""
    return subprocess.run(
        [sys.executable, "-m", "zeroserve", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=timeout,
        env={**os.environ, "COLUMNS": "250", **env},
    )


def wait_for(predicate, timeout: float, step: float = 0.1) -> float | None:
    """Seconds until `predicate()` held, or None when it did not within `timeout` (bounded polling)."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if predicate():
            return time.monotonic() - t0
        time.sleep(step)
    return None


def run_state(run_id: str) -> ServerState:
    """A run's state file as it is now (serve/state.py's path), through its type."""
    from zeroserve.serve import state as st

    return ServerState.load(st.state_path(run_id))

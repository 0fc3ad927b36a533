"""Through the real tritonserver: health, metadata, values against eager PyTorch, batching, bad requests, stop.

Every call goes over HTTP and gRPC with tritonclient. Output *values* are compared with
eager PyTorch from the checkpoint (with numpy 2 this Python backend returned empty
outputs without an error, so a call that merely returns proves nothing).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from serving_helpers import zeroserve  # tests/ is on sys.path (its conftest)
from tritonclient.utils import InferenceServerException

from zeroserve import registry
from zeroserve.artifacts import eager_outputs, load_trained
from zeroserve.client.endpoints import resolve_endpoint
from zeroserve.errors import InputError, ServerError
from zeroserve.serve import state as st
from zeroserve.serve.processes import shm_segments, stubs

pytestmark = pytest.mark.slow

PROTOCOLS = ("http", "grpc")
ATOL, RTOL = 1e-5, 1e-4
TRITON_DTYPES = {"float32": "FP32", "int64": "INT64"}
ALL_NAMES = sorted(s.triton_name(f) for s in registry.REGISTRY.values() for f in ("onnx", "torchscript"))


def client(endpoints, protocol: str):
    if protocol == "http":
        return httpclient.InferenceServerClient(endpoints.http_url, concurrency=1)
    return grpcclient.InferenceServerClient(endpoints.grpc_url)


def wire(spec, arrays: list[np.ndarray]) -> list[np.ndarray]:
    """Graph-shaped arrays as they travel: a per-sample scalar goes as [batch, 1]."""
    return [a.reshape(-1, 1) if t.reshaped else a for t, a in zip(spec.inputs, arrays)]


def infer(c, protocol: str, model: str, named: list[tuple[str, np.ndarray]], output: str | None) -> np.ndarray:
    mod = httpclient if protocol == "http" else grpcclient
    inputs = []
    for name, a in named:
        i = mod.InferInput(name, list(a.shape), TRITON_DTYPES.get(str(a.dtype), "FP64"))
        i.set_data_from_numpy(a, **({"binary_data": True} if protocol == "http" else {}))
        inputs.append(i)
    if output is None:  # a bad request: ask for no output, so only the inputs can be wrong
        return c.infer(model, inputs)
    outputs = [mod.InferRequestedOutput(output, **({"binary_data": True} if protocol == "http" else {}))]
    return c.infer(model, inputs, outputs=outputs).as_numpy(output)


def infer_spec(c, protocol: str, spec, fmt: str, arrays: list[np.ndarray]) -> np.ndarray:
    named = [(t.name, a) for t, a in zip(spec.inputs, wire(spec, arrays))]
    return infer(c, protocol, spec.triton_name(fmt), named, spec.outputs[0].name)


def status_of(exc: InferenceServerException) -> str:
    return str(exc.status())


class _Eager(dict):
    """Trained eager modules by registry name, loaded from the checkpoints on first use."""

    def __init__(self, artifacts: Path):
        super().__init__()
        self.artifacts = artifacts

    def __missing__(self, name: str):
        self[name] = load_trained(registry.get(name), self.artifacts)
        return self[name]


@pytest.fixture(scope="module")
def eager_models(server):
    return _Eager(server.artifacts)


# ---------------------------------------------------------------- health and metadata


def test_all_twenty_models_are_served(server):
    assert sorted(server.models) == ALL_NAMES


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_server_live_ready_and_every_model_ready(server, protocol):
    c = client(server, protocol)
    try:
        assert c.is_server_live() and c.is_server_ready()
        for name in server.models:
            assert c.is_model_ready(name), name
    finally:
        c.close()


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_metadata_and_config_match_the_registry(server, protocol):
    c = client(server, protocol)
    try:
        for name in server.models:
            spec = registry.get(name.rsplit("_", 1)[0])
            if protocol == "http":
                meta, cfg = c.get_model_metadata(name), c.get_model_config(name)
            else:
                meta = json.loads(_to_json(c.get_model_metadata(name, as_json=True)))
                cfg = json.loads(_to_json(c.get_model_config(name, as_json=True)))["config"]
            got_in = {t["name"]: (t["datatype"], [int(d) for d in t["shape"]]) for t in meta["inputs"]}
            want_in = {t.name: (TRITON_DTYPES[t.dtype], [-1, *t.triton_dims]) for t in spec.inputs}
            assert got_in == want_in, name
            got_out = {t["name"]: (t["datatype"], [int(d) for d in t["shape"]]) for t in meta["outputs"]}
            assert got_out == {t.name: (TRITON_DTYPES[t.dtype], [-1, *t.triton_dims]) for t in spec.outputs}, name
            assert int(cfg["max_batch_size"]) == spec.max_batch_size, name
            assert "dynamic_batching" in cfg, name
            reshaped = {t["name"] for t in cfg["input"] if "reshape" in t}
            assert reshaped == {t.name for t in spec.inputs if t.reshaped}, name
    finally:
        c.close()


def _to_json(obj) -> str:
    return obj if isinstance(obj, str) else json.dumps(obj)


# ---------------------------------------------------------------- values


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_every_model_matches_eager_pytorch_at_batch_1_and_a_larger_batch(server, eager_models, protocol):
    rng = np.random.default_rng(4)
    c = client(server, protocol)
    try:
        for name in sorted(server.models):
            spec = registry.get(name.rsplit("_", 1)[0])
            fmt = name.rsplit("_", 1)[1]
            for batch in (1, 13):
                time = max(spec.seq_lengths) if spec.seq_lengths else None
                arrays = spec.random_inputs(batch, rng, time=time)
                got = infer_spec(c, protocol, spec, fmt, arrays)
                want = eager_outputs(eager_models[spec.name], arrays)[0]
                assert got.shape == want.shape, f"{name} batch {batch}: shape {got.shape} != {want.shape}"
                assert np.allclose(got, want, atol=ATOL, rtol=RTOL), (
                    f"{name} batch {batch}: max abs diff {np.max(np.abs(got - want)):.3g}"
                )
    finally:
        c.close()


def _at_once(endpoints, protocol: str, spec, fmt: str, requests: list[list[np.ndarray]]) -> list:
    """Send every request from its own thread at the same moment; each result or exception, in order."""
    results: list = [None] * len(requests)
    barrier = threading.Barrier(len(requests))

    def call(k: int) -> None:
        c = client(endpoints, protocol)
        try:
            barrier.wait(timeout=10)
            results[k] = infer_spec(c, protocol, spec, fmt, requests[k])
        except Exception as exc:  # noqa: BLE001 - returned to the caller's assertions
            results[k] = exc
        finally:
            c.close()

    threads = [threading.Thread(target=call, args=(k,)) for k in range(len(requests))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    return results


def test_concurrent_requests_are_merged_and_each_caller_gets_its_own_rows(start_server, deployed_repository, exported):
    endpoints = start_server(deployed_repository, ["cnn_mnist"], queue_delay_us=50_000)
    spec = registry.get("cnn_mnist")
    model = load_trained(spec, exported[0])
    rng = np.random.default_rng(7)
    for protocol in PROTOCOLS:
        for fmt in ("onnx", "torchscript"):
            name = spec.triton_name(fmt)
            before = _stats(endpoints, name)
            callers = 8
            inputs = [spec.random_inputs(1, rng) for _ in range(callers)]  # one row each: merging is Triton's
            results = _at_once(endpoints, protocol, spec, fmt, inputs)
            for k in range(callers):
                assert not isinstance(results[k], Exception), results[k]
                want = eager_outputs(model, inputs[k])[0]
                assert np.allclose(results[k], want, atol=ATOL, rtol=RTOL), f"{name} caller {k} got others' rows"
            after = _stats(endpoints, name)
            inferences = after["inference_count"] - before["inference_count"]
            executions = after["execution_count"] - before["execution_count"]
            assert inferences == callers
            assert executions < callers, f"{name} over {protocol}: {executions} executions for {callers} requests"


def test_sequences_of_different_lengths_share_one_execute_and_a_bad_one_fails_alone(
    start_server, deployed_repository, exported
):
    endpoints = start_server(deployed_repository, ["hello_rnn", "name_gru"], queue_delay_us=300_000)
    rng = np.random.default_rng(11)
    for model_name in ("hello_rnn", "name_gru"):
        spec = registry.get(model_name)
        model = load_trained(spec, exported[0])
        # One row each, lengths 1..5, and one empty sequence that model.py must refuse on its own.
        good = [spec.random_inputs(1, rng, time=length) for length in range(1, 6)]
        empty = [np.zeros((1, 0, *a.shape[2:]), a.dtype) if a.ndim > 1 else a for a in good[0]]
        for fmt in ("onnx", "torchscript"):
            name = spec.triton_name(fmt)
            before = _stats(endpoints, name)
            results = _at_once(endpoints, "grpc", spec, fmt, [*good, empty])
            for k, arrays in enumerate(good):
                assert not isinstance(results[k], Exception), f"{name} length {k + 1}: {results[k]}"
                want = eager_outputs(model, arrays)[0]
                assert results[k].shape == want.shape and np.allclose(results[k], want, atol=ATOL, rtol=RTOL), (
                    f"{name}: the length-{k + 1} request got another request's answer"
                )
            bad = results[-1]
            assert isinstance(bad, InferenceServerException), bad
            assert status_of(bad) == "StatusCode.INVALID_ARGUMENT" and "empty" in str(bad), str(bad)
            after = _stats(endpoints, name)
            executions = after["execution_count"] - before["execution_count"]
            assert executions < len(good), f"{name}: {executions} executions for {len(good)} requests"


def _stats(endpoints, name: str) -> dict:
    c = httpclient.InferenceServerClient(endpoints.http_url)
    try:
        s = c.get_inference_statistics(name)["model_stats"][0]
    finally:
        c.close()
    return {"inference_count": int(s["inference_count"]), "execution_count": int(s["execution_count"])}


# ---------------------------------------------------------------- bad requests


def _image(batch: int, dtype=np.float32, side: int = 28) -> np.ndarray:
    return np.random.default_rng(0).random((batch, 1, side, 28)).astype(dtype)


BAD_REQUESTS = {
    # case: (model, inputs, words the error must contain, HTTP status, gRPC status)
    "wrong shape": (
        "cnn_mnist_onnx",
        [("image__0", _image(2, side=27))],
        ["shape", "image__0"],
        "400",
        "StatusCode.INVALID_ARGUMENT",
    ),
    "wrong dtype": (
        "cnn_mnist_onnx",
        [("image__0", _image(2, np.float64))],
        ["FP64", "FP32", "image__0"],
        "400",
        "StatusCode.INVALID_ARGUMENT",
    ),
    "batch above max_batch_size": (
        "cnn_mnist_torchscript",
        [("image__0", _image(65))],
        ["batch-size", "64"],
        "400",
        "StatusCode.INVALID_ARGUMENT",
    ),
    "missing input": (
        "name_gru_onnx",
        [("tokens__0", np.ones((2, 5), np.int64))],
        ["missing", "lengths__1"],
        "400",
        "StatusCode.INVALID_ARGUMENT",
    ),
    "unknown model": (
        "no_such_model_onnx",
        [("image__0", _image(1))],
        ["unknown model", "no_such_model_onnx"],
        "404",
        "StatusCode.NOT_FOUND",
    ),
    # Triton itself refuses a [0, ...] batch before it reaches model.py ...
    "empty batch": (
        "cnn_mnist_onnx",
        [("image__0", _image(0))],
        ["image__0", "got 0"],
        "400",
        "StatusCode.INVALID_ARGUMENT",
    ),
    # ... while a zero-length axis does reach model.py, which refuses it (an ORT GRU crashed on one).
    "empty sequence": (
        "name_gru_onnx",
        [("tokens__0", np.ones((2, 0), np.int64)), ("lengths__1", np.ones((2, 1), np.int64))],
        ["tokens__0", "empty"],
        "400",
        "StatusCode.INVALID_ARGUMENT",
    ),
    "empty batch in model.py": (
        "hello_rnn_torchscript",
        [("chars__0", np.zeros((1, 0, 5), np.float32))],
        ["chars__0", "empty"],
        "400",
        "StatusCode.INVALID_ARGUMENT",
    ),
}


@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize("case", list(BAD_REQUESTS))
def test_bad_requests_get_an_error_naming_the_problem_and_the_server_keeps_serving(
    server, eager_models, protocol, case
):
    model, named, words, http_status, grpc_status = BAD_REQUESTS[case]
    c = client(server, protocol)
    try:
        with pytest.raises(InferenceServerException) as info:
            infer(c, protocol, model, named, None)
        message = str(info.value)
        for word in words:
            assert word in message, f"{case}: {word!r} not in {message!r}"
        assert status_of(info.value) == (http_status if protocol == "http" else grpc_status), message
        assert c.is_server_live() and c.is_server_ready()
        spec = registry.get("cnn_mnist")
        arrays = spec.random_inputs(3, np.random.default_rng(1))
        got = infer_spec(c, protocol, spec, "onnx", arrays)
        assert np.allclose(got, eager_outputs(eager_models["cnn_mnist"], arrays)[0], atol=ATOL, rtol=RTOL)
        if model != "no_such_model_onnx":
            assert c.is_model_ready(model)
    finally:
        c.close()


# ---------------------------------------------------------------- ports, stop, status


def test_a_second_server_on_a_taken_port_fails_clearly(server, deployed_repository, free_ports):
    from zeroserve.serve.server import start_server

    http, _, metrics = free_ports()
    with pytest.raises(ServerError, match=rf"http port {server.http_port} on 127.0.0.1 is in use"):
        start_server(
            deployed_repository, ["linear_onnx"], http_port=server.http_port, grpc_port=http, metrics_port=metrics
        )
    proc = zeroserve(
        "serve",
        "--repository",
        str(deployed_repository),
        "--models",
        "linear",
        "--grpc-port",
        str(server.grpc_port),
        "--http-port",
        str(http),
        "--metrics-port",
        str(metrics),
    )
    assert proc.returncode == 3, proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1 and f"grpc port {server.grpc_port}" in proc.stderr and "in use" in proc.stderr
    assert server.handle.alive()


def _gone(procs) -> bool:
    return not [p for p in procs if p.is_running() and p.status() != "zombie"]


def test_stop_leaves_no_server_process_stub_or_shared_memory(start_server, deployed_repository):
    endpoints = start_server(deployed_repository, ["linear", "cnn_mnist_onnx"])
    state = endpoints.handle.state
    server = st.process_of(state.pid, state.create_time)
    found = stubs(state.shm_prefix)
    assert len(found) == 3, found  # one stub per model instance
    assert shm_segments(state.shm_prefix), "the Python backend should hold shared memory while serving"
    report = endpoints.handle.stop()
    assert report["graceful"]
    assert _gone([server, *found]) and not stubs(state.shm_prefix)
    assert not shm_segments(state.shm_prefix)
    assert not st.state_path(state.run_id).exists()
    assert not Path(state.runtime_dir).exists()


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_foreground_serve_stops_everything_on_ctrl_c_or_sigterm(deployed_repository, serve_cache, free_ports, sig):
    import time

    http, grpc, metrics = free_ports()
    cli = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "zeroserve",
            "serve",
            "--repository",
            str(deployed_repository),
            "--models",
            "linear",
            "--http-port",
            str(http),
            "--grpc-port",
            str(grpc),
            "--metrics-port",
            str(metrics),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 180
        state = None
        while time.monotonic() < deadline and cli.poll() is None:
            mine = [s for s in st.list_servers() if s.http_port == http and s.status == st.RUNNING]
            if mine and _ready(http, mine[0].models):
                state = mine[0]
                break
            time.sleep(0.2)
        assert state is not None, "the foreground server never became ready"
        server = st.process_of(state.pid, state.create_time)
        found = stubs(state.shm_prefix)
        assert len(found) == 2
        cli.send_signal(sig)
        out, err = cli.communicate(timeout=60)
    finally:
        if cli.poll() is None:
            cli.kill()
    assert cli.returncode == 0, err
    assert f"stopped pid {state.pid}" in out
    assert _gone([server, *found])
    assert not shm_segments(state.shm_prefix)
    assert not st.state_path(state.run_id).exists()


def _ready(http_port: int, models: list[str]) -> bool:
    c = httpclient.InferenceServerClient(f"127.0.0.1:{http_port}")
    try:
        return all(c.is_model_ready(m) for m in models)
    except Exception:  # noqa: BLE001 - not up yet
        return False
    finally:
        c.close()


def test_a_server_that_died_is_left_alone_by_reads_marked_dead_by_stop_and_keeps_its_log(
    start_server, deployed_repository, exported
):
    endpoints = start_server(deployed_repository, ["linear"])
    state = endpoints.handle.state
    found = stubs(state.shm_prefix)
    os.kill(endpoints.pid, signal.SIGKILL)
    endpoints.handle.process.wait(timeout=10)
    # Reads only read: listing, status and a client command leave the state file, the run and its log.
    assert endpoints.pid not in [s.pid for s in st.list_servers()]
    status = zeroserve("status", "--artifacts", str(exported[0]), "--repository", str(deployed_repository))
    assert status.returncode in (1, 3), status.stderr  # the session's server, which nothing supervises, or none
    assert f"log: {state.log}" in status.stdout.replace("\n", "")
    with contextlib.suppress(InputError):  # what every client command does first
        resolve_endpoint()
    assert json.loads(st.state_path(state.run_id).read_text()) == state.to_json()
    assert Path(state.log).is_file()
    # `stop` marks it dead: stubs ended, shared memory unlinked; the log stays until that server is chosen.
    # (Ports of no server: the session's own server must not be the one stopped.)
    stop = zeroserve("stop", "--http-port", "1", "--json")
    assert stop.returncode == 0, stop.stderr
    report = json.loads(stop.stdout)
    assert state.run_id in [r["run_id"] for r in report["reaped"]] and report["stopped"] == []
    assert state.run_id in [s["run_id"] for s in report["kept"]]
    assert _gone(found) and not shm_segments(state.shm_prefix)
    kept = json.loads(st.state_path(state.run_id).read_text())
    assert kept["status"] == "dead" and "died without a stop" in kept["reason"] and Path(state.log).is_file()
    stop = zeroserve("stop", "--http-port", str(endpoints.http_port), "--json")
    assert stop.returncode == 0 and [s["run_id"] for s in json.loads(stop.stdout)["removed"]] == [state.run_id]
    assert not Path(state.runtime_dir).exists() and not st.state_path(state.run_id).exists()


def test_deploy_then_serve_detached_status_and_stop_through_the_cli(exported, tmp_path, serve_cache, free_ports):
    from zeroserve.deploy.repository import deploy_model

    artifacts = exported[0]
    repository = tmp_path / "model_repository"
    deploy_model(registry.get("cnn_mnist"), artifacts, repository, formats=("onnx",))
    before = _status(artifacts, repository, "--http-port", "1", expect=3)  # a port nothing answers on
    row = _row(before, "cnn_mnist_onnx")
    assert row["trained"]["state"] == "PASS" and row["trained"]["metric"] == "accuracy"
    assert row["exported"]["state"] == "PASS"
    assert row["deployed"]["state"] == "yes" and row["deployed"]["version"] == 1
    assert (
        row["deployed"]["sha256"]
        == json.loads((artifacts / "cnn_mnist" / "export.json").read_text())["formats"]["onnx"]["sha256"]
    )
    assert row["served"]["state"] == "no server"
    assert _row(before, "cnn_mnist_torchscript")["deployed"]["state"] == "no"

    http, grpc, metrics = free_ports()
    proc = zeroserve(
        "serve",
        "--repository",
        str(repository),
        "--detach",
        "--http-port",
        str(http),
        "--grpc-port",
        str(grpc),
        "--metrics-port",
        str(metrics),
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    try:
        mine = [s for s in st.list_servers() if s.http_port == http]
        assert len(mine) == 1 and mine[0].models == ["cnn_mnist_onnx"]
        after = _status(artifacts, repository, "--http-port", str(http))
        assert _row(after, "cnn_mnist_onnx")["served"]["state"] == "READY"
        assert _row(after, "cnn_mnist_torchscript")["served"]["state"] == "not loaded"
    finally:
        stop = zeroserve("stop", "--http-port", str(http), "--json")
    assert stop.returncode == 0, stop.stderr
    report = json.loads(stop.stdout)["stopped"][0]
    assert report["run_id"] == mine[0].run_id and report["graceful"]
    assert not [s for s in st.read_states() if s.http_port == http]
    assert not Path(mine[0].runtime_dir).exists()


def _status(artifacts: Path, repository: Path, *args: str, expect: int = 0) -> dict:
    proc = zeroserve("status", "--artifacts", str(artifacts), "--repository", str(repository), "--json", *args)
    assert proc.returncode == expect, (proc.stderr, proc.stdout[-1500:])
    return json.loads(proc.stdout)


def _row(report: dict, name: str) -> dict:
    return next(r for r in report["models"] if r["triton_name"] == name)

"""`serve --detach` supervised, through the real CLI and a real tritonserver: lockdown, model recovery,
restart after a crash, and a stop in the middle of a restart.

One detached server (cnn_mnist_onnx and linear_onnx) goes through the steps in order; the
restart backoff is set long enough (ZEROSERVE_RESTART_BACKOFF) that a stop lands inside it.
"""

from __future__ import annotations

import json
import os
import signal
import stat
import time
from pathlib import Path

import numpy as np
import psutil
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from serving_helpers import run_state, wait_for, zeroserve  # tests/ is on sys.path (its conftest)
from tritonclient.utils import InferenceServerException

from zeroserve import registry
from zeroserve.client.connection import Client
from zeroserve.client.endpoints import Endpoint
from zeroserve.serve import processes as ps
from zeroserve.serve import state as st
from zeroserve.triton.errors import ModelRecovering

pytestmark = pytest.mark.slow

BACKOFF_S = 3.0


def _answers(http_port: int, model: str) -> bool:
    c = httpclient.InferenceServerClient(f"127.0.0.1:{http_port}", connection_timeout=2.0, network_timeout=2.0)
    try:
        spec = registry.get(model.rsplit("_", 1)[0])
        inputs = []
        for t, a in zip(spec.inputs, spec.safe_inputs(1, None)):
            a = a.reshape(-1, 1) if t.reshaped else a
            i = httpclient.InferInput(t.name, list(a.shape), "FP32" if a.dtype == np.float32 else "INT64")
            i.set_data_from_numpy(a)
            inputs.append(i)
        c.infer(model, inputs)
        return True
    except Exception:  # noqa: BLE001 - a failed or refused request
        return False
    finally:
        c.close()


def _nested_brackets(http_port: int) -> None:
    """The 100 KB body of 50,000 nested `[` that makes tritonserver 2.51 segfault while parsing it."""
    import http.client

    body = (
        b'{"inputs":[{"name":"image__0","shape":[1,1,28,28],"datatype":"FP32","data":'
        + b"[" * 50_000
        + b"]" * 50_000
        + b"}]}"
    )
    conn = http.client.HTTPConnection("127.0.0.1", http_port, timeout=10)
    try:
        conn.request("POST", "/v2/models/cnn_mnist_onnx/infer", body, {"Content-Type": "application/json"})
        conn.getresponse().read()
    except (OSError, http.client.HTTPException):
        pass  # the server died under it
    finally:
        conn.close()


@pytest.fixture
def detached(models, tmp_path, serve_cache, free_ports):
    from zeroserve.deploy.repository import deploy_model

    models.export("cnn_mnist", "linear")  # only the two models this run serves
    artifacts = models.folder
    repository = tmp_path / "model_repository"
    deploy_model(registry.get("cnn_mnist"), artifacts, repository, formats=("onnx",))
    deploy_model(registry.get("linear"), artifacts, repository, formats=("onnx",))
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
        ZEROSERVE_RESTART_BACKOFF=f"{BACKOFF_S},{BACKOFF_S * 4}",
    )
    assert proc.returncode == 0, proc.stderr
    [state] = [s for s in st.list_servers() if s.http_port == http]
    yield state, artifacts, repository
    zeroserve("stop", "--http-port", str(http))


def test_detached_server_is_locked_down_recovers_a_dead_model_and_restarts_after_a_crash(detached, tmp_path):
    state, artifacts, repository = detached
    http, run_id, prefix = state.http_port, state.run_id, state.shm_prefix
    sup = st.process_of(state.supervisor.pid, state.supervisor.create_time)
    assert sup is not None and sup.pid != os.getpid() and os.getsid(sup.pid) == sup.pid  # its own session
    assert _answers(http, "cnn_mnist_onnx") and _answers(http, "linear_onnx")

    # -- no model-control API: unload refused and the model stays served; a file: override does not run.
    c = httpclient.InferenceServerClient(f"127.0.0.1:{http}")
    with pytest.raises(InferenceServerException, match="not allowed"):
        c.unload_model("linear_onnx")
    marker = tmp_path / "ran"
    payload = f"open({str(marker)!r}, 'w').write('x')\n".encode()
    with pytest.raises(InferenceServerException, match="not allowed"):
        c.load_model("linear_onnx", config=json.dumps({"backend": "python"}), files={"file:1/model.py": payload})
    g = grpcclient.InferenceServerClient(f"127.0.0.1:{state.grpc_port}")
    with pytest.raises(InferenceServerException, match="not allowed"):
        g.unload_model("cnn_mnist_onnx")
    time.sleep(1.5)  # past a poll period
    assert not marker.exists() and c.is_model_ready("linear_onnx") and _answers(http, "linear_onnx")
    c.close()
    g.close()
    # shared-memory, logging and trace are restricted to the run's key: it is in the 0600 state file, and on
    # tritonserver's own command line (readable in /proc, docs/serving.md), never in the readable command.txt
    command = Path(state.runtime_dir, "command.txt").read_text()
    assert state.api_key not in command
    # not model-repository: the served server's index stays readable (status, the supervisor)
    for option in ("--http-restricted-api", "--grpc-restricted-protocol"):
        assert f"{option}=shared-memory,logging,trace:zeroserve-key=<api_key" in command
    assert stat.S_IMODE(st.state_path(run_id).stat().st_mode) == 0o600

    # -- private: shared memory 0600, run folder 0700, logs 0600.
    segments = ps.shm_segments(prefix)
    assert segments and all(stat.S_IMODE(s.stat().st_mode) == 0o600 for s in segments), [
        (s.name, oct(s.stat().st_mode)) for s in segments
    ]
    run_dir = Path(state.runtime_dir)
    assert stat.S_IMODE(run_dir.stat().st_mode) == 0o700
    for f in ("server.log", "supervisor.log", "command.txt"):
        assert stat.S_IMODE((run_dir / f).stat().st_mode) == 0o600, f

    # -- a killed stub: the model alone is reloaded; the other keeps answering; status counts it.
    [stub] = [p for p in ps.stubs(prefix) if "/cnn_mnist_onnx/" in p.cmdline()[1]]
    region = ps.stub_regions(prefix)[stub.pid][1]
    stub.send_signal(signal.SIGKILL)
    t0 = time.monotonic()
    # While it recovers, the state and the client say so (Triton itself still calls it READY).
    assert wait_for(lambda: "cnn_mnist_onnx" in st.recovering_models("127.0.0.1", http), 10, step=0.02) is not None
    with Client(Endpoint("127.0.0.1", http, state.grpc_port), "http", 5.0) as cl:
        try:
            cl.require_model("cnn_mnist_onnx")
            refused = False
        except ModelRecovering:
            refused = True
        assert refused or run_state(run_id).recovered == 1  # or the reload was already done
    other_failed = 0
    while not _answers(http, "cnn_mnist_onnx") and time.monotonic() - t0 < 30:
        other_failed += not _answers(http, "linear_onnx")
    assert time.monotonic() - t0 < 30, "cnn_mnist_onnx did not answer again within 30 s of its stub's SIGKILL"
    assert other_failed == 0
    assert wait_for(lambda: run_state(run_id).recovered == 1, 15), run_state(run_id)
    after = run_state(run_id)
    assert after.recoveries[-1].model == "cnn_mnist_onnx" and after.restarts == 0
    assert after.pid == state.pid  # the server itself was not restarted
    assert not (ps.SHM_DIR / region).exists()  # the dead stub's region was unlinked
    report = json.loads(
        zeroserve(
            "status", "--artifacts", str(artifacts), "--repository", str(repository), "--json", "--http-port", str(http)
        ).stdout
    )
    assert report["server"]["recovered"] == 1 and report["server"]["last_recovery"]["model"] == "cnn_mnist_onnx"
    assert report["server"]["model_control"] == "poll" and report["server"]["supervised"]

    # -- tritonserver SIGKILLed: restarted on the same ports, the crash recorded with its log kept.
    os.kill(state.pid, signal.SIGKILL)
    waited = wait_for(lambda: _answers(http, "cnn_mnist_onnx"), 60, step=0.2)
    assert waited is not None and waited < 30, waited
    assert wait_for(lambda: run_state(run_id).status == st.RUNNING, 10)  # written once every model is READY again
    crashed = run_state(run_id)
    assert crashed.restarts == 1 and crashed.pid != state.pid and crashed.http_port == http
    crash = crashed.crashes[-1]
    assert crash.signal == "SIGKILL" and Path(crash.log).is_file() and crash.tail
    status = zeroserve(
        "status", "--artifacts", str(artifacts), "--repository", str(repository), "--http-port", str(http)
    )
    assert status.returncode == 0, status.stderr
    text = " ".join(status.stdout.split())
    assert "restarts: 1" in text and f"log kept: {crash.log}" in text, text

    # -- one request ends Triton 2.51 (50,000 nested '['): a stop in the middle of the restart leaves nothing.
    server_now = psutil.Process(crashed.pid)
    _nested_brackets(http)
    assert wait_for(lambda: not server_now.is_running() or server_now.status() == psutil.STATUS_ZOMBIE, 10)
    assert wait_for(lambda: run_state(run_id).status == st.STARTING, 10), "the supervisor did not see the crash"
    assert run_state(run_id).crashes[-1].signal == "SIGSEGV"
    stop = zeroserve("stop", "--http-port", str(http), "--json")
    assert stop.returncode == 0, stop.stderr
    assert json.loads(stop.stdout)["stopped"][0]["run_id"] == run_id
    time.sleep(BACKOFF_S * 2 + 1)  # past the backoff: nothing was restarted behind the stop
    assert not sup.is_running() and not server_now.is_running()
    assert not ps.run_processes(prefix) and not ps.shm_segments(prefix)
    assert not run_dir.exists() and not st.state_path(run_id).exists()

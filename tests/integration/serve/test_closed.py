"""Closed by default, through the real tritonserver (issue 24): Triton 2.51's shared-memory, logging and trace
APIs restricted to the run's key on both protocols; `serve --allow-client-shm` lets zeroserve's own client use
shared memory; a private explicit-mode server's load API and index are zeroserve's alone.

Each test starts its own small server (linear_onnx): the session server lets zeroserve's client use shared memory.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
import tritonclient.utils.shared_memory as shm
from tritonclient.utils import InferenceServerException

from zeroserve import registry
from zeroserve.client.connection import Client
from zeroserve.client.endpoints import Endpoint
from zeroserve.client.perf.levels import level_count
from zeroserve.records.perf import PerfRecord
from zeroserve.serve import state as st
from zeroserve.triton import restricted
from zeroserve.triton.control import Control
from zeroserve.triton.errors import ApiRestricted, translate

pytestmark = pytest.mark.slow

PROTOCOLS = ("http", "grpc")
MODEL = "linear_onnx"


def _raw(s, protocol: str):
    """A plain tritonclient, as any caller that reaches the port would use it (no key)."""
    if protocol == "http":
        return httpclient.InferenceServerClient(s.http_url)
    return grpcclient.InferenceServerClient(s.grpc_url)


def _refused(call, s, protocol: str, api: str) -> None:
    """`call` is refused as restricted (HTTP 403 / gRPC UNAVAILABLE with Triton's message), which the classifier
    tells from an unreachable server: ApiRestricted, exit 2."""
    with pytest.raises(InferenceServerException) as info:
        call()
    exc = info.value
    if protocol == "http":
        assert exc.status() == "403", (exc.status(), exc.message())
    else:
        assert exc.status() == "StatusCode.UNAVAILABLE" and "This protocol is restricted" in exc.message(), (
            exc.status(),
            exc.message(),
        )
    err = translate(exc, s.http_url if protocol == "http" else s.grpc_url, protocol, api=api)
    assert isinstance(err, ApiRestricted) and err.exit_code == 2 and api in str(err), str(err)


def _answers(s, protocol: str) -> bool:
    spec = registry.get("linear")
    x = spec.safe_inputs(2, None)
    with Client(Endpoint(s.host, s.http_port, s.grpc_port), protocol, 10.0) as c:
        (y,) = c.infer(spec, MODEL, x)
    return y.shape == (2, 1) and np.isfinite(y).all()


def _cli(*args: str, **env) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "zeroserve", *args],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "COLUMNS": "250", **env},
    )


def _perf(s, protocol: str, *extra: str, **env) -> subprocess.CompletedProcess:
    """A small bounded load on loopback: concurrency 1, short windows."""
    return _cli(
        "client",
        "perf",
        "linear",
        "--host",
        s.host,
        "--http-port",
        str(s.http_port),
        "--grpc-port",
        str(s.grpc_port),
        "--protocol",
        protocol,
        "--shared-memory",
        "system",
        "--concurrency",
        "1",
        "--window",
        "0.3",
        "--warmup",
        "0.1",
        "--max-trials",
        "3",
        "--allow-unstable",
        *extra,
        **env,
    )


def test_shared_memory_logging_and_trace_are_refused_without_the_key(deployed_repository, start_server):
    s = start_server(deployed_repository, [MODEL])
    state = st.server_at(s.host, s.http_port)
    # the key: unguessable, in the 0600 state file only; command.txt shows where it is, not what it is
    assert state.restricted_apis == ["shared-memory", "logging", "trace"] and state.allow_client_shm is False
    assert len(state.api_key) == 48
    assert stat.S_IMODE(st.state_path(state.run_id).stat().st_mode) == 0o600
    command = Path(state.runtime_dir, "command.txt").read_text()
    assert state.api_key not in command
    assert f"--http-restricted-api=shared-memory,logging,trace:zeroserve-key={restricted.REDACTED}" in command
    assert f"--grpc-restricted-protocol=shared-memory,logging,trace:zeroserve-key={restricted.REDACTED}" in command
    assert state.api_key not in Path(state.log).read_text()
    # the limit docs/serving.md states: tritonserver's own command line holds it (/proc, same machine)
    assert state.api_key in Path(f"/proc/{state.pid}/cmdline").read_bytes().decode()

    region = f"zs_closed_{os.getpid()}"
    handle = shm.create_shared_memory_region(region, f"/{region}", 64)
    try:
        for protocol in PROTOCOLS:
            c = _raw(s, protocol)
            try:
                _refused(
                    lambda: c.register_system_shared_memory(region, f"/{region}", 64), s, protocol, "shared-memory"
                )
                _refused(lambda: c.get_system_shared_memory_status(), s, protocol, "shared-memory")
                _refused(lambda: c.update_log_settings({"log_verbose_level": 1}), s, protocol, "logging")
                _refused(lambda: c.get_log_settings(), s, protocol, "logging")
                _refused(lambda: c.update_trace_settings(settings={"trace_rate": "1"}), s, protocol, "trace")
                _refused(lambda: c.get_trace_settings(), s, protocol, "trace")
            finally:
                c.close()
            assert _answers(s, protocol)  # inference is not restricted
    finally:
        shm.destroy_shared_memory_region(handle)

    # nothing was changed: asked with the run's key, no region is registered and the log level is still 0
    key = {restricted.HEADER: state.api_key}
    c = httpclient.InferenceServerClient(s.http_url)
    try:
        assert c.get_system_shared_memory_status(headers=key) == []
        assert c.get_log_settings(headers=key)["log_verbose_level"] == 0
    finally:
        c.close()

    # zeroserve's client holds the key back: perf's --shared-memory refuses up front, one line, exit 2
    for protocol in PROTOCOLS:
        url = s.http_url if protocol == "http" else s.grpc_url
        r = _perf(s, protocol)
        assert r.returncode == 2, r.stderr
        assert r.stderr.strip() == (
            f"error: --shared-memory system: the server at {url} keeps Triton's shared-memory API closed; start it "
            "with `zeroserve serve --allow-client-shm` to let zeroserve's client use it, or use --shared-memory none"
        )
        assert "Traceback" not in r.stderr


def test_allow_client_shm_lets_zeroserve_perf_use_shared_memory(deployed_repository, start_server, tmp_path):
    s = start_server(deployed_repository, [MODEL], allow_client_shm=True)
    state = st.server_at(s.host, s.grpc_port)
    assert state.allow_client_shm is True and "shared-memory" in state.restricted_apis
    for protocol in PROTOCOLS:
        r = _perf(s, protocol, "--json")
        assert r.returncode == 0, r.stderr
        rec = PerfRecord.parse(json.loads(r.stdout), "perf --json")
        (lv,) = rec.levels
        assert rec.shared_memory == "system" and level_count(lv, "failed") == 0 and level_count(lv, "ok") > 0
        # still closed to everyone else: a call without the key is refused
        c = _raw(s, protocol)
        try:
            _refused(lambda: c.get_system_shared_memory_status(), s, protocol, "shared-memory")
        finally:
            c.close()
    # a client that cannot read the run's state file (another user's, another cache) gets the server's refusal,
    # classified as restricted (exit 2), not as an unreachable server (exit 3)
    for protocol, code in (("http", "403"), ("grpc", "UNAVAILABLE")):
        url = s.http_url if protocol == "http" else s.grpc_url
        r = _perf(s, protocol, ZEROSERVE_CACHE=str(tmp_path / "another-cache"))
        assert r.returncode == 2, r.stderr
        assert r.stderr.strip() == (
            f"error: the server at {url} restricts Triton's shared-memory API to callers holding its key "
            f"({protocol} {code}): zeroserve's client holds the key only for a server started here with "
            "`zeroserve serve --allow-client-shm`; or use --shared-memory none"
        )
    assert _answers(s, "grpc")


def test_a_private_explicit_server_keeps_its_load_api_and_index_to_zeroserve(deployed_repository, start_server):
    s = start_server(deployed_repository, [MODEL], model_control="explicit")  # loaded through the API, with the key
    state = s.handle.state
    assert state.restricted_apis == ["model-repository", "shared-memory", "logging", "trace"]
    for protocol in PROTOCOLS:
        c = _raw(s, protocol)
        try:
            _refused(lambda: c.get_model_repository_index(), s, protocol, "model-repository")
            _refused(lambda: c.unload_model(MODEL), s, protocol, "model-repository")
            _refused(lambda: c.load_model(MODEL), s, protocol, "model-repository")
            assert c.is_model_ready(MODEL)  # health is not restricted; the refused unload changed nothing
        finally:
            c.close()
        with Client(Endpoint(s.host, s.http_port, s.grpc_port), protocol, 10.0) as zc:
            assert zc.served_models() == [MODEL]  # zeroserve's client sends the key from the state file
        assert _answers(s, protocol)
    # zeroserve's own reads of the index: the server's, status's
    assert s.handle.index()[MODEL]["state"] == "READY"
    assert Control.of(state).states() == {MODEL: "READY"}  # status's read
    # stop's unload goes through: each stub finalized, as the server's log says
    s.handle.stop(keep_run=True)
    assert f"successfully unloaded '{MODEL}'" in Path(state.log).read_text()

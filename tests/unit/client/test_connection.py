"""Endpoints, loopback refusal, statistics parsing and the server-down error (no server needed)."""

from __future__ import annotations

import os
import re
import socket
import threading
import time
from pathlib import Path

import pytest

from zeroserve import registry
from zeroserve.client import connection, endpoints
from zeroserve.client.connection import Client
from zeroserve.client.endpoints import Endpoint
from zeroserve.errors import InputError, ServerError
from zeroserve.records.state import ServerState
from zeroserve.triton.errors import ApiRestricted, RequestFailed, RequestRejected, ServerTimeout, ServerUnreachable


def test_explicit_ports_win(monkeypatch):
    ep = endpoints.resolve_endpoint(None, 9000, 9001)
    assert (ep.host, ep.http_port, ep.grpc_port, ep.source) == ("127.0.0.1", 9000, 9001, "options")
    assert ep.url("grpc") == "127.0.0.1:9001" and ep.url("http") == "127.0.0.1:9000"


def test_no_state_file_falls_back_to_defaults(monkeypatch, tmp_path):
    monkeypatch.setenv("ZEROSERVE_CACHE", str(tmp_path))
    ep = endpoints.resolve_endpoint()
    assert (ep.host, ep.http_port, ep.grpc_port) == ("127.0.0.1", 8000, 8001)


def _running_state(cache: Path, http_port: int, grpc_port: int) -> None:
    """A real state file of a live process (this one), as `serve` writes it."""
    from zeroserve.serve import state

    state.write_state(
        ServerState.model_validate(
            {
                "run_id": state.new_run_id(),
                "pid": os.getpid(),
                "create_time": state.create_time(os.getpid()),
                "host": "127.0.0.1",
                "http_port": http_port,
                "grpc_port": grpc_port,
                "metrics_port": http_port + 2,
                "runtime_dir": str(cache / "runs" / "x"),
                "log": "server.log",
                "models": [],
                "started": "2026-01-01T00:00:00",
                "status": "running",
            }
        )
    )


def test_running_server_state_file_gives_the_ports(monkeypatch, tmp_path):
    monkeypatch.setenv("ZEROSERVE_CACHE", str(tmp_path))
    _running_state(tmp_path, 18000, 18001)
    ep = endpoints.resolve_endpoint()
    assert (ep.http_port, ep.grpc_port) == (18000, 18001) and f"pid {os.getpid()}" in ep.source
    assert endpoints.resolve_endpoint(http_port=9000, protocols=("http",)).http_port == 9000


def test_several_running_servers_must_be_chosen_between(monkeypatch, tmp_path):
    monkeypatch.setenv("ZEROSERVE_CACHE", str(tmp_path))
    _running_state(tmp_path, 18000, 18001)
    _running_state(tmp_path, 28000, 28001)
    with pytest.raises(InputError, match="2 servers are running, choose one with --http-port/--grpc-port"):
        endpoints.resolve_endpoint()


def test_one_port_names_the_server_and_its_state_file_gives_the_other(monkeypatch, tmp_path):
    monkeypatch.setenv("ZEROSERVE_CACHE", str(tmp_path))
    _running_state(tmp_path, 18000, 18001)
    _running_state(tmp_path, 28000, 28001)
    ep = endpoints.resolve_endpoint(http_port=28000)  # `client infer --http-port 28000 --protocol grpc`
    assert (ep.http_port, ep.grpc_port) == (28000, 28001) and f"pid {os.getpid()}" in ep.source
    assert endpoints.resolve_endpoint(grpc_port=18001).http_port == 18000


def test_a_port_given_never_falls_back_to_a_default_port(monkeypatch, tmp_path):
    monkeypatch.setenv("ZEROSERVE_CACHE", str(tmp_path))
    _running_state(tmp_path, 18000, 18001)
    with pytest.raises(InputError, match="--http-port 9 names no running zeroserve server.*give --grpc-port"):
        endpoints.resolve_endpoint(http_port=9, protocols=("grpc",))
    assert endpoints.resolve_endpoint(http_port=9, protocols=("http",)).url("http") == "127.0.0.1:9"


def test_http_port_alone_means_http():
    assert endpoints.choose_protocol(None, http_port=9) == "http"
    assert endpoints.choose_protocol(None, grpc_port=9) == "grpc" and endpoints.choose_protocol(None) == "grpc"
    assert endpoints.choose_protocol("grpc", http_port=9) == "grpc"
    assert endpoints.protocols_meant(None, http_port=9) == ("http",)
    assert endpoints.protocols_meant(None) == endpoints.PROTOCOLS


def test_parse_url():
    assert endpoints.parse_url("127.0.0.1:8001") == ("127.0.0.1", 8001)
    assert endpoints.parse_url("[::1]:8001") == ("::1", 8001)
    assert endpoints.parse_url("http://127.0.0.1:8001") == ("127.0.0.1", 8001)  # a scheme may be given
    assert endpoints.parse_url("http://[::1]:8000/", "http") == ("::1", 8000)
    assert endpoints.parse_url("grpc://[::1]:8001", "grpc") == ("::1", 8001)
    for bad, says in (
        ("127.0.0.1", "HOST:PORT"),
        ("host:port", "HOST:PORT"),
        (":8001", "HOST:PORT"),
        ("h:70000", "port 70000 is not a port"),
        ("h:0", "port 0 is not a port"),
        ("::1:8001", "in brackets"),
        ("[::1]8001", "[IPv6]:PORT"),
        ("https://h:1", "scheme"),
        ("h:8000/v2", "no path"),
    ):
        with pytest.raises(InputError, match=re.escape(says)):
            endpoints.parse_url(bad)
    with pytest.raises(InputError, match="scheme grpc://"):
        endpoints.parse_url("grpc://[::1]:8001", "http")


def test_loopback_only():
    endpoints.require_loopback("127.0.0.1")
    endpoints.require_loopback("localhost")
    for host in ("10.1.2.3", "8.8.8.8"):
        with pytest.raises(InputError, match="not a loopback address"):
            endpoints.require_loopback(host)


def test_perf_refuses_non_loopback_urls():
    from zeroserve.client.perf.run import resolve_urls

    with pytest.raises(InputError, match="loopback"):
        resolve_urls(Endpoint(), "grpc", ["127.0.0.1:8001", "192.168.1.10:8001"])
    assert resolve_urls(Endpoint(), "grpc", ["localhost:9001"]) == ["127.0.0.1:9001"]
    assert resolve_urls(Endpoint(grpc_port=7001), "grpc", None) == ["127.0.0.1:7001"]


def test_parse_statistics_reads_grpc_json_strings_and_http_ints():
    grpc_json = {
        "model_stats": [
            {
                "name": "m",
                "inference_count": "12",
                "execution_count": "6",
                "inference_stats": {
                    "success": {"count": "12", "ns": "999"},
                    "queue": {"count": "12", "ns": "1200"},
                    "compute_infer": {"count": "12", "ns": "24000"},
                },
            },
            {"name": "other", "inference_count": "5"},
        ]
    }
    s = connection.parse_statistics(grpc_json, "m")
    assert s["success_count"] == 12 and s["queue_ns"] == 1200 and s["compute_infer_ns"] == 24000
    assert s["inference_count"] == 12 and s["compute_output_ns"] == 0
    http_json = {
        "model_stats": [
            {"name": "m", "inference_count": 3, "inference_stats": {"success": {"count": 3}, "queue": {"ns": 30}}}
        ]
    }
    assert connection.parse_statistics(http_json, "m")["queue_ns"] == 30
    total = connection.add_statistics([s, s])
    assert total["success_count"] == 24


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # closed again on exit: nothing listens there


@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_server_down_is_unreachable_within_the_timeout(protocol):
    port = _closed_port()
    start = time.monotonic()
    with pytest.raises(
        ServerUnreachable, match=f"no Triton server answered over {protocol} at 127.0.0.1:{port}"
    ) as info:
        with Client(Endpoint("127.0.0.1", port, port), protocol, timeout=3.0) as client:
            client.require_model("linear_onnx")
    assert info.value.exit_code == 3
    assert time.monotonic() - start < 10


@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_a_server_that_accepts_but_never_answers_is_a_timeout_naming_the_option(protocol):
    with socket.socket() as listener:  # a real endpoint that takes the connection and says nothing
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        port = listener.getsockname()[1]
        held: list[socket.socket] = []
        acceptor = threading.Thread(target=lambda: held.append(listener.accept()[0]), daemon=True)
        acceptor.start()
        start = time.monotonic()
        with pytest.raises(ServerTimeout, match=r"did not answer .* within --timeout 1 s") as info:
            with Client(Endpoint("127.0.0.1", port, port), protocol, timeout=1.0) as client:
                client.live()
        assert info.value.exit_code == 3 and not isinstance(info.value, ServerUnreachable)
        assert time.monotonic() - start < 8
        for conn in held:
            conn.close()


def test_perf_against_no_server_fails_fast():
    from zeroserve.client.perf.run import run_perf

    port = _closed_port()
    with pytest.raises(ServerError):
        run_perf(registry.get("linear"), Endpoint("127.0.0.1", port, port), window_s=0.2, timeout=2.0)


def test_refused_request_reads_as_one_clean_line():
    from tritonclient.utils import InferenceServerException

    exc = InferenceServerException(
        "[request id: <id_unknown>] inference request batch-size must be <= 64 for 'm'\nmore",
        status="StatusCode.INVALID_ARGUMENT",
    )
    err = connection.translate(exc, "127.0.0.1:1", "grpc", "m")
    assert isinstance(err, RequestRejected) and err.exit_code == 2 and not isinstance(err, ServerError)
    assert str(err) == (
        "the server at 127.0.0.1:1 refused the grpc request for m (INVALID_ARGUMENT): "
        "inference request batch-size must be <= 64 for 'm'"
    )


@pytest.mark.parametrize(
    "status, outcome, exit_code",
    [
        ("StatusCode.INVALID_ARGUMENT", RequestRejected, 2),
        ("StatusCode.NOT_FOUND", RequestRejected, 2),
        ("400", RequestRejected, 2),
        ("404", RequestRejected, 2),
        ("403", ApiRestricted, 2),
        ("StatusCode.INTERNAL", RequestFailed, 1),
        ("500", RequestFailed, 1),
        ("StatusCode.UNAVAILABLE", ServerUnreachable, 3),
        ("StatusCode.DEADLINE_EXCEEDED", ServerTimeout, 3),
    ],
)
def test_outcome_follows_the_status_code(status, outcome, exit_code):
    from tritonclient.utils import InferenceServerException

    err = connection.translate(InferenceServerException("x", status=status), "127.0.0.1:1", "grpc", "m", 2.0)
    assert type(err) is outcome and err.exit_code == exit_code


def test_a_restricted_api_is_told_from_an_unreachable_server():
    """Triton 2.51 refuses a restricted API with HTTP 403, and over gRPC with UNAVAILABLE, the code of "nothing
    answered": its restricted-protocol message tells the two apart (exit 2 vs 3)."""
    from tritonclient.utils import InferenceServerException

    http = InferenceServerException("This API is restricted, expecting header 'zeroserve-key'", status="403")
    err = connection.translate(http, "127.0.0.1:8000", "http", api="shared-memory")
    assert type(err) is ApiRestricted and err.exit_code == 2 and not isinstance(err, ServerError)
    assert str(err) == (
        "the server at 127.0.0.1:8000 restricts Triton's shared-memory API to callers holding its "
        "key (http 403): zeroserve's client holds the key only for a server started here with "
        "`zeroserve serve --allow-client-shm`; or use --shared-memory none"
    )
    grpc = InferenceServerException(
        "This protocol is restricted, expecting header 'triton-grpc-protocol-zeroserve-key'",
        status="StatusCode.UNAVAILABLE",
    )
    err = connection.translate(grpc, "127.0.0.1:8001", "grpc", api="logging")
    assert type(err) is ApiRestricted and err.exit_code == 2
    assert str(err) == (
        "the server at 127.0.0.1:8001 restricts Triton's logging API to callers holding its key "
        "(grpc UNAVAILABLE): zeroserve's servers keep shared-memory, logging and trace closed "
        "(--allow-client-shm opens shared memory to zeroserve's own client only)"
    )
    down = InferenceServerException("failed to connect to all addresses", status="StatusCode.UNAVAILABLE")
    err = connection.translate(down, "127.0.0.1:8001", "grpc", api="shared-memory")
    assert type(err) is ServerUnreachable and err.exit_code == 3

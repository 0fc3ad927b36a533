"""Endpoints, loopback refusal, statistics parsing and the server-down error (no server needed)."""

from __future__ import annotations

import socket
import time

import pytest

from zeroserve import registry
from zeroserve.client import connection
from zeroserve.client.connection import Client, Endpoint
from zeroserve.errors import InputError, ServerError


def test_explicit_ports_win(monkeypatch):
    ep = connection.resolve_endpoint(None, 9000, 9001)
    assert (ep.host, ep.http_port, ep.grpc_port, ep.source) == ("127.0.0.1", 9000, 9001, "options")
    assert ep.url("grpc") == "127.0.0.1:9001" and ep.url("http") == "127.0.0.1:9000"


def test_no_state_file_falls_back_to_defaults(monkeypatch, tmp_path):
    monkeypatch.setenv("ZEROSERVE_CACHE", str(tmp_path))
    ep = connection.resolve_endpoint()
    assert (ep.host, ep.http_port, ep.grpc_port) == ("127.0.0.1", 8000, 8001)


def test_running_server_state_file_gives_the_ports(monkeypatch):
    from zeroserve.serve import state

    monkeypatch.setattr(state, "resolve_server", lambda host=None, http_port=None, grpc_port=None: {
        "pid": 42, "host": "127.0.0.1", "http_port": 18000, "grpc_port": 18001})
    ep = connection.resolve_endpoint()
    assert (ep.http_port, ep.grpc_port) == (18000, 18001) and "pid 42" in ep.source


def test_several_running_servers_must_be_chosen_between(monkeypatch):
    from zeroserve.serve import state

    def several(**_):
        raise InputError("2 servers are running, choose one with --http-port/--grpc-port: ...")

    monkeypatch.setattr(state, "resolve_server", several)
    with pytest.raises(InputError, match="2 servers are running"):
        connection.resolve_endpoint()


def test_parse_url():
    assert connection.parse_url("127.0.0.1:8001") == ("127.0.0.1", 8001)
    assert connection.parse_url("[::1]:8001") == ("::1", 8001)
    for bad in ("http://127.0.0.1:8001", "127.0.0.1", "host:port", ":8001", "h:70000"):
        with pytest.raises(InputError):
            connection.parse_url(bad)


def test_loopback_only():
    connection.require_loopback("127.0.0.1")
    connection.require_loopback("localhost")
    for host in ("10.1.2.3", "8.8.8.8"):
        with pytest.raises(InputError, match="not a loopback address"):
            connection.require_loopback(host)


def test_perf_refuses_non_loopback_urls():
    from zeroserve.client.perf import resolve_urls

    with pytest.raises(InputError, match="loopback"):
        resolve_urls(Endpoint(), "grpc", ["127.0.0.1:8001", "192.168.1.10:8001"])
    assert resolve_urls(Endpoint(), "grpc", ["localhost:9001"]) == ["127.0.0.1:9001"]
    assert resolve_urls(Endpoint(grpc_port=7001), "grpc", None) == ["127.0.0.1:7001"]


def test_parse_statistics_reads_grpc_json_strings_and_http_ints():
    grpc_json = {"model_stats": [{"name": "m", "inference_count": "12", "execution_count": "6",
                                  "inference_stats": {"success": {"count": "12", "ns": "999"},
                                                      "queue": {"count": "12", "ns": "1200"},
                                                      "compute_infer": {"count": "12", "ns": "24000"}}},
                                 {"name": "other", "inference_count": "5"}]}
    s = connection.parse_statistics(grpc_json, "m")
    assert s["success_count"] == 12 and s["queue_ns"] == 1200 and s["compute_infer_ns"] == 24000
    assert s["inference_count"] == 12 and s["compute_output_ns"] == 0
    http_json = {"model_stats": [{"name": "m", "inference_count": 3, "inference_stats":
                                  {"success": {"count": 3}, "queue": {"ns": 30}}}]}
    assert connection.parse_statistics(http_json, "m")["queue_ns"] == 30
    total = connection.add_statistics([s, s])
    assert total["success_count"] == 24


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # closed again on exit: nothing listens there


@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_server_down_is_a_clear_server_error_within_the_timeout(protocol):
    port = _closed_port()
    start = time.monotonic()
    with pytest.raises(ServerError, match=f"no Triton server answered over {protocol} at 127.0.0.1:{port}") as info:
        with Client(Endpoint("127.0.0.1", port, port), protocol, timeout=3.0) as client:
            client.require_model("linear_onnx")
    assert info.value.exit_code == 3
    assert time.monotonic() - start < 10


def test_perf_against_no_server_fails_fast():
    from zeroserve.client.perf import run_perf

    port = _closed_port()
    with pytest.raises(ServerError):
        run_perf(registry.get("linear"), Endpoint("127.0.0.1", port, port), window_s=0.2, timeout=2.0)


def test_refused_request_reads_as_one_clean_line():
    from tritonclient.utils import InferenceServerException

    exc = InferenceServerException("[request id: <id_unknown>] inference request batch-size must be <= 64 for 'm'\nmore",
                                   status="StatusCode.INVALID_ARGUMENT")
    err = connection.translate(exc, "127.0.0.1:1", "grpc", "m")
    assert isinstance(err, connection.RequestFailed) and err.exit_code == 1
    assert str(err) == "the server at 127.0.0.1:1 refused the grpc request for m: inference request batch-size must be <= 64 for 'm'"
    down = connection.translate(ConnectionRefusedError(111, "Connection refused"), "127.0.0.1:1", "http")
    assert type(down) is ServerError and "no Triton server answered over http" in str(down)

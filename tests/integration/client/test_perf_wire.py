"""The wire-level generator against the real Triton server: its bytes mean what they should, gRPC
streaming and --percentile work, and a server dying mid-level is counted and reported. No timing asserted."""

from __future__ import annotations

import json
import socket
import threading
import time

import numpy as np
import pytest

from zeroserve import registry
from zeroserve.client.connection import Client
from zeroserve.client.endpoints import Endpoint
from zeroserve.client.perf import generator as G
from zeroserve.client.perf import wire
from zeroserve.client.perf.levels import level_count, level_failures
from zeroserve.records.perf import PerfRecord

pytestmark = pytest.mark.slow


def _endpoint(server) -> Endpoint:
    return Endpoint(server.host, server.http_port, server.grpc_port, "test")


def _http_roundtrip(url: str, payload: bytes) -> tuple[int, int | None, bytes]:
    """One request on a plain blocking socket: (status, inference header length, body)."""
    host, port = url.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(payload)
        data = b""
        while b"\r\n\r\n" not in data:
            data += sock.recv(65536)
        head, _, body = data.partition(b"\r\n\r\n")
        headers = {k.strip().lower(): v.strip() for k, v in (line.split(b":", 1) for line in head.split(b"\r\n")[1:])}
        while len(body) < int(headers[b"content-length"]):
            body += sock.recv(65536)
        hl = headers.get(b"inference-header-content-length")
        return int(head.split(b" ")[1]), int(hl) if hl else None, body


@pytest.mark.parametrize("name", ["cnn_mnist", "name_gru"])
@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_triton_reads_the_generators_bytes_as_the_intended_tensors(server, name, protocol):
    """The answer to the pre-encoded bytes equals tritonclient's answer to the same tensors."""
    import grpc
    from tritonclient.grpc import InferResult as GrpcResult
    from tritonclient.grpc import service_pb2
    from tritonclient.http import InferResult as HttpResult

    spec = registry.get(name)
    triton_name = spec.triton_name("onnx")
    arrays = spec.random_inputs(3, np.random.default_rng(7))
    url = server.http_url if protocol == "http" else server.grpc_url
    with Client(_endpoint(server), protocol) as client:
        reference = client.infer(spec, triton_name, arrays)
    expected = wire.expected_outputs([t.name for t in spec.outputs], reference)
    plan = G.LoadPlan(
        G.Tensors(spec.inputs, spec.outputs),
        triton_name,
        protocol,
        [url],
        arrays,
        10.0,
        concurrency=1,
        expected=expected,
    )
    ((template,),) = G.build_templates(plan)
    if protocol == "http":
        answer = _http_roundtrip(url, template.payload)
        wire.check_http(template, answer)  # status, decode, shapes
        result = HttpResult.from_response_body(answer[2], header_length=answer[1])
    else:
        with grpc.insecure_channel(url) as channel:
            body = channel.unary_unary(wire.INFER_METHOD)(template.payload, timeout=10)
        wire.check_grpc(template, body)
        result = GrpcResult(service_pb2.ModelInferResponse.FromString(body))
    for t, want in zip(spec.outputs, reference):
        assert np.allclose(result.as_numpy(t.name), want, rtol=1e-6, atol=1e-6)


def test_streaming_and_percentile_through_the_cli(server, tmp_path):
    from client_helpers import cli, need, ports, well_formed

    need(server, "cnn_mnist")
    result = cli(
        "perf",
        "cnn_mnist",
        "--streaming",
        "--percentile",
        "95",
        "--concurrency",
        "1,3",
        "--window",
        "0.3",
        "--warmup",
        "0.1",
        "--max-trials",
        "3",
        "--allow-unstable",
        *ports(server),
        "--json",
    )
    assert result.exit_code == 0, result.output
    rec = PerfRecord.parse(json.loads(result.stdout), "perf --json")
    assert rec.streaming is True and rec.latency_metric == "p95_ms"
    for lv in rec.levels:
        well_formed(lv, lv.concurrency)
        assert lv.latency_metric == "p95_ms" and all(w.figure("p95_ms") >= 0 for w in lv.windows)
        assert lv.p90_ms <= lv.p95_ms <= lv.p99_ms
        assert level_count(lv) == 0 and level_count(lv, "requests") >= lv.requests
        assert lv.client.cpu_us > 0 and lv.client.check_us > 0
    bad = cli("perf", "cnn_mnist", "--streaming", "--protocol", "http", *ports(server))
    assert bad.exit_code == 2 and "--streaming" in bad.output


def test_http_level_counts_every_request_and_reports_the_client_side(server):
    from client_helpers import need, well_formed

    from zeroserve.client.perf.run import run_perf

    need(server, "linear")
    rec = run_perf(
        registry.get("linear"),
        _endpoint(server),
        protocol="http",
        concurrency=[2],
        window_s=0.3,
        warmup_s=0.1,
        max_trials=3,
        allow_unstable=True,
    )
    (lv,) = rec.levels
    well_formed(lv, 2)
    assert rec.outcome.to_json() == {"exit_code": 0, "reason": ""}
    every = level_count(lv, "requests")
    assert every == lv.warmup.requests + lv.totals.requests + lv.drain.requests
    assert lv.totals.requests >= lv.requests
    assert lv.client.send_us > 0 and lv.client.cpu_us >= lv.client.check_us


def test_a_deadline_starts_no_level_after_it_and_says_the_run_was_cut(server):
    from test_client import need

    from zeroserve.client.perf.run import run_perf

    need(server, "linear")
    short = dict(protocol="http", window_s=0.2, warmup_s=0.1, max_trials=3, allow_unstable=True)
    rec = run_perf(
        registry.get("linear"), _endpoint(server), concurrency=[1, 2], deadline=time.monotonic() + 600, **short
    )
    assert [lv.concurrency for lv in rec.levels] == [1, 2] and rec.cut_short is False
    rec = run_perf(
        registry.get("linear"), _endpoint(server), latency_budget_ms=1000.0, deadline=time.monotonic(), **short
    )
    assert rec.levels == [] and rec.best is None and rec.cut_short is True


@pytest.mark.parametrize("protocol,concurrency", [("http", "2"), ("grpc", "3")])
def test_a_server_dying_mid_level_is_counted_exit_3_and_the_report_written(
    start_server, deployed_repository, tmp_path, protocol, concurrency
):
    from test_client import cli, ports

    endpoints = start_server(deployed_repository, ["linear"])
    outcome: dict = {}

    def run() -> None:
        outcome["result"] = cli(
            "perf",
            "linear",
            "--protocol",
            protocol,
            "--concurrency",
            concurrency,
            "--window",
            "1.0",
            "--warmup",
            "0.2",
            "--max-trials",
            "30",
            "--stability",
            "0.001",
            "--timeout",
            "3",
            *ports(endpoints),
            "--report",
            str(tmp_path / "rep"),
        )

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    time.sleep(2.5)
    endpoints.handle.stop()
    thread.join(60)
    assert not thread.is_alive(), "perf hung after the server stopped"
    result = outcome["result"]
    assert result.exit_code == 3, result.output
    assert "stopped answering during the run" in result.output and "Traceback" not in result.output
    rec = PerfRecord.load(tmp_path / "rep" / "perf.json")
    (lv,) = rec.levels
    assert lv.server_lost and rec.outcome.exit_code == 3
    assert level_count(lv, "ok") > 0
    kinds, _ = level_failures(lv)
    # a stopping Triton first unloads its models (http_404 / grpc_NOT_FOUND...), then refuses connections
    assert kinds and level_count(lv) == sum(kinds.values())


def test_http_open_loop_with_shared_memory_from_two_workers(server):
    from client_helpers import need, well_formed

    from zeroserve.client.perf.run import run_perf

    need(server, "cnn_mnist")
    rec = run_perf(
        registry.get("cnn_mnist"),
        _endpoint(server),
        protocol="http",
        request_rate=[200.0],
        shared_memory="system",
        workers=2,
        window_s=0.4,
        warmup_s=0.6,
        max_trials=3,
        allow_unstable=True,
    )
    (lv,) = rec.levels
    well_formed(lv)
    assert rec.outcome.exit_code == 0 and level_count(lv) == 0
    assert lv.achieved_rate and lv.achieved_rate > 0 and rec.shared_memory == "system" and rec.workers == 2

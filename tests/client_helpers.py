"""Shared helpers of the client tests through a real server: the CLI runner, the endpoint options, checks."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from zeroserve.records.perf import PerfLevel


def cli(*args: str):
    from zeroserve.app.cli import app

    return CliRunner().invoke(app, ["client", *args])


def ports(endpoints) -> list[str]:
    return ["--host", endpoints.host, "--http-port", str(endpoints.http_port), "--grpc-port", str(endpoints.grpc_port)]


def need(endpoints, *names: str) -> None:
    missing = [n for n in names if f"{n}_onnx" not in endpoints.models]
    if missing:
        pytest.fail(f"the session server does not serve {', '.join(missing)}")


def well_formed(level: PerfLevel | dict, concurrency: int | None = None) -> None:
    """A measured level's figures hang together (a level of a typed record, or of the JSON perf printed)."""
    lv = level if isinstance(level, PerfLevel) else PerfLevel.model_validate(level)
    assert lv.p50_ms <= lv.p90_ms <= lv.p95_ms <= lv.p99_ms <= lv.max_ms
    assert 0 < lv.mean_ms <= lv.max_ms
    assert lv.requests == lv.ok + lv.failed > 0
    used = lv.windows[-lv.windows_used :]
    assert sum(w.requests for w in used) == lv.requests
    assert lv.failed == 0 and lv.throughput > 0
    split = lv.server
    assert split is not None and split.requests > 0 and split.compute_infer_us > 0
    assert min(split.queue_us, split.compute_input_us, split.compute_output_us) >= 0
    # the server saw about what the client counted (only requests in flight at a boundary differ)
    assert abs(split.requests - lv.ok) <= max(lv.ok * 0.5, 4 * (concurrency or 1))
    assert lv.generator_cpu >= 0


# the CSV headers perf_analyzer 2.60 wrote here for `-f FILE` (../shared/tools/perf_analyzer.sh against the
# embedded server, cnn_mnist_onnx; HTTP and gRPC alike)
PA_CONCURRENCY = (
    "Concurrency,Inferences/Second,Client Send,Network+Server Send/Recv,Server Queue,Server Compute Input,"
    "Server Compute Infer,Server Compute Output,Client Recv,p50 latency,p90 latency,p95 latency,p99 latency"
)
PA_RATE = "Request Rate" + PA_CONCURRENCY.removeprefix("Concurrency")  # --request-rate-range
PA_VERBOSE = ",Avg latency,request/response,response wait"  # added by --verbose-csv
PA_METRICS = ",Avg GPU Utilization,Avg GPU Power Usage,Max GPU Memory Usage,Total GPU Memory"  # and --collect-metrics
# a row perf_analyzer wrote with --verbose-csv --collect-metrics on this GPU-less machine: four empty cells
PA_METRICS_ROW = "1,2179.84,35,140,59,13,168,36,0,398,520,547,2120,453,35,416,,,,"

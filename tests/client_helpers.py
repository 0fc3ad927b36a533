"""Shared helpers of the client tests through a real server: the CLI runner, the endpoint options, checks."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner


def cli(*args: str):
    from zeroserve.app.cli import app

    return CliRunner().invoke(app, ["client", *args])


def ports(endpoints) -> list[str]:
    return ["--host", endpoints.host, "--http-port", str(endpoints.http_port), "--grpc-port", str(endpoints.grpc_port)]


def need(endpoints, *names: str) -> None:
    missing = [n for n in names if f"{n}_onnx" not in endpoints.models]
    if missing:
        pytest.fail(f"the session server does not serve {', '.join(missing)}")


def well_formed(level: dict, concurrency: int | None = None) -> None:
    assert level["p50_ms"] <= level["p90_ms"] <= level["p95_ms"] <= level["p99_ms"] <= level["max_ms"]
    assert 0 < level["mean_ms"] <= level["max_ms"]
    assert level["requests"] == level["ok"] + level["failed"] > 0
    used = level["windows"][-level["windows_used"] :]
    assert sum(w["requests"] for w in used) == level["requests"]
    assert level["failed"] == 0 and level["throughput"] > 0
    split = level["server"]
    assert split["requests"] > 0 and split["compute_infer_us"] > 0
    assert all(split[f"{p}_us"] >= 0 for p in ("queue", "compute_input", "compute_output"))
    # the server saw about what the client counted (only requests in flight at a boundary differ)
    assert abs(split["requests"] - level["ok"]) <= max(level["ok"] * 0.5, 4 * (concurrency or 1))
    assert level["generator_cpu"] >= 0


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

"""The server's own figures and the engine's floor, through the real server: perf's levels carry the metrics
endpoint's counts (matching the client's), the process tree's CPU and memory and the engine measured on;
--floor measures the no-op twin (served, or on a private server) beside the model; status shows the counts.
No timing is asserted."""

from __future__ import annotations

import json

import numpy as np
import pytest
from client_helpers import cli, need, ports  # tests/ is on sys.path (its conftest)
from typer.testing import CliRunner

from zeroserve import registry
from zeroserve.app.cli import app
from zeroserve.client.connection import Client
from zeroserve.client.endpoints import Endpoint
from zeroserve.client.perf import metrics as PM
from zeroserve.client.perf import report
from zeroserve.client.perf.levels import level_count
from zeroserve.client.perf.run import run_perf
from zeroserve.serve import metrics as M
from zeroserve.serve import state as st

pytestmark = pytest.mark.slow
SHORT = ["--window", "0.3", "--warmup", "0.2", "--max-trials", "3", "--allow-unstable"]


def _endpoint(server) -> Endpoint:
    return Endpoint(server.host, server.http_port, server.grpc_port, "test")


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_each_level_has_the_servers_count_matching_the_clients_and_its_process_tree(server, protocol):
    need(server, "cnn_mnist")
    rec = run_perf(
        "cnn_mnist",
        _endpoint(server),
        protocol=protocol,
        concurrency=[1, 4],
        window_s=0.3,
        warmup_s=0.2,
        max_trials=3,
        allow_unstable=True,
    )
    for lv in rec.levels:
        m = lv.server_metrics
        assert m is not None
        # every request the client sent in the level (warm-up, windows, drain), counted by the server too
        assert m.requests == level_count(lv, "requests") == m.client_requests and m.agrees, m
        assert m.success == level_count(lv, "ok") and m.failure == 0
        assert m.inferences == m.success and (m.avg_compute_infer_us or 0) > 0 and (m.avg_queue_us or 0) >= 0
        assert m.endpoints == [f"http://127.0.0.1:{server.metrics_port}/metrics"] and m.gpu == {}
        res = lv.server_resources
        assert res is not None and (res.processes or 0) >= 2 and res.rss_mb > 10 and res.cpu_cores > 0
    assert not any(n.startswith("warning: at") for n in rec.notes)
    engine = rec.measured_on.engine_detail if rec.measured_on else None
    assert engine is not None
    assert (engine.kind, engine.backend, engine.runtime) == ("embedded", "python", "onnxruntime")
    assert engine.triton == "2.51.0"  # the server's own metadata


def test_traffic_from_elsewhere_during_a_level_is_a_warning_naming_both_counts(server, monkeypatch):
    """Another client sends to the same model before the level's last read: the server counts more than perf sent."""
    need(server, "softmax_mnist")
    spec = registry.get("softmax_mnist")
    arrays = spec.random_inputs(1, np.random.default_rng(0))
    original = PM.LevelMetrics.settle
    with Client(_endpoint(server), "http") as other:

        async def settle_after_traffic(self, client_requests):
            for _ in range(5):
                other.infer(spec, "softmax_mnist_onnx", arrays)
            self.after = [await self._read(i) for i in range(len(self.sources))]
            await original(self, client_requests)

        monkeypatch.setattr(PM.LevelMetrics, "settle", settle_after_traffic)
        rec = run_perf(
            "softmax_mnist",
            _endpoint(server),
            protocol="http",
            concurrency=[1],
            window_s=0.2,
            warmup_s=0.1,
            max_trials=3,
            allow_unstable=True,
        )
    m = rec.levels[0].server_metrics
    assert m is not None and m.requests == (m.client_requests or 0) + 5 and not m.agrees
    warning = next(n for n in rec.notes if n.startswith("warning: at concurrency 1"))
    assert f"counted {m.requests} requests" in warning and f"client sent {m.client_requests}" in warning


def test_floor_measures_the_twin_on_a_private_server_when_the_serving_one_lacks_it(server, tmp_path):
    need(server, "cnn_mnist")
    assert "cnn_mnist_onnx_noop" not in server.models
    out = cli("perf", "cnn_mnist", *ports(server), "--protocol", "http", "--concurrency", "1,2", "--floor", *SHORT,
              "--report", str(tmp_path / "rep"), "--json")  # fmt: skip
    assert out.exit_code == 0, out.output
    rec = json.loads(out.stdout)
    floor = rec["floor"]
    assert floor["triton_model"] == "cnn_mnist_onnx_noop" and "private embedded server" in floor["server"]
    assert [lv["concurrency"] for lv in floor["levels"]] == [lv["concurrency"] for lv in rec["levels"]] == [1, 2]
    assert all(lv["ok"] > 0 and lv["failed"] == 0 for lv in floor["levels"])
    assert floor["measured_on"]["engine_detail"]["runtime"] == "none"  # the twin runs no model
    for pair, model, twin in zip(floor["comparison"], rec["levels"], floor["levels"]):
        assert pair["model_p50_ms"] == model["p50_ms"] and pair["floor_p50_ms"] == twin["p50_ms"]
        assert pair["added_p50_ms"] == pytest.approx(model["p50_ms"] - twin["p50_ms"])
        assert pair["throughput_ratio"] == pytest.approx(model["throughput"] / twin["throughput"])
    # the private server is gone, the serving one untouched
    assert not [s for s in st.list_servers() if s.model_control == "explicit"]
    assert "cnn_mnist_onnx_noop" not in (M.read(f"http://127.0.0.1:{server.metrics_port}/metrics")["models"])
    page = (tmp_path / "rep" / "perf.html").read_text()
    assert "floor (cnn_mnist_onnx_noop, no-op)" in page and "measured on embedded Triton 2.51.0" in page


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_floor_uses_the_twin_the_serving_server_has(deployed_repository, start_server, protocol):
    served = start_server(deployed_repository, ["softmax_mnist_onnx"], noop_of=["softmax_mnist_onnx"])
    assert "softmax_mnist_onnx_noop" in served.models
    out = cli("perf", "softmax_mnist", *ports(served), "--protocol", protocol, "--concurrency", "1", "--floor", *SHORT)
    assert out.exit_code == 0, out.output
    assert "softmax_mnist_onnx beside its floor (softmax_mnist_onnx_noop, the serving server)" in out.stdout
    counted = M.read(f"http://127.0.0.1:{served.metrics_port}/metrics")["models"]
    assert counted["softmax_mnist_onnx_noop"]["success"] > 0 and counted["softmax_mnist_onnx"]["success"] > 0


def test_floor_refuses_a_budget_search(server):
    out = cli("perf", "cnn_mnist", *ports(server), "--latency-budget-ms", "5", "--floor")
    assert out.exit_code == 2 and "--floor measures fixed levels" in out.output


def test_status_shows_each_models_requests_and_failures_after_traffic_and_the_servers_process_tree(server):
    need(server, "logistic")
    spec = registry.get("logistic")

    def status() -> dict:
        out = CliRunner().invoke(app, ["status", "--json", "--http-port", str(server.http_port)])
        return json.loads(out.stdout)["server"]["figures"]

    before = status()["models"]["logistic_onnx"]
    with Client(_endpoint(server), "grpc") as client:
        for _ in range(7):
            client.infer(spec, "logistic_onnx", spec.random_inputs(2, np.random.default_rng(1)))
    after = status()
    m = after["models"]["logistic_onnx"]
    assert m["success"] - before["success"] == 7 and m["failure"] == before["failure"]
    assert m["requests"] == m["success"] + m["failure"]
    assert m["inferences"] - before["inferences"] == 14  # two samples a request
    res = after["resources"]
    assert res["processes"] >= 2 and res["rss_mb"] > 10
    out = CliRunner().invoke(app, ["status", "--http-port", str(server.http_port)])
    assert f"logistic_onnx: {m['requests']} requests since start" in out.stdout
    assert "server process tree (tritonserver and" in out.stdout


def test_a_report_from_a_real_run_has_the_panels(server, tmp_path):
    need(server, "cnn_mnist")
    rec = run_perf("cnn_mnist", _endpoint(server), protocol="grpc", concurrency=[1, 2], window_s=0.3,
                   warmup_s=0.2, max_trials=3, allow_unstable=True)  # fmt: skip
    fig = report.perf_figure(rec)
    assert [ax.get_title() for ax in fig.axes][2:] == ["server CPU vs throughput", "server memory vs throughput"]
    assert len(fig.axes[2].get_lines()[0].get_xdata()) == 2  # one point per level, from the process tree
    paths = report.write_report(rec, tmp_path)
    assert paths["png"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

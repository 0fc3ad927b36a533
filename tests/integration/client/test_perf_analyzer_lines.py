"""perf_analyzer command lines through `client perf` against the real server, its -f CSV read as perf_analyzer's.

The headers are the ones perf_analyzer 2.60 wrote here (tests/client_helpers.py). Windows are short
and levels may be kept unstable (`--allow-unstable`, a zeroserve option a perf_analyzer line may add):
these tests check what the line means and what the CSV holds, not the figures.
"""

from __future__ import annotations

import csv
import json

import pytest
from client_helpers import PA_CONCURRENCY, PA_METRICS, PA_RATE, PA_VERBOSE, cli, need, ports  # tests/ on sys.path

QUICK = ("-p", "300", "-s", "50", "-r", "4", "--allow-unstable")  # 0.3 s windows, 50%: quick, not a benchmark


def _run(server, *args: str):
    need(server, "cnn_mnist")
    res = cli("perf", "-m", "cnn_mnist_onnx", *QUICK, "--json", *args)
    assert res.exit_code == 0, res.output
    return json.loads(res.stdout)


def _csv(path) -> tuple[str, list[dict]]:
    text = path.read_text()
    return text.splitlines()[0], list(csv.DictReader(text.splitlines()))


def test_a_concurrency_range_over_http_writes_perf_analyzers_csv(server, tmp_path):
    out = tmp_path / "out.csv"
    rec = _run(server, "-u", f"127.0.0.1:{server.http_port}", "--concurrency-range", "1:3:2", "-f", str(out))
    # perf_analyzer's defaults and units: HTTP, ms windows, percent stability, no warm-up
    assert rec["protocol"] == "http" and rec["window_s"] == 0.3 and rec["stability"] == 0.5
    assert rec["options"]["warmup_s"] == 0.0 and rec["latency_metric"] == "mean_ms"
    assert [lv["concurrency"] for lv in rec["levels"]] == [1, 3]
    header, rows = _csv(out)
    assert header == PA_CONCURRENCY
    assert [float(r["Inferences/Second"]) for r in rows] == sorted(float(r["Inferences/Second"]) for r in rows)
    by_c = {lv["concurrency"]: lv for lv in rec["levels"]}
    for r in rows:
        lv = by_c[int(r["Concurrency"])]
        assert float(r["Inferences/Second"]) == pytest.approx(lv["throughput"], rel=1e-5)
        assert int(r["p99 latency"]) == int(lv["p99_ms"] * 1000) and int(r["p50 latency"]) <= int(r["p99 latency"])
        assert int(r["Server Compute Infer"]) > 0 and all(int(r[k]) >= 0 for k in r if k != "Inferences/Second")


def test_a_request_rate_range_over_grpc_with_the_verbose_csv(server, tmp_path):
    out = tmp_path / "rate.csv"
    u = f"127.0.0.1:{server.grpc_port}"
    rec = _run(server, "-i", "grpc", "-u", u, "--request-rate-range", "100:200:100", "-f", str(out), "--verbose-csv")
    assert rec["protocol"] == "grpc" and rec["mode"] == "request_rate"
    header, rows = _csv(out)
    assert header == PA_RATE + PA_VERBOSE
    assert sorted(float(r["Request Rate"]) for r in rows) == [100.0, 200.0]
    for r in rows:  # perf_analyzer's verbose split: request/response + response wait = the average
        assert int(r["request/response"]) + int(r["response wait"]) == int(r["Avg latency"])


def test_a_binary_search_within_a_latency_threshold(server, tmp_path):
    out = tmp_path / "search.csv"
    u = f"127.0.0.1:{server.http_port}"
    rec = _run(server, "-u", u, "--concurrency-range", "1:4", "--binary-search", "-l", "1000", "-f", str(out))
    assert rec["mode"] == "latency_budget" and rec["latency_budget_ms"] == 1000 and rec["best"] == 4
    assert max(lv["concurrency"] for lv in rec["levels"]) == 4  # the range's end bounds the search
    header, rows = _csv(out)
    assert header == PA_CONCURRENCY and sorted(int(r["Concurrency"]) for r in rows) == sorted(
        lv["concurrency"] for lv in rec["levels"]
    )
    # -l alone: the sweep stops after the first level over it, and -f keeps only the levels within it
    rec = _run(server, "-u", u, "--concurrency-range", "1:3", "-l", "0.001", "-f", str(out))
    assert [lv["concurrency"] for lv in rec["levels"]] == [1]
    assert out.read_text() == PA_CONCURRENCY + "\n"


def test_gpu_metric_columns_only_with_verbose_csv_and_collect_metrics(server, tmp_path):
    out = tmp_path / "metrics.csv"
    u = f"127.0.0.1:{server.http_port}"
    _run(server, "-u", u, "-f", str(out), "--verbose-csv", "--collect-metrics")
    header, rows = _csv(out)
    assert header == PA_CONCURRENCY + PA_VERBOSE + PA_METRICS and out.read_text().splitlines()[1].endswith(",,,,")
    _run(server, "-u", u, "-f", str(out), "--collect-metrics")
    assert _csv(out)[0] == PA_CONCURRENCY


def test_a_refused_flag_and_a_mixed_line_exit_2_before_any_load(server):
    u = f"127.0.0.1:{server.http_port}"
    res = cli("perf", "-m", "cnn_mnist_onnx", "-u", u, "--max-threads", "4")
    assert res.exit_code == 2 and "perf_analyzer's --max-threads is not supported" in res.output
    assert "use --workers" in res.output
    res = cli("perf", "-m", "cnn_mnist_onnx", "-u", u, "--window", "1")
    assert res.exit_code == 2 and "use -p/--measurement-interval (ms) instead" in res.output
    res = cli("perf", "-m", "cnn_mnist_onnx", *ports(server))
    assert res.exit_code == 2 and "use -u HOST:PORT instead" in res.output


@pytest.mark.parametrize(("extra", "says"), [((), "average latency"), (("--percentile", "95"), "p95 latency")])
def test_the_budget_line_names_the_latency_the_search_used(server, extra, says):
    need(server, "cnn_mnist")
    quick = ("--window", "0.3", "--stability", "0.5", "--max-trials", "4", "--allow-unstable")
    res = cli(
        "perf", "cnn_mnist", "--latency-budget-ms", "1000", "--max-concurrency", "2", *quick, *extra, *ports(server)
    )
    assert res.exit_code == 0, res.output
    assert f"highest concurrency with {says} ≤ 1000 ms: 2" in res.stdout

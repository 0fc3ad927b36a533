"""Renderings of a synthetic perf record: CSV, PNG, HTML, and the CLI table."""

from __future__ import annotations

import base64
import csv
import io

from zeroserve.client.perf import report


def _level(c, tp, p50):
    return {
        "concurrency": c,
        "request_rate": None,
        "throughput": tp,
        "requests_per_s": tp,
        "p50_ms": p50,
        "p90_ms": p50 * 1.5,
        "p95_ms": p50 * 1.8,
        "p99_ms": p50 * 2,
        "max_ms": p50 * 4,
        "mean_ms": p50 * 1.1,
        "requests": 100 * c,
        "ok": 100 * c,
        "failed": 0,
        "stable": True,
        "trials": 3,
        "generator_cpu": 0.3,
        "loop_cpu": 0.2,
        "send_lag_p99_ms": 0.0,
        "windows": [],
        "server": {
            "queue_us": 10.0,
            "compute_input_us": 5.0,
            "compute_infer_us": 100.0,
            "compute_output_us": 3.0,
            "requests": 100 * c,
        },
    }


def record():
    return {
        "model": "cnn_mnist",
        "triton_model": "cnn_mnist_onnx",
        "protocol": "grpc",
        "format": "onnx",
        "urls": ["127.0.0.1:8001"],
        "batch_size": 1,
        "input": "random",
        "shared_memory": "none",
        "mode": "concurrency",
        "distribution": None,
        "latency_budget_ms": None,
        "best": None,
        "window_s": 1.0,
        "stability": 0.1,
        "max_trials": 10,
        "started": "now",
        "levels": [_level(1, 1000.0, 0.9), _level(4, 2500.0, 1.5)],
        "notes": ["this machine has 2 cores shared by the server and the load generator <b>"],
    }


def test_csv_has_one_row_per_level():
    rows = list(csv.DictReader(io.StringIO(report.to_csv(record()))))
    assert [r["concurrency"] for r in rows] == ["1", "4"]
    assert rows[1]["server_compute_infer_us"] == "100.0" and rows[0]["p99_ms"] == "1.8"


def test_report_folder_is_self_contained(tmp_path):
    paths = report.write_report(record(), tmp_path / "rep")
    png = paths["png"].read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    page = paths["html"].read_text()
    assert base64.b64encode(png).decode() in page  # the plot is embedded, not linked
    assert "<b>" not in page.split("<h2>Notes</h2>")[1]  # notes are escaped
    assert "c=4" in page and "2 cores" in page
    assert paths["json"].is_file() and paths["csv"].is_file()


def test_table_renders():
    from rich.console import Console

    console = Console(width=200, record=True)
    console.print(report.table(record()))
    text = console.export_text()
    assert "c=1" in text and "10/5/100/3" in text


def test_the_plot_marks_a_level_that_did_not_stabilise():
    rec = record()
    rec["levels"][1]["stable"] = False
    fig = report.perf_figure(rec)
    ax = fig.axes[0]
    texts = [t.get_text() for t in ax.texts]
    assert texts == ["c=1", "c=4 (not stable)"], texts
    assert "not stable" in [t.get_text() for t in ax.get_legend().get_texts()]
    stable = report.perf_figure(record()).axes[0]
    assert "not stable" not in [t.get_text() for t in stable.get_legend().get_texts()]
    assert not any("not stable" in t.get_text() for t in stable.texts)

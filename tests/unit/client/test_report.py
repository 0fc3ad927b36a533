"""Renderings of a synthetic perf record: CSV, PNG, HTML, and the CLI table."""

from __future__ import annotations

import base64
import csv
import io

from perf_fakes import perf_level, perf_record  # tests/ is on sys.path (its conftest)

from zeroserve import engine
from zeroserve.client.perf import panels, report
from zeroserve.triton import machine


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


def typed(rec: dict):
    """The record as perf builds it (its levels and floor typed)."""
    rec = dict(rec)
    if "floor" in rec:
        levels = [perf_level(**lv) for lv in rec["floor"]["levels"]]
        rec["floor"] = {"server": "the serving server", "comparison": [], "notes": [], **rec["floor"], "levels": levels}
    return perf_record(**rec)


def test_csv_has_one_row_per_level():
    rows = list(csv.DictReader(io.StringIO(report.to_csv(typed(record())))))
    assert [r["concurrency"] for r in rows] == ["1", "4"]
    assert rows[1]["server_compute_infer_us"] == "100.0" and rows[0]["p99_ms"] == "1.8"


def test_report_folder_is_self_contained(tmp_path):
    paths = report.write_report(typed(record()), tmp_path / "rep")
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
    console.print(report.table(typed(record())))
    text = console.export_text()
    assert "c=1" in text and "10/5/100/3" in text


def test_the_plot_marks_a_level_that_did_not_stabilise():
    rec = record()
    rec["levels"][1]["stable"] = False
    fig = report.perf_figure(typed(rec))
    ax = fig.axes[0]
    texts = [t.get_text() for t in ax.texts]
    assert texts == ["c=1", "c=4 (not stable)"], texts
    assert "not stable" in [t.get_text() for t in ax.get_legend().get_texts()]
    stable = report.perf_figure(typed(record())).axes[0]
    assert "not stable" not in [t.get_text() for t in stable.get_legend().get_texts()]
    assert not any("not stable" in t.get_text() for t in stable.texts)


def _with_server_figures(rec: dict) -> dict:
    for i, lv in enumerate(rec["levels"]):
        lv["client"] = {"cpu_us": 20.0, "send_us": 15.0, "check_us": 5.0}
        lv["server_resources"] = {
            "cpu_cores": 0.5 + i,
            "rss_mb": 200.0 + i,
            "peak_rss_mb": 210.0 + i,
            "processes": 2,
            "seconds": 3.0,
        }
    return rec


def test_the_summary_has_model_analyzers_panels_and_names_the_engine_and_its_floor():
    rec = _with_server_figures(record())
    rec["measured_on"] = machine.measured_on(engine.embedded("onnx", [], "2.51.0"))
    floor = [dict(lv, p50_ms=lv["p50_ms"] / 2, throughput=lv["throughput"] * 2) for lv in record()["levels"]]
    rec["floor"] = {"triton_model": "cnn_mnist_onnx_noop", "levels": floor}
    fig = report.perf_figure(typed(rec))
    assert [ax.get_title() for ax in fig.axes] == list(panels.PANELS)
    title = fig._suptitle.get_text()
    assert "measured on embedded Triton 2.51.0, Python backend running onnxruntime" in title
    assert "floor (cnn_mnist_onnx_noop, no-op): p50 0.45 ms at c=1, 5,000 infer/s at c=4" in title
    latency, bars, cpu, memory = fig.axes
    assert [line.get_label() for line in latency.get_lines()] == ["cnn_mnist_onnx", "floor: cnn_mnist_onnx_noop"]
    # stacked bars: the seven parts of perf_analyzer's breakdown add up to each level's average latency
    assert len(bars.containers) == len(panels.PARTS)
    for i, lv in enumerate(rec["levels"]):
        assert abs(sum(c[i].get_height() for c in bars.containers) - lv["mean_ms"]) < 1e-9
    assert list(cpu.get_lines()[0].get_ydata()) == [0.5, 1.5]
    assert list(memory.get_lines()[0].get_ydata()) == [210.0, 211.0]  # the peak RSS of each level


def test_a_report_without_server_figures_says_so_in_its_panels():
    fig = report.perf_figure(typed(record()))
    assert "engine and machine not recorded" in fig._suptitle.get_text()
    assert any("no process-tree figures" in t.get_text() for t in fig.axes[2].texts)


def test_the_table_title_names_the_engine():
    from rich.console import Console

    rec = record()
    rec["measured_on"] = machine.measured_on(engine.embedded("torchscript", [], "2.51.0"))
    console = Console(width=250, record=True)
    console.print(report.table(typed(rec)))
    assert "measured on embedded Triton 2.51.0, Python backend running torch" in console.export_text()

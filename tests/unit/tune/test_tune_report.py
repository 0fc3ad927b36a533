"""tune's report on a synthetic record: the summary's panels, the Pareto front marked, the engine and floor named."""

from __future__ import annotations

from zeroserve import engine
from zeroserve.client.perf import panels
from zeroserve.records.tune import TuneRecord
from zeroserve.triton import machine
from zeroserve.tune import report


def _candidate(label: str, scale: float, deployed: bool = False, stable: bool = True) -> dict:
    levels = [
        {
            "concurrency": c,
            "throughput": 1000.0 * c * scale,
            "p50_ms": 0.5 * c,
            "p99_ms": 1.0 * c / scale,
            "mean_ms": 0.6 * c,
            "stable": stable or c == 1,
            "failed": 0,
            "server_resources": {
                "cpu_cores": 0.4 * c,
                "rss_mb": 150.0 * scale,
                "peak_rss_mb": 160.0 * scale,
                "processes": 2,
                "seconds": 3.0,
            },
        }
        for c in (1, 2, 4)
    ]
    best = levels[1]
    return {
        "label": label,
        "candidate": {
            "fmt": "onnx",
            "instances": int(label[0]),
            "max_batch_size": 8,
            "prefer_max": False,
            "queue_delay_us": 0,
            "threads": 1,
            "preferred_batch_sizes": [],
        },
        "deployed": deployed,
        "meets_budget": True,
        "concurrency": 2,
        "throughput": best["throughput"],
        "latency_ms": best["p99_ms"],
        "p50_ms": best["p50_ms"],
        "p99_ms": best["p99_ms"],
        "mean_ms": best["mean_ms"],
        "stable": stable,
        "failed": 0,
        "unstable_levels": [] if stable else [2, 4],
        "server": {
            "queue_us": 50.0,
            "compute_input_us": 10.0,
            "compute_infer_us": 300.0,
            "compute_output_us": 20.0,
            "requests": 100,
            "inferences": 100,
            "executions": 50,
            "failed": 0,
        },
        "client": {"cpu_us": 30.0, "send_us": 20.0, "check_us": 5.0},
        "levels": levels,
    }


def record() -> TuneRecord:
    candidates = [
        _candidate("1 inst", 1.0, deployed=True),
        _candidate("2 inst", 1.5),
        _candidate("3 inst", 0.8, stable=False),
    ]
    return TuneRecord.model_validate(
        {
            "kind": "tune",
            "model": "cnn_mnist",
            "triton_model": "cnn_mnist_onnx",
            "formats": {"onnx": "cnn_mnist_onnx"},
            "percentile": 99.0,
            "space": {"instances": [1, 2, 3]},
            "timed_out": False,
            "seconds": 60.0,
            "search": "brute",
            "latency_budget_ms": 5.0,
            "latency_metric": "p99_ms",
            "min_throughput": None,
            "protocol": "grpc",
            "candidates": candidates,
            "chosen": candidates[1],
            "chosen_is_deployed": False,
            "gain": 1.5,
            "side_by_side": None,
            "floor": {"latency_ms": 0.4, "p50_ms": 0.3, "p99_ms": 0.4, "stable": True},
            "tuned_on": machine.measured_on(engine.embedded("onnx", [], "2.51.0")),
            "notes": [],
            "outcome": {"exit_code": 0, "reason": ""},
        }
    )


def test_the_tune_summary_marks_the_pareto_front_and_the_choice_and_names_engine_and_floor():
    fig = panels.tune_figure(record(), report.pareto)
    assert [ax.get_title() for ax in fig.axes] == list(panels.PANELS)
    title = fig._suptitle.get_text()
    assert "zeroserve tune cnn_mnist: 3 candidates, budget 5 ms p99" in title
    assert "measured on embedded Triton 2.51.0" in title and "floor (no-op twin) at c=1: p50 0.30 ms" in title
    latency = fig.axes[0]
    labels = [t.get_text() for t in latency.get_legend().get_texts()]
    assert {"#1 1 inst (deployed)", "#2 2 inst", "#3 3 inst", "Pareto front", "chosen", "budget", "not stable"} <= set(
        labels
    )
    front = next(line for line in latency.get_lines() if line.get_label() == "Pareto front")
    assert list(front.get_xdata()) == [3000.0]  # 2 inst beats both others on throughput and p99
    assert len(fig.axes[1].patches) == 3 * len(panels.PARTS)  # one stacked bar per candidate
    assert len(fig.axes[2].get_lines()) == 3 and len(fig.axes[3].get_lines()) == 3


def test_the_tune_report_files(tmp_path):
    paths = report.write_report(record(), tmp_path)
    assert paths["png"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "embedded Triton 2.51.0" in paths["html"].read_text()
    assert TuneRecord.load(paths["json"]).to_json() == record().to_json()  # tune.json is the record, key for key


def test_tune_records_of_53e25ec_draw_their_table_closing_lines_and_report(tmp_path):
    """tune.json as 53e25ec wrote it (stdout with `report`, the report's file, one after --apply) through the views."""
    from pathlib import Path

    from rich.console import Console

    fixtures = Path(__file__).resolve().parents[2] / "fixtures" / "records_53e25ec"
    for name in ("tune.json", "tune_report.json", "tune_applied.json"):
        rec = TuneRecord.load(fixtures / name)
        assert rec.model == "softmax_mnist" and rec.candidates and rec.outcome.exit_code in (0, 1)
        assert rec.deployed and rec.deployed.candidate.fmt == "onnx"
        console = Console(record=True, width=200)
        console.print(report.table(rec))
        assert len(rec.candidates) == sum(1 for line in console.export_text().splitlines() if "onnx inst" in line)
        if rec.chosen:
            assert any(rec.chosen.label in line for line in report.closing(rec))
        paths = report.write_report(rec, tmp_path / name)
        assert TuneRecord.load(paths["json"]).to_json() == rec.to_json()
        assert rec.model in paths["html"].read_text()
    assert TuneRecord.load(fixtures / "tune_applied.json").applied == "softmax_mnist_onnx"
    assert TuneRecord.load(fixtures / "tune.json").report

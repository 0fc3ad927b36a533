"""Triton's metrics text read with prometheus_client's parser; per-level deltas and the client-count check."""

from __future__ import annotations

from perf_fakes import perf_level  # tests/ is on sys.path (its conftest)

from zeroserve.client.perf import metrics as PM
from zeroserve.serve import metrics as M

TEXT = """# HELP nv_inference_request_success Number of successful inference requests, all batch sizes
# TYPE nv_inference_request_success counter
nv_inference_request_success{model="m",version="1"} 10
nv_inference_request_success{model="m",version="2"} 5
nv_inference_request_success{model="other",version="1"} 7
# TYPE nv_inference_request_failure counter
nv_inference_request_failure{model="m",reason="REJECTED",version="1"} 2
nv_inference_request_failure{model="m",reason="BACKEND",version="1"} 1
# TYPE nv_inference_count counter
nv_inference_count{model="m",version="1"} 30
# TYPE nv_inference_exec_count counter
nv_inference_exec_count{model="m",version="1"} 12
# TYPE nv_inference_queue_duration_us counter
nv_inference_queue_duration_us{model="m",version="1"} 1500
# TYPE nv_inference_compute_infer_duration_us counter
nv_inference_compute_infer_duration_us{model="m",version="1"} 3000
# TYPE nv_gpu_utilization gauge
nv_gpu_utilization{gpu_uuid="GPU-1"} 0.5
# TYPE nv_gpu_memory_used_bytes gauge
nv_gpu_memory_used_bytes{gpu_uuid="GPU-1"} 1000
# TYPE nv_gpu_memory_total_bytes gauge
nv_gpu_memory_total_bytes{gpu_uuid="GPU-1"} 8000
# TYPE nv_gpu_power_usage gauge
nv_gpu_power_usage{gpu_uuid="GPU-1"} 70
# TYPE nv_cpu_memory_used_bytes gauge
nv_cpu_memory_used_bytes 123456
"""


def test_counters_are_summed_over_versions_failures_kept_by_reason_gauges_by_gpu():
    snap = M.parse(TEXT)
    m = snap["models"]["m"]
    assert m["success"] == 15 and m["failure"] == 3 and m["inferences"] == 30 and m["executions"] == 12
    assert m["failure_by_reason"] == {"REJECTED": 2, "BACKEND": 1}
    assert snap["models"]["other"]["success"] == 7
    assert snap["gpu"]["GPU-1"] == {
        "utilization": 0.5,
        "memory_used_bytes": 1000,
        "memory_total_bytes": 8000,
        "power_w": 70,
    }
    assert snap["host"] == {"memory_used_bytes": 123456}  # host-wide: recorded apart, never as the server's


def test_a_delta_over_a_level_averages_the_durations_per_request():
    before = M.parse(TEXT)
    after = M.parse(
        TEXT.replace('version="2"} 5', 'version="2"} 15')
        .replace("1500", "2500")
        .replace('reason="REJECTED",version="1"} 2', 'reason="REJECTED",version="1"} 4')
    )
    d = M.model_delta(before, after, "m")
    assert d["success"] == 10 and d["failure"] == 2 and d["failure_by_reason"] == {"REJECTED": 2}
    assert d["avg_queue_us"] == 100.0 and d["avg_compute_infer_us"] == 0.0
    assert M.model_delta(before, after, "absent") is None


def test_a_count_that_differs_from_the_clients_is_a_warning_naming_both_numbers():
    counted = {"requests": 98, "success": 97, "failure": 1, "client_requests": 100, "agrees": False}
    warning = PM.count_warning(perf_level(server_metrics=counted), "concurrency 4")
    assert warning is not None
    assert warning.startswith("warning: at concurrency 4") and "98 requests" in warning and "sent 100" in warning
    assert PM.count_warning(perf_level(server_metrics={**counted, "agrees": True}), "c") is None
    assert PM.count_warning(perf_level(server_metrics={"error": "no endpoint"}), "c") is None
    assert PM.count_warning(perf_level(), "c") is None


def test_perf_analyzers_gpu_csv_columns():
    gpu = {
        "GPU-1": {
            "avg_utilization": 0.5,
            "avg_power_w": 70.0,
            "max_memory_used_bytes": 1000.0,
            "memory_total_bytes": 8000.0,
            "samples": 3,
        }
    }
    cols = PM.csv_columns(perf_level(server_metrics={"gpu": gpu}))
    assert cols == {
        "Avg GPU Utilization": "GPU-1:0.5;",
        "Avg GPU Power Usage": "GPU-1:70;",
        "Max GPU Memory Usage": "GPU-1:1000;",
        "Total GPU Memory": "GPU-1:8000;",
    }
    assert set(PM.csv_columns(perf_level()).values()) == {""}

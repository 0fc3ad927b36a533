"""Typed perf levels and records for unit tests: give the fields a test is about, the rest are quiet defaults."""

from __future__ import annotations

from typing import Any

from zeroserve.records.perf import PerfLevel, PerfRecord

FIGURES = {"p50_ms": 0.0, "p90_ms": 0.0, "p95_ms": 0.0, "p99_ms": 0.0, "max_ms": 0.0, "mean_ms": 0.0}


def counts(**over: Any) -> dict[str, Any]:
    """A `totals`/`warmup`/`drain` block: zero requests unless told."""
    ok, failed = over.get("ok", 0), over.get("failed", 0)
    base = {"windows": 1, "seconds": 1.0, "requests": ok + failed, "ok": ok, "failed": failed, "failures": {}}
    return {"failure_messages": {}, "throughput": 0.0, **FIGURES, **base, **over}


def window(**over: Any) -> dict[str, Any]:
    base = {"seconds": 1.0, "requests": 0, "ok": 0, "failed": 0, "failures": {}, "throughput": 0.0}
    return {**base, **FIGURES, "generator_cpu": 0.0, **over}


def level_fields(**over: Any) -> dict[str, Any]:
    """A level's JSON: every field perf writes, `over` on top (partial blocks are filled in)."""
    out: dict[str, Any] = {
        "windows_used": 3,
        "seconds": 3.0,
        "throughput": 0.0,
        "requests_per_s": 0.0,
        **FIGURES,
        "requests": 0,
        "ok": 0,
        "failed": 0,
        "sent": 0,
        "late_sends": 0,
        "send_lag_p99_ms": 0.0,
        "generator_cpu": 0.0,
        "loop_cpu": 0.0,
        "client": {"cpu_us": 0.0, "send_us": 0.0, "check_us": 0.0},
        "failures": {},
        "failure_messages": {},
        "server": None,
        "generator_saturated": False,
        "concurrency": 1,
        "request_rate": None,
        "latency_metric": "mean_ms",
        "stable": True,
        "trials": 3,
        "windows": [],
        "totals": {},
        "warmup": {},
        "drain": {},
    }
    out.update(over)
    for block in ("totals", "warmup", "drain"):
        out[block] = counts(**out[block])
    out["windows"] = [window(**w) for w in out["windows"]]
    out["client"] = {"cpu_us": 0.0, "send_us": 0.0, "check_us": 0.0, **out["client"]}
    if out["server"] is not None:
        split = dict.fromkeys(("queue_us", "compute_input_us", "compute_infer_us", "compute_output_us"), 0.0)
        out["server"] = {**split, "requests": 0, "inferences": 0, "executions": 0, "failed": 0, **out["server"]}
    return out


def perf_level(**over: Any) -> PerfLevel:
    return PerfLevel.model_validate(level_fields(**over))


def perf_record(**over: Any) -> PerfRecord:
    """A perf record: one quiet level unless `levels` (levels or their partial JSON) is given."""
    levels = [lv if isinstance(lv, PerfLevel) else perf_level(**lv) for lv in over.pop("levels", [{}])]
    base: dict[str, Any] = {
        "kind": "perf",
        "model": "m",
        "triton_model": "m_onnx",
        "protocol": "grpc",
        "urls": ["127.0.0.1:8001"],
        "batch_size": 1,
        "latency_metric": "mean_ms",
        "notes": [],
        "outcome": {"exit_code": 0, "reason": ""},
    }
    return PerfRecord.model_validate({**base, **over, "levels": levels})

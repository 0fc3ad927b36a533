"""A running server's own figures: Triton's Prometheus metrics, and its process tree's CPU and memory.

The metrics endpoint is read with prometheus_client's text parser. Per model: the request,
failure, inference and execution counters and the cumulative queue and compute durations (µs);
the GPU gauges (utilisation, power, memory) where the server has a GPU. Triton's
`nv_cpu_utilization` and `nv_cpu_memory_used_bytes` are host-wide (the whole machine, not the
server), so the server's own CPU and memory come from its process tree instead: tritonserver and
its Python-backend stubs, through psutil (`ProcessTree`).
"""

from __future__ import annotations

import time
import urllib.error
import urllib.request
from typing import Any

from zeroserve.errors import ServerError
from zeroserve.records.state import ServerState

# Triton's per-model counters -> the field names zeroserve records (durations are cumulative µs)
COUNTERS = {
    "nv_inference_request_success": "success",
    "nv_inference_request_failure": "failure",
    "nv_inference_count": "inferences",
    "nv_inference_exec_count": "executions",
    "nv_inference_request_duration_us": "request_us",
    "nv_inference_queue_duration_us": "queue_us",
    "nv_inference_compute_input_duration_us": "compute_input_us",
    "nv_inference_compute_infer_duration_us": "compute_infer_us",
    "nv_inference_compute_output_duration_us": "compute_output_us",
}
DURATIONS = ("request_us", "queue_us", "compute_input_us", "compute_infer_us", "compute_output_us")
# Triton's per-GPU gauges (label gpu_uuid) -> the field names recorded
GPU_GAUGES = {
    "nv_gpu_utilization": "utilization",
    "nv_gpu_power_usage": "power_w",
    "nv_gpu_memory_used_bytes": "memory_used_bytes",
    "nv_gpu_memory_total_bytes": "memory_total_bytes",
}
HOST_GAUGES = {"nv_cpu_utilization": "cpu_utilization", "nv_cpu_memory_used_bytes": "memory_used_bytes"}
DEFAULT_INTERVAL_MS = 500  # `serve --metrics-interval-ms`: gauges refreshed well within perf's windows (1-5 s)


def metrics_url(state: ServerState | None) -> str | None:
    """The metrics endpoint of a zeroserve server (its state file), None when not known."""
    if state is None or not state.metrics_port:
        return None
    from zeroserve.triton.ports import hostport

    host = state.host or "127.0.0.1"
    host = "127.0.0.1" if host in ("0.0.0.0", "localhost") else "::1" if host == "::" else host
    return f"http://{hostport(host, state.metrics_port)}/metrics"


def scrape(url: str, timeout: float = 3.0) -> str:
    """The endpoint's text, or ServerError (exit 3) naming it."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as answer:  # noqa: S310 - a loopback http URL
            return answer.read().decode("utf-8", "replace")
    except (OSError, urllib.error.URLError) as exc:
        raise ServerError(f"the metrics endpoint {url} did not answer: {exc}") from None


def parse(text: str) -> dict[str, Any]:
    """Triton's metrics text as {"models": {name: {field: value, "failure_by_reason": {...}}}, "gpu": {uuid:
    {field: value}}, "host": {field: value}}; counters summed over a model's versions."""
    from prometheus_client.parser import text_string_to_metric_families

    models: dict[str, dict[str, Any]] = {}
    gpus: dict[str, dict[str, float]] = {}
    host: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        field = COUNTERS.get(family.name)
        for sample in family.samples:
            labels = sample.labels
            if field is not None and "model" in labels:
                m = models.setdefault(labels["model"], {f: 0.0 for f in COUNTERS.values()} | {"failure_by_reason": {}})
                m[field] += sample.value
                if field == "failure":
                    reasons = m["failure_by_reason"]
                    reasons[labels.get("reason", "")] = reasons.get(labels.get("reason", ""), 0.0) + sample.value
            elif family.name in GPU_GAUGES:
                gpus.setdefault(labels.get("gpu_uuid", "gpu"), {})[GPU_GAUGES[family.name]] = sample.value
            elif family.name in HOST_GAUGES:
                host[HOST_GAUGES[family.name]] = sample.value
    return {"models": models, "gpu": gpus, "host": host, "time": time.monotonic()}


def read(url: str, timeout: float = 3.0) -> dict[str, Any]:
    """Scrape and parse one endpoint."""
    return parse(scrape(url, timeout))


def model_delta(before: dict, after: dict, model: str) -> dict[str, Any] | None:
    """One model's counters between two snapshots, with per-request averages of the durations; None when the
    endpoint does not list the model."""
    a = after["models"].get(model)
    if a is None:
        return None
    b = before["models"].get(model) or {f: 0.0 for f in COUNTERS.values()}
    out: dict[str, Any] = {f: a[f] - b.get(f, 0.0) for f in COUNTERS.values()}
    for f in ("success", "failure", "inferences", "executions"):
        out[f] = int(round(out[f]))
    n = out["success"]
    for f in DURATIONS:
        out[f"avg_{f}"] = out[f] / n if n else 0.0
    before_reasons = b.get("failure_by_reason") or {}
    out["failure_by_reason"] = {
        r: int(round(v - before_reasons.get(r, 0.0)))
        for r, v in a["failure_by_reason"].items()
        if v - before_reasons.get(r, 0.0)
    }
    return out


class ProcessTree:
    """CPU and memory of a server's own processes (tritonserver and its stubs), not the host's.

    `sample()` returns {"cpu_cores": CPU seconds of the tree per wall second since the previous sample (a
    process started since counts all its CPU), "rss_mb": their summed RSS now, "processes", "seconds"}.
    """

    def __init__(self, pid: int, shm_prefix: str | None):
        self.pid, self.shm_prefix = pid, shm_prefix
        self.t = time.monotonic()
        self.cpu, _ = self._read()

    def _read(self) -> tuple[dict[int, float], int]:
        import psutil

        from zeroserve.serve.processes import server_processes

        try:
            server = psutil.Process(self.pid)
            procs = [server, *server_processes(server, self.shm_prefix)]
        except psutil.Error:
            return {}, 0
        cpu, rss = {}, 0
        for p in procs:
            try:
                t = p.cpu_times()
                cpu[p.pid] = t.user + t.system
                rss += p.memory_info().rss
            except psutil.Error:  # a stub that went away between the listing and the read
                continue
        return cpu, rss

    def sample(self) -> dict[str, float]:
        now = time.monotonic()
        cpu, rss = self._read()
        busy = sum(v - self.cpu.get(pid, 0.0) for pid, v in cpu.items())
        seconds = max(now - self.t, 1e-9)
        self.t, self.cpu = now, cpu
        return {
            "cpu_cores": round(busy / seconds, 3),
            "rss_mb": round(rss / 2**20, 1),
            "processes": len(cpu),
            "seconds": round(seconds, 2),
        }


def process_usage(state: ServerState, seconds: float = 0.5) -> dict[str, float] | None:
    """A running zeroserve server's CPU (over `seconds`) and memory from its process tree; None when it is not
    on this host (no pid) or gone."""
    if not state.pid:
        return None
    tree = ProcessTree(state.pid, state.shm_prefix)
    if not tree.cpu:
        return None
    time.sleep(seconds)
    return tree.sample()


def status_figures(state: ServerState, timeout: float = 2.0) -> dict[str, Any]:
    """What `zeroserve status` shows of a running server's own figures: per model, the requests and failures its
    metrics endpoint counted since it started (warm-up requests included), and its process tree's CPU and memory.

    Returns {"metrics_url", "models": {name: {"requests", "success", "failure", "failure_by_reason",
    "inferences"}} | None, "error"?: why the endpoint was not read, "resources": ProcessTree figures | None}.
    """
    url = metrics_url(state)
    out: dict[str, Any] = {"metrics_url": url, "models": None, "resources": None}
    if url is not None:
        try:
            snap = read(url, timeout)
        except ServerError as exc:
            out["error"] = str(exc)
        else:
            out["models"] = {
                name: {
                    "requests": int(m["success"] + m["failure"]),
                    "success": int(m["success"]),
                    "failure": int(m["failure"]),
                    "failure_by_reason": {r: int(v) for r, v in m["failure_by_reason"].items() if v},
                    "inferences": int(m["inferences"]),
                }
                for name, m in sorted(snap["models"].items())
            }
    out["resources"] = process_usage(state, 0.3)
    return out

"""One measured perf level and its blocks: the perf record's levels, its floor's, and tune's candidates' searches.

Built once per level when its load has stopped (client/perf/run.py), never inside the load loop.
"""

from __future__ import annotations

from zeroserve.records.base import Block


class Figures(Block):
    """A block of latency figures that one can also read by key (the level's latency metric names one)."""

    def figure(self, key: str) -> float:
        """A latency figure by its record key (`p95_ms`, `mean_ms`, or an extra `p99.9_ms`)."""
        value = getattr(self, key, None)
        if value is None and self.model_extra:
            value = self.model_extra.get(key)
        if value is None:
            raise KeyError(key)
        return float(value)


class Counts(Figures):
    """Every request of some windows (a level's `totals`, `warmup` or `drain`): counts and figures over them all."""

    windows: int
    """How many windows the block sums (1 for the warm-up and the drain)."""
    seconds: float
    """Wall time the block covers."""
    requests: int
    """Requests sent and settled (ok + failed)."""
    ok: int
    """Requests answered and checked."""
    failed: int
    """Requests that failed (any kind)."""
    failures: dict[str, int]
    """Failed requests by kind."""
    failure_messages: dict[str, str]
    """The first message of each failure kind."""
    throughput: float
    """Inferences per second (answered requests x batch size)."""
    p50_ms: float
    """Median latency over the block."""
    p99_ms: float
    """99th percentile latency."""
    mean_ms: float
    """Average latency."""
    max_ms: float
    """Highest latency."""


class WindowFigures(Figures):
    """One measurement window's figures, so that drift across a level can be seen."""

    seconds: float
    """The window's wall time."""
    requests: int
    """Requests settled in the window."""
    ok: int
    """Requests answered and checked."""
    failed: int
    """Requests that failed."""
    failures: dict[str, int]
    """Failed requests by kind."""
    throughput: float
    """Inferences per second."""
    p50_ms: float
    """Median latency."""
    p99_ms: float
    """99th percentile latency."""
    mean_ms: float
    """Average latency."""
    p90_ms: float | None = None
    """The level's latency metric when it is p90 (--percentile 90; another percentile is written beside it)."""
    p95_ms: float | None = None
    """The level's latency metric when it is p95."""
    generator_cpu: float
    """The load generator's CPU seconds per wall second."""


class ClientCost(Block):
    """The client side of each request (perf_analyzer's Client Send/Recv), in µs per request."""

    cpu_us: float
    """The generator's CPU per request."""
    send_us: float
    """Encoding and sending a request."""
    check_us: float
    """Checking the answer."""


class ServerSplit(Block):
    """Average server-side time per request (µs) in each phase, from Triton's statistics over the stable windows."""

    queue_us: float
    """Queue time per request."""
    compute_input_us: float
    """Input handling per request."""
    compute_infer_us: float
    """Inference per request."""
    compute_output_us: float
    """Output handling per request."""
    requests: int
    """Successful requests between the samples."""
    inferences: int
    """Inferences between the samples."""
    executions: int
    """Executions between the samples."""
    failed: int
    """Failed requests between the samples."""


class GpuFigures(Block):
    """One GPU over a level's metric samples (perf_analyzer's --collect-metrics)."""

    avg_utilization: float
    """Average utilisation (0..1)."""
    avg_power_w: float
    """Average power draw (W)."""
    max_memory_used_bytes: float
    """Peak memory used."""
    memory_total_bytes: float
    """The GPU's memory."""
    samples: int
    """Metric reads the figures come from."""


class ServerMetrics(Block):
    """The metrics endpoint's counters over the whole level (warm-up and drain included), summed over the
    servers; only `error` when no endpoint answered."""

    error: str | None = None
    """Why no figures: no metrics endpoint answered or listed the model."""
    requests: int | None = None
    """Requests the server counted (success + failure)."""
    success: int | None = None
    """Requests the server answered."""
    failure: int | None = None
    """Requests the server failed."""
    failure_by_reason: dict[str, int] | None = None
    """Failures by the server's reason label."""
    inferences: int | None = None
    """Inferences (rows) the server ran."""
    executions: int | None = None
    """Model executions (batches)."""
    avg_request_us: float | None = None
    """Average request time per successful request (µs)."""
    avg_queue_us: float | None = None
    """Average queue time (µs)."""
    avg_compute_input_us: float | None = None
    """Average input handling (µs)."""
    avg_compute_infer_us: float | None = None
    """Average inference (µs)."""
    avg_compute_output_us: float | None = None
    """Average output handling (µs)."""
    client_requests: int | None = None
    """The client's count of the level's requests (`level_count(level, "requests")`)."""
    agrees: bool | None = None
    """The server's count equals the client's (else a `warning: at ...` note names both)."""
    endpoints: list[str] | None = None
    """The metrics endpoints read."""
    gpu: dict[str, GpuFigures] | None = None
    """Per GPU uuid."""
    errors: list[str] | None = None
    """Endpoints that could not be read."""


class ServerResources(Block):
    """tritonserver and its stubs on this host over a level."""

    cpu_cores: float
    """CPU seconds per wall second over the level."""
    rss_mb: float
    """Summed RSS at the level's end."""
    peak_rss_mb: float | None = None
    """The summed RSS at its peak over the level's samples (absent in the earliest records: read `rss_mb`)."""
    processes: int | None = None
    """Processes counted (tritonserver and its stubs)."""
    seconds: float | None = None
    """Wall time the figures cover."""


class PerfLevel(Figures):
    """One measured level: its stable windows' figures, every window, the totals, warm-up and drain that
    together count every request sent, the generator's cost and the server's figures."""

    windows_used: int
    """Windows the level's figures come from (the last stable ones)."""
    seconds: float
    """Wall time of the windows used."""
    throughput: float
    """Inferences per second over the windows used."""
    requests_per_s: float
    """Answered requests per second (throughput / batch size)."""
    p50_ms: float
    """Median latency over the windows used."""
    p90_ms: float
    """90th percentile latency."""
    p95_ms: float
    """95th percentile latency."""
    p99_ms: float
    """99th percentile latency."""
    max_ms: float
    """Highest latency."""
    mean_ms: float
    """(and `p<x>_ms` for another --percentile)"""
    requests: int
    """Requests settled in the windows used (ok + failed)."""
    ok: int
    """Requests answered and checked in the windows used."""
    failed: int
    """Requests that failed in the windows used (all blocks: `level_count`)."""
    sent: int
    """Requests sent in the windows used."""
    late_sends: int
    """Request-rate sends that left later than scheduled."""
    send_lag_p99_ms: float
    """p99 of how late sends left (request-rate levels)."""
    generator_cpu: float
    """The load generator's CPU seconds per wall second."""
    loop_cpu: float
    """The busiest event loop's CPU share of a core."""
    client: ClientCost
    """The client's cost per request."""
    failures: dict[str, int]
    """Failed requests by kind in the windows used."""
    failure_messages: dict[str, str]
    """The first message of each failure kind."""
    server: ServerSplit | None
    """Triton's statistics over the windows used; null when they could not be read."""
    generator_saturated: bool
    """The generator's event loop was busy enough to limit the figures."""
    concurrency: int | None
    """The level's concurrency (null for a request-rate level)."""
    request_rate: float | None
    """The level's request rate per second (null for a concurrency level)."""
    latency_metric: str
    """The latency the stability rule uses (`mean_ms`, `p95_ms`, ...)."""
    stable: bool
    """The last windows agreed within the stability threshold."""
    trials: int
    """Windows measured."""
    windows: list[WindowFigures]
    """Every measured window's figures, in order."""
    totals: Counts
    """Every measured window."""
    warmup: Counts
    """The warm-up's requests (not measured, counted)."""
    drain: Counts
    """The requests in flight when the load stopped."""
    server_lost: str | None = None
    """Why the level ended early (the server stopped answering)."""
    server_metrics: ServerMetrics | None = None
    """The server's metrics endpoint over the level (client/perf/metrics.py)."""
    server_resources: ServerResources | None = None
    """The server's process tree over the level (a server on this host)."""
    gpu_metrics: dict[str, str] | None = None
    """perf_analyzer's --collect-metrics CSV cells (`uuid:value;` per GPU)."""
    achieved_rate: float | None = None
    """Requests sent per second (request-rate levels)."""
    rate_kept: bool | None = None
    """Whether the generator kept to the schedule (request-rate levels)."""

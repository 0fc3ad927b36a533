"""The perf record (docs/contracts.md): its typed shape, loaded and saved only through this type.

`PerfLevel` (one measured level) is shared: the tune record's candidates and the floor block hold levels
of the same shape.
"""

from __future__ import annotations

from typing import Any, ClassVar

from zeroserve.records.base import Block, Record
from zeroserve.records.measured import MeasuredOn


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
    requests: int
    """Requests sent and settled (ok + failed)."""
    ok: int
    failed: int
    failures: dict[str, int]
    """Failed requests by kind."""
    failure_messages: dict[str, str]
    """The first message of each failure kind."""
    throughput: float
    """Inferences per second (answered requests x batch size)."""
    p50_ms: float
    p99_ms: float
    mean_ms: float
    max_ms: float


class WindowFigures(Figures):
    """One measurement window's figures, so that drift across a level can be seen."""

    seconds: float
    requests: int
    ok: int
    failed: int
    failures: dict[str, int]
    throughput: float
    p50_ms: float
    p99_ms: float
    mean_ms: float
    p90_ms: float | None = None
    """The level's latency metric when it is p90 (--percentile 90; another percentile is written beside it)."""
    p95_ms: float | None = None
    """The level's latency metric when it is p95."""
    generator_cpu: float
    """The load generator's CPU seconds per wall second."""


class ClientCost(Block):
    """The client side of each request (perf_analyzer's Client Send/Recv), in µs per request."""

    cpu_us: float
    send_us: float
    check_us: float
    """Checking the answer."""


class ServerSplit(Block):
    """Average server-side time per request (µs) in each phase, from Triton's statistics over the stable windows."""

    queue_us: float
    compute_input_us: float
    compute_infer_us: float
    compute_output_us: float
    requests: int
    inferences: int
    executions: int
    failed: int


class GpuFigures(Block):
    """One GPU over a level's metric samples (perf_analyzer's --collect-metrics)."""

    avg_utilization: float
    avg_power_w: float
    max_memory_used_bytes: float
    memory_total_bytes: float
    samples: int


class ServerMetrics(Block):
    """The metrics endpoint's counters over the whole level (warm-up and drain included), summed over the
    servers; only `error` when no endpoint answered."""

    error: str | None = None
    """Why no figures: no metrics endpoint answered or listed the model."""
    requests: int | None = None
    success: int | None = None
    failure: int | None = None
    failure_by_reason: dict[str, int] | None = None
    inferences: int | None = None
    executions: int | None = None
    avg_request_us: float | None = None
    avg_queue_us: float | None = None
    avg_compute_input_us: float | None = None
    avg_compute_infer_us: float | None = None
    avg_compute_output_us: float | None = None
    client_requests: int | None = None
    """The client's count of the level's requests (`level_count(level, "requests")`)."""
    agrees: bool | None = None
    """The server's count equals the client's (else a `warning: at ...` note names both)."""
    endpoints: list[str] | None = None
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
    seconds: float | None = None


class PerfLevel(Figures):
    """One measured level: its stable windows' figures, every window, the totals, warm-up and drain that
    together count every request sent, the generator's cost and the server's figures."""

    windows_used: int
    """Windows the level's figures come from (the last stable ones)."""
    seconds: float
    throughput: float
    """Inferences per second over the windows used."""
    requests_per_s: float
    p50_ms: float
    p90_ms: float
    p95_ms: float
    p99_ms: float
    max_ms: float
    mean_ms: float
    """(and `p<x>_ms` for another --percentile)"""
    requests: int
    ok: int
    failed: int
    sent: int
    late_sends: int
    send_lag_p99_ms: float
    generator_cpu: float
    loop_cpu: float
    """The busiest event loop's CPU share of a core."""
    client: ClientCost
    failures: dict[str, int]
    failure_messages: dict[str, str]
    server: ServerSplit | None
    """Triton's statistics over the windows used; null when they could not be read."""
    generator_saturated: bool
    concurrency: int | None
    """The level's concurrency (null for a request-rate level)."""
    request_rate: float | None
    """The level's request rate per second (null for a concurrency level)."""
    latency_metric: str
    """The latency the stability rule uses (`mean_ms`, `p95_ms`, ...)."""
    stable: bool
    trials: int
    """Windows measured."""
    windows: list[WindowFigures]
    totals: Counts
    """Every measured window."""
    warmup: Counts
    drain: Counts
    """The requests in flight when the load stopped."""
    server_lost: str | None = None
    """Why the level ended early (the server stopped answering)."""
    server_metrics: ServerMetrics | None = None
    server_resources: ServerResources | None = None
    gpu_metrics: dict[str, str] | None = None
    """perf_analyzer's --collect-metrics CSV cells (`uuid:value;` per GPU)."""
    achieved_rate: float | None = None
    """Requests sent per second (request-rate levels)."""
    rate_kept: bool | None = None
    """Whether the generator kept to the schedule (request-rate levels)."""


class Outcome(Block):
    """The exit code a run earns and why (3 unreachable, else 1 failures, else 4 unstable, else 0)."""

    exit_code: int
    reason: str


class FloorComparison(Block):
    """One level: the model's figures beside its no-op twin's, and what the model itself adds."""

    concurrency: int | None
    request_rate: float | None
    model_p50_ms: float
    floor_p50_ms: float
    added_p50_ms: float
    model_p99_ms: float
    floor_p99_ms: float
    added_p99_ms: float
    model_mean_ms: float
    floor_mean_ms: float
    added_mean_ms: float
    model_throughput: float
    floor_throughput: float
    throughput_ratio: float | None
    """Model throughput over the floor's (null when the floor answered nothing)."""
    floor_share_p50: float | None
    """How much of the model's median latency the engine path alone takes."""


class Floor(Block):
    """`client perf --floor` (client/perf/floor.py): the model's no-op twin measured level by level beside it."""

    triton_model: str
    """The twin (`<name>_noop`)."""
    server: str
    """The serving server, or the private server started for the twin."""
    measured_on: MeasuredOn | None = None
    levels: list[PerfLevel]
    """The twin's levels."""
    comparison: list[FloorComparison]
    notes: list[str]
    interleaved: str | None = None
    """How the model's and the twin's levels were ordered."""


class PerfRecord(Record):
    """A load test of one served model: the options it ran with, each level's figures, the best level, the
    outcome, notes and where it was measured."""

    KIND: ClassVar[str] = "perf record"
    VERSION: ClassVar[int] = 1
    REMEDY: ClassVar[str] = "run `zeroserve client perf --json` again"

    kind: str = "perf"
    """Always "perf"."""
    model: str
    """The model as named on the command line (registry name, or a file's)."""
    triton_model: str
    """The served (Triton) model name."""
    resolved: str | None = None
    """How the model was found ("registry", a model file, the server's metadata)."""
    protocol: str
    streaming: bool | None = None
    format: str | None = None
    urls: list[str]
    batch_size: int
    shapes: dict[str, list[int]] | None = None
    """Shapes given for dynamic dimensions, by input."""
    measurement_mode: str | None = None
    """"time_windows" or "count_windows"."""
    measurement_request_count: int | None = None
    input: str | None = None
    """Where the inputs came from ("random", "zero", "sample", "file <path>")."""
    shared_memory: str | None = None
    input_requests: int | None = None
    """Distinct requests sent round-robin."""
    mode: str | None = None
    """"concurrency", "request_rate" or "latency_budget"."""
    distribution: str | None = None
    """The request-rate schedule (null for concurrency levels)."""
    latency_budget_ms: float | None = None
    latency_threshold_ms: float | None = None
    """perf_analyzer's -l (null without it)."""
    best: int | None = None
    """The highest concurrency within the latency budget (null without a budget, or none within it)."""
    latency_metric: str
    """The latency the stability rule and the budget use (`mean_ms`, `p95_ms`, ...)."""
    window_s: float | None = None
    stability: float | None = None
    max_trials: int | None = None
    workers: int | None = None
    options: dict[str, Any] | None = None
    """The options the run took (`PerfOptions.as_json()`; absent in records of 53e25ec)."""
    levels: list[PerfLevel]
    notes: list[str]
    """What a reader of the figures must know (shared cores, saturation, instability, failures)."""
    cpu_count: int | None = None
    cut_short: bool | None = None
    """The run stopped before its last level (its deadline, or a level that failed)."""
    measured_on: MeasuredOn | None = None
    """The engine and machine (absent in older records: `plan` treats them as an unknown machine)."""
    outcome: Outcome
    started: str | None = None
    """When the run started (ISO 8601, UTC)."""
    versions: dict[str, str] | None = None
    """zeroserve's, Python's and the libraries' versions."""
    collect_metrics: bool | None = None
    """`--collect-metrics`: the CSV ends with perf_analyzer's GPU columns."""
    floor: Floor | None = None
    """`--floor`'s no-op twin beside the model."""

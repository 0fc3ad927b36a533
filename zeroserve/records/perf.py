"""The perf record (docs/contracts.md): its typed shape, loaded and saved only through this type.

`PerfLevel` (one measured level) is shared: the tune record's candidates and the floor block hold levels
of the same shape.
"""

from __future__ import annotations

from typing import Any, ClassVar

from zeroserve.records.base import Block, Record
from zeroserve.records.measured import MeasuredOn
from zeroserve.records.perf_level import (
    ClientCost,
    Counts,
    Figures,
    GpuFigures,
    PerfLevel,
    ServerMetrics,
    ServerResources,
    ServerSplit,
    WindowFigures,
)

# the level's blocks are perf's: importable from here as from perf_level.py
__all__ = [
    "ClientCost",
    "Counts",
    "Figures",
    "Floor",
    "FloorComparison",
    "GpuFigures",
    "Outcome",
    "PerfLevel",
    "PerfRecord",
    "ServerMetrics",
    "ServerResources",
    "ServerSplit",
    "WindowFigures",
]


class Outcome(Block):
    """The exit code a run earns and why (3 unreachable, else 1 failures, else 4 unstable, else 0)."""

    exit_code: int
    """0 ok, 1 failed requests, 3 server unreachable at the end, 4 a level did not stabilise."""
    reason: str
    """Why, in one line (empty for 0)."""


class FloorComparison(Block):
    """One level: the model's figures beside its no-op twin's, and what the model itself adds."""

    concurrency: int | None
    """The level's concurrency (null for a request rate)."""
    request_rate: float | None
    """The level's request rate (null for a concurrency)."""
    model_p50_ms: float
    """The model's median latency."""
    floor_p50_ms: float
    """The twin's median latency."""
    added_p50_ms: float
    """What the model adds to the median."""
    model_p99_ms: float
    """The model's p99 latency."""
    floor_p99_ms: float
    """The twin's p99 latency."""
    added_p99_ms: float
    """What the model adds to p99."""
    model_mean_ms: float
    """The model's average latency."""
    floor_mean_ms: float
    """The twin's average latency."""
    added_mean_ms: float
    """What the model adds to the average."""
    model_throughput: float
    """The model's inferences per second."""
    floor_throughput: float
    """The twin's inferences per second."""
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
    """The engine and machine the twin was measured on (its runtime is `none`)."""
    levels: list[PerfLevel]
    """The twin's levels."""
    comparison: list[FloorComparison]
    """Per level, the model beside the twin."""
    notes: list[str]
    """The twin's runs' notes."""
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
    """"grpc" or "http"."""
    streaming: bool | None = None
    """gRPC streaming (--streaming)."""
    format: str | None = None
    """The served format ("onnx", "torchscript", ...)."""
    urls: list[str]
    """The servers load was sent to (host:port)."""
    batch_size: int
    """Rows per request."""
    shapes: dict[str, list[int]] | None = None
    """Shapes given for dynamic dimensions, by input."""
    measurement_mode: str | None = None
    """"time_windows" or "count_windows"."""
    measurement_request_count: int | None = None
    """Requests per window in count_windows mode."""
    input: str | None = None
    """Where the inputs came from ("random", "zero", "sample", "file <path>")."""
    shared_memory: str | None = None
    """"none" or "system"."""
    input_requests: int | None = None
    """Distinct requests sent round-robin."""
    mode: str | None = None
    """"concurrency", "request_rate" or "latency_budget"."""
    distribution: str | None = None
    """The request-rate schedule (null for concurrency levels)."""
    latency_budget_ms: float | None = None
    """The budget of a latency-budget search (null otherwise)."""
    latency_threshold_ms: float | None = None
    """perf_analyzer's -l (null without it)."""
    best: int | None = None
    """The highest concurrency within the latency budget (null without a budget, or none within it)."""
    latency_metric: str
    """The latency the stability rule and the budget use (`mean_ms`, `p95_ms`, ...)."""
    window_s: float | None = None
    """Seconds per measurement window."""
    stability: float | None = None
    """The stability threshold (share of the mean)."""
    max_trials: int | None = None
    """Windows per level at most."""
    workers: int | None = None
    """Load-generator processes."""
    options: dict[str, Any] | None = None
    """The options the run took (`PerfOptions.as_json()`; absent in records of 53e25ec)."""
    levels: list[PerfLevel]
    """Each measured level, in the order measured."""
    notes: list[str]
    """What a reader of the figures must know (shared cores, saturation, instability, failures)."""
    cpu_count: int | None = None
    """Cores on this machine."""
    cut_short: bool | None = None
    """The run stopped before its last level (its deadline, or a level that failed)."""
    measured_on: MeasuredOn | None = None
    """The engine and machine (absent in older records: `plan` treats them as an unknown machine)."""
    outcome: Outcome
    """The exit code the run earns, and why."""
    started: str | None = None
    """When the run started (ISO 8601, UTC)."""
    versions: dict[str, str] | None = None
    """zeroserve's, Python's and the libraries' versions."""
    collect_metrics: bool | None = None
    """`--collect-metrics`: the CSV ends with perf_analyzer's GPU columns."""
    floor: Floor | None = None
    """`--floor`'s no-op twin beside the model."""

"""The tune record (docs/contracts.md): its typed shape, loaded and saved only through this type.

`zeroserve tune` writes it (tune/record.py's `tune_record`; `--report`'s tune.json, `--json`'s output)
and `zeroserve plan` reads it: every candidate measured (`TuneEntry`, each a perf search summarised,
its levels `TuneLevel`), the deployed, best, closest and chosen configs, the side-by-side
re-measurement, where it was tuned (`tuned_on`) and the outcome.
"""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import SerializerFunctionWrapHandler, model_serializer

from zeroserve.records.base import Block, Record
from zeroserve.records.measured import MeasuredOn
from zeroserve.records.perf import ClientCost, ServerResources, ServerSplit


class Settings(Block):
    """One serving configuration (tune/search.py's `Candidate`)."""

    fmt: str
    """The deployed format (`onnx`, `torchscript`, `onnx_int8`, ...)."""
    instances: int
    max_batch_size: int
    prefer_max: bool
    """Dynamic batching's preferred batch size is `max_batch_size`."""
    queue_delay_us: int
    threads: int
    """The runtime's intra-op threads per instance."""
    preferred_batch_sizes: list[int]


class TuneLevel(Block):
    """One concurrency level of a candidate's perf search, summarised (and the budget's `p<x>_ms` latency)."""

    concurrency: int | None = None
    throughput: float
    p50_ms: float | None = None
    p99_ms: float | None = None
    mean_ms: float | None = None
    stable: bool
    failed: int
    """Failed requests over the level (its windows, warm-up and drain)."""
    server_resources: ServerResources | None = None

    def figure(self, key: str) -> float | None:
        """A latency by its record key (`p99_ms`, or the budget's `p95_ms` kept beside the declared ones)."""
        value = getattr(self, key, None)
        if value is None and self.model_extra:
            value = self.model_extra.get(key)
        return None if value is None else float(value)


class Measurement(Block):
    """A configuration's latency-budget search summarised (tune/search.py judges candidates by it)."""

    meets_budget: bool
    concurrency: int | None = None
    """The highest concurrency within the budget (null when none was)."""
    throughput: float
    """Inferences per second at that concurrency (0 when none met the budget)."""
    latency_ms: float | None = None
    """The budget's latency at that concurrency, or the lowest seen when none met it."""
    p50_ms: float | None = None
    p99_ms: float | None = None
    stable: bool
    failed: int
    server: ServerSplit | None = None
    """Triton's split of the level shown."""
    mean_ms: float | None = None
    client: ClientCost | None = None
    server_resources: ServerResources | None = None
    unstable_levels: list[int | None]
    levels: list[TuneLevel]
    name: str | None = None
    """The Triton name it was loaded under on the private server."""
    error: str | None = None
    """Why it was not measured (did not load, --max-minutes ran out)."""
    cut_short: bool | None = None


ENTRY_HEAD = ("candidate", "label", "deployed")


class TuneEntry(Measurement):
    """A measured configuration: its settings, then its measurement."""

    candidate: Settings
    label: str
    deployed: bool | None = None
    """The deployed config (the candidates' entries)."""

    @model_serializer(mode="wrap")
    def _settings_first(self, handler: SerializerFunctionWrapHandler):
        # no return annotation: the JSON Schema (docs/contracts.md's tables) stays the model's fields
        out = handler(self)
        return {**{k: out[k] for k in ENTRY_HEAD if k in out}, **out}  # as tune wrote it: what, then its figures


class Floor(Block):
    """The no-op twin at concurrency 1: the serving path's own latency."""

    latency_ms: float
    p50_ms: float
    p99_ms: float
    stable: bool


class SideFigures(Block):
    """One config's figures in one round of the side by side (or their medians, without concurrency)."""

    concurrency: int | None = None
    throughput: float
    p50_ms: float
    p99_ms: float
    stable: bool | None = None
    failed: int | None = None


class SideBySide(Block):
    """The best and the deployed config re-measured, interleaved; the medians and their throughput ratio."""

    rounds: list[dict[str, SideFigures]]
    """Each round: "deployed" and "best"."""
    median: dict[str, SideFigures]
    ratio: float | None = None
    """best / deployed median throughput."""


class TuneServer(Block):
    """The private server tune started (and stopped)."""

    pid: int
    host: str
    http_port: int
    grpc_port: int
    metrics_port: int | None = None


class TuneOutcome(Block):
    """The exit code the run earns: 0 a best config, 1 none met the budget or time ran out."""

    exit_code: int
    reason: str


class TuneRecord(Record):
    """The tune record: `tune.runner.run_tune` returns it, `--report` saves it as tune.json and `--json` prints
    it with `report` (the paths of the files written) beside its fields."""

    KIND: ClassVar[str] = "tune record"
    VERSION: ClassVar[int] = 1
    REMEDY: ClassVar[str] = "run `zeroserve tune --json` again"

    kind: str = "tune"
    model: str
    triton_model: str
    """The baseline (the deployed default format)."""
    repository: str | None = None
    formats: dict[str, str]
    """Format key -> Triton name of the formats tuned."""
    search: str
    """"quick" or "brute"."""
    latency_budget_ms: float
    options: dict[str, Any] | None = None
    """The options it ran with (tune/options.py's spellings)."""
    percentile: float
    latency_metric: str
    """The budget's latency key (`p99_ms`, ...)."""
    min_throughput: float | None = None
    protocol: str
    max_concurrency: int | None = None
    window_s: float | None = None
    max_minutes: float | None = None
    space: dict[str, list[Any]]
    """The values each dimension could take."""
    space_size: int | None = None
    floor: Floor | None = None
    deployed: TuneEntry | None = None
    candidates: list[TuneEntry]
    best: TuneEntry | None = None
    closest: TuneEntry | None = None
    """The candidate nearest the budget, when none met it."""
    side_by_side: SideBySide | None = None
    chosen: TuneEntry | None = None
    chosen_is_deployed: bool
    gain: float | None = None
    """The chosen config's throughput over the deployed one's (side by side)."""
    timed_out: bool
    seconds: float
    started: str | None = None
    server: TuneServer | None = None
    tuned_on: MeasuredOn | None = None
    """The embedded engine running the chosen format, and this machine."""
    notes: list[str]
    versions: dict[str, str] | None = None
    outcome: TuneOutcome
    applied: str | None = None
    """After --apply: the Triton name written (null when nothing was)."""
    applied_engine_differs: list[str] | None = None
    """After --apply: how the engine tuned on differs from the repository's target."""
    report: dict[str, str] | None = None
    """`--json`'s output only: the paths of the report files written ("json", "png", "html")."""

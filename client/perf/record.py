"""The perf record: the run's options, target, levels, best level, outcome, notes and where it was measured."""

from __future__ import annotations

import os
from datetime import UTC, datetime

from zeroserve import records
from zeroserve.client.input_files import perf_analyzer_entries
from zeroserve.client.perf.inputs import MAX_VARIANTS
from zeroserve.client.perf.levels import (
    outcome,
    run_notes,
)
from zeroserve.client.perf.options import PerfOptions
from zeroserve.client.perf.setup import Setup
from zeroserve.records.perf import PerfLevel, PerfRecord
from zeroserve.triton import machine


def perf_record(
    o: PerfOptions,
    setup: Setup,
    levels: list[PerfLevel],
    best: int | None,
    cut_short: bool,
    unreachable: str | None,
    engine: dict | None,
) -> PerfRecord:
    """The perf record: the options it ran with, each level's figures, notes, the outcome (built once, at the end)."""
    target, cores = setup.spec, os.cpu_count() or 1
    notes = run_notes(levels, o.stability, o.workers, cores)
    input_data = o.input_data
    entries = perf_analyzer_entries(input_data) if input_data is not None else None
    sent = 1 + len(setup.variants)
    if entries is not None and setup.extra_inputs:
        notes.append(
            f"{input_data}: {entries} perf_analyzer data entries sent round-robin as {sent} distinct "
            f"request(s) of {o.batch_size if target.batched else 1} row(s)"
            + (" (only the first with --shared-memory system)" if setup.shm is not None else "")
            + (f" (at most {MAX_VARIANTS})" if setup.extra_inputs + 1 >= MAX_VARIANTS else "")
        )
    return PerfRecord(
        kind="perf",
        model=target.name,
        triton_model=setup.triton_name,
        resolved=target.resolved,
        protocol=o.protocol,
        streaming=o.streaming,
        format=target.fmt,
        urls=setup.urls,
        batch_size=o.batch_size,
        shapes={k: list(v) for k, v in (o.shapes or {}).items()},
        measurement_mode=o.measurement_mode,
        measurement_request_count=o.measurement_request_count if o.measurement_mode == "count_windows" else None,
        input="file " + str(input_data) if input_data else o.input_mode,
        shared_memory=o.shared_memory,
        input_requests=sent,
        mode=o.mode,
        distribution=o.distribution if o.request_rate else None,
        latency_budget_ms=o.latency_budget_ms,
        latency_threshold_ms=o.latency_threshold_ms,
        best=best,
        latency_metric=o.latency_key,
        window_s=o.window,
        stability=o.stability,
        max_trials=o.max_trials,
        workers=o.workers,
        options=o.as_json(),
        levels=levels,
        notes=notes,
        cpu_count=cores,
        cut_short=cut_short,
        # the engine as the server describes the model (its version and served config); None when it did not say
        measured_on=machine.measured_on(engine),
        outcome=outcome(levels, unreachable, o.stability, o.allow_failures, o.allow_unstable),
        started=datetime.now(UTC).isoformat(timespec="seconds"),
        versions=records.versions("tritonclient", "grpcio", "hdrhistogram"),
    )

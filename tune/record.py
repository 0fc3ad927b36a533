"""The tuning record: a perf search summarised as one candidate's measurement, the record, and its outcome."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from zeroserve import records
from zeroserve.client.perf.levels import level_count
from zeroserve.records.measured import MeasuredOn
from zeroserve.records.perf import PerfRecord
from zeroserve.records.tune import Floor, Measurement, SideBySide, TuneEntry, TuneOutcome, TuneRecord, TuneServer
from zeroserve.spec import ModelSpec
from zeroserve.tune import search as S
from zeroserve.tune.options import Options
from zeroserve.tune.settings import tuned_on


def summary(rec: PerfRecord) -> Measurement:
    """A perf record of the latency-budget search as a tuning measurement (see tune/search.py)."""
    key = rec.latency_metric
    levels = rec.levels
    best = next((lv for lv in levels if lv.concurrency == rec.best), None) if rec.best else None
    failed = sum(level_count(lv) for lv in levels)
    seen = [lv.figure(key) for lv in levels if lv.ok]
    shown = best or (min(levels, key=lambda lv: lv.figure(key)) if levels else None)
    figures = {
        "meets_budget": best is not None,
        "concurrency": rec.best,
        "throughput": best.throughput if best else 0.0,
        "latency_ms": best.figure(key) if best else (min(seen) if seen else None),
        "p50_ms": shown.p50_ms if shown else None,
        "p99_ms": shown.p99_ms if shown else None,
        "stable": bool(best and best.stable),
        "failed": failed,
        "server": shown.server if shown else None,  # the perf level's own blocks, kept as they are
        # the latency breakdown of the level shown (tune's report draws it as perf's): average, client side
        "mean_ms": shown.mean_ms if shown else None,
        "client": shown.client if shown else None,
        "server_resources": best.server_resources if best else None,
        "unstable_levels": [lv.concurrency for lv in levels if not lv.stable],
        "levels": [
            {
                "concurrency": lv.concurrency,
                "throughput": lv.throughput,
                "p50_ms": lv.p50_ms,
                "p99_ms": lv.p99_ms,
                "mean_ms": lv.mean_ms,
                key: lv.figure(key),
                "stable": lv.stable,
                "failed": level_count(lv),
                "server_resources": lv.server_resources,
            }
            for lv in levels
        ],
    }
    return Measurement.model_validate(figures)


def metric_name(percentile: float) -> str:
    return f"p{percentile:g}"


def entry(cm: tuple[S.Candidate, Measurement] | None, **extra: Any) -> TuneEntry | None:
    """A candidate and its measurement as the record's entry (`extra`: e.g. deployed=True)."""
    if cm is None:
        return None
    c, m = cm
    return TuneEntry.model_validate({"candidate": c.as_json(), "label": c.label(), **extra, **m.to_json()})


def outcome(
    *,
    percentile: float,
    latency_budget_ms: float,
    min_throughput: float | None,
    max_minutes: float,
    timed_out: bool,
    measured: int,
    best: TuneEntry | None,
    chosen: TuneEntry | None,
    closest: TuneEntry | None,
) -> TuneOutcome:
    """0 a best config; 1 no candidate met the budget (the closest named) or time ran out (best so far)."""
    metric = metric_name(percentile)
    if timed_out:
        return TuneOutcome(
            exit_code=1,
            reason=f"--max-minutes {max_minutes:g} ran out after {measured} candidates; best so far: "
            + (f"{best.label} ({best.throughput:.0f} infer/s)" if best else "none within the budget")
            + "; nothing applied",
        )
    if chosen is None:
        c = closest
        minimum = f" and {min_throughput:g} infer/s" if min_throughput else ""
        if c is None:
            return TuneOutcome(exit_code=1, reason="no candidate was measured")
        detail = (
            f"{c.throughput:.0f} infer/s within the budget"
            if c.meets_budget
            else f"{metric} {c.latency_ms:.2f} ms at concurrency 1"
            if c.latency_ms is not None
            else c.error or "no answer"
        )
        return TuneOutcome(
            exit_code=1,
            reason=f"no candidate met the {latency_budget_ms:g} ms {metric} budget"
            f"{minimum}; the closest: {c.label} ({detail})",
        )
    return TuneOutcome(exit_code=0, reason="")


Measured = tuple[S.Candidate, Measurement]


@dataclass(frozen=True)
class Found:
    """What a run found: the floor, the deployed config's measurement, the best, the chosen, the side by side."""

    floor: Floor
    deployed: Measured
    best: Measured | None
    chosen: Measured | None
    side: SideBySide | None


@dataclass(frozen=True)
class RunFacts:
    """The run itself: how long it took, when it started, its private server and that server's Triton version."""

    seconds: float
    started: str
    server: TuneServer
    triton: str | None


def tune_record(
    spec: ModelSpec,
    repository: Path,
    opts: Options,
    tuner: Any,
    space: S.Space,
    result: S.SearchResult,
    found: Found,
    run: RunFacts,
    notes: list[str],
) -> TuneRecord:
    """The tuning record: every candidate measured, the deployed config, the best, the chosen, the outcome."""
    dep_c, dep_m = found.deployed
    side = found.side
    measured = [entry((c, m), deployed=c == dep_c) for c, m in result.measured]
    if dep_c not in space:
        measured.insert(0, entry((dep_c, dep_m), deployed=True))
    best, chosen = entry(found.best), entry(found.chosen)
    closest = entry(result.closest) if best is None else None
    is_deployed = found.chosen is not None and found.chosen[0] == dep_c
    return TuneRecord(
        kind="tune",
        model=spec.name,
        triton_model=tuner.base_name,
        repository=str(Path(repository).resolve()),
        formats=tuner.formats,
        search=opts.mode,
        latency_budget_ms=opts.budget,
        options=opts.as_json(),
        percentile=opts.percentile,
        latency_metric=f"p{opts.percentile:g}_ms",
        min_throughput=opts.min_throughput,
        protocol=opts.protocol,
        max_concurrency=opts.max_concurrency,
        window_s=opts.window_s,
        max_minutes=opts.max_minutes,
        space=space.as_json(),
        space_size=space.size(),
        floor=found.floor,
        deployed=entry((dep_c, dep_m)),
        candidates=[m for m in measured if m is not None],
        best=best,
        closest=closest,
        side_by_side=side,
        chosen=chosen,
        chosen_is_deployed=is_deployed,
        gain=(1.0 if is_deployed else side.ratio if side else None),
        timed_out=result.timed_out,
        seconds=run.seconds,
        started=run.started,
        server=run.server,
        tuned_on=MeasuredOn.model_validate(tuned_on(chosen.candidate.fmt if chosen else dep_c.fmt, run.triton)),
        notes=notes,
        versions=records.versions("tritonclient", "onnxruntime"),
        outcome=outcome(
            percentile=opts.percentile,
            latency_budget_ms=opts.budget,
            min_throughput=opts.min_throughput,
            max_minutes=opts.max_minutes,
            timed_out=result.timed_out,
            measured=len(measured),
            best=best,
            chosen=chosen,
            closest=closest,
        ),
    )

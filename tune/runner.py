"""`zeroserve tune`'s run: a private server, each candidate loaded, measured and unloaded, the answer re-measured.

The private server is the embedded engine (serve/server.py's `start_server`) on free loopback
ports with explicit model control, serving the deployed model and its no-op twin (the serving
path's floor). Each candidate is written as its own folder into that server's runtime repository
(serve/runtime.py's transform of a modified deployed config), loaded through the HTTP API,
measured with the perf engine (client/perf/run.py's latency-budget search), unloaded and removed. The
server is stopped at the end, after a failure and after Ctrl-C or SIGTERM alike; a served server
is never touched and the canonical repository is only read.
"""

from __future__ import annotations

import datetime as dt
import os
import time
from pathlib import Path
from typing import Any

from zeroserve.deploy.repository import read_manifest
from zeroserve.errors import InputError
from zeroserve.records.manifest import ManifestEntry
from zeroserve.records.tune import Measurement, SideBySide, TuneRecord, TuneServer
from zeroserve.spec import ModelSpec
from zeroserve.tune import search as S
from zeroserve.tune.options import Options
from zeroserve.tune.record import Found, Measured, RunFacts, metric_name, tune_record
from zeroserve.tune.settings import candidate_of
from zeroserve.tune.tuner import Event, Tuner


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def _choose(
    tuner: Tuner, result: S.SearchResult, dep_c: S.Candidate, dep_m: Measurement, opts: Options, notes: list[str]
) -> tuple[Measured | None, Measured | None, SideBySide | None, Measurement]:
    """The best config, and the one chosen after the best and the deployed are re-measured side by side.

    Returns (best, chosen, side-by-side or None, the deployed config's measurement as compared).
    """
    best = result.best
    if best is None and S.qualifies(dep_m, opts.min_throughput):
        best = (dep_c, dep_m)  # the deployed config, outside a narrowed space, is still an answer
    elif best is not None and S.qualifies(dep_m, opts.min_throughput) and dep_m.throughput > best[1].throughput:
        best = (dep_c, dep_m)
    side = None
    chosen = best
    if best is not None and best[0] != dep_c and not result.timed_out and dep_m.meets_budget:
        best_c, dep_at = best[1].concurrency or 1, dep_m.concurrency or 1  # both met the budget: both have one
        if dep_at < best_c:
            # the deployed config's search ran first and alone: one slow window stops it at a low
            # concurrency, and the side by side would then compare the two at unequal loads
            _, again = tuner.measure_deployed(start=best_c)
            if again.meets_budget and again.throughput > dep_m.throughput:
                notes.append(
                    f"the deployed config, searched again from c={best_c}, reached "
                    f"{again.throughput:.0f} infer/s at c={again.concurrency} (first search: "
                    f"{dep_m.throughput:.0f} at c={dep_m.concurrency}); the comparison uses it"
                )
                dep_m = again
        side = tuner.side_by_side(best[0], best_c, dep_m.concurrency or 1)
        over = [w for w in ("deployed", "best") if side.median[w].p99_ms > opts.budget]
        if over and opts.percentile == 99:
            notes.append(
                f"re-measured, the {' and '.join(over)} config's median p99 went above the budget at "
                "the concurrency its search chose: the machine was busier than during the search"
            )
        if side.ratio is not None and side.ratio < 1.0:
            chosen = (dep_c, dep_m)
            notes.append(
                f"re-measured side by side, {best[0].label()} gave {side.ratio:.3f}x the deployed "
                "config's throughput: the deployed config is kept"
            )
    return best, chosen, side, dep_m


def _gated(entry: ManifestEntry | None) -> int:
    """The export gate's maximum batch size a manifest entry records (0 when it records none)."""
    return (entry.gated_max_batch_size if entry is not None else None) or 0


def _search_space(tuner: Tuner, repository: Path, deployed_c: S.Candidate, opts: Options) -> tuple[S.Space, list[str]]:
    """The candidates the options allow around the deployed config, and what they dropped; InputError when none."""
    entries = read_manifest(repository).models
    # as high as the export gate checked (a tuning may have lowered the deployed one), never above
    max_batch = max(max(m.max_batch_size, _gated(entries.get(tuner.formats[k]))) for k, m in tuner.deployed.items())
    space, dropped = S.build_space(
        deployed_c,
        tuple(tuner.formats),
        os.cpu_count() or 1,
        max_batch,
        instances=opts.instances,
        batch_sizes=opts.batch_sizes,
        queue_delays_us=opts.queue_delays_us,
        threads=opts.threads,
        preferred=opts.preferred,
    )
    if space.size() == 0:
        raise InputError(
            "the options leave no candidate to measure" + (f": dropped {'; '.join(dropped)}" if dropped else "")
        )
    return space, dropped


def run_tune(
    spec: ModelSpec, repository: Path, opts: Options, fmt: str | None = None, on_event: Event | None = None
) -> TuneRecord:
    """Tune one deployed model on a private server; the tuning record (its `outcome` says the exit code).

    Raises:
        InputError (exit 2): the model is not deployed, the options leave no candidate, or the budget
            is below the serving path's measured floor at concurrency 1.
        ServerError (exit 3): the private server could not start or stopped answering.
    """
    t0 = time.monotonic()
    deadline = t0 + opts.max_minutes * 60
    started = _now()
    tuner = Tuner(spec, repository, fmt, opts, on_event)
    tuner.deadline = deadline
    base = tuner.deployed[tuner.base_fmt]
    deployed_c = candidate_of(base, tuner.base_fmt)
    space, dropped = _search_space(tuner, repository, deployed_c, opts)
    notes = [f"dropped from the search: {d}" for d in dropped]
    cores = os.cpu_count() or 1
    if cores <= 4:
        notes.append(
            f"this machine has {cores} cores shared by the private server and the load generator: "
            "figures include that contention, and anything else running at the time"
        )
    with tuner:
        floor = tuner.floor(opts.budget)
        if floor.latency_ms > opts.budget:
            raise InputError(
                f"the latency budget {opts.budget:g} ms is below this server's measured floor: "
                f"{metric_name(opts.percentile)} {floor.latency_ms:.2f} ms at concurrency 1 for a "
                f"model that does nothing; give a budget above it"
            )
        dep_c, dep_m = tuner.measure_deployed()
        best_holder: dict[str, Any] = {"rank": S.rank(dep_m, opts.min_throughput) if dep_c in space else (-1, 0)}

        def is_best(c: S.Candidate, m: Measurement) -> bool:
            r = S.rank(m, opts.min_throughput)
            if S.qualifies(m, opts.min_throughput) and r > best_holder["rank"]:
                best_holder["rank"] = r
                return True
            return False

        result = S.search(
            space,
            dep_c,
            lambda c: tuner.measure_candidate(c, is_best),
            opts.mode,
            min_throughput=opts.min_throughput,
            time_left=lambda: time.monotonic() < deadline,
            known={dep_c: dep_m},
        )
        best, chosen, side, dep_m = _choose(tuner, result, dep_c, dep_m, opts, notes)
        server = TuneServer.model_validate(
            tuner.server.state.model_dump(include={"pid", "host", "http_port", "grpc_port", "metrics_port"})
        )
        triton_version = tuner.triton_version()
    return tune_record(
        spec,
        repository,
        opts,
        tuner,
        space,
        result,
        Found(floor=floor, deployed=(dep_c, dep_m), best=best, chosen=chosen, side=side),
        RunFacts(seconds=time.monotonic() - t0, started=started, server=server, triton=triton_version),
        notes,
    )

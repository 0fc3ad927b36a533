"""`client perf --floor`: the engine's own floor measured beside a model's figures.

The floor is the model's no-op twin (`<triton name>_noop`: the same inputs, outputs, batching and
instances, answering zeros: serve/runtime.py's `noop_of`, the mechanism `zeroserve tune` measures
its floor with) on the same engine. When the serving server does not serve the twin, a private
embedded server is started from the serving one's repository (serve/private.py's `private_server`:
free loopback ports, explicit model control, stopped at the end, also after an error or Ctrl-C).
Each level is measured for the model and for the twin in turn, the order alternating from level to
level, so both see the same machine; the record gets a `floor` block with the twin's levels and, per level, the model's
latency and throughput beside the floor's and the difference.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

from rich.table import Table

from zeroserve.client.connection import Client
from zeroserve.client.endpoints import Endpoint
from zeroserve.client.model import Target, resolve
from zeroserve.client.perf.panels import label
from zeroserve.errors import InputError
from zeroserve.records.perf import Floor, FloorComparison, Outcome, PerfLevel, PerfRecord
from zeroserve.serve.runtime import NOOP_SUFFIX

# which sub-run's outcome the merged record takes: the first that matches (perf's exit-code rule)
OUTCOME_ORDER = (3, 1, 4)


def twin_name(triton_name: str) -> str:
    return f"{triton_name}{NOOP_SUFFIX}"


@contextlib.contextmanager
def twin_server(client: Client, triton_name: str, timeout: float) -> Iterator[tuple[Endpoint, str]]:
    """(endpoint, where) of a server that serves the twin: the serving one when it does, else a private one."""
    name = twin_name(triton_name)
    if client.is_ready(name):
        host, _, port = client.url.rpartition(":")
        yield Endpoint(host.strip("[]"), int(port), int(port), "the serving server"), "the serving server"
        return
    state = client.server_state()
    if state is None or state.engine != "embedded" or not state.repository:
        raise InputError(
            f"--floor needs {name} (a no-op model with {triton_name}'s inputs and outputs) on the server at "
            f"{client.url}, or a zeroserve server whose repository the twin can be built from: this server is "
            "not one zeroserve started here"
        )
    from zeroserve.serve.private import private_server

    with private_server(
        Path(state.repository),
        [triton_name],
        purpose=f"zeroserve client perf --floor: {name} (private, stopped at the end of the run)",
        own_cache=False,  # a run killed before its stop leaves a state file `zeroserve stop --all` finds
        noop_of=[triton_name],
        model_control="explicit",
        timeout=max(timeout, 120.0),
    ) as server:
        s = server.state
        where = f"a private embedded server (pid {server.pid}) built from {state.repository}"
        yield Endpoint(s.host, s.http_port, s.grpc_port or 0, "the floor's private server"), where


def comparison(model: PerfLevel, floor: PerfLevel) -> FloorComparison:
    """One level: the model's figures beside the floor's, and the difference (what the model itself adds)."""
    out: dict[str, Any] = {"concurrency": model.concurrency, "request_rate": model.request_rate}
    for key in ("p50_ms", "p99_ms", "mean_ms"):
        out[f"model_{key}"], out[f"floor_{key}"] = model.figure(key), floor.figure(key)
        out[f"added_{key}"] = model.figure(key) - floor.figure(key)
    out["model_throughput"], out["floor_throughput"] = model.throughput, floor.throughput
    out["throughput_ratio"] = model.throughput / floor.throughput if floor.throughput else None
    # how much of the model's median latency the engine path alone takes
    out["floor_share_p50"] = floor.p50_ms / model.p50_ms if model.p50_ms else None
    return FloorComparison.model_validate(out)


def _outcome(records: list[PerfRecord]) -> Outcome:
    for code in OUTCOME_ORDER:
        for rec in records:
            if rec.outcome.exit_code == code:
                return rec.outcome
    return Outcome(exit_code=0, reason="")


def perf_with_floor(
    run: Callable[..., PerfRecord], spec: Any, endpoint: Endpoint, opts: Any = None, **kwargs
) -> PerfRecord:
    """`run` (client/perf/run.py's `run_perf`) for the model and its no-op twin, level by level, interleaved.

    Takes `run_perf`'s arguments (its options object and keyword fields); one level per call, the model first
    at even levels and the twin first at odd ones. The model's record is returned with its levels, and
    `floor` = {"triton_model", "server", "measured_on", "levels", "comparison", "notes"}; its `outcome` is the
    worst of both runs'.
    """
    from zeroserve.client.perf.options import PerfOptions

    names = {f.name for f in dataclasses.fields(PerfOptions)}
    o = dataclasses.replace(opts or PerfOptions(), **{k: kwargs.pop(k) for k in list(kwargs) if k in names})
    if o.latency_budget_ms is not None:
        raise InputError("--floor measures fixed levels: give --concurrency or --request-rate, not --latency-budget-ms")
    if len(o.urls or ()) > 1:
        raise InputError("--floor measures one server: give at most one --url")
    key = "request_rate" if o.request_rate else "concurrency"
    levels: list = list(o.request_rate) if o.request_rate else (o.concurrency_levels or [1])
    with contextlib.ExitStack() as stack:
        if o.urls:
            from zeroserve.client.endpoints import parse_url

            host, port = parse_url(o.urls[0], o.protocol)
            endpoint = Endpoint(host, port, port, "--url")
        o = dataclasses.replace(o, urls=None)
        client = stack.enter_context(Client(endpoint, o.protocol, o.timeout))
        target = spec if isinstance(spec, Target) else resolve(spec, client, o.fmt, kwargs.get("model_files"))
        on_level = kwargs.pop("on_level", None)
        twin_endpoint, where = stack.enter_context(twin_server(client, target.triton_name, o.timeout))
        twin = replace(target, triton_name=twin_name(target.triton_name))
        runs: dict[str, list[PerfRecord]] = {"model": [], "floor": []}
        for i, level in enumerate(levels):
            order = ("model", "floor") if i % 2 == 0 else ("floor", "model")
            for which in order:
                rec = run(
                    target if which == "model" else twin,
                    endpoint if which == "model" else twin_endpoint,
                    dataclasses.replace(o, **{key: (level,)}),
                    on_level=(lambda lv, w=which: on_level(lv, w)) if on_level else None,
                    **kwargs,
                )
                runs[which].append(rec)
            if any(r.outcome.exit_code for r in (runs["model"][-1], runs["floor"][-1])):
                break  # perf's own rule: the run stops at a level that failed, lost the server or did not stabilise
    return merge(runs["model"], runs["floor"], where)


def merge(model_runs: list[PerfRecord], floor_runs: list[PerfRecord], where: str) -> PerfRecord:
    """The model's per-level records as one record, with the floor's beside it."""
    floor_levels = [lv for r in floor_runs for lv in r.levels]
    levels = [lv for r in model_runs for lv in r.levels]
    pairs = [comparison(m, f) for m, f in zip(levels, floor_levels) if m.ok and f.ok]
    floor = Floor(
        triton_model=floor_runs[0].triton_model,
        server=where,
        measured_on=floor_runs[0].measured_on,
        levels=floor_levels,
        comparison=pairs,
        notes=list(dict.fromkeys(n for r in floor_runs for n in r.notes)),
        interleaved="each level measured for the model and the floor in turn, the order alternating by level",
    )
    notes = list(dict.fromkeys(n for r in model_runs for n in r.notes))
    update = {"levels": levels, "notes": notes, "floor": floor, "outcome": _outcome([*model_runs, *floor_runs])}
    rec = model_runs[0].model_copy(update=update)
    rec.__pydantic_fields_set__.update(update)  # written as set: the merged fields are the record's own
    return rec


def floor_line(rec: PerfRecord) -> str:
    """The floor in one line for a title: its c=1 p50 and its highest throughput."""
    floor = rec.floor
    if not floor or not floor.levels:
        return ""
    levels = floor.levels
    first = min(levels, key=lambda lv: lv.concurrency or lv.request_rate or 0)
    top = max(levels, key=lambda lv: lv.throughput)
    return (
        f"floor ({floor.triton_model}, no-op): p50 {first.p50_ms:.2f} ms at {label(first)}, "
        f"{top.throughput:,.0f} infer/s at {label(top)}"
    )


def table(rec: PerfRecord) -> Table:
    """The model beside its floor, per level."""
    floor = rec.floor
    assert floor is not None  # only drawn for a --floor run
    t = Table(title=f"{rec.triton_model} beside its floor ({floor.triton_model}, {floor.server})")
    for c in ("level", "p50 ms model/floor", "added p50 ms", "p99 ms model/floor", "infer/s model/floor", "ratio"):
        t.add_column(c, justify="left" if c == "level" else "right")
    for p in floor.comparison:
        ratio = p.throughput_ratio
        t.add_row(
            label(p),
            f"{p.model_p50_ms:.3f} / {p.floor_p50_ms:.3f}",
            f"{p.added_p50_ms:+.3f}",
            f"{p.model_p99_ms:.3f} / {p.floor_p99_ms:.3f}",
            f"{p.model_throughput:,.0f} / {p.floor_throughput:,.0f}",
            "-" if ratio is None else f"{ratio:.0%}",
        )
    return t

"""`zeroserve client perf`: perf_analyzer's method on a wire-level load generator.

Per level: warm-up, then measurement windows until the last 3 agree within `stability` on
throughput and latency (`--percentile N`'s, else the average, as perf_analyzer), at most
`max_trials` windows (the rule and the window figures: `client/perf/windows.py`; what is sent:
`client/perf/inputs.py`). Figures come from the stable windows: HdrHistogram percentiles, counts, the
generator's own cost per request, and the server-side split from Triton's statistics extension
(two samples differenced). Every request is counted: a level's `totals` cover all its windows and
its `warmup` the warm-up; one rule (`outcome`) turns the record into the exit code.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import time
from collections.abc import Callable
from dataclasses import asdict, replace

import numpy as np

from zeroserve import formats as F
from zeroserve.client.connection import AsyncClient, Client, add_statistics
from zeroserve.client.endpoints import Endpoint, parse_url, require_loopback
from zeroserve.client.input_files import check_validation_data
from zeroserve.client.model import Target, resolve
from zeroserve.client.perf import load
from zeroserve.client.perf.generator import WorkerPool
from zeroserve.client.perf.inputs import SharedMemory, input_variants, perf_inputs
from zeroserve.client.perf.levels import (
    level_count,
    level_name,
)
from zeroserve.client.perf.metrics import DEFAULT_INTERVAL_S, LevelMetrics, Source, count_warning, csv_columns
from zeroserve.client.perf.options import PerfOptions
from zeroserve.client.perf.record import perf_record
from zeroserve.client.perf.setup import Setup
from zeroserve.client.perf.windows import (
    STABLE_WINDOWS,
    Window,
    is_stable,
    latency_budget_search,
    summarise,
    totals,
)
from zeroserve.client.perf.wire import expected_outputs
from zeroserve.client.values import to_wire
from zeroserve.deploy.release import TARGET
from zeroserve.errors import InputError, ServerError
from zeroserve.records.perf import PerfLevel, PerfRecord
from zeroserve.spec import ModelSpec
from zeroserve.triton import machine
from zeroserve.triton.errors import ModelNotServed, RequestFailed
from zeroserve.triton.ports import hostport
from zeroserve.triton.restricted import client_shm_refusal

# ---------------------------------------------------------------- one level


async def _level(setup: Setup, concurrency: int | None, rate: float | None) -> PerfLevel:
    """Run one level to stability (or max_trials, or until the server stops answering); its figures.

    The level's own figures come from the last stable windows; `totals` covers every measured
    window, `warmup` the warm-up, `drain` the requests in flight when the load stopped;
    `server_lost` says why a level ended early.
    """
    windows: list[Window] = []
    samples: list[dict[str, int]] = []
    key = setup.latency_key
    lost = None
    probe = LevelMetrics(list(setup.metrics), setup.triton_name, setup.metrics_interval_s) if setup.metrics else None
    async with contextlib.AsyncExitStack() as stack:
        # a server listed twice is sampled once
        stat_clients = [
            await stack.enter_async_context(AsyncClient(u, setup.protocol, setup.timeout))
            for u in dict.fromkeys(setup.urls)
        ]
        if probe is not None:  # read before the first request of the level and after its last answer
            await stack.enter_async_context(probe)

        async def stats() -> dict[str, int]:
            return add_statistics(list(await asyncio.gather(*(c.statistics(setup.triton_name) for c in stat_clients))))

        async with setup.generator(concurrency, rate) as gen:
            t0 = time.perf_counter()
            await asyncio.sleep(setup.warmup_s)
            warm = await gen.swap()  # the warm-up is not measured, but its requests are counted
            t1 = time.perf_counter()
            warmup = Window(t1 - t0, warm.counts, setup.batch_size, warm.cpu_seconds, warm.loop_cpu_seconds)
            try:
                samples.append(await stats())
            except (ServerError, RequestFailed) as exc:
                lost = str(exc)
            t0 = time.perf_counter()
            for _ in range(setup.max_trials if lost is None else 0):
                sample = await _window(setup, gen)
                t1 = time.perf_counter()
                windows.append(
                    Window(t1 - t0, sample.counts, setup.batch_size, sample.cpu_seconds, sample.loop_cpu_seconds)
                )
                t0 = t1
                try:
                    samples.append(await stats())
                except (ServerError, RequestFailed) as exc:  # gone, or answering without the model
                    lost = str(exc)
                    break
                if is_stable([(x.throughput, x.latency(key)) for x in windows], setup.stability):
                    break
            t0 = time.perf_counter()
            last = await gen.finish()  # the requests still in flight are counted too
            drain = Window(
                time.perf_counter() - t0, last.counts, setup.batch_size, last.cpu_seconds, last.loop_cpu_seconds
            )
    # figures from windows that have a statistics sample at each end
    sampled = windows[: max(0, len(samples) - 1)]
    used = sampled[-STABLE_WINDOWS:]
    first = len(sampled) - len(used)
    fig = summarise(used, samples[first] if used else None, samples[len(sampled)] if used else None, setup.percentile)
    fig.update(
        {
            "concurrency": concurrency,
            "request_rate": rate,
            "latency_metric": key,
            "stable": lost is None and is_stable([(x.throughput, x.latency(key)) for x in windows], setup.stability),
            "trials": len(windows),
            "windows": [w.as_json(key) for w in windows],
            "totals": totals(windows),
            "warmup": totals([warmup]),
            "drain": totals([drain]),
        }
    )
    if lost is not None:
        fig["server_lost"] = lost
    # the level is typed once, after its load has stopped (never inside the load loop)
    level = PerfLevel.model_validate(fig)
    if probe is not None:
        await probe.settle(level_count(level, "requests"))
        level.server_metrics, level.server_resources = probe.figures(level_count(level, "requests"))
        level.gpu_metrics = csv_columns(level)  # perf_analyzer's --collect-metrics CSV cells (pa_csv's hook)
    if rate is not None:
        level.achieved_rate = level.sent / level.seconds if level.seconds else 0.0
        level.rate_kept = level.achieved_rate >= 0.95 * rate and level.send_lag_p99_ms <= 10 * load.LATE_SEND_MS
    return level


async def _window(setup: Setup, gen):
    """One measurement window: `window_s` long (time_windows), or with count_windows extended in small
    steps until it holds `request_count` requests, bounded by max(10 windows, --timeout)."""
    await asyncio.sleep(setup.window_s)
    sample = await gen.swap()
    if setup.request_count is None:
        return sample
    deadline = time.perf_counter() + max(10 * setup.window_s, setup.timeout)
    step = max(0.02, setup.window_s / 10)
    while sample.counts.ok + sample.counts.failed < setup.request_count and time.perf_counter() < deadline:
        await asyncio.sleep(step)
        sample = sample.extend(await gen.swap())
    return sample


# ---------------------------------------------------------------- the run


def resolve_urls(endpoint: Endpoint, protocol: str, urls: list[str] | None) -> list[str]:
    """The servers to load (`--url` wins over the endpoint options), every one on loopback."""
    pairs = (
        [parse_url(u, protocol) for u in urls]
        if urls
        else [(endpoint.host, endpoint.http_port if protocol == "http" else endpoint.grpc_port)]
    )
    for host, _ in pairs:
        require_loopback(host)
    return [hostport("127.0.0.1" if h == "localhost" else h, p) for h, p in pairs]


def run_perf(
    spec: ModelSpec | Target | str,
    endpoint: Endpoint,
    opts: PerfOptions | None = None,
    *,
    model_files=None,
    on_level: Callable[[PerfLevel], None] | None = None,
    triton_name: str | None = None,
    resolution: float = 0.0,
    deadline: float | None = None,
    collect_metrics: bool = True,
    metrics_url: str | None = None,
    metrics_interval_s: float = DEFAULT_INTERVAL_S,
    require_metrics: bool = False,
    **fields,
) -> PerfRecord:
    """Measure one served model at each load level; the perf record (see report.py for its renderings).

    `opts` (client/perf/options.py) says how; keyword `fields` replace some of its fields (or of the
    defaults), checked as the object is. `spec` is a registry entry, a resolved Target, or a name
    resolved against the first server (client/model.py: registry name, registry name plus format
    suffix, else the server's own model).

    Once load has started the record is always returned: its `outcome` says which exit code the run
    earns (`raise_for_outcome`). Before load, a bad option is an InputError and an unreachable server a
    ServerError (exit 3). The run stops early at a level that did not stabilise (unless
    allow_unstable), where every request failed, or when the server stops answering.

    `triton_name` measures another served model with the spec's tensors (`zeroserve tune`'s
    candidates); `resolution` shapes the latency-budget search (`windows.latency_budget_search`).
    `deadline` (time.monotonic()) starts no level after it: the record's `cut_short` says the run
    ended there (tune's --max-minutes).

    `collect_metrics`: each level gets the servers' own figures (client/perf/metrics.py) from a zeroserve
    server's metrics endpoint and process tree, or from `metrics_url` (perf_analyzer's --metrics-url);
    `require_metrics` (--collect-metrics) refuses a server whose endpoint is not known.
    """
    o = dataclasses.replace(opts or PerfOptions(), **fields)
    urls = resolve_urls(endpoint, o.protocol, list(o.urls) if o.urls else None)
    sync = []
    for u in urls:
        host, port = parse_url(u)
        sync.append(Client(Endpoint(host, port, port, "url"), o.protocol, o.timeout))
    try:
        setup = _prepare(o, spec, sync, urls, model_files, triton_name)
        if collect_metrics or require_metrics:
            setup.metrics = _metric_sources(sync, metrics_url, require_metrics)
            setup.metrics_interval_s = metrics_interval_s
        try:
            setup.pool = WorkerPool(o.workers) if o.workers > 1 else None
            search = dict(max_concurrency=o.max_concurrency, start=o.start_concurrency, resolution=resolution)
            levels, best, cut_short = _measure_levels(setup, o, on_level, search, deadline)
        finally:
            if setup.pool is not None:
                setup.pool.close()
            if setup.shm is not None:
                setup.shm.close()
        unreachable = _unreachable(sync, setup.triton_name)
        engine = machine.engine_of(sync[0], setup.triton_name, asdict(TARGET)) if sync else None
    finally:
        for c in sync:
            c.close()
    rec = perf_record(o, setup, levels, best, cut_short, unreachable, engine)
    rec.notes += [w for lv in levels if (w := count_warning(lv, level_name(lv)))]
    rec.collect_metrics = require_metrics
    return rec


def _prepare(o: PerfOptions, spec, sync: list[Client], urls: list[str], model_files, triton_name: str | None) -> Setup:
    """Resolve the target, check the options against what is served, build the inputs and one reference
    answer per server (and per input-data entry), and register shared memory: the run's Setup."""
    for c in sync if o.shared_memory == "system" else []:  # a zeroserve server without --allow-client-shm
        refusal = client_shm_refusal(c.server_state(), c.url)
        if refusal:
            raise InputError(refusal)
    if isinstance(spec, str):
        target = resolve(spec, sync[0], o.fmt, model_files)
    elif isinstance(spec, Target):
        target = spec
    else:
        target = Target.of_spec(spec, o.fmt or F.DEFAULT_FORMAT)
    if triton_name is not None:  # another served model with these tensors (zeroserve tune's candidates)
        target = replace(target, triton_name=triton_name)
    name, batch_size = target.triton_name, o.batch_size
    served_max = target.max_batch_size
    for c in sync:
        c.require_model(name)
        served_max = min(served_max, c.max_batch_size(name) or served_max)
    if not target.batched and batch_size != 1:
        raise InputError(f"{name} does not batch (max_batch_size 0): its requests hold one sample, use batch size 1")
    if target.batched and not 1 <= batch_size <= served_max:
        raise InputError(f"the batch size must be between 1 and {name}'s max_batch_size {served_max}")
    inputs = dict(shapes=o.shapes, cast=o.cast, allow_nonfinite=o.allow_nonfinite)
    arrays = perf_inputs(
        target, batch_size, o.input_mode, input_data=o.input_data, data_dir=o.data_dir, seed=o.seed, **inputs
    )
    outputs = [c.infer(target, name, arrays) for c in sync]  # one real answer per server before load
    names = [t.name for t in target.outputs]
    for answer in outputs:  # perf_analyzer's validation_data, when the input file has it
        check_validation_data(target, o.input_data, answer, rows=batch_size)
    variants = []  # perf_analyzer's round-robin over its input-data entries: one reference answer each
    for start, v_arrays in input_variants(
        target, o.input_data, batch_size, o.shapes, cast=o.cast, allow_nonfinite=o.allow_nonfinite
    ):
        answers = [c.infer(target, name, v_arrays) for c in sync]
        for answer in answers:
            check_validation_data(target, o.input_data, answer, rows=batch_size, start=start)
        variants.append((v_arrays, expected_outputs(names, answers[0])))
    shm = _shared_memory(o, target, sync, arrays, outputs[0]) if o.shared_memory == "system" else None
    return Setup(
        target,
        name,
        o.protocol,
        urls,
        arrays,
        batch_size,
        o.window,
        o.warmup,
        o.stability,
        o.max_trials,
        o.timeout,
        shm,
        o.distribution,
        o.seed,
        expected=expected_outputs(names, outputs[0]),
        streaming=o.streaming,
        percentile=o.percentile,
        request_count=o.measurement_request_count if o.measurement_mode == "count_windows" else None,
        variants=tuple(variants) if shm is None else (),
        extra_inputs=len(variants),
    )


def _metric_sources(clients: list[Client], url: str | None, required: bool = False) -> tuple[Source, ...]:
    """Each server's metrics endpoint and process tree (a zeroserve server's state), or the one `url` given;
    `required` (--collect-metrics): InputError for a server whose endpoint is not known."""
    unique = list({c.url: c for c in clients}.values())
    if url is not None and len(unique) > 1:
        raise InputError("--metrics-url names one server's endpoint: give it with one --url")
    found = [Source.of_state(c.server_state(), url) for c in unique]
    missing = [c.url for c, s in zip(unique, found) if s is None or s.url is None]
    if required and missing:
        raise InputError(
            f"--collect-metrics: the metrics endpoint of the server at {', '.join(missing)} is not known (not a "
            "zeroserve server): give --metrics-url http://HOST:PORT/metrics"
        )
    if missing:  # the servers' counts would be some servers' only: no cross-check is better than a false one
        return ()
    return tuple(s for s in found if s is not None)


def _shared_memory(o: PerfOptions, target: Target, sync: list[Client], arrays, answer) -> SharedMemory:
    """System shared-memory regions for the inputs and outputs, registered once per server."""
    sizes = [_nbytes(a) for a in answer]
    given = o.output_shared_memory_size
    if given is not None and given < max(sizes):
        raise InputError(
            f"--output-shared-memory-size {given} bytes is below the largest output ({max(sizes)} bytes) of "
            f"{target.triton_name}; give at least that"
        )
    slots = max(o.concurrency_levels or [0]) or min(256, load.MAX_OUTSTANDING)
    unique = list({c.url: c for c in sync}.values())  # one registration per server, even if listed twice
    sizes = [max(n, given or 0) for n in sizes]
    return SharedMemory.create(unique, to_wire(target, arrays), sizes, slots, f"{os.getpid()}_{target.triton_name}")


def _nbytes(a: np.ndarray) -> int:
    """Bytes an output takes in a shared-memory region (BYTES: Triton's length-prefixed serialization)."""
    if a.dtype == object:
        from tritonclient.utils import serialize_byte_tensor

        return len(serialize_byte_tensor(a).item())
    return a.nbytes


def _unreachable(clients: list[Client], triton_name: str) -> str | None:
    """Why a server no longer answers for the model at the end of a run (gone, or shutting down and its
    model unloaded), or None when every one does."""
    for c in clients:
        try:
            c.require_model(triton_name)
        except (ServerError, ModelNotServed) as exc:
            return str(exc)
    return None


def _measure_levels(setup: Setup, o: PerfOptions, on_level, search=None, deadline: float | None = None):
    """Run the levels of the chosen mode; stop after a level that lost the server, where every request
    failed, or (unless allowed) that did not stabilise, after one over perf_analyzer's -l threshold,
    and before a level that would start after `deadline`. Returns (levels, best concurrency or None,
    whether the deadline cut the run short)."""
    stopped = False
    cut = False
    threshold = None if o.binary_search else o.latency_threshold_ms

    def measure(c: int | None, r: float | None) -> PerfLevel | None:
        nonlocal stopped, cut
        if not stopped and deadline is not None and time.monotonic() >= deadline:
            stopped = cut = True
        if stopped:
            return None
        level = asyncio.run(_level(setup, c, r))
        if on_level:
            on_level(level)
        every_failed = level_count(level) and not level_count(level, "ok")
        if level.server_lost is not None or every_failed or (not level.stable and not o.allow_unstable):
            stopped = True
        if threshold is not None and level.figure(setup.latency_key) > threshold:
            stopped = True  # perf_analyzer: "Measured latency went over the set limit"
        return level

    if o.latency_budget_ms is not None:
        best, levels = latency_budget_search(
            lambda c: measure(c, None), o.latency_budget_ms, setup.latency_key, **(search or {})
        )
        return levels, (best.concurrency if best else None), cut
    if o.request_rate:
        measured = [measure(None, r) for r in o.request_rate]
    else:
        measured = [measure(c, None) for c in o.concurrency_levels]
    return [lv for lv in measured if lv is not None], None, cut

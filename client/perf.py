"""`zeroserve client perf`: perf_analyzer's method on a wire-level load generator.

Per level: warm-up, then measurement windows until the last 3 agree within `stability` on
throughput and latency (`--percentile N`'s, else the average, as perf_analyzer), at most
`max_trials` windows. Figures come from the stable windows: HdrHistogram percentiles, counts, the
generator's own cost per request, and the server-side split from Triton's statistics extension
(two samples differenced). Every request is counted: a level's `totals` cover all its windows and
its `warmup` the warm-up; one rule (`outcome`) turns the record into the exit code.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
from hdrh.histogram import HdrHistogram

from zeroserve import records
from zeroserve.client import load
from zeroserve.client.connection import (AsyncClient, Client, Endpoint, ModelNotServed, add_statistics, parse_url,
                                         require_loopback, server_split, to_wire, validate_inputs)
from zeroserve.client.errors import RequestFailed
from zeroserve.client.generator import LoadPlan, LocalGenerator, ProcessGenerator, Tensors, WorkerPool, split_level
from zeroserve.client.wire import OutputSpec, expected_outputs
from zeroserve.errors import CheckFailed, InputError, ServerError, UnstableError
from zeroserve.spec import ModelSpec

STABLE_WINDOWS = 3
PERCENTILES = (50, 90, 95, 99)
SATURATED = 0.9  # share of one core the event-loop thread may use before the generator is the bottleneck
SHARED_CORES_NOTE = ("this machine has {cores} cores shared by the server and the load generator: "
                     "figures include that contention")
MAX_SEARCH_CONCURRENCY = 256
MAX_WORKERS = 16


# ---------------------------------------------------------------- figures


def percentiles(hist: HdrHistogram, extra: float | None = None) -> dict[str, float]:
    """p50/p90/p95/p99 (and p`extra`), max and mean in milliseconds from a microsecond histogram (zeros when empty)."""
    points = PERCENTILES + ((extra,) if extra is not None and extra not in PERCENTILES else ())
    if hist.get_total_count() == 0:
        return {**{latency_key(p): 0.0 for p in points}, "max_ms": 0.0, "mean_ms": 0.0}
    out = {latency_key(p): hist.get_value_at_percentile(p) / 1e3 for p in points}
    out["max_ms"] = hist.get_max_value() / 1e3
    out["mean_ms"] = hist.get_mean_value() / 1e3
    return out


def latency_key(percentile: float | None) -> str:
    """The record key of the latency the stability rule and the budget search use: `p95_ms`, or `mean_ms`."""
    return "mean_ms" if percentile is None else f"p{percentile:g}_ms"


@dataclass
class Window:
    """One measurement window's figures (generator side, plus the server counters at its end)."""

    seconds: float
    counts: load.WindowCounts
    batch_size: int
    cpu_seconds: float = 0.0
    loop_cpu_seconds: float = 0.0
    stats: dict[str, int] | None = None

    @property
    def throughput(self) -> float:
        """Inferences per second (answered requests x batch size)."""
        return self.counts.ok * self.batch_size / self.seconds if self.seconds > 0 else 0.0

    def latency(self, key: str) -> float:
        """One latency figure of this window (`p99_ms`, `mean_ms`, ...)."""
        if key == "mean_ms":
            h = self.counts.histogram
            return h.get_mean_value() / 1e3 if h.get_total_count() else 0.0
        return self.counts.histogram.get_value_at_percentile(float(key[1:-3])) / 1e3

    def as_json(self, key: str = "mean_ms") -> dict:
        """The window's figures, so that drift across a level can be seen."""
        c = self.counts
        out = {"seconds": round(self.seconds, 4), "requests": c.ok + c.failed, "ok": c.ok, "failed": c.failed,
               "failures": dict(c.errors), "throughput": self.throughput,
               **{k: self.latency(k) for k in dict.fromkeys(("p50_ms", "p99_ms", "mean_ms", key))},
               "generator_cpu": self.cpu_seconds / self.seconds if self.seconds else 0.0}
        return out


def is_stable(figures: list[tuple[float, float]], threshold: float, count: int = STABLE_WINDOWS) -> bool:
    """perf_analyzer's rule: the last `count` (throughput, latency) pairs each within `threshold` of their mean."""
    if len(figures) < count:
        return False
    last = figures[-count:]
    for k in range(2):
        values = [f[k] for f in last]
        mean = sum(values) / count
        if mean <= 0 or any(abs(v - mean) > threshold * mean for v in values):
            return False
    return True


def summarise(windows: list[Window], before: dict[str, int] | None, after: dict[str, int] | None,
              percentile: float | None = None) -> dict:
    """A level's figures over the given windows: throughput, percentiles, counts, server split, client cost."""
    hist, lag = load.new_histogram(), load.new_histogram()
    for w in windows:
        hist.add(w.counts.histogram)
        lag.add(w.counts.lag)
    seconds = sum(w.seconds for w in windows)
    ok = sum(w.counts.ok for w in windows)
    failed = sum(w.counts.failed for w in windows)
    sent = sum(w.counts.sent for w in windows)
    failures, messages = count_failures(w.counts for w in windows)
    batch = windows[0].batch_size if windows else 1
    cpu = sum(w.cpu_seconds for w in windows)
    per = 1e6 / (ok + failed) if ok + failed else 0.0
    fig = {
        "windows_used": len(windows), "seconds": seconds,
        "throughput": ok * batch / seconds if seconds else 0.0,
        "requests_per_s": ok / seconds if seconds else 0.0,
        **percentiles(hist, percentile),
        "requests": ok + failed, "ok": ok, "failed": failed, "sent": sent,
        "late_sends": sum(w.counts.late for w in windows),
        "send_lag_p99_ms": lag.get_value_at_percentile(99) / 1e3 if lag.get_total_count() else 0.0,
        "generator_cpu": cpu / seconds if seconds else 0.0,
        "loop_cpu": sum(w.loop_cpu_seconds for w in windows) / seconds if seconds else 0.0,
        # the client side of each request, beside the server's split (perf_analyzer's Client Send/Recv)
        "client": {"cpu_us": cpu * per, "send_us": sum(w.counts.send_s for w in windows) * per,
                   "check_us": sum(w.counts.check_s for w in windows) * per},
        "failures": failures, "failure_messages": messages,
        "server": server_split(before, after) if before and after else None,
    }
    fig["generator_saturated"] = fig["loop_cpu"] >= SATURATED
    return fig


def count_failures(windows) -> tuple[dict[str, int], dict[str, str]]:
    """Failures by kind over several windows' counts, and the first message of each kind."""
    failures: dict[str, int] = {}
    messages: dict[str, str] = {}
    for c in windows:
        for k, v in c.errors.items():
            failures[k] = failures.get(k, 0) + v
        for k, m in c.messages.items():
            messages.setdefault(k, m)
    return failures, messages


def totals(windows: list[Window]) -> dict:
    """Every request of the given windows: counts, failures by kind, throughput and latency over them all."""
    hist = load.new_histogram()
    for w in windows:
        hist.add(w.counts.histogram)
    seconds = sum(w.seconds for w in windows)
    ok = sum(w.counts.ok for w in windows)
    failed = sum(w.counts.failed for w in windows)
    failures, messages = count_failures(w.counts for w in windows)
    batch = windows[0].batch_size if windows else 1
    fig = percentiles(hist)
    return {"windows": len(windows), "seconds": seconds, "requests": ok + failed, "ok": ok, "failed": failed,
            "failures": failures, "failure_messages": messages,
            "throughput": ok * batch / seconds if seconds else 0.0,
            "p50_ms": fig["p50_ms"], "p99_ms": fig["p99_ms"], "mean_ms": fig["mean_ms"], "max_ms": fig["max_ms"]}


def latency_budget_search(measure: Callable[[int], dict], budget_ms: float, key: str = "mean_ms",
                          max_concurrency: int = MAX_SEARCH_CONCURRENCY) -> tuple[dict | None, list[dict]]:
    """The highest concurrency whose latency `key` stays within the budget: doubling, then bisection.

    Assumes latency grows with concurrency (as perf_analyzer's search does). Returns (best level or
    None when even concurrency 1 is over budget, every level measured in concurrency order). A
    measured level that comes back as None (the run had to stop) ends the search.
    """
    measured: dict[int, dict] = {}

    def within(c: int) -> bool:
        if c not in measured:
            level = measure(c)
            if level is None:
                raise _SearchStopped
            measured[c] = level
        return measured[c][key] <= budget_ms

    levels = lambda: [measured[c] for c in sorted(measured)]  # noqa: E731
    good = None
    try:
        if not within(1):
            return None, levels()
        good, bad = 1, None
        while good < max_concurrency:
            nxt = min(good * 2, max_concurrency)
            if within(nxt):
                good = nxt
            else:
                bad = nxt
                break
        if bad is not None:
            while bad - good > 1:
                mid = (good + bad) // 2
                if within(mid):
                    good = mid
                else:
                    bad = mid
    except _SearchStopped:
        pass
    return (measured[good] if good else None), levels()


class _SearchStopped(Exception):
    """A level of the budget search stopped the run (server gone, every request failed, unstable)."""


# ---------------------------------------------------------------- inputs


def perf_inputs(spec: ModelSpec, batch_size: int, mode: str, *, input_data: Path | None = None,
                data_dir: Path | None = None, seed: int = 0) -> list[np.ndarray]:
    """The batch every request sends: random valid, zeros, real held-out samples, or a user's file."""
    if input_data is not None:
        from zeroserve.client.infer import load_input_file

        arrays = validate_inputs(spec, load_input_file(spec, input_data))
        reps = -(-batch_size // len(arrays[0]))
        return [np.concatenate([a] * reps)[:batch_size] for a in arrays]
    if mode == "random":
        return spec.random_inputs(batch_size, np.random.default_rng(seed))
    if mode == "zero":
        # each input's safe value: zeros, except where zero is not valid (a lengths input gets 1)
        return spec.safe_inputs(batch_size, time=max(spec.seq_lengths or (1,)))
    if mode == "sample":
        from zeroserve.data import default_data_dir

        split = spec.load_data(Path(data_dir or default_data_dir()))
        n = len(split.test_inputs[0])
        idx = np.arange(batch_size) % n
        return [a[idx] for a in split.test_inputs]
    raise InputError(f"unknown --input {mode!r}; use random, zero or sample (or --input-data FILE)")


# ---------------------------------------------------------------- shared memory


@dataclass
class SharedMemory:
    """Triton system shared memory for inputs (one region, read by every request) and outputs (one per slot)."""

    regions: list = field(default_factory=list)
    names: list[str] = field(default_factory=list)
    clients: list[Client] = field(default_factory=list)
    input_region: tuple[str, list[tuple[int, int]]] | None = None
    output_regions: list[tuple[str, list[tuple[int, int]]]] = field(default_factory=list)

    @classmethod
    def create(cls, clients: list[Client], wire_inputs: list[np.ndarray], output_nbytes: list[int],
               slots: int, tag: str) -> "SharedMemory":
        import tritonclient.utils.shared_memory as shm

        self = cls(clients=clients)
        try:
            offsets, pos = [], 0
            for a in wire_inputs:
                offsets.append((pos, a.nbytes))
                pos += a.nbytes
            name = f"zs_{tag}_in"
            handle = shm.create_shared_memory_region(name, f"/{name}", pos)
            self._track(handle, name, pos)
            for a, (off, _) in zip(wire_inputs, offsets):
                shm.set_shared_memory_region(handle, [a], offset=off)
            self.input_region = (name, offsets)
            total = sum(output_nbytes)
            for i in range(slots):
                name = f"zs_{tag}_out{i}"
                handle = shm.create_shared_memory_region(name, f"/{name}", total)
                self._track(handle, name, total)
                offs, pos = [], 0
                for n in output_nbytes:
                    offs.append((pos, n))
                    pos += n
                self.output_regions.append((name, offs))
        except shm.SharedMemoryException as exc:
            self.close()
            raise InputError(f"--shared-memory system: cannot create a region ({exc}); "
                             "check /dev/shm or use --shared-memory none") from None
        except Exception:
            self.close()
            raise
        return self

    def _track(self, handle, name: str, size: int) -> None:
        self.regions.append(handle)
        self.names.append(name)
        for c in self.clients:
            c.register_system_shared_memory(name, f"/{name}", size)

    def close(self) -> None:
        """Unregister from every server (best effort: it may be gone) and free the regions."""
        import tritonclient.utils.shared_memory as shm

        for c in self.clients:
            for name in self.names:
                with contextlib.suppress(Exception):
                    c.unregister_system_shared_memory(name)
        for handle in self.regions:
            with contextlib.suppress(Exception):
                shm.destroy_shared_memory_region(handle)
        self.regions, self.names = [], []


# ---------------------------------------------------------------- one level


@dataclass
class Setup:
    """Everything a level needs, fixed for the whole run."""

    spec: ModelSpec
    triton_name: str
    protocol: str
    urls: list[str]
    arrays: list[np.ndarray]
    batch_size: int
    window_s: float
    warmup_s: float
    stability: float
    max_trials: int
    timeout: float
    shm: SharedMemory | None = None
    distribution: str = "constant"
    seed: int = 0
    pool: WorkerPool | None = None  # worker processes generating the load; None: this process's event loop
    expected: tuple[OutputSpec, ...] = ()
    streaming: bool = False
    percentile: float | None = None

    @property
    def latency_key(self) -> str:
        return latency_key(self.percentile)

    def generator(self, concurrency: int | None, rate: float | None):
        """The level's generator: local, or its plans spread over the worker pool."""
        regions = self.shm.output_regions if self.shm else []
        base = LoadPlan(Tensors(self.spec.inputs, self.spec.outputs), self.triton_name, self.protocol, self.urls,
                        self.arrays, self.timeout, distribution=self.distribution, seed=self.seed,
                        # workers need a moment to receive the level and connect before the first send
                        start_at=time.perf_counter() + (0.5 if self.pool else 0.01),
                        input_region=self.shm.input_region if self.shm else None,
                        expected=self.expected, streaming=self.streaming)
        if self.pool is None:
            return LocalGenerator(replace(base, concurrency=concurrency, rate=rate, output_regions=regions))
        plans = split_level(base, len(self.pool.procs), concurrency, rate, regions)
        return ProcessGenerator(self.pool, plans, self.timeout)


async def _level(setup: Setup, concurrency: int | None, rate: float | None) -> dict:
    """Run one level to stability (or max_trials, or until the server stops answering); its figures.

    The level's own figures come from the last stable windows; `totals` covers every measured
    window, `warmup` the warm-up, `drain` the requests in flight when the load stopped;
    `server_lost` says why a level ended early.
    """
    windows: list[Window] = []
    samples: list[dict[str, int]] = []
    key = setup.latency_key
    lost = None
    async with contextlib.AsyncExitStack() as stack:
        # a server listed twice is sampled once
        stat_clients = [await stack.enter_async_context(AsyncClient(u, setup.protocol, setup.timeout))
                        for u in dict.fromkeys(setup.urls)]

        async def stats() -> dict[str, int]:
            return add_statistics(list(await asyncio.gather(*(c.statistics(setup.triton_name)
                                                              for c in stat_clients))))

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
                await asyncio.sleep(setup.window_s)
                sample = await gen.swap()
                t1 = time.perf_counter()
                windows.append(Window(t1 - t0, sample.counts, setup.batch_size, sample.cpu_seconds,
                                      sample.loop_cpu_seconds))
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
            drain = Window(time.perf_counter() - t0, last.counts, setup.batch_size, last.cpu_seconds,
                           last.loop_cpu_seconds)
    # figures from windows that have a statistics sample at each end
    sampled = windows[:max(0, len(samples) - 1)]
    used = sampled[-STABLE_WINDOWS:]
    first = len(sampled) - len(used)
    fig = summarise(used, samples[first] if used else None, samples[len(sampled)] if used else None,
                    setup.percentile)
    fig.update({
        "concurrency": concurrency, "request_rate": rate, "latency_metric": key,
        "stable": lost is None and is_stable([(x.throughput, x.latency(key)) for x in windows], setup.stability),
        "trials": len(windows), "windows": [w.as_json(key) for w in windows],
        "totals": totals(windows), "warmup": totals([warmup]), "drain": totals([drain]),
    })
    if lost is not None:
        fig["server_lost"] = lost
    if rate is not None:
        fig["achieved_rate"] = fig["sent"] / fig["seconds"] if fig["seconds"] else 0.0
        fig["rate_kept"] = fig["achieved_rate"] >= 0.95 * rate and fig["send_lag_p99_ms"] <= 10 * load.LATE_SEND_MS
    return fig


def unstable_message(level: dict, stability: float, advice: bool = True) -> str:
    """One line with the last windows' figures of a level that did not stabilise."""
    what = level_name(level)
    key = level.get("latency_metric", "mean_ms")
    last = level["windows"][-STABLE_WINDOWS:]
    tp = ", ".join(f"{w['throughput']:.0f}" for w in last)
    lat = ", ".join(f"{w[key]:.2f}" for w in last)
    name = "average latency" if key == "mean_ms" else key.removesuffix("_ms")
    return (f"{what} did not stabilise within {stability:.0%} in {level['trials']} windows: last throughput "
            f"{tp} infer/s, {name} {lat} ms"
            + (" (raise --max-trials or --window, or pass --allow-unstable)" if advice else ""))


def level_name(level: dict) -> str:
    return (f"concurrency {level['concurrency']}" if level["concurrency"]
            else f"request rate {level['request_rate']:g}/s")


COUNTED = ("warmup", "totals", "drain")  # a level's blocks that together hold every request it sent


def level_count(level: dict, what: str = "failed") -> int:
    """Every request of a level (`requests`), or its answered (`ok`) or `failed` ones: all blocks summed."""
    return sum(level[b][what] for b in COUNTED if b in level)


def level_failures(level: dict) -> tuple[dict[str, int], dict[str, str]]:
    """Failures by kind over all of a level's blocks, and the first message of each kind."""
    kinds: dict[str, int] = {}
    messages: dict[str, str] = {}
    for b in COUNTED:
        for k, v in level.get(b, {}).get("failures", {}).items():
            kinds[k] = kinds.get(k, 0) + v
        for k, m in level.get(b, {}).get("failure_messages", {}).items():
            messages.setdefault(k, m)
    return kinds, messages


# ---------------------------------------------------------------- the run


def resolve_urls(endpoint: Endpoint, protocol: str, urls: list[str] | None) -> list[str]:
    """The servers to load (`--url` wins over the endpoint options), every one on loopback."""
    pairs = [parse_url(u) for u in urls] if urls else [(endpoint.host, int(endpoint.url(protocol).rsplit(":", 1)[1]))]
    for host, _ in pairs:
        require_loopback(host)
    return [f"{'127.0.0.1' if h == 'localhost' else h}:{p}" for h, p in pairs]


def run_perf(spec: ModelSpec, endpoint: Endpoint, *, fmt: str = "onnx", protocol: str = "grpc",
             urls: list[str] | None = None, concurrency: list[int] | None = None,
             request_rate: list[float] | None = None, distribution: str = "constant",
             latency_budget_ms: float | None = None, batch_size: int = 1, input_mode: str = "random",
             input_data: Path | None = None, data_dir: Path | None = None, shared_memory: str = "none",
             window_s: float = 5.0, warmup_s: float | None = None, stability: float = 0.10, max_trials: int = 10,
             allow_unstable: bool = False, allow_failures: bool = False, percentile: float | None = None,
             streaming: bool = False, timeout: float = 10.0, seed: int = 0, workers: int = 1,
             on_level: Callable[[dict], None] | None = None) -> dict:
    """Measure one served model at each load level; the perf record (see report.py for its renderings).

    Once load has started the record is always returned: its `outcome` says which exit code the run
    earns (`raise_for_outcome`). Before load, a bad option is an InputError and an unreachable server a
    ServerError (exit 3). The run stops early at a level that did not stabilise (unless
    allow_unstable), where every request failed, or when the server stops answering.
    """
    modes = sum(x is not None and x != [] for x in (concurrency, request_rate, latency_budget_ms))
    if modes > 1:
        raise InputError("choose one of --concurrency, --request-rate and --latency-budget-ms")
    if distribution not in ("constant", "poisson"):
        raise InputError(f"unknown --distribution {distribution!r}; use constant or poisson")
    if shared_memory not in ("none", "system"):
        raise InputError(f"unknown --shared-memory {shared_memory!r}; use none or system")
    if window_s <= 0 or max_trials < STABLE_WINDOWS or not 0 < stability < 1:
        raise InputError(f"need --window > 0, --max-trials >= {STABLE_WINDOWS} and 0 < --stability < 1")
    if any(c < 1 for c in concurrency or []) or any(r <= 0 for r in request_rate or []):
        raise InputError("concurrency levels must be >= 1 and request rates > 0")
    if latency_budget_ms is not None and latency_budget_ms <= 0:
        raise InputError("--latency-budget-ms must be positive")
    if not 1 <= workers <= MAX_WORKERS:
        raise InputError(f"--workers must be between 1 and {MAX_WORKERS}")
    if percentile is not None and not 0 < percentile < 100:
        raise InputError(f"--percentile must be between 0 and 100 (exclusive), got {percentile:g}")
    if streaming and protocol != "grpc":
        raise InputError("--streaming is gRPC's ModelStreamInfer: use it with --protocol grpc")
    if not request_rate and latency_budget_ms is None and not concurrency:
        concurrency = [1]
    triton_name = spec.triton_name(fmt)
    urls = resolve_urls(endpoint, protocol, urls)
    sync = []
    for u in urls:
        host, port = parse_url(u)
        sync.append(Client(Endpoint(host, port, port, "url"), protocol, timeout))
    try:
        served_max = spec.max_batch_size
        for c in sync:
            c.require_model(triton_name)
            served_max = min(served_max, c.max_batch_size(triton_name) or served_max)
        if not 1 <= batch_size <= served_max:
            raise InputError(f"--batch-size must be between 1 and {triton_name}'s max_batch_size {served_max}")
        arrays = perf_inputs(spec, batch_size, input_mode, input_data=input_data, data_dir=data_dir, seed=seed)
        outputs = [c.infer(spec, triton_name, arrays) for c in sync]  # one real answer per server before load
        shm = None
        if shared_memory == "system":
            slots = max(concurrency or [0]) or min(256, load.MAX_OUTSTANDING)
            unique = list({c.url: c for c in sync}.values())  # one registration per server, even if listed twice
            shm = SharedMemory.create(unique, to_wire(spec, arrays), [o.nbytes for o in outputs[0]], slots,
                                      f"{os.getpid()}_{triton_name}")
        setup = Setup(spec, triton_name, protocol, urls, arrays, batch_size, window_s,
                      window_s if warmup_s is None else warmup_s, stability, max_trials, timeout, shm,
                      distribution, seed, expected=expected_outputs([t.name for t in spec.outputs], outputs[0]),
                      streaming=streaming, percentile=percentile)
        try:
            setup.pool = WorkerPool(workers) if workers > 1 else None
            levels, best = _measure_levels(setup, concurrency, request_rate, latency_budget_ms,
                                           allow_unstable, on_level)
        finally:
            if setup.pool is not None:
                setup.pool.close()
            if shm is not None:
                shm.close()
        unreachable = _unreachable(sync, triton_name)
    finally:
        for c in sync:
            c.close()
    cores = os.cpu_count() or 1
    notes = run_notes(levels, stability, workers, cores)
    mode = "latency_budget" if latency_budget_ms is not None else "request_rate" if request_rate else "concurrency"
    return {
        "schema": records.SCHEMA, "kind": "perf", "model": spec.name, "triton_model": triton_name,
        "protocol": protocol, "streaming": streaming, "format": fmt, "urls": urls, "batch_size": batch_size,
        "input": "file " + str(input_data) if input_data else input_mode, "shared_memory": shared_memory,
        "mode": mode, "distribution": distribution if request_rate else None,
        "latency_budget_ms": latency_budget_ms, "best": best, "latency_metric": latency_key(percentile),
        "window_s": window_s, "stability": stability, "max_trials": max_trials, "workers": workers,
        "levels": levels, "notes": notes, "cpu_count": cores,
        "outcome": outcome(levels, unreachable, stability, allow_failures, allow_unstable),
        "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "versions": records.versions("tritonclient", "grpcio", "hdrhistogram"),
    }


def _unreachable(clients: list[Client], triton_name: str) -> str | None:
    """Why a server no longer answers for the model at the end of a run (gone, or shutting down and its
    model unloaded), or None when every one does."""
    for c in clients:
        try:
            c.require_model(triton_name)
        except (ServerError, ModelNotServed) as exc:
            return str(exc)
    return None


def outcome(levels: list[dict], unreachable: str | None, stability: float, allow_failures: bool,
            allow_unstable: bool) -> dict:
    """The exit code a run earns, first match wins: 3 a server unreachable at the end; 1 any failed request
    (unless allowed); 4 a level that did not stabilise (unless allowed); else 0. With the reason."""
    failed = sum(level_count(lv) for lv in levels)
    unstable = [lv for lv in levels if not lv["stable"] and "server_lost" not in lv]
    if unreachable:
        counted = sum(level_count(lv, "ok") for lv in levels)
        return {"exit_code": 3, "reason": f"the server stopped answering during the run ({unreachable}); "
                                          f"{counted} requests answered and {failed} failed before it went"}
    if failed and not allow_failures:
        kinds: dict[str, int] = {}
        for lv in levels:
            for k, v in level_failures(lv)[0].items():
                kinds[k] = kinds.get(k, 0) + v
        top = ", ".join(f"{v} {k}" for k, v in sorted(kinds.items(), key=lambda kv: -kv[1]))
        return {"exit_code": 1, "reason": f"{failed} requests failed during the run ({top}); "
                                          "pass --allow-failures to accept them"}
    if unstable and not allow_unstable:
        return {"exit_code": 4, "reason": unstable_message(unstable[0], stability)}
    return {"exit_code": 0, "reason": ""}


def raise_for_outcome(rec: dict) -> None:
    """Raise the typed error (ServerError 3, CheckFailed 1, UnstableError 4) the record's outcome names."""
    code, reason = rec["outcome"]["exit_code"], rec["outcome"]["reason"]
    error = {3: ServerError, 1: CheckFailed, 4: UnstableError}.get(code)
    if error is not None:
        raise error(reason)


def run_notes(levels: list[dict], stability: float, workers: int, cores: int) -> list[str]:
    """What a reader of the figures must know: shared cores, a saturated or late generator, instability, failures."""
    notes = [SHARED_CORES_NOTE.format(cores=cores)] if cores <= 4 else []
    if workers > 1:
        notes.append(f"load generated by {workers} worker processes, each with its own event loop; "
                     "generator CPU is their sum, loop CPU the busiest one's")
    for lv in levels:
        where = level_name(lv)
        if lv["generator_saturated"]:
            notes.append(f"warning: the load generator's CPU limited {where} (its event loop, or with gRPC its "
                         f"process, used {lv['loop_cpu']:.0%} of a core, {lv['client']['cpu_us']:.0f} µs per request): the "
                         "figures measure the generator as much as the server"
                         + ("" if workers > 1 else "; try --workers 2"))
        if lv.get("rate_kept") is False:
            notes.append(f"the generator could not keep to the schedule at {lv['request_rate']:g} requests/s "
                         f"(sent {lv['achieved_rate']:.0f}/s, p99 send lag {lv['send_lag_p99_ms']:.1f} ms); "
                         "latencies still count from the intended send times")
        if "server_lost" in lv:
            notes.append(f"the server stopped answering at {where}: {lv['server_lost']}")
        elif not lv["stable"]:
            notes.append(unstable_message(lv, stability, advice=False))
        if level_count(lv):
            kinds, first = level_failures(lv)
            notes.append(f"{level_count(lv)} failed requests at {where}: "
                         + "; ".join(f"{v} {k} ({first.get(k, '')})" for k, v in kinds.items()))
    return notes


def _measure_levels(setup: Setup, concurrency, request_rate, budget, allow_unstable, on_level):
    """Run the levels of the chosen mode; stop after a level that lost the server, where every request
    failed, or (unless allowed) that did not stabilise."""
    stopped = False

    def measure(c: int | None, r: float | None) -> dict | None:
        nonlocal stopped
        if stopped:
            return None
        level = asyncio.run(_level(setup, c, r))
        if on_level:
            on_level(level)
        every_failed = level_count(level) and not level_count(level, "ok")
        if "server_lost" in level or every_failed or (not level["stable"] and not allow_unstable):
            stopped = True
        return level

    if budget is not None:
        best, levels = latency_budget_search(lambda c: measure(c, None), budget, setup.latency_key)
        return levels, (best["concurrency"] if best else None)
    measured = [measure(c, None) for c in concurrency] if not request_rate else [measure(None, r)
                                                                                 for r in request_rate]
    return [lv for lv in measured if lv is not None], None


def level_iter(values: str, kind: type) -> Iterator:
    """Parse `1,2,4` into values of `kind`."""
    for part in values.split(","):
        if part.strip():
            try:
                yield kind(part)
            except ValueError:
                raise InputError(f"not a number: {part!r}") from None

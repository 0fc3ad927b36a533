"""Where the load runs: this process's event loop, or several worker processes driven window by window.

Requests are encoded once per level into wire bytes (`wire`) and re-sent by a sender (`wire_transport`).

A generator is used as `async with gen:` (load starts), `await gen.swap()` at each window boundary
(returns that window's counts and the generator's CPU seconds), and leaving the block stops the load.
Worker processes are spawned (no fork: gRPC's threads do not survive it) and import no torch.
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from zeroserve.client.perf import load, wire
from zeroserve.client.perf.transport import SENDERS, Sender
from zeroserve.client.perf.transport_blocking import BLOCKING_GRPC_MAX_CONCURRENCY, BlockingGrpcLoop
from zeroserve.client.perf.wire import OutputSpec, Template
from zeroserve.errors import ZeroserveError
from zeroserve.spec import TensorSpec

START_TIMEOUT_S = 60.0  # a spawned worker imports tritonclient and grpc before it is ready


class GeneratorError(ZeroserveError):
    """A load-generator worker process died or stopped answering (exit 1)."""

    exit_code = 1


@dataclass(frozen=True)
class Tensors:
    """The part of a registry entry a request needs: its input and output specs (picklable)."""

    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]


@dataclass
class LoadPlan:
    """One generator's share of one level; picklable, so a worker process can receive it.

    Args:
        concurrency: closed loop with this many workers, or None for open loop at `rate`.
        start_at: open loop's first intended send time (time.perf_counter, the same clock in every process).
        output_regions: shared-memory output regions this generator owns, one per request in flight.
        expected: the outputs a valid answer carries (names, datatypes, shapes), from a reference answer.
        streaming: gRPC over `ModelStreamInfer` streams instead of unary calls.
        variants: further requests, (arrays, expected) each, sent in turn with the first (perf_analyzer's
            round-robin over its input-data entries); not with shared memory, where every request in
            flight owns an output region.
    """

    tensors: Tensors
    triton_name: str
    protocol: str
    urls: list[str]
    arrays: list[np.ndarray]
    timeout: float
    concurrency: int | None = None
    rate: float | None = None
    distribution: str = "constant"
    seed: int = 0
    start_at: float = 0.0
    input_region: tuple[str, list[tuple[int, int]]] | None = None
    output_regions: list[tuple[str, list[tuple[int, int]]]] = field(default_factory=list)
    expected: tuple[OutputSpec, ...] = ()
    streaming: bool = False
    variants: tuple[tuple[list[np.ndarray], tuple[OutputSpec, ...]], ...] = ()


@dataclass
class Sample:
    """One window from one or more generators: counts, process CPU seconds, busiest event loop's CPU seconds."""

    counts: load.WindowCounts
    cpu_seconds: float
    loop_cpu_seconds: float

    def extend(self, later: Sample) -> Sample:
        """This window and the one right after it as one window (count_windows lengthens a window so)."""
        return Sample(
            self.counts.add(later.counts),
            self.cpu_seconds + later.cpu_seconds,
            self.loop_cpu_seconds + later.loop_cpu_seconds,
        )


def build_templates(plan: LoadPlan) -> list[list[Template]]:
    """Per server, the plan's requests encoded once into wire bytes: one per output region with shared
    memory (each request in flight owns one), else one per request variant (sent in turn)."""
    from zeroserve.client.connection import build_request, tritonclient_module

    module = tritonclient_module(plan.protocol)
    rows = []
    requests = [(plan.arrays, plan.expected)]
    if not plan.output_regions:
        requests += list(plan.variants)
    for url in plan.urls:
        row = []
        for k, region in enumerate(plan.output_regions or [None] * len(requests)):
            arrays, expected = requests[0 if region is not None else k]
            inputs, outputs = build_request(module, plan.tensors, arrays)
            if plan.input_region is not None and region is not None:
                name, offsets = plan.input_region
                for inp, (off, size) in zip(inputs, offsets):
                    inp.set_shared_memory(name, size, offset=off)
                oname, ooffsets = region
                for o, (off, size) in zip(outputs, ooffsets):
                    o.set_shared_memory(oname, size, offset=off)
            payload = (
                wire.encode_http(plan.triton_name, url, inputs, outputs)
                if plan.protocol == "http"
                else wire.encode_grpc(plan.triton_name, inputs, outputs)
            )
            row.append(Template(payload, expected, in_shm=region is not None))
        rows.append(row)
    return rows


class LocalGenerator:
    """The load of one plan in this process's event loop, sending pre-encoded wire bytes."""

    def __init__(self, plan: LoadPlan):
        self.plan = plan
        self.recorder = load.Recorder()
        self.stop = asyncio.Event()
        self.sender: Sender | None = None
        self.blocking: BlockingGrpcLoop | None = None
        self._task: asyncio.Future | None = None
        self._cpu = (0.0, 0.0)

    async def __aenter__(self) -> LocalGenerator:
        p = self.plan
        templates = build_templates(p)
        in_shm = bool(p.output_regions)  # a row is one template per output region, else one per variant
        if (
            p.protocol == "grpc"
            and not p.streaming
            and p.concurrency is not None
            and p.concurrency <= BLOCKING_GRPC_MAX_CONCURRENCY
        ):
            self.blocking = BlockingGrpcLoop(
                p.urls, templates, p.concurrency, p.timeout, self.recorder, cycle=not in_shm
            )
            self.blocking.start()
            self._cpu = (time.process_time(), self._loop_time())
            return self
        self.sender = SENDERS["grpc_stream" if p.streaming and p.protocol == "grpc" else p.protocol](
            p.urls, p.timeout, self.recorder
        )
        await self.sender.start()
        sender, n = self.sender, len(p.urls)

        if p.concurrency is not None:
            # closed loop: worker i always uses slot i (its connection, its output region); without shared
            # memory each worker sends the variants in turn, starting at its own
            turns = list(range(p.concurrency))

            async def send(worker: int) -> None:
                row = templates[worker % n]
                if in_shm:
                    await sender.send(worker % n, row[worker % len(row)], worker)
                    return
                turn = turns[worker]
                turns[worker] = turn + 1
                await sender.send(worker % n, row[turn % len(row)], worker)

            self._task = asyncio.ensure_future(load.closed_loop(send, p.concurrency, self.recorder, self.stop))
        else:
            free: asyncio.Queue | None = None
            if p.input_region is not None:
                free = asyncio.Queue()  # open loop: an output region per request in flight
                for i in range(len(templates[0])):
                    free.put_nowait(i)

            async def send(worker: int) -> None:  # the request's index (named as the closed loop's)
                index = worker
                row = templates[index % n]
                if free is None:
                    await sender.send(index % n, row[(index // n) % len(row)], None)
                    return
                own = await free.get()
                try:
                    await sender.send(index % n, row[own], None)
                finally:
                    free.put_nowait(own)

            schedule = load.intended_send_times(p.rate, p.distribution, p.start_at, np.random.default_rng(p.seed))
            self._task = asyncio.ensure_future(
                load.open_loop(send, schedule, self.recorder, self.stop, drain_timeout=p.timeout)
            )
        self._cpu = (time.process_time(), self._loop_time())
        return self

    def _loop_time(self) -> float:
        """CPU seconds of the generator's busiest part: the event-loop thread, or with gRPC the whole process
        (grpcio does much of each call's work in its own threads, which a loop-thread clock misses)."""
        return time.process_time() if self.plan.protocol == "grpc" else time.thread_time()

    async def swap(self) -> Sample:
        """Close the current window and open the next."""
        counts = self.blocking.swap() if self.blocking is not None else self.recorder.swap()
        now = (time.process_time(), self._loop_time())
        sample = Sample(counts, now[0] - self._cpu[0], now[1] - self._cpu[1])
        self._cpu = now
        return sample

    async def finish(self) -> Sample:
        """Stop sending, let the requests in flight finish (each bounded by the timeout); their counts."""
        await self._stop_load()
        return await self.swap()

    async def _stop_load(self) -> None:
        self.stop.set()
        if self.blocking is not None and not self.blocking.stop.is_set():
            await asyncio.to_thread(self.blocking.close)
        if self._task is not None:
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await asyncio.wait_for(self._task, self.plan.timeout + 1.0)

    async def __aexit__(self, *exc) -> None:
        await self._stop_load()
        if self.sender is not None:
            await self.sender.close()


# ---------------------------------------------------------------- worker processes


def _recv(conn, timeout: float | None = None) -> Any:
    """The next message, or None when the other end is gone (or nothing came within `timeout`)."""
    try:
        if timeout is not None and not conn.poll(timeout):
            return None
        return conn.recv()
    except (EOFError, OSError):
        return None


def encode(sample: Sample) -> dict:
    """A window as plain data (HdrHistogram's own compressed encoding) to cross a pipe."""
    c = sample.counts
    return {
        "histogram": c.histogram.encode(),
        "lag": c.lag.encode(),
        "ok": c.ok,
        "failed": c.failed,
        "errors": dict(c.errors),
        "messages": dict(c.messages),
        "sent": c.sent,
        "late": c.late,
        "send_s": c.send_s,
        "check_s": c.check_s,
        "cpu": sample.cpu_seconds,
        "loop_cpu": sample.loop_cpu_seconds,
    }


def merge(encoded: list[dict], extra_cpu: float = 0.0) -> Sample:
    """Several generators' windows as one: histograms added, counts summed, CPU summed, busiest loop kept."""
    counts = load.WindowCounts()
    for e in encoded:
        counts.histogram.decode_and_add(e["histogram"])
        counts.lag.decode_and_add(e["lag"])
        counts.ok += e["ok"]
        counts.failed += e["failed"]
        counts.sent += e["sent"]
        counts.late += e["late"]
        counts.errors.update(e["errors"])
        for kind, message in e["messages"].items():
            counts.messages.setdefault(kind, message)
        counts.send_s += e["send_s"]
        counts.check_s += e["check_s"]
    return Sample(
        counts, sum(e["cpu"] for e in encoded) + extra_cpu, max((e["loop_cpu"] for e in encoded), default=0.0)
    )


async def _child_level(conn, plan: LoadPlan) -> None:
    loop = asyncio.get_running_loop()
    async with LocalGenerator(plan) as gen:
        conn.send(("started",))
        while True:
            msg = await loop.run_in_executor(None, _recv, conn)
            if msg is None or msg[0] not in ("swap", "finish"):
                break
            conn.send(("window", encode(await (gen.swap() if msg[0] == "swap" else gen.finish()))))
    conn.send(("ended",))


def worker_main(conn) -> None:
    """A worker process: run each level the parent sends until told to exit or the parent is gone."""
    while True:
        msg = _recv(conn)
        if msg is None or msg[0] == "exit":
            return
        try:
            asyncio.run(_child_level(conn, msg[1]))
        except Exception as exc:  # noqa: BLE001 - reported to the parent as one line
            with contextlib.suppress(OSError):
                conn.send(("error", f"{type(exc).__name__}: {exc}"))


class WorkerPool:
    """Load-generator processes kept for a whole run (spawned once: each import costs a second or so)."""

    def __init__(self, n: int):
        ctx = multiprocessing.get_context("spawn")
        self.conns, self.procs = [], []
        for _ in range(n):
            parent, child = ctx.Pipe()
            proc = ctx.Process(target=worker_main, args=(child,), daemon=True, name="zeroserve-load")
            proc.start()
            child.close()
            self.conns.append(parent)
            self.procs.append(proc)

    def close(self, timeout: float = 5.0) -> None:
        """Ask every worker to exit; terminate any that does not within `timeout`."""
        for conn in self.conns:
            with contextlib.suppress(OSError):
                conn.send(("exit",))
        deadline = time.monotonic() + timeout
        for proc in self.procs:
            proc.join(max(0.0, deadline - time.monotonic()))
            if proc.is_alive():
                proc.terminate()
                proc.join(2.0)
        for conn in self.conns:
            conn.close()


class ProcessGenerator:
    """One level spread over the pool's worker processes, one plan each."""

    def __init__(self, pool: WorkerPool, plans: list[LoadPlan], timeout: float):
        self.conns = pool.conns[: len(plans)]
        self.plans = plans
        self.timeout = timeout
        self._cpu = 0.0

    def _expect(self, conn, kind: str, timeout: float) -> tuple:
        msg = _recv(conn, timeout)
        if msg is None:
            raise GeneratorError(f"a load-generator worker process stopped answering (waited {timeout:.0f} s)")
        if msg[0] == "error":
            raise GeneratorError(f"a load-generator worker process failed: {msg[1]}")
        if msg[0] != kind:
            raise GeneratorError(f"a load-generator worker process answered {msg[0]!r}, expected {kind!r}")
        return msg

    async def __aenter__(self) -> ProcessGenerator:
        for conn, plan in zip(self.conns, self.plans):
            conn.send(("level", plan))
        try:
            for conn in self.conns:
                await asyncio.to_thread(self._expect, conn, "started", START_TIMEOUT_S)
        except GeneratorError:
            await self.__aexit__()  # the workers that did start stop their load
            raise
        self._cpu = time.process_time()
        return self

    async def swap(self, message: str = "swap") -> Sample:
        for conn in self.conns:
            conn.send((message,))
        windows = [
            (await asyncio.to_thread(self._expect, conn, "window", self.timeout + 5.0))[1] for conn in self.conns
        ]
        now = time.process_time()
        sample = merge(windows, extra_cpu=now - self._cpu)  # the parent's own share (statistics calls)
        self._cpu = now
        return sample

    async def finish(self) -> Sample:
        """Every worker stops sending and lets its requests in flight finish; their counts."""
        return await self.swap("finish")

    async def __aexit__(self, *exc) -> None:
        for conn in self.conns:
            with contextlib.suppress(OSError):
                conn.send(("end",))
        for conn in self.conns:
            with contextlib.suppress(GeneratorError):
                await asyncio.to_thread(self._expect, conn, "ended", self.timeout + 5.0)

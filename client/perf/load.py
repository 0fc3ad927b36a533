"""Load generation on asyncio: closed loop (fixed concurrency) and open loop (intended send times).

Latencies go into per-window HdrHistograms. In open loop a request's latency counts from its
*intended* send time, so a server (or generator) that falls behind is not hidden (coordinated
omission). Every loop is bounded: a stop event, a deadline, and a timeout on each request.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field

import numpy as np
from hdrh.histogram import HdrHistogram

LOWEST_US = 1
HIGHEST_US = 3_600_000_000  # one hour: a latency can never overflow the histogram
SIGNIFICANT_DIGITS = 3
LATE_SEND_MS = 1.0  # a send later than this after its intended time counts as late
MAX_OUTSTANDING = 4096  # open loop: beyond this many requests in flight the generator waits (and says so)
FAILURE_BACKOFF_S = 0.005  # a refused connection fails at once: don't spin the CPU on it

Send = Callable[[int], Awaitable[None]]  # send(slot) -> None, raises on failure; slot: worker or request index


def new_histogram() -> HdrHistogram:
    """A latency histogram in microseconds."""
    return HdrHistogram(LOWEST_US, HIGHEST_US, SIGNIFICANT_DIGITS)


@dataclass
class WindowCounts:
    """What one measurement window saw, from the generator's side."""

    histogram: HdrHistogram = field(default_factory=new_histogram)
    ok: int = 0
    failed: int = 0
    errors: Counter = field(default_factory=Counter)  # failures by kind
    messages: dict[str, str] = field(default_factory=dict)  # the first message seen of each kind
    sent: int = 0
    late: int = 0
    lag: HdrHistogram = field(default_factory=new_histogram)
    send_s: float = 0.0  # the generator's own time putting requests on the wire
    check_s: float = 0.0  # ... and checking (sometimes decoding) answers
    # values waiting to enter the histograms: a Python HdrHistogram costs ~6 µs a value, a list append ~0.03
    pending: list[int] = field(default_factory=list)
    pending_lag: list[int] = field(default_factory=list)

    def flush(self) -> WindowCounts:
        """Move the pending values into the histograms (once per window, as counts of distinct values)."""
        for values, hist in ((self.pending, self.histogram), (self.pending_lag, self.lag)):
            if values:
                unique, counts = np.unique(
                    np.clip(np.asarray(values, np.int64), LOWEST_US, HIGHEST_US), return_counts=True
                )
                for v, n in zip(unique.tolist(), counts.tolist()):
                    hist.record_value(v, n)
                values.clear()
        return self

    def add(self, other: WindowCounts) -> WindowCounts:
        """Both windows' requests in this one (histograms added, counts summed); both flushed first."""
        self.flush()
        other.flush()
        self.histogram.add(other.histogram)
        self.lag.add(other.lag)
        self.ok += other.ok
        self.failed += other.failed
        self.errors.update(other.errors)
        for kind, message in other.messages.items():
            self.messages.setdefault(kind, message)
        self.sent += other.sent
        self.late += other.late
        self.send_s += other.send_s
        self.check_s += other.check_s
        return self


class Recorder:
    """Collects completions into the current window; `swap` closes it and opens the next."""

    def __init__(self) -> None:
        self.current = WindowCounts()

    def record(self, latency_s: float, ok: bool, kind: str = "", message: str = "") -> None:
        """One answered request, or a failed one counted under `kind` (its first message kept)."""
        c = self.current
        if ok:
            c.ok += 1
            c.pending.append(round(latency_s * 1e6))
        else:
            c.failed += 1
            c.errors[kind] += 1
            c.messages.setdefault(kind, message)

    def sent(self, lag_s: float) -> None:
        c = self.current
        c.sent += 1
        c.pending_lag.append(round(lag_s * 1e6))
        if lag_s * 1e3 > LATE_SEND_MS:
            c.late += 1

    def swap(self) -> WindowCounts:
        done, self.current = self.current, WindowCounts()
        return done.flush()


def failure_kind(exc: BaseException) -> tuple[str, str]:
    """(kind, one-line message) of a failed request: the wire's own kind, else the exception's type."""
    message = getattr(exc, "message", None)  # tritonclient's exceptions carry message()
    text = message() if callable(message) else str(exc)
    line = (str(text or "").strip().splitlines() or [""])[0][:300]
    kind = getattr(exc, "kind", None) or type(exc).__name__
    return kind, line or type(exc).__name__


async def _timed(send: Send, index: int, start: float, recorder: Recorder, clock: Callable[[], float]) -> bool:
    """One request; its latency from `start` (actual or intended send time). True when it succeeded."""
    try:
        await send(index)
    except asyncio.CancelledError:
        raise
    except Exception as exc:  # noqa: BLE001 - every failure is counted, none stops the run
        recorder.record(clock() - start, False, *failure_kind(exc))
        return False
    recorder.record(clock() - start, True)
    return True


async def closed_loop(
    send: Send,
    concurrency: int,
    recorder: Recorder,
    stop: asyncio.Event,
    clock: Callable[[], float] = time.perf_counter,
) -> None:
    """`concurrency` workers, each sending its next request as soon as the last one answered.

    `send` gets the worker's number, so a worker can own per-request resources (shared memory).
    """

    async def worker(number: int) -> None:
        while not stop.is_set():
            start = clock()
            recorder.sent(0.0)
            if not await _timed(send, number, start, recorder, clock):
                await asyncio.sleep(FAILURE_BACKOFF_S)

    await asyncio.gather(*(worker(i) for i in range(concurrency)))


def _constant(rate: float, start: float, rng: np.random.Generator) -> Iterator[float]:
    i = 0
    while True:
        yield start + i / rate
        i += 1


def _poisson(rate: float, start: float, rng: np.random.Generator) -> Iterator[float]:
    t = start
    while True:
        t += float(rng.exponential(1.0 / rate))
        yield t


SCHEDULES = {"constant": _constant, "poisson": _poisson}  # the open loop's arrival distributions
DISTRIBUTIONS = tuple(SCHEDULES)


def intended_send_times(
    rate: float, distribution: str, start: float = 0.0, rng: np.random.Generator | None = None
) -> Iterator[float]:
    """The open loop's schedule: constant gaps of 1/rate, or Poisson arrivals (exponential gaps, mean 1/rate).

    `distribution` is one of DISTRIBUTIONS, checked where the options are made (perf/options.py)."""
    if rate <= 0 or not math.isfinite(rate):
        raise ValueError(f"request rate must be positive, got {rate}")
    return SCHEDULES[distribution](rate, start, rng or np.random.default_rng(0))


async def open_loop(
    send: Send,
    schedule: Iterator[float],
    recorder: Recorder,
    stop: asyncio.Event,
    clock: Callable[[], float] = time.perf_counter,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    max_outstanding: int = MAX_OUTSTANDING,
    drain_timeout: float = 10.0,
) -> int:
    """Send at the scheduled times whatever the answers do; returns how many requests were sent.

    Latency counts from the intended time. When `max_outstanding` requests are in flight the
    dispatcher waits for one to finish: those sends are late and the lateness shows in the latency.
    """
    pending: set[asyncio.Task] = set()
    index = 0
    try:
        for intended in schedule:
            if stop.is_set():
                break
            delay = intended - clock()
            if delay > 0:
                await sleep(delay)
                if stop.is_set():
                    break
            elif index % 16 == 0:
                await asyncio.sleep(0)  # behind schedule: still let answers and the window timer run
            while len(pending) >= max_outstanding and not stop.is_set():
                await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED, timeout=0.1)
            recorder.sent(clock() - intended)
            task = asyncio.ensure_future(_timed(send, index, intended, recorder, clock))
            pending.add(task)
            task.add_done_callback(pending.discard)
            index += 1
    finally:
        if pending:
            _, late = await asyncio.wait(set(pending), timeout=drain_timeout)
            for task in late:
                task.cancel()
    return index

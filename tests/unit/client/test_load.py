"""The load generator's logic against a fake clock: schedules, lateness, counts. No timing asserted."""

from __future__ import annotations

import asyncio
import itertools

import numpy as np
import pytest

from zeroserve.client.perf import load


class FakeClock:
    """A clock that only moves when the code under test sleeps (plus an optional overshoot per sleep)."""

    def __init__(self, overshoot: float = 0.0):
        self.now = 0.0
        self.overshoot = overshoot
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        await asyncio.sleep(0)  # let already-dispatched sends start at the time they were dispatched
        self.now += seconds + self.overshoot


def test_constant_schedule_is_evenly_spaced():
    times = list(itertools.islice(load.intended_send_times(200.0, "constant", start=5.0), 1000))
    assert times[0] == 5.0
    assert np.allclose(np.diff(times), 1 / 200.0)
    assert times[-1] == pytest.approx(5.0 + 999 / 200.0)  # no drift from summing gaps


def test_poisson_schedule_has_exponential_gaps_with_the_asked_rate():
    rng = np.random.default_rng(42)
    times = np.array(list(itertools.islice(load.intended_send_times(500.0, "poisson", 0.0, rng), 20000)))
    gaps = np.diff(times)
    assert np.all(gaps > 0)
    assert gaps.mean() == pytest.approx(1 / 500.0, rel=0.03)
    assert gaps.std() == pytest.approx(1 / 500.0, rel=0.05)  # exponential: std == mean
    again = list(itertools.islice(load.intended_send_times(500.0, "poisson", 0.0, np.random.default_rng(42)), 5))
    assert np.allclose(again, times[:5])  # seeded: the same schedule twice


@pytest.mark.parametrize("rate,dist", [(0, "constant"), (-1, "poisson")])  # a distribution: PerfOptions checks it
def test_schedule_refuses_bad_arguments(rate, dist):
    with pytest.raises(ValueError):
        next(load.intended_send_times(rate, dist))


def _run_open_loop(clock: FakeClock, schedule, service_s: float = 0.0):
    recorder = load.Recorder()
    sent_at: list[float] = []

    async def send(index: int) -> None:
        sent_at.append(clock())
        if service_s:
            clock.now += service_s  # the answer takes this long on the fake clock

    async def main():
        return await load.open_loop(send, schedule, recorder, asyncio.Event(), clock=clock, sleep=clock.sleep)

    n = asyncio.run(main())
    return n, sent_at, recorder.swap()


def test_open_loop_sends_at_the_intended_times():
    clock = FakeClock()
    intended = list(itertools.islice(load.intended_send_times(100.0, "constant", start=1.0), 50))
    n, sent_at, counts = _run_open_loop(clock, iter(intended))
    assert n == 50 and counts.sent == 50 and counts.ok == 50 and counts.failed == 0
    assert np.allclose(sent_at, intended)
    assert counts.late == 0


def test_open_loop_poisson_against_fake_clock():
    clock = FakeClock()
    intended = list(itertools.islice(load.intended_send_times(300.0, "poisson", 0.0, np.random.default_rng(1)), 200))
    n, sent_at, counts = _run_open_loop(clock, iter(intended))
    assert n == 200
    assert np.allclose(sent_at, intended)


def test_open_loop_counts_latency_from_the_intended_time_when_late():
    """A generator that wakes late must not hide it: latency includes the lag (coordinated omission)."""
    clock = FakeClock(overshoot=0.005)  # every sleep wakes 5 ms late
    intended = list(itertools.islice(load.intended_send_times(10.0, "constant", start=1.0), 20))
    n, sent_at, counts = _run_open_loop(clock, iter(intended))
    assert counts.late == 20
    lags = np.array(sent_at) - np.array(intended)
    assert np.all(lags >= 0.005 - 1e-9)
    # each request answered at once, so its latency is exactly its send lag (>= 5 ms)
    assert counts.histogram.get_min_value() >= 4900


def test_open_loop_stops_on_event_and_is_bounded():
    clock = FakeClock()
    recorder = load.Recorder()

    async def main():
        stop = asyncio.Event()

        async def send(index: int) -> None:
            if index == 9:
                stop.set()

        return await load.open_loop(
            send, load.intended_send_times(1000.0, "constant"), recorder, stop, clock=clock, sleep=clock.sleep
        )

    assert asyncio.run(main()) == 10


def test_closed_loop_keeps_concurrency_and_counts_failures():
    recorder = load.Recorder()
    in_flight = {"now": 0, "max": 0}

    async def main():
        stop = asyncio.Event()
        calls = itertools.count()

        async def send(worker: int) -> None:
            i = next(calls)
            in_flight["now"] += 1
            in_flight["max"] = max(in_flight["max"], in_flight["now"])
            await asyncio.sleep(0)
            in_flight["now"] -= 1
            if i >= 400:
                stop.set()
            if i % 10 == 0:
                raise ConnectionRefusedError("refused")

        await asyncio.wait_for(load.closed_loop(send, 4, recorder, stop), 10)

    asyncio.run(main())
    counts = recorder.swap()
    assert in_flight["max"] == 4
    assert counts.ok + counts.failed == counts.sent
    assert counts.failed > 0 and counts.errors["ConnectionRefusedError"] == counts.failed
    assert counts.messages == {"ConnectionRefusedError": "refused"}


def test_a_wire_failure_is_counted_under_its_kind():
    from zeroserve.client.perf.wire import WireFailure

    assert load.failure_kind(WireFailure("http_500", "boom\nmore")) == ("http_500", "boom")
    assert load.failure_kind(TimeoutError()) == ("TimeoutError", "TimeoutError")


def test_recorder_swap_separates_windows():
    r = load.Recorder()
    r.record(0.001, True)
    first = r.swap()
    r.record(0.002, True)
    r.record(0.5, False, "x", "first")
    r.record(0.5, False, "x", "second")
    second = r.swap()
    assert (first.ok, first.failed) == (1, 0)
    assert (second.ok, second.failed, second.errors["x"], second.messages["x"]) == (1, 2, 2, "first")
    assert second.histogram.get_total_count() == 1

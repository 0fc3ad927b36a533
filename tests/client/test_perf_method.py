"""perf's method on synthetic data: the stability rule, the latency-budget search, summaries."""

from __future__ import annotations

import pytest

from zeroserve.client import load, perf
from zeroserve.client.connection import server_split


def _hist(values_us) -> "load.HdrHistogram":
    h = load.new_histogram()
    for v in values_us:
        h.record_value(int(v))
    return h


def test_percentiles_of_an_empty_histogram_are_zero():
    assert set(perf.percentiles(load.new_histogram()).values()) == {0.0}


@pytest.mark.parametrize("figures,stable", [
    ([(1000, 5.0), (1010, 5.1), (990, 4.9)], True),
    ([(500, 1.0), (1000, 5.0), (1010, 5.1), (990, 4.9)], True),   # only the last 3 count
    ([(1000, 5.0), (1200, 5.0), (1000, 5.0)], False),             # throughput 13% off the mean
    ([(1000, 5.0), (1000, 6.5), (1000, 5.0)], False),             # p99 off
    ([(1000, 5.0), (1000, 5.0)], False),                          # fewer than 3 windows
    ([(0, 0.0), (0, 0.0), (0, 0.0)], False),                      # nothing answered is not stable
])
def test_stability_rule(figures, stable):
    assert perf.is_stable(figures, 0.10) is stable


def test_stability_threshold_is_relative_to_the_mean():
    figures = [(1000, 5.0), (1080, 5.0), (1000, 5.0)]  # mean 1026.7: 1080 is 5.2% off
    assert perf.is_stable(figures, 0.10)
    assert not perf.is_stable(figures, 0.05)


def _synthetic_measure(p99_of):
    calls = []

    def measure(c):
        calls.append(c)
        return {"concurrency": c, "p99_ms": p99_of(c)}

    return measure, calls


@pytest.mark.parametrize("budget,best", [(10.0, 10), (10.5, 10), (3.0, 3), (1.0, 1), (1000.0, 256)])
def test_latency_budget_search_finds_the_highest_concurrency_within_budget(budget, best):
    measure, calls = _synthetic_measure(lambda c: 1.0 * c)  # p99 grows linearly: 1 ms per client
    level, levels = perf.latency_budget_search(measure, budget)
    assert level["concurrency"] == best
    assert [lv["concurrency"] for lv in levels] == sorted(set(calls))
    assert len(calls) == len(set(calls))  # no level measured twice
    assert len(calls) <= 2 * 9 + 1  # doubling then bisection: logarithmic


def test_latency_budget_search_over_budget_at_one():
    measure, calls = _synthetic_measure(lambda c: 50.0)
    level, levels = perf.latency_budget_search(measure, 10.0)
    assert level is None and calls == [1]


def test_latency_budget_search_knee():
    measure, _ = _synthetic_measure(lambda c: 2.0 if c <= 21 else 40.0)  # a cliff after 21
    level, _ = perf.latency_budget_search(measure, 5.0)
    assert level["concurrency"] == 21


def _window(ok, failed, latencies_us, seconds=1.0, batch=2):
    counts = load.WindowCounts(histogram=_hist(latencies_us), ok=ok, failed=failed, sent=ok + failed)
    return perf.Window(seconds, counts, batch, cpu_seconds=0.5 * seconds, loop_cpu_seconds=0.95 * seconds)


def _stats(success, queue_ns, infer_ns):
    return {"success_count": success, "fail_count": 0, "inference_count": 2 * success, "execution_count": success,
            "queue_ns": queue_ns, "compute_input_ns": 0, "compute_infer_ns": infer_ns, "compute_output_ns": 0}


def test_summary_counts_add_up_and_server_split_is_a_difference():
    windows = [_window(100, 2, [1000] * 100), _window(120, 0, [2000] * 120), _window(110, 1, [3000] * 110)]
    fig = perf.summarise(windows, _stats(50, 10**6, 10**7), _stats(380, 34 * 10**6, 330 * 10**6 + 10**7))
    assert fig["ok"] == 330 and fig["failed"] == 3 and fig["requests"] == 333 == sum(
        w.counts.ok + w.counts.failed for w in windows)
    assert fig["throughput"] == pytest.approx(330 * 2 / 3.0)
    assert fig["p50_ms"] <= fig["p90_ms"] <= fig["p99_ms"] <= fig["max_ms"]
    assert fig["server"]["requests"] == 330
    assert fig["server"]["queue_us"] == pytest.approx(100.0)
    assert fig["server"]["compute_infer_us"] == pytest.approx(1000.0)
    assert fig["generator_saturated"]  # the loop thread used 95% of a core


def test_server_split_without_requests_is_zero():
    s = _stats(10, 5, 5)
    assert server_split(s, s)["queue_us"] == 0.0


def test_unstable_message_names_the_last_windows():
    level = {"concurrency": 8, "request_rate": None, "trials": 10,
             "windows": [{"throughput": t, "p99_ms": p} for t, p in ((1, 1), (900, 2.5), (1200, 3.5), (700, 9.0))]}
    msg = perf.unstable_message(level, 0.1)
    assert "concurrency 8" in msg and "900, 1200, 700" in msg and "2.50, 3.50, 9.00" in msg


def _fake_levels(monkeypatch, make):
    async def fake_level(setup, c, r):
        return make(c, r)

    monkeypatch.setattr(perf, "_level", fake_level)
    return perf.Setup(None, "m", "grpc", ["127.0.0.1:1"], [], 1, 0.1, 0.0, 0.1, 3, 1.0)


def _synthetic_level(c, r, *, stable=True, ok=10, failed=0):
    return {"concurrency": c, "request_rate": r, "stable": stable, "ok": ok, "failed": failed, "trials": 3,
            "errors": {"ConnectionResetError: reset": failed} if failed else {}, "p99_ms": float(c or 1),
            "windows": [{"throughput": 1.0 * i, "p99_ms": 1.0} for i in range(3)]}


def test_an_unstable_level_stops_the_run_with_exit_4_unless_allowed(monkeypatch):
    from zeroserve.errors import UnstableError

    setup = _fake_levels(monkeypatch, lambda c, r: _synthetic_level(c, r, stable=c < 4))
    with pytest.raises(UnstableError, match="concurrency 4 did not stabilise") as info:
        perf._measure_levels(setup, [1, 2, 4, 8], None, None, False, None)
    assert info.value.exit_code == 4
    levels, _ = perf._measure_levels(setup, [1, 2, 4, 8], None, None, True, None)
    assert [lv["concurrency"] for lv in levels] == [1, 2, 4, 8]


def test_a_level_where_every_request_failed_is_a_check_failure(monkeypatch):
    from zeroserve.errors import CheckFailed

    setup = _fake_levels(monkeypatch, lambda c, r: _synthetic_level(c, r, stable=False, ok=0, failed=7))
    with pytest.raises(CheckFailed, match="every request failed at request rate 50/s .7 requests; ConnectionResetError"):
        perf._measure_levels(setup, None, [50.0], None, True, None)


def test_budget_mode_runs_the_search(monkeypatch):
    setup = _fake_levels(monkeypatch, lambda c, r: _synthetic_level(c, r))
    levels, best = perf._measure_levels(setup, None, None, 5.0, False, None)
    assert best == 5 and [lv["concurrency"] for lv in levels] == [1, 2, 4, 5, 6, 8]

"""perf's method on synthetic data: the stability rule, the latency-budget search, summaries."""

from __future__ import annotations

import pytest
from perf_fakes import perf_level, perf_record  # tests/ is on sys.path (its conftest)

from zeroserve.client.connection import server_split
from zeroserve.client.perf import levels as perf_levels
from zeroserve.client.perf import load
from zeroserve.client.perf import run as perf
from zeroserve.client.perf import windows as W
from zeroserve.client.perf.options import PerfOptions


def _hist(values_us) -> load.HdrHistogram:
    h = load.new_histogram()
    for v in values_us:
        h.record_value(int(v))
    return h


def test_percentiles_of_an_empty_histogram_are_zero():
    assert set(W.percentiles(load.new_histogram()).values()) == {0.0}


@pytest.mark.parametrize(
    "figures,stable",
    [
        ([(1000, 5.0), (1010, 5.1), (990, 4.9)], True),
        ([(500, 1.0), (1000, 5.0), (1010, 5.1), (990, 4.9)], True),  # only the last 3 count
        ([(1000, 5.0), (1200, 5.0), (1000, 5.0)], False),  # throughput 13% off the mean
        ([(1000, 5.0), (1000, 6.5), (1000, 5.0)], False),  # p99 off
        ([(1000, 5.0), (1000, 5.0)], False),  # fewer than 3 windows
        ([(0, 0.0), (0, 0.0), (0, 0.0)], False),  # nothing answered is not stable
    ],
)
def test_stability_rule(figures, stable):
    assert W.is_stable(figures, 0.10) is stable


def test_stability_threshold_is_relative_to_the_mean():
    figures = [(1000, 5.0), (1080, 5.0), (1000, 5.0)]  # mean 1026.7: 1080 is 5.2% off
    assert W.is_stable(figures, 0.10)
    assert not W.is_stable(figures, 0.05)


def _synthetic_measure(latency_of, key="mean_ms"):
    calls = []

    def measure(c):
        calls.append(c)
        return perf_level(concurrency=c, **{"p99_ms": 1e9, key: latency_of(c)})  # only `key` may decide

    return measure, calls


@pytest.mark.parametrize("budget,best", [(10.0, 10), (10.5, 10), (3.0, 3), (1.0, 1), (1000.0, 256)])
def test_latency_budget_search_finds_the_highest_concurrency_within_budget(budget, best):
    measure, calls = _synthetic_measure(lambda c: 1.0 * c)  # p99 grows linearly: 1 ms per client
    level, levels = W.latency_budget_search(measure, budget)
    assert level.concurrency == best
    assert [lv.concurrency for lv in levels] == sorted(set(calls))
    assert len(calls) == len(set(calls))  # no level measured twice
    assert len(calls) <= 2 * 9 + 1  # doubling then bisection: logarithmic


def test_latency_budget_search_over_budget_at_one():
    measure, calls = _synthetic_measure(lambda c: 50.0)
    level, levels = W.latency_budget_search(measure, 10.0)
    assert level is None and calls == [1]


def test_latency_budget_search_knee():
    measure, _ = _synthetic_measure(lambda c: 2.0 if c <= 21 else 40.0)  # a cliff after 21
    level, _ = W.latency_budget_search(measure, 5.0)
    assert level.concurrency == 21


def test_latency_budget_search_uses_the_chosen_percentile():
    measure, _ = _synthetic_measure(lambda c: 1.0 * c, key="p95_ms")
    level, _ = W.latency_budget_search(measure, 6.0, key=W.latency_key(95))
    assert level.concurrency == 6


def test_latency_budget_search_ends_when_the_run_stops():
    def measure(c):
        return perf_level(concurrency=c, mean_ms=1.0) if c < 4 else None

    level, levels = W.latency_budget_search(measure, 100.0)
    assert level.concurrency == 2 and [lv.concurrency for lv in levels] == [1, 2]


def test_the_latency_key_is_the_average_unless_a_percentile_is_chosen():
    assert W.latency_key(None) == "mean_ms" and W.latency_key(95) == "p95_ms"
    assert W.latency_key(99.9) == "p99.9_ms"
    fig = W.percentiles(_hist(range(1, 10_001)), extra=99.9)
    assert fig["p99.9_ms"] == pytest.approx(9.99, rel=2e-3)


def test_a_window_reports_the_chosen_latency_and_its_failures_by_kind():
    counts = load.WindowCounts(histogram=_hist([1000] * 9 + [9000]), ok=10, failed=2)
    counts.errors.update({"http_500": 2})
    w = W.Window(1.0, counts, 1)
    assert w.latency("mean_ms") == pytest.approx(1.8, rel=2e-3) and w.latency("p50_ms") == pytest.approx(1.0, rel=2e-3)
    row = w.as_json("p95_ms")
    assert (
        row["failures"] == {"http_500": 2} and row["requests"] == 12 and row["p95_ms"] == pytest.approx(9.0, rel=2e-3)
    )


def _window(ok, failed, latencies_us, seconds=1.0, batch=2):
    counts = load.WindowCounts(histogram=_hist(latencies_us), ok=ok, failed=failed, sent=ok + failed)
    return W.Window(seconds, counts, batch, cpu_seconds=0.5 * seconds, loop_cpu_seconds=0.95 * seconds)


def _stats(success, queue_ns, infer_ns):
    return {
        "success_count": success,
        "fail_count": 0,
        "inference_count": 2 * success,
        "execution_count": success,
        "queue_ns": queue_ns,
        "compute_input_ns": 0,
        "compute_infer_ns": infer_ns,
        "compute_output_ns": 0,
    }


def test_summary_counts_add_up_and_server_split_is_a_difference():
    windows = [_window(100, 2, [1000] * 100), _window(120, 0, [2000] * 120), _window(110, 1, [3000] * 110)]
    fig = W.summarise(windows, _stats(50, 10**6, 10**7), _stats(380, 34 * 10**6, 330 * 10**6 + 10**7))
    assert (
        fig["ok"] == 330
        and fig["failed"] == 3
        and fig["requests"] == 333 == sum(w.counts.ok + w.counts.failed for w in windows)
    )
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
    level = perf_level(
        concurrency=8,
        request_rate=None,
        trials=10,
        latency_metric="p99_ms",
        windows=[{"throughput": t, "p99_ms": p} for t, p in ((1, 1), (900, 2.5), (1200, 3.5), (700, 9.0))],
    )
    msg = perf_levels.unstable_message(level, 0.1)
    assert "concurrency 8" in msg and "900, 1200, 700" in msg and "p99 2.50, 3.50, 9.00" in msg


def _fake_levels(monkeypatch, make):
    async def fake_level(setup, c, r):
        return make(c, r)

    monkeypatch.setattr(perf, "_level", fake_level)
    return perf.Setup(None, "m", "grpc", ["127.0.0.1:1"], [], 1, 0.1, 0.0, 0.1, 3, 1.0)


def _block(ok=10, failed=0, kind="connection"):
    return {
        "requests": ok + failed,
        "ok": ok,
        "failed": failed,
        "failures": {kind: failed} if failed else {},
        "failure_messages": {kind: "reset"} if failed else {},
    }


def _synthetic_level(c, r, *, stable=True, ok=10, failed=0, warmup_failed=0, lost=False):
    level = {
        "concurrency": c,
        "request_rate": r,
        "stable": stable and not lost,
        "ok": ok,
        "failed": 0,
        "trials": 3,
        "latency_metric": "mean_ms",
        "mean_ms": float(c or 1),
        "generator_saturated": False,
        "totals": _block(ok, failed),
        "warmup": _block(5, warmup_failed, "http_500"),
        "windows": [{"throughput": 1.0 * i, "mean_ms": 1.0} for i in range(3)],
    }
    if lost:
        level["server_lost"] = "no Triton server answered"
    return perf_level(**level)


def test_an_unstable_level_stops_the_run_unless_allowed(monkeypatch):
    setup = _fake_levels(monkeypatch, lambda c, r: _synthetic_level(c, r, stable=c < 4))
    levels, _, _ = perf._measure_levels(setup, PerfOptions(concurrency=[1, 2, 4, 8]), None)
    assert [lv.concurrency for lv in levels] == [1, 2, 4]
    out = perf_levels.outcome(levels, None, 0.1, False, False)
    assert out.exit_code == 4 and "concurrency 4 did not stabilise" in out.reason
    levels, _, _ = perf._measure_levels(setup, PerfOptions(concurrency=[1, 2, 4, 8], allow_unstable=True), None)
    assert [lv.concurrency for lv in levels] == [1, 2, 4, 8]
    assert perf_levels.outcome(levels, None, 0.1, False, True).exit_code == 0


def test_a_level_where_every_request_failed_stops_the_run(monkeypatch):
    setup = _fake_levels(
        monkeypatch,
        lambda c, r: _synthetic_level(c, r, stable=False, ok=0, failed=7).model_copy(
            update={"warmup": perf_level(warmup=_block(0)).warmup}
        ),
    )
    levels, _, _ = perf._measure_levels(setup, PerfOptions(request_rate=[50.0, 100.0], allow_unstable=True), None)
    assert len(levels) == 1
    out = perf_levels.outcome(levels, None, 0.1, False, True)
    assert out.exit_code == 1 and "7 requests failed" in out.reason and "7 connection" in out.reason


@pytest.mark.parametrize(
    "kw,unreachable,allow,code",
    [
        ({}, None, {}, 0),
        ({"failed": 3}, None, {}, 1),  # failures in a window that is not a stable one
        ({"warmup_failed": 2}, None, {}, 1),  # the warm-up's failures count too
        ({"failed": 3}, None, {"allow_failures": True}, 0),
        ({"stable": False}, None, {}, 4),
        ({"stable": False, "failed": 1}, None, {}, 1),  # failures come before instability
        ({"stable": False}, None, {"allow_unstable": True}, 0),
        ({"failed": 1, "lost": True}, "no Triton server answered", {"allow_failures": True}, 3),  # unreachable first
    ],
)
def test_one_exit_code_rule_first_match_wins(kw, unreachable, allow, code):
    levels = [_synthetic_level(1, None), _synthetic_level(2, None, **kw)]
    out = perf_levels.outcome(
        levels, unreachable, 0.1, allow.get("allow_failures", False), allow.get("allow_unstable", False)
    )
    assert out.exit_code == code
    rec = perf_record(outcome=out)
    if code:
        with pytest.raises(Exception) as info:
            perf_levels.raise_for_outcome(rec)
        assert info.value.exit_code == code and str(info.value) == out.reason
    else:
        perf_levels.raise_for_outcome(rec)


def test_a_lost_server_stops_the_run_and_its_level_is_not_called_unstable(monkeypatch):
    setup = _fake_levels(monkeypatch, lambda c, r: _synthetic_level(c, r, lost=c == 2))
    levels, _, _ = perf._measure_levels(setup, PerfOptions(concurrency=[1, 2, 4]), None)
    assert [lv.concurrency for lv in levels] == [1, 2]
    notes = perf_levels.run_notes(levels, 0.1, 1, 2)
    assert any("stopped answering at concurrency 2" in n for n in notes)
    assert not any("did not stabilise" in n for n in notes)


def test_budget_mode_runs_the_search(monkeypatch):
    setup = _fake_levels(monkeypatch, lambda c, r: _synthetic_level(c, r))
    levels, best, cut = perf._measure_levels(setup, PerfOptions(latency_budget_ms=5.0), None)
    assert best == 5 and cut is False and [lv.concurrency for lv in levels] == [1, 2, 4, 5, 6, 8]


def test_a_deadline_starts_no_level_after_it(monkeypatch):
    import time

    calls = []
    setup = _fake_levels(monkeypatch, lambda c, r: calls.append(c) or _synthetic_level(c, r))
    levels, _, cut = perf._measure_levels(
        setup, PerfOptions(concurrency=[1, 2, 4], allow_unstable=True), None, deadline=time.monotonic() - 1
    )
    assert levels == [] and calls == [] and cut is True
    levels, best, cut = perf._measure_levels(
        setup, PerfOptions(latency_budget_ms=5.0, allow_unstable=True), None, deadline=time.monotonic() + 60
    )
    assert best == 5 and cut is False


def test_totals_count_every_window_and_the_stable_ones_stay_apart():
    windows = [
        _window(0, 50, [], seconds=1.0),
        _window(100, 0, [1000] * 100),
        _window(100, 0, [1000] * 100),
        _window(100, 0, [1000] * 100),
    ]
    windows[0].counts.errors.update({"connection": 50})
    t = W.totals(windows)
    assert (t["requests"], t["ok"], t["failed"], t["failures"]) == (350, 300, 50, {"connection": 50})
    assert W.summarise(windows[1:], None, None)["failed"] == 0  # the stable windows alone look clean

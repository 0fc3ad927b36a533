"""The tuning search on synthetic measurements: quick climbs, brute covers the space, budget and minimum hold."""

from __future__ import annotations

from dataclasses import replace

import pytest
from perf_fakes import perf_level  # tests/ is on sys.path (its conftest)

from zeroserve.client.perf import windows as W
from zeroserve.records.tune import Measurement
from zeroserve.tune import search as S
from zeroserve.tune.report import pareto

DEPLOYED = S.Candidate("onnx", 1, 64, False, 0, 1)


def space(**kw) -> S.Space:
    base = dict(
        fmt=("onnx",),
        instances=(1, 2),
        max_batch_size=(8, 16, 32, 64),
        prefer_max=(False, True),
        queue_delay_us=(0, 100, 500, 1000, 2000),
        threads=(1, 2),
    )
    base.update(kw)
    return S.Space(**base)


def measured(**figures) -> Measurement:
    """A measurement with the figures the search judges (the rest as a candidate that was not searched)."""
    return Measurement.model_validate({"stable": True, "unstable_levels": [], "levels": [], **figures})


def synthetic(throughput_of, budget_ok=lambda c: True, latency=1.0):
    """A measure function from a formula, counting its calls."""
    calls: list[S.Candidate] = []

    def measure(c: S.Candidate) -> Measurement:
        calls.append(c)
        ok = budget_ok(c)
        return measured(
            meets_budget=ok,
            throughput=throughput_of(c) if ok else 0.0,
            latency_ms=latency if ok else 10.0 + c.instances,
            failed=0,
            concurrency=4 if ok else None,
        )

    return measure, calls


def smooth(c: S.Candidate) -> float:
    """Peaks at 2 instances, batch 32, delay 500 µs, 1 thread, no preference; each step towards it gains >= 10%."""
    import math

    delays = (0, 100, 500, 1000, 2000)
    return (
        1000
        * 1.5 ** (c.instances == 2)
        * 0.85 ** abs(math.log2(c.max_batch_size / 32))
        * 0.85 ** abs(delays.index(c.queue_delay_us) - 2)
        * 0.7 ** (c.threads - 1)
        * 0.9**c.prefer_max
    )


def test_quick_climbs_from_the_deployed_config_to_the_peak_measuring_a_fraction_of_the_space():
    sp = space()
    measure, calls = synthetic(smooth)
    result = S.search(sp, DEPLOYED, measure, "quick")
    assert calls[0] == DEPLOYED  # starts where the model is deployed
    assert result.best[0] == S.Candidate("onnx", 2, 32, False, 500, 1)
    assert len(calls) == len(set(calls)) < sp.size() / 3  # nothing twice, far from all 160
    assert not result.timed_out
    # every step moved to a better neighbour: the measured throughputs of the path only rise
    assert result.best[1].throughput == max(m.throughput for _, m in result.measured)


def test_quick_stops_at_the_start_when_no_neighbour_is_better_beyond_the_noise_margin():
    measure, calls = synthetic(lambda c: 1000.0 + (5.0 if c != DEPLOYED else 0.0))  # +0.5%: noise
    S.search(space(), DEPLOYED, measure, "quick")
    assert len(calls) == 1 + len(space().neighbours(DEPLOYED))  # one round of neighbours, then stop


def test_brute_measures_every_combination_once_the_deployed_one_first():
    sp = space(instances=(1, 2), max_batch_size=(32, 64), queue_delay_us=(0, 500), threads=(1,), prefer_max=(False,))
    measure, calls = synthetic(smooth)
    result = S.search(sp, DEPLOYED, measure, "brute")
    assert calls[0] == DEPLOYED
    assert sorted(calls) == sorted(sp) and len(calls) == 8
    assert result.best[0] == max(sp, key=smooth)


def test_known_measurements_are_not_taken_again():
    sp = space(instances=(1,), max_batch_size=(64,), queue_delay_us=(0, 500), threads=(1,), prefer_max=(False,))
    measure, calls = synthetic(smooth)
    known = {DEPLOYED: measured(meets_budget=True, throughput=1.0, latency_ms=1.0, failed=0)}
    result = S.search(sp, DEPLOYED, measure, "brute", known=known)
    assert calls == [replace(DEPLOYED, queue_delay_us=500)]
    assert [c for c, _ in result.measured] == [DEPLOYED, replace(DEPLOYED, queue_delay_us=500)]


def test_candidates_over_the_budget_or_under_the_minimum_are_never_best():
    sp = space(max_batch_size=(64,), prefer_max=(False,), threads=(1,))
    over = lambda c: c.queue_delay_us <= 500  # noqa: E731 - longer delays break the budget
    measure, _ = synthetic(lambda c: 1000 + c.queue_delay_us + 400 * (c.instances == 2), over)
    result = S.search(sp, DEPLOYED, measure, "brute", min_throughput=1450)
    assert result.best[0] == S.Candidate("onnx", 2, 64, False, 500, 1)  # 2000 µs would give 3400/s, over budget
    assert result.best[1].throughput == 1900
    high = S.search(sp, DEPLOYED, measure, "brute", min_throughput=2000)  # nothing within budget reaches it
    assert high.best is None and high.closest[0] == result.best[0]
    # failed requests disqualify even the fastest
    measure2, _ = synthetic(lambda c: 1000 + c.queue_delay_us)
    failing = lambda c: measure2(c).model_copy(update={"failed": 3 if c.queue_delay_us == 2000 else 0})  # noqa: E731 - a one-line local helper
    assert S.search(sp, DEPLOYED, failing, "brute").best[0].queue_delay_us == 1000


def test_no_candidate_within_the_budget_names_the_closest():
    sp = space(max_batch_size=(64,), prefer_max=(False,), threads=(1,), queue_delay_us=(0,))
    measure, _ = synthetic(lambda c: 1.0, lambda c: False)
    result = S.search(sp, DEPLOYED, measure, "brute")
    assert result.best is None
    assert result.closest[0].instances == 1  # its latency (11 ms) is lower than 2 instances' (12 ms)


def test_a_candidate_not_measured_is_never_the_closest():
    sp = space(max_batch_size=(64,), prefer_max=(False,), threads=(1,), queue_delay_us=(0,))
    over, _ = synthetic(lambda c: 1.0, lambda c: False)

    def measure(c: S.Candidate) -> Measurement:  # 1 instance did not load (no latency at all); 2 were over the budget
        return over(c).model_copy(update={"latency_ms": None, "error": "did not load"}) if c.instances == 1 else over(c)

    result = S.search(sp, DEPLOYED, measure, "brute")
    assert result.best is None and result.closest[0].instances == 2


def test_time_running_out_stops_the_search_with_the_best_so_far():
    budget = iter([True, True, True, False])
    measure, calls = synthetic(smooth)
    result = S.search(space(), DEPLOYED, measure, "brute", time_left=lambda: next(budget, False))
    assert result.timed_out and len(calls) == 3 and result.best is not None


def test_the_space_keeps_the_deployed_values_and_drops_values_beyond_the_caps():
    sp, dropped = S.build_space(
        S.Candidate("onnx", 3, 48, False, 50, 1), ("onnx", "torchscript"), cores=2, max_batch=64
    )
    assert sp.instances == (1, 2) and 48 in sp.max_batch_size and 64 in sp.max_batch_size
    assert 50 in sp.queue_delay_us and sp.threads == (1, 2) and sp.fmt == ("onnx", "torchscript")
    assert not dropped
    sp, dropped = S.build_space(
        DEPLOYED, ("onnx",), cores=2, max_batch=64, instances=(1, 4), batch_sizes=(128,), threads=(1,)
    )
    assert sp.instances == (1,) and sp.max_batch_size == () and sp.size() == 0
    assert any("instances 4" in d for d in dropped) and any("max batch size 128" in d for d in dropped)
    sp, _ = S.build_space(DEPLOYED, ("onnx",), cores=2, max_batch=64, instances=(2,), queue_delays_us=(100, 900))
    assert sp.nearest(S.Candidate("onnx", 3, 64, False, 0, 1)) == S.Candidate("onnx", 2, 64, False, 100, 1)


def test_neighbours_step_one_value_along_each_dimension():
    sp = space()
    n = sp.neighbours(S.Candidate("onnx", 1, 32, False, 500, 1))
    assert S.Candidate("onnx", 2, 32, False, 500, 1) in n and S.Candidate("onnx", 1, 16, False, 500, 1) in n
    assert S.Candidate("onnx", 1, 32, False, 100, 1) in n and S.Candidate("onnx", 1, 32, True, 500, 1) in n
    assert len(n) == 1 + 2 + 1 + 2 + 1


def test_pareto_front_keeps_points_no_other_beats_on_both_axes():
    pts = [(100, 1.0), (200, 2.0), (150, 3.0), (300, 4.0), (250, 1.5)]
    assert pareto(pts) == [0, 4, 3]


@pytest.mark.parametrize("start", [1, 4, 16, 64])
def test_the_concurrency_search_from_a_hint_finds_the_same_level_in_fewer_steps(start):
    calls = []

    def measure(c):
        calls.append(c)
        return perf_level(concurrency=c, p99_ms=0.5 * c)

    level, _ = W.latency_budget_search(measure, 10.0, "p99_ms", max_concurrency=64, start=start)
    assert level is not None and level.concurrency == 20
    coarse, _ = W.latency_budget_search(measure, 10.0, "p99_ms", max_concurrency=64, start=start, resolution=0.1)
    assert coarse is not None and 18 <= (coarse.concurrency or 0) <= 20
    over, levels = W.latency_budget_search(
        lambda c: perf_level(concurrency=c, p99_ms=50.0), 10.0, "p99_ms", start=start
    )
    assert over is None and levels[0].concurrency == 1


def test_the_outcome_names_the_closest_or_the_time_limit():
    from zeroserve.records.tune import TuneEntry
    from zeroserve.tune.record import outcome

    settings = {"fmt": "onnx", "instances": 1, "max_batch_size": 8, "prefer_max": False, "queue_delay_us": 0}
    closest = TuneEntry.model_validate(
        {
            "candidate": {**settings, "threads": 1, "preferred_batch_sizes": []},
            "label": "onnx inst 1",
            "meets_budget": False,
            "latency_ms": 7.5,
            "throughput": 0.0,
            "stable": True,
            "failed": 0,
            "unstable_levels": [],
            "levels": [],
        }
    )
    rec = {
        "percentile": 99.0,
        "timed_out": False,
        "chosen": None,
        "closest": closest,
        "min_throughput": None,
        "latency_budget_ms": 5.0,
        "max_minutes": 1.0,
        "measured": 1,
        "best": None,
    }
    out = outcome(**rec)
    assert out.exit_code == 1 and "onnx inst 1" in out.reason and "7.50 ms" in out.reason
    timed = outcome(**{**rec, "timed_out": True, "best": closest.model_copy(update={"throughput": 900.0})})
    assert timed.exit_code == 1 and "--max-minutes 1 ran out" in timed.reason and "nothing applied" in timed.reason
    assert "onnx inst 1 (900 infer/s)" in timed.reason
    assert outcome(**{**rec, "chosen": closest}).exit_code == 0

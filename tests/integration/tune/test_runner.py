"""run_tune's decisions around the search, on a scripted tuner (no server): the final comparison is fair."""

from __future__ import annotations

import pytest
from perf_fakes import perf_record  # tests/ is on sys.path (its conftest)

from zeroserve import registry
from zeroserve.records.state import ServerState
from zeroserve.records.tune import Floor, Measurement, SideBySide, SideFigures
from zeroserve.tune import runner as tr


@pytest.fixture()
def repository(repo):
    return repo[1]


def measurement(throughput: float, concurrency: int) -> Measurement:
    return Measurement(
        meets_budget=True,
        concurrency=concurrency,
        throughput=throughput,
        latency_ms=1.0,
        p50_ms=0.5,
        p99_ms=1.0,
        stable=True,
        failed=0,
        server=None,
        unstable_levels=[],
        levels=[],
    )


class ScriptedTuner(tr.Tuner):
    """The real Tuner's bookkeeping, with scripted measurements instead of a server."""

    deployed_searches: list = []  # (start, measurement) in call order
    side_by_side_calls: list = []
    side_ratio = 1.2

    def __enter__(self):
        self.server = type(
            "S",
            (),
            {
                "state": ServerState(run_id="r", pid=1, host="127.0.0.1", http_port=1, grpc_port=2, metrics_port=3),
                "pid": 1,
                "stop": lambda s: None,
            },
        )()
        return self

    def floor(self, budget_ms):
        return Floor(latency_ms=0.1, p50_ms=0.1, p99_ms=0.1, stable=True)

    def measure_deployed(self, start=None):
        self.calls.append(start)
        m = type(self).deployed_searches[len(self.calls) - 1]
        return tr.candidate_of(self.deployed[self.base_fmt], self.base_fmt), m.model_copy()

    def measure_candidate(self, c, is_best):
        m = measurement(4000.0, 8) if c.instances == 2 else measurement(900.0, 8)
        is_best(c, m)
        return m

    def side_by_side(self, best, best_c, deployed_c):
        type(self).side_by_side_calls.append((best_c, deployed_c))
        r = type(self).side_ratio
        return SideBySide(
            rounds=[],
            ratio=r,
            median={
                "deployed": SideFigures(throughput=1000.0, p50_ms=0.5, p99_ms=1.0),
                "best": SideFigures(throughput=1000.0 * r, p50_ms=0.5, p99_ms=1.0),
            },
        )


def run(monkeypatch, repository, deployed_searches, side_ratio=1.2):
    calls: list = []

    class T(ScriptedTuner):
        def __init__(self, *a, **kw):
            super().__init__(*a, **kw)
            self.calls = calls

    T.deployed_searches, T.side_by_side_calls, T.side_ratio = deployed_searches, [], side_ratio
    monkeypatch.setattr(tr, "Tuner", T)
    opts = tr.Options(
        budget_ms=5.0, instances=(1, 2), batch_sizes=(8,), queue_delays_us=(0,), threads=(1,), preferred=(False,)
    )
    rec = tr.run_tune(registry.get("logistic"), repository, opts)
    return rec, calls, T.side_by_side_calls


def test_a_deployed_search_stopped_low_is_searched_again_before_the_side_by_side(monkeypatch, repository):
    # the first search of the deployed config ended at c=1 (one slow window); the best candidate's at c=8
    rec, calls, sides = run(monkeypatch, repository, [measurement(1000.0, 1), measurement(3900.0, 8)])
    assert calls == [None, 8]  # searched again from the best candidate's concurrency
    assert sides == [(8, 8)]  # and compared with it at that load, not at c=1
    assert rec.deployed and rec.deployed.throughput == 3900.0 and rec.deployed.concurrency == 8
    assert any("searched again" in n for n in rec.notes)


def test_the_first_search_stands_when_the_second_is_no_better(monkeypatch, repository):
    rec, calls, sides = run(monkeypatch, repository, [measurement(1000.0, 2), measurement(800.0, 1)])
    assert calls == [None, 8] and sides == [(8, 2)]
    assert rec.deployed and rec.deployed.throughput == 1000.0
    assert not any("searched again" in n for n in rec.notes)


def test_no_second_search_when_the_deployed_config_already_reached_the_best_ones_concurrency(monkeypatch, repository):
    rec, calls, sides = run(monkeypatch, repository, [measurement(1000.0, 16)])
    assert calls == [None] and sides == [(8, 16)]


def test_a_side_by_side_below_one_keeps_the_deployed_config(monkeypatch, repository):
    rec, _, _ = run(monkeypatch, repository, [measurement(1000.0, 8)], side_ratio=0.97)
    assert rec.chosen_is_deployed and rec.gain == 1.0
    assert any("deployed config is kept" in n for n in rec.notes)


def test_a_search_cut_off_by_max_minutes_is_not_a_measurement(repository):
    """A candidate whose concurrency search the deadline cut part-way is recorded as not measured."""
    tuner = tr.Tuner(registry.get("logistic"), repository, None, tr.Options(budget_ms=5.0, max_minutes=2))
    tuner.perf = lambda *a, **kw: perf_record(cut_short=True, levels=[], best=None, latency_metric="p99_ms")
    m = tuner.measure_budget("logistic_onnx", "onnx")
    assert m.meets_budget is False and m.throughput == 0.0 and m.failed == 0 and m.cut_short
    assert m.error and "--max-minutes (2) ran out" in m.error

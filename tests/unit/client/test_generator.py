"""Spreading a level over worker processes: plans, window merging, and a pool that always exits."""

from __future__ import annotations

import multiprocessing

import numpy as np
import pytest

from zeroserve import registry
from zeroserve.client.perf import generator as G
from zeroserve.client.perf import load
from zeroserve.client.perf.split import split_level

SPEC = registry.get("cnn_mnist")


def _base(**kw) -> G.LoadPlan:
    return G.LoadPlan(
        G.Tensors(SPEC.inputs, SPEC.outputs),
        "cnn_mnist_onnx",
        "grpc",
        ["127.0.0.1:1"],
        [np.zeros((1, 1, 28, 28), np.float32)],
        1.0,
        start_at=100.0,
        **kw,
    )


@pytest.mark.parametrize("c,workers,shares", [(16, 2, [8, 8]), (5, 2, [3, 2]), (1, 4, [1]), (7, 3, [3, 2, 2])])
def test_concurrency_is_split_as_evenly_as_it_goes(c, workers, shares):
    regions = [(f"r{i}", [(0, 40)]) for i in range(c)]
    plans = split_level(_base(), workers, c, None, regions)
    assert [p.concurrency for p in plans] == shares
    owned = [r for p in plans for r in p.output_regions]
    assert owned == regions  # every slot's region owned by exactly one generator


def test_constant_rate_is_split_into_staggered_schedules_that_interleave():
    plans = split_level(_base(distribution="constant"), 3, None, 300.0, [])
    assert [p.rate for p in plans] == [100.0] * 3
    times = sorted(
        t for p in plans for t, _ in zip(load.intended_send_times(p.rate, "constant", p.start_at), range(100))
    )
    assert np.allclose(np.diff(times), 1 / 300.0)  # together: one constant stream at the full rate


def test_poisson_streams_get_distinct_seeds():
    plans = split_level(_base(distribution="poisson", seed=7), 2, None, 100.0, [])
    assert [p.seed for p in plans] == [7, 8] and {p.start_at for p in plans} == {100.0}


def test_windows_merge_across_workers():
    samples = []
    for latencies, failed in (([1000, 2000], 1), ([3000], 0)):
        r = load.Recorder()
        for v in latencies:
            r.sent(0.0)
            r.record(v / 1e6, True)
        for _ in range(failed):
            r.record(0.1, False, "E", "what E was")
        samples.append(G.encode(G.Sample(r.swap(), 0.2, 0.1 * len(latencies))))
    merged = G.merge(samples, extra_cpu=0.05)
    assert merged.counts.ok == 3 and merged.counts.failed == 1 and merged.counts.errors["E"] == 1
    assert merged.counts.messages == {"E": "what E was"}
    assert merged.counts.histogram.get_total_count() == 3
    assert merged.counts.histogram.get_max_value() == pytest.approx(3000, rel=1e-3)
    assert merged.cpu_seconds == pytest.approx(0.45) and merged.loop_cpu_seconds == pytest.approx(0.2)


def test_pool_workers_exit_when_closed():
    pool = G.WorkerPool(2)
    assert all(p.is_alive() for p in pool.procs)
    pool.close()
    assert not any(p.is_alive() for p in pool.procs)
    assert not [p for p in multiprocessing.active_children() if p.name == "zeroserve-load"]


def test_a_worker_that_fails_is_one_clear_error_and_the_pool_still_exits():
    import asyncio

    pool = G.WorkerPool(1)
    try:
        from dataclasses import replace

        plan = split_level(replace(_base(), protocol="carrier-pigeon"), 1, 1, None, [])
        with pytest.raises(G.GeneratorError, match="worker process failed: InputError: unknown protocol"):
            asyncio.run(G.ProcessGenerator(pool, plan, timeout=2.0).__aenter__())
    finally:
        pool.close()
    assert not any(p.is_alive() for p in pool.procs)

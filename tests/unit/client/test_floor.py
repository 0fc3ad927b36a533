"""--floor's run order and record, on a fake perf run: interleaved by level, the worse outcome, the comparison."""

from __future__ import annotations

import contextlib

import pytest
from perf_fakes import perf_record  # tests/ is on sys.path (its conftest)

from zeroserve.client.endpoints import Endpoint
from zeroserve.client.model import Target
from zeroserve.client.perf import floor
from zeroserve.errors import InputError


class _Client:
    def __init__(self, *a, **k):
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return None


def _level(c: int, p50: float, tp: float) -> dict:
    return {
        "concurrency": c,
        "request_rate": None,
        "p50_ms": p50,
        "p99_ms": 2 * p50,
        "mean_ms": p50,
        "throughput": tp,
        "ok": 10,
    }


def test_levels_alternate_model_and_floor_and_the_record_holds_both(monkeypatch):
    calls = []

    def run(target, endpoint, opts, **kw):
        which = "floor" if target.triton_name.endswith("_noop") else "model"
        (c,) = opts.concurrency
        calls.append((which, c))
        p50, tp = (0.4, 8000.0 * c) if which == "floor" else (0.5, 6000.0 * c)
        code = 4 if which == "model" and c == 16 else 0
        return perf_record(
            triton_model=target.triton_name,
            levels=[_level(c, p50, tp)],
            notes=[f"{which} note"],
            measured_on={"engine": which},
            outcome={"exit_code": code, "reason": "unstable" if code else ""},
        )

    @contextlib.contextmanager
    def twin(client, name, timeout):
        yield Endpoint("127.0.0.1", 1, 2, "twin"), "the serving server"

    monkeypatch.setattr(floor, "Client", _Client)
    monkeypatch.setattr(floor, "twin_server", twin)
    target = Target(name="m", triton_name="m_onnx", fmt="onnx", inputs=(), outputs=(), max_batch_size=8, spec=None)
    rec = floor.perf_with_floor(run, target, Endpoint("127.0.0.1", 3, 4, "x"), concurrency=[1, 16, 32])
    # the order alternates from level to level; the run stops after the level whose outcome is not 0
    assert calls == [("model", 1), ("floor", 1), ("floor", 16), ("model", 16)]
    assert [lv.concurrency for lv in rec.levels] == [1, 16] and rec.notes == ["model note"]
    assert rec.floor is not None and rec.floor.triton_model == "m_onnx_noop"
    assert rec.floor.measured_on is not None and rec.floor.measured_on.to_json() == {"engine": "floor"}
    one = rec.floor.comparison[0]
    assert one.added_p50_ms == pytest.approx(0.1) and one.throughput_ratio == pytest.approx(0.75)
    assert one.floor_share_p50 == pytest.approx(0.8)
    assert rec.outcome.to_json() == {"exit_code": 4, "reason": "unstable"}
    # the merged record writes the floor beside the model's fields, as perf writes them
    assert list(rec.to_json())[-1] == "floor" and rec.to_json()["floor"]["comparison"][0]["concurrency"] == 1
    assert floor.floor_line(rec) == "floor (m_onnx_noop, no-op): p50 0.40 ms at c=1, 128,000 infer/s at c=16"


def test_floor_refuses_a_budget_search_and_several_servers():
    with pytest.raises(InputError, match="fixed levels"):
        floor.perf_with_floor(lambda *a, **k: {}, "m", Endpoint(), latency_budget_ms=5.0)  # a PerfOptions field
    with pytest.raises(InputError, match="one server"):
        floor.perf_with_floor(lambda *a, **k: {}, "m", Endpoint(), urls=["127.0.0.1:1", "127.0.0.1:2"])

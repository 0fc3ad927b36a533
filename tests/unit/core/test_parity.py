"""The one parity rule, as export's gate and `client check` apply it."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from torch import nn

from zeroserve import parity, registry
from zeroserve import tasks as T
from zeroserve.artifacts import eager_outputs
from zeroserve.client import check
from zeroserve.export import gate
from zeroserve.spec import DataSource, ModelSpec, TensorSpec, TrainDefaults

TOL = parity.Tolerance()
CNN = registry.get("cnn_mnist")


class TwoHeads(nn.Module):
    """One input, two outputs: class logits and a value."""

    def __init__(self):
        super().__init__()
        self.cls, self.reg = nn.Linear(4, 3), nn.Linear(4, 1)

    def forward(self, x):
        return self.cls(x), self.reg(x)


TWO_HEADS = ModelSpec(
    name="two_heads",
    lesson="test",
    summary="classes and a value",
    build=TwoHeads,
    data=DataSource("none", (), lambda d: None),
    inputs=(TensorSpec("x__0", "float32", (4,)),),
    outputs=(
        TensorSpec("logits__0", "float32", (3,), kind=T.LOGITS),
        TensorSpec("value__1", "float32", (1,), kind=T.VALUE),
    ),
    tasks=(T.MULTICLASS, T.REGRESSION),
    train=TrainDefaults(1, 0.1, 4),
    bar=0.0,
)


def test_a_module_returning_a_tuple_runs_eagerly_with_every_output():
    outs = eager_outputs(TwoHeads().eval(), [np.ones((5, 4), np.float32)], batch_size=2)
    assert [o.shape for o in outs] == [(5, 3), (5, 1)]


def test_every_output_is_gated_and_a_perturbed_second_output_is_caught():
    model = TwoHeads().eval()
    points = gate.grid(TWO_HEADS, None)
    eager = lambda xs: eager_outputs(model, xs)  # noqa: E731 - a one-line local helper

    def perturbed(xs):
        logits, value = eager(xs)
        return [logits, value + 1e-2]

    assert gate.run_gate(TWO_HEADS, eager, eager, points, TOL)["status"] == "PASS"
    result = gate.run_gate(TWO_HEADS, eager, perturbed, points, TOL)
    assert result["status"] == "FAIL"
    worst = result["worst"]
    assert worst["worst_output"] == "value__1" and worst["outputs"]["logits__0"]["passed"]
    assert not worst["outputs"]["value__1"]["passed"] and worst["max_abs"] == pytest.approx(1e-2, rel=1e-3)


def test_a_missing_output_fails():
    x = [np.ones((2, 4), np.float32)]
    want = eager_outputs(TwoHeads().eval(), x)
    result = parity.compare(TWO_HEADS, want[:1], want, TOL)
    assert not result["passed"] and "1 output(s) where the spec declares 2" in result["error"]


def test_a_near_tie_inside_tolerance_passes_and_is_counted():
    want = np.log(np.array([[0.5, 0.5 - 1e-6] + [0.0] * 8, [0.9, 0.1] + [0.0] * 8]) + 1e-30).astype(np.float64)
    got = want.copy()
    got[0, [0, 1]] = got[0, [1, 0]]  # eager's top two are 2e-6 apart; swapped, each moved by 2e-6 <= tolerance
    result = parity.compare(CNN, [got], [want], TOL)
    assert result["passed"] and result["near_ties"] == 1 and result["near_tie_flips"] == 1
    assert result["top1_agreement"] == 0.5 and result["disagreements"] == 0


def test_a_real_top1_disagreement_fails_even_inside_a_loose_element_tolerance():
    want = np.log(np.array([[0.6, 0.4] + [1e-9] * 8]))
    got = np.log(np.array([[0.4, 0.6] + [1e-9] * 8]))
    loose = parity.Tolerance(atol=1.0, rtol=0.0)  # every element within, but eager's margin 0.41 > ...
    tight_margin = parity.Tolerance(atol=0.1, rtol=0.0)
    result = parity.compare(CNN, [got], [want], tight_margin)
    assert not result["passed"] and result["disagreements"] == 1 and result["outside_tolerance"] > 0
    assert parity.compare(CNN, [got], [want], loose)["passed"]  # a margin inside the tolerance: a near tie


def test_binary_near_ties_are_measured_from_the_threshold():
    logistic = registry.get("logistic")
    want = np.array([[0.5 + 1e-6], [0.9]])
    got = np.array([[0.5 - 1e-6], [0.9]])
    assert parity.compare(logistic, [got], [want], TOL)["passed"]
    far = [np.array([[0.7], [0.9]])]
    flipped = [np.array([[0.4], [0.9]])]
    result = parity.compare(logistic, flipped, far, parity.Tolerance(0.1, 0))
    assert not result["passed"] and result["disagreements"] == 1 and result["near_ties"] == 0


def test_served_outputs_are_compared_by_shape_never_reshaped():
    want = np.zeros((3, 10))
    result = parity.compare(CNN, [want.reshape(3, 10, 1)], [want], TOL)
    assert not result["passed"] and "shape [3, 10, 1] where eager gives [3, 10]" in result["error"]


def test_nan_on_one_side_fails():
    want = np.zeros((1, 10))
    got = want.copy()
    got[0, 4] = np.nan
    assert not parity.compare(CNN, [got], [want], TOL)["passed"]


def test_per_model_tolerance_from_the_spec_is_what_gate_and_check_use():
    loose = dataclasses.replace(CNN, tolerance=parity.Tolerance(atol=1e-2, rtol=0.0))
    want = [np.log(np.full((2, 10), 0.1))]
    got = [want[0] + 5e-3]
    assert not parity.compare(CNN, got, want, CNN.tolerance)["passed"]
    assert parity.compare(loose, got, want, loose.tolerance)["passed"]
    target = np.zeros(2, np.int64)
    assert check.compare(loose, got, want, target, loose.tolerance)["passed"]
    run = gate.run_gate(loose, lambda xs: want, lambda xs: got, [("p", [np.zeros((2, 1, 28, 28))])], loose.tolerance)
    assert run["status"] == "PASS" and run["atol"] == 1e-2


def test_gate_and_check_reach_the_same_verdict_on_the_same_numbers():
    rng = np.random.default_rng(1)
    want = np.log(rng.dirichlet(np.ones(10), 20))
    for bump in (0.0, 1e-6, 1e-3):
        got = want + bump
        verdict = gate.run_gate(CNN, lambda xs: [want], lambda xs: [got], [("p", [want])], TOL)["status"] == "PASS"
        assert verdict == check.compare(CNN, [got], [want], want.argmax(1), TOL)["passed"]

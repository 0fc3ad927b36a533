"""The parity gate: exported outputs against eager PyTorch on a grid of shapes.

Pass rule, element-wise as numpy.allclose has it: |exported - eager| <= atol + rtol * |eager|
for every element, and 100% top-1 agreement for classifiers. `client check` uses the same rule.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from zeroserve.spec import ModelSpec

ATOL = 1e-5
RTOL = 1e-4
REL_EPS = 1e-6  # keeps the relative error finite where eager is exactly zero


@dataclass
class Comparison:
    """How one exported output compares with eager on one batch."""

    max_abs: float
    max_rel: float
    top1_agreement: float | None
    passed: bool
    worst_index: list[int]

    def as_json(self) -> dict:
        return {"max_abs": self.max_abs, "max_rel": self.max_rel, "top1_agreement": self.top1_agreement,
                "passed": self.passed, "worst_index": self.worst_index}


def top1(spec: ModelSpec, outputs: np.ndarray) -> np.ndarray | None:
    """The decision a classifier makes per row (or per step); None for regression."""
    if spec.task == "regression":
        return None
    if spec.task == "binary":
        return outputs >= 0.5
    return outputs.argmax(-1)


def compare(spec: ModelSpec, got: np.ndarray, want: np.ndarray, atol: float = ATOL, rtol: float = RTOL) -> Comparison:
    """Compare exported (`got`) with eager (`want`) under the gate's rule."""
    got = np.asarray(got, dtype=np.float64)
    want = np.asarray(want, dtype=np.float64)
    if got.shape != want.shape:
        return Comparison(float("inf"), float("inf"), 0.0, False, [])
    diff = np.abs(got - want)
    if not np.all(np.isfinite(got)):
        diff = np.where(np.isfinite(got), diff, np.inf)
    rel = diff / (np.abs(want) + REL_EPS)
    within = diff <= atol + rtol * np.abs(want)
    agreement = None
    t_got, t_want = top1(spec, got), top1(spec, want)
    if t_got is not None:
        agreement = float(np.mean(t_got == t_want))
    worst = [int(i) for i in np.unravel_index(int(np.argmax(diff)), diff.shape)] if diff.size else []
    passed = bool(np.all(within)) and (agreement is None or agreement == 1.0)
    return Comparison(float(diff.max(initial=0.0)), float(rel.max(initial=0.0)), agreement, passed, worst)


def grid(spec: ModelSpec, real: list[np.ndarray] | None, seed: int = 0) -> list[tuple[str, list[np.ndarray]]]:
    """(label, inputs) pairs: batch sizes 1, 2, 7 and max_batch_size; for RNNs every sequence
    length of the registry (batches of mixed lengths where the model takes lengths); plus real
    held-out samples when there are any."""
    rng = np.random.default_rng(seed)
    points = []
    batches = sorted({1, 2, 7, spec.max_batch_size})
    for time in spec.seq_lengths or (None,):
        for batch in batches:
            label = f"random batch={batch}" + (f" time={time}" if time else "")
            points.append((label, spec.random_inputs(batch, rng, time=time)))
    if real is not None:
        n = min(len(real[0]), spec.max_batch_size)
        points.append((f"held-out batch={n}", [a[:n] for a in real]))
    return points


def run_gate(spec: ModelSpec, eager: Callable, exported: Callable, points, atol: float = ATOL,
             rtol: float = RTOL) -> dict:
    """Run every grid point through both paths; the record of numbers and the verdict."""
    results = []
    for label, inputs in points:
        want = eager(inputs)
        try:
            got = exported(inputs)
            cmp = compare(spec, got, want, atol, rtol)
            entry = {"point": label, "shapes": [list(a.shape) for a in inputs], **cmp.as_json()}
        except Exception as exc:  # an exported graph that cannot run a shape fails the gate with the reason
            entry = {"point": label, "shapes": [list(a.shape) for a in inputs], "max_abs": float("inf"),
                     "max_rel": float("inf"), "top1_agreement": 0.0, "passed": False,
                     "error": f"{type(exc).__name__}: {str(exc).strip()[:300]}"}
        results.append(entry)
    worst = max(results, key=lambda r: (not r["passed"], r["max_abs"]))
    return {"status": "PASS" if all(r["passed"] for r in results) else "FAIL", "atol": atol, "rtol": rtol,
            "grid": results, "worst": worst}

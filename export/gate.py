"""The export gate: exported outputs against eager PyTorch on a grid of shapes, by the parity rule.

The rule itself (every output, element-wise tolerance, margin-aware top-1) is `zeroserve.parity`,
which `client check` uses too; this module chooses the grid and runs both paths over it.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from zeroserve import parity
from zeroserve.spec import ModelSpec


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


def run_gate(spec: ModelSpec, eager: Callable, exported: Callable, points, tol: parity.Tolerance) -> dict:
    """Run every grid point through both paths (each returns every output); the numbers and the verdict."""
    results = []
    for label, inputs in points:
        want = eager(inputs)
        shapes = [list(a.shape) for a in inputs]
        try:
            got = exported(inputs)
            cmp = parity.compare(spec, got, want, tol)
        except Exception as exc:  # an exported graph that cannot run a shape fails the gate with the reason
            cmp = {
                "passed": False,
                "max_abs": float("inf"),
                "max_rel": float("inf"),
                "top1_agreement": 0.0,
                "error": f"{type(exc).__name__}: {str(exc).strip()[:300]}",
            }
        results.append({"point": label, "shapes": shapes, **cmp})
    worst = max(results, key=lambda r: (not r["passed"], r["max_abs"]))
    return {
        "status": "PASS" if all(r["passed"] for r in results) else "FAIL",
        "atol": tol.atol,
        "rtol": tol.rtol,
        "near_ties": sum(r.get("near_ties", 0) for r in results),
        "grid": results,
        "worst": worst,
    }

"""The one parity rule: an exported or served model's outputs against eager PyTorch's.

Used by export's gate (exported artifact in-process) and by `client check` (the model as served).
For every output of the spec, compared by shape (a served array is never reshaped to fit):

- element-wise, as numpy.allclose has it: |got - eager| <= atol + rtol * |eager|;
- where the output's task makes decisions (top-1), every decision must agree, except where
  eager's margin between its top two (or to a binary threshold) is within the tolerance at that
  point: such a near tie may flip without failing, and the number of near ties is recorded.

Tolerances come from the model spec (`ModelSpec.tolerance`), overridable per run.

A variant (int8, fp16, ...) is not held to that rule but to `VariantRule` (`judge_variant`): on the
whole held-out set its task metric within a stated margin of fp32's, and its top-1 agreement with
eager at least a stated share; max abs/rel error are recorded, not gated.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, cast

import numpy as np

from zeroserve.errors import InputError

if TYPE_CHECKING:
    from zeroserve.spec import ModelSpec
    from zeroserve.tasks import OutputKind

ATOL = 1e-5
RTOL = 1e-4
REL_EPS = 1e-8  # keeps the reported relative error finite where eager is exactly zero


@dataclass(frozen=True)
class Tolerance:
    """The parity rule's allowance: |got - eager| <= atol + rtol * |eager|."""

    atol: float = ATOL
    rtol: float = RTOL

    def __post_init__(self) -> None:
        if not (self.atol >= 0 and self.rtol >= 0):  # also refuses NaN
            raise InputError(f"tolerances must not be negative (atol {self.atol}, rtol {self.rtol})")

    def with_overrides(self, atol: float | None = None, rtol: float | None = None) -> Tolerance:
        """This tolerance with the given values replacing its own."""
        return replace(self, **{k: v for k, v in (("atol", atol), ("rtol", rtol)) if v is not None})


@dataclass
class OutputParity:
    """How one output compares with eager on one batch."""

    name: str
    passed: bool
    max_abs: float = float("inf")
    max_rel: float = float("inf")
    outside_tolerance: int = 0
    top1_agreement: float | None = None
    disagreements: int = 0  # decisions that differ outside a near tie: each one fails
    near_ties: int = 0  # eager decisions whose margin is within the tolerance
    near_tie_flips: int = 0  # decisions that differ at a near tie: allowed
    worst_index: list[int] | None = None
    error: str = ""

    def as_json(self) -> dict:
        out: dict[str, Any] = {
            "passed": self.passed,
            "max_abs": self.max_abs,
            "max_rel": self.max_rel,
            "outside_tolerance": self.outside_tolerance,
            "top1_agreement": self.top1_agreement,
            "disagreements": self.disagreements,
            "near_ties": self.near_ties,
            "near_tie_flips": self.near_tie_flips,
            "worst_index": self.worst_index or [],
        }
        if self.error:
            out["error"] = self.error
        return out


def compare_output(spec: ModelSpec, index: int, got: np.ndarray, want: np.ndarray, tol: Tolerance) -> OutputParity:
    """Compare output `index` of `spec` (got vs eager) under the rule."""
    t, task = spec.outputs[index], spec.output_tasks[index]
    kind = cast("OutputKind", t.kind)  # every output declares its kind (checked when the spec is made)
    got, want = np.asarray(got), np.asarray(want)
    if got.shape != want.shape:
        return OutputParity(t.name, False, error=f"shape {list(got.shape)} where eager gives {list(want.shape)}")
    g, w = got.astype(np.float64), want.astype(np.float64)
    diff = np.abs(g - w)
    diff = np.where(np.isnan(diff) & ~(np.isnan(g) & np.isnan(w)), np.inf, diff)  # NaN only on one side fails
    diff = np.where(np.isnan(diff), 0.0, diff)
    within = diff <= tol.atol + tol.rtol * np.abs(np.nan_to_num(w))
    result = OutputParity(
        t.name,
        True,
        max_abs=float(diff.max(initial=0.0)),
        max_rel=float((diff / (np.abs(np.nan_to_num(w)) + REL_EPS)).max(initial=0.0)),
        outside_tolerance=int((~within).sum()),
        worst_index=[int(i) for i in np.unravel_index(int(np.argmax(diff)), diff.shape)] if diff.size else [],
    )
    d_got, d_want = task.decisions(kind, got), task.decisions(kind, want)
    if d_want is not None and d_want.size:
        differ = d_got != d_want
        near = task.near_ties(kind, want, tol.atol, tol.rtol)
        result.top1_agreement = float(np.mean(~differ))
        near = np.zeros_like(differ) if near is None else near
        result.near_ties = int(near.sum())
        result.near_tie_flips = int((differ & near).sum())
        result.disagreements = int((differ & ~near).sum())
    result.passed = result.outside_tolerance == 0 and result.disagreements == 0
    return result


def compare(spec: ModelSpec, got: list[np.ndarray], want: list[np.ndarray], tol: Tolerance) -> dict:
    """Compare every output of `spec`; the summary a gate point or a check row records.

    Returns:
        {"passed", "max_abs", "max_rel", "outside_tolerance", "top1_agreement" (the primary
        output's), "near_ties", "near_tie_flips", "disagreements", "worst_output", "worst_index",
        "outputs": {name: per-output numbers}} and "error" when the outputs do not line up.
    """
    got, want = list(got), list(want)
    if len(got) != len(spec.outputs) or len(want) != len(spec.outputs):
        error = (
            f"{len(got)} output(s) where the spec declares {len(spec.outputs)} "
            f"({', '.join(t.name for t in spec.outputs)})"
        )
        return {
            "passed": False,
            "max_abs": float("inf"),
            "max_rel": float("inf"),
            "outside_tolerance": 0,
            "top1_agreement": 0.0,
            "near_ties": 0,
            "near_tie_flips": 0,
            "disagreements": 0,
            "worst_output": None,
            "worst_index": [],
            "outputs": {},
            "error": error,
        }
    per = [compare_output(spec, i, g, w, tol) for i, (g, w) in enumerate(zip(got, want))]
    worst = max(per, key=lambda r: (not r.passed, r.max_abs))
    out = {
        "passed": all(r.passed for r in per),
        "max_abs": max(r.max_abs for r in per),
        "max_rel": max(r.max_rel for r in per),
        "outside_tolerance": sum(r.outside_tolerance for r in per),
        "top1_agreement": per[spec.primary_index].top1_agreement,
        "near_ties": sum(r.near_ties for r in per),
        "near_tie_flips": sum(r.near_tie_flips for r in per),
        "disagreements": sum(r.disagreements for r in per),
        "worst_output": worst.name,
        "worst_index": worst.worst_index or [],
        "outputs": {r.name: r.as_json() for r in per},
    }
    errors = [f"{r.name}: {r.error}" for r in per if r.error]
    if errors:
        out["error"] = "; ".join(errors)
    return out


@dataclass(frozen=True)
class VariantRule:
    """The variant gate: what a faster variant may cost, measured on the whole held-out set.

    Args:
        max_metric_drop: a classifier's held-out accuracy may be at most this many points below fp32's.
        min_agreement: percent of top-1 decisions that must agree with eager PyTorch's (classifiers).
        max_mse_increase: a regression's held-out MSE may be at most this many percent above fp32's
            (no agreement rule: a regression makes no decisions).
    """

    max_metric_drop: float = 0.5
    min_agreement: float = 99.0
    max_mse_increase: float = 5.0

    def __post_init__(self) -> None:
        if not (self.max_metric_drop >= 0 and self.max_mse_increase >= 0 and 0 <= self.min_agreement <= 100):
            raise InputError(
                f"variant gate: --max-metric-drop and --max-mse-increase must not be negative and "
                f"--min-agreement must be a percentage in [0, 100] (got {self.max_metric_drop}, "
                f"{self.max_mse_increase}, {self.min_agreement})"
            )

    def as_json(self) -> dict:
        return {
            "max_metric_drop": self.max_metric_drop,
            "min_agreement": self.min_agreement,
            "max_mse_increase": self.max_mse_increase,
        }

    @classmethod
    def from_json(cls, data: dict | None) -> VariantRule:
        data = data or {}
        return cls(**{k: float(data[k]) for k in ("max_metric_drop", "min_agreement", "max_mse_increase") if k in data})


def judge_variant(
    spec: ModelSpec,
    got: list[np.ndarray],
    eager: list[np.ndarray],
    target: np.ndarray | None,
    rule: VariantRule,
    tol: Tolerance,
) -> dict:
    """A variant's outputs on the held-out set against eager's (fp32), by the variant rule.

    Returns:
        `compare`'s numbers (max_abs, max_rel, top1_agreement, ... recorded, not gated) plus "passed",
        "metric", "metric_fp32", "metric_variant", "metric_bound", "failed_rules" (one line each,
        with the numbers) and "rule" (the rule in words).
    """
    out = compare(spec, got, eager, tol)
    task, kind, i = spec.task, spec.primary_kind, spec.primary_index
    failed: list[str] = []
    rules: list[str] = []
    out.update({"metric": task.variant_metric, "metric_fp32": None, "metric_variant": None, "metric_bound": None})
    if "error" in out:
        failed.append(out["error"])
    elif target is not None:
        fp32 = task.variant_score(kind, eager[i], target)
        this = task.variant_score(kind, got[i], target)
        bound, words = task.variant_bound(fp32, rule)
        rules.append(words)
        out.update({"metric_fp32": fp32, "metric_variant": this, "metric_bound": bound})
        if not task.passes(this, bound - 1e-12 if task.higher_is_better else bound + 1e-12):
            failed.append(f"{task.variant_metric} {this:.4g} vs fp32's {fp32:.4g}: not within the rule ({words})")
    if "error" not in out and out.get("top1_agreement") is not None:
        rules.append(f"top-1 agreement with eager at least {rule.min_agreement:g}%")
        if out["top1_agreement"] * 100 < rule.min_agreement - 1e-9:
            failed.append(f"top-1 agreement with eager {out['top1_agreement']:.2%} is below {rule.min_agreement:g}%")
    out["passed"] = not failed
    out["failed_rules"] = failed
    out["rule"] = "; ".join(rules) or "no rule applies (no targets and no decisions)"
    return out

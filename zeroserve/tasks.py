"""What a model's outputs mean: output kinds and the tasks that read them.

Each output spec declares its kind (a value, probabilities, logits, log-probabilities, or a
sequence of per-step logits or log-probabilities); the model spec holds one task per output and
names its primary output. A task knows its training loss for a kind, its held-out metric, the
decision a classifier makes (top-1), how far a decision is from flipping (the parity rule's near
ties), and how to describe an output row to a person. Nothing else in the code asks "which task?".
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from zeroserve.errors import InputError

# ---------------------------------------------------------------- output kinds


@dataclass(frozen=True)
class OutputKind:
    """What the numbers of one output are.

    Args:
        name: `value`, `probs`, `logits`, `log_probs`, `sequence_logits`, `sequence_log_probs`.
        space: the per-step space: `value`, `probs`, `logits` or `log_probs`.
        sequence: one row per time step (the last axis is the class axis of each step).
    """

    name: str
    space: str
    sequence: bool = False

    def probabilities(self, scores: np.ndarray) -> np.ndarray:
        """Probabilities over the last axis; a single unit is P(positive) (sigmoid for logits)."""
        a = np.asarray(scores, dtype=np.float64)
        if self.space == "probs":
            return a
        if self.space == "log_probs":
            return np.exp(a)
        if self.space == "logits":
            if a.shape[-1] == 1:
                return 1.0 / (1.0 + np.exp(-a))
            e = np.exp(a - a.max(axis=-1, keepdims=True))
            return e / e.sum(axis=-1, keepdims=True)
        raise InputError(f"an output of kind {self.name} has no probabilities")

    @property
    def threshold(self) -> float:
        """A single-unit classifier's decision threshold in this space (P >= 0.5)."""
        return {"probs": 0.5, "logits": 0.0, "log_probs": float(np.log(0.5))}[self.space]


VALUE = OutputKind("value", "value")
PROBS = OutputKind("probs", "probs")
LOGITS = OutputKind("logits", "logits")
LOG_PROBS = OutputKind("log_probs", "log_probs")
SEQUENCE_LOGITS = OutputKind("sequence_logits", "logits", sequence=True)
SEQUENCE_LOG_PROBS = OutputKind("sequence_log_probs", "log_probs", sequence=True)
KINDS = {k.name: k for k in (VALUE, PROBS, LOGITS, LOG_PROBS, SEQUENCE_LOGITS, SEQUENCE_LOG_PROBS)}


def tolerance_at(values: np.ndarray, atol: float, rtol: float) -> np.ndarray:
    """The parity rule's allowance at each element: atol + rtol * |value| (numpy.allclose's form)."""
    return atol + rtol * np.abs(values)


# ---------------------------------------------------------------- losses the course has no class for


class ProbsNLLLoss(nn.Module):
    """NLL of probabilities (a softmax output): the log is taken here, clamped away from zero."""

    def forward(self, probs: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return nn.functional.nll_loss(torch.log(probs.clamp_min(1e-12)), target)


class PerStepLoss(nn.Module):
    """A classification loss over every time step: [batch, time, classes] against [batch, time]."""

    def __init__(self, step_loss: nn.Module):
        super().__init__()
        self.step_loss = step_loss

    def forward(self, out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return self.step_loss(out.reshape(-1, out.shape[-1]), target.reshape(-1))

    @property
    def label(self) -> str:
        return f"{type(self.step_loss).__name__} per step"


# ---------------------------------------------------------------- tasks


class Task:
    """What one output is for. Subclasses fill in the behaviour; instances are stateless.

    Attributes:
        name: `regression`, `binary`, `multiclass`, `sequence`.
        metric: the held-out metric's name.
        higher_is_better: the metric's direction (the training bar compares with it).
        kinds: the output kinds this task reads.
    """

    name = ""
    metric = "accuracy"
    higher_is_better = True
    kinds: tuple[OutputKind, ...] = ()

    def check_kind(self, kind: OutputKind, output: str) -> None:
        """InputError unless this task can read an output of `kind`."""
        if kind not in self.kinds:
            raise InputError(
                f"output {output}: a {self.name} task reads {', '.join(k.name for k in self.kinds)} "
                f"outputs, not {kind.name}"
            )

    def loss(self, kind: OutputKind):
        """The training loss (a callable of (output, target)) for an output of `kind`."""
        raise NotImplementedError

    def score(self, kind: OutputKind, outputs: np.ndarray, target: np.ndarray) -> float:
        """The held-out metric of `outputs` against `target`."""
        raise NotImplementedError

    def decisions(self, kind: OutputKind, outputs: np.ndarray) -> np.ndarray | None:
        """The decision per row (per step for sequences), or None where the task makes none."""
        return None

    def near_ties(self, kind: OutputKind, outputs: np.ndarray, atol: float, rtol: float) -> np.ndarray | None:
        """Per decision: True where the margin that decides it is within the tolerance (a flip there is noise)."""
        return None

    def describe(self, kind: OutputKind, row: np.ndarray, labels: tuple[str, ...]) -> dict:
        """What one output row means to a person."""
        raise NotImplementedError

    def describe_target(self, target: np.ndarray, labels: tuple[str, ...]) -> str:
        """One held-out target as text."""
        raise NotImplementedError

    def passes(self, value: float, bar: float) -> bool:
        return value >= bar if self.higher_is_better else value <= bar

    # The variant gate (zeroserve.parity.judge_variant): a faster variant may cost a little of
    # the held-out metric. A classifier may lose `max_metric_drop` accuracy points.
    variant_metric = "accuracy"

    def variant_score(self, kind: OutputKind, outputs: np.ndarray, target: np.ndarray) -> float:
        """The held-out figure the variant gate compares with fp32's."""
        return self.score(kind, outputs, target)

    def variant_bound(self, fp32: float, rule) -> tuple[float, str]:
        """The worst value the variant may reach given fp32's, and the rule in words."""
        return (
            fp32 - rule.max_metric_drop / 100,
            f"{self.variant_metric} at most {rule.max_metric_drop:g} points below fp32's",
        )

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class Regression(Task):
    """A real value; metric: the largest absolute error on the held-out set."""

    name = "regression"
    metric = "max_abs_error"
    higher_is_better = False
    kinds = (VALUE,)

    def loss(self, kind):
        return nn.MSELoss()

    def score(self, kind, outputs, target):
        return float(np.max(np.abs(np.asarray(outputs).reshape(np.shape(target)) - target)))

    variant_metric = "mse"

    def variant_score(self, kind, outputs, target):
        return float(np.mean((np.asarray(outputs, dtype=np.float64).reshape(np.shape(target)) - target) ** 2))

    def variant_bound(self, fp32, rule):
        return fp32 * (1 + rule.max_mse_increase / 100), f"mse at most {rule.max_mse_increase:g}% above fp32's"

    def describe(self, kind, row, labels):
        row = np.asarray(row)
        if row.size == 1:
            return {"value": float(row.reshape(-1)[0])}
        return summary(row)  # an image-shaped or vector output: its shape and a summary, not its first element

    def describe_target(self, target, labels):
        target = np.asarray(target)
        if target.size == 1:
            return f"{float(target.reshape(-1)[0]):.4g}"
        return ", ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in summary(target).items())


class Binary(Task):
    """One unit deciding between two labels: P(positive) >= 0.5 (logit >= 0)."""

    name = "binary"
    kinds = (PROBS, LOGITS)

    def loss(self, kind):
        return nn.BCELoss() if kind is PROBS else nn.BCEWithLogitsLoss()

    def _unit(self, outputs: np.ndarray) -> np.ndarray:
        a = np.asarray(outputs)
        return a.reshape(len(a), -1)[:, 0]

    def decisions(self, kind, outputs):
        return self._unit(outputs) >= kind.threshold

    def near_ties(self, kind, outputs, atol, rtol):
        x = self._unit(outputs).astype(np.float64)
        return np.abs(x - kind.threshold) <= tolerance_at(x, atol, rtol)

    def score(self, kind, outputs, target):
        return float(
            np.mean(self.decisions(kind, outputs) == (np.asarray(target).reshape(len(target), -1)[:, 0] >= 0.5))
        )

    def describe(self, kind, row, labels):
        row = np.asarray(row)
        if row.size > 1:  # one decision per element (a mask): how many are positive, of which shape
            positive = kind.probabilities(row.reshape(-1)) >= 0.5
            return {"shape": list(row.shape), "positive": int(positive.sum()), "of": int(row.size)}
        p = float(kind.probabilities(row.reshape(-1)[:1])[0])
        positive = p >= 0.5
        return {
            "label": labels[int(positive)] if labels else str(int(positive)),
            "probability": p if positive else 1 - p,
        }

    def describe_target(self, target, labels):
        k = int(float(np.asarray(target).reshape(-1)[0]) >= 0.5)
        return labels[k] if labels else str(k)


class MultiClass(Task):
    """One of several classes: top-1 of the last axis."""

    name = "multiclass"
    kinds: tuple[OutputKind, ...] = (LOGITS, LOG_PROBS, PROBS)

    def loss(self, kind):
        return {"logits": nn.CrossEntropyLoss, "log_probs": nn.NLLLoss, "probs": ProbsNLLLoss}[kind.space]()

    def decisions(self, kind, outputs):
        return np.asarray(outputs).argmax(-1)

    def near_ties(self, kind, outputs, atol, rtol):
        a = np.asarray(outputs, dtype=np.float64)
        if a.shape[-1] < 2:
            return np.zeros(a.shape[:-1], dtype=bool)
        top2 = -np.sort(-a, axis=-1)[..., :2]
        first, second = top2[..., 0], top2[..., 1]
        # the two leaders may each move by their own allowance: a flip inside both is a near tie
        return first - second <= tolerance_at(first, atol, rtol) + tolerance_at(second, atol, rtol)

    def score(self, kind, outputs, target):
        return float(np.mean(self.decisions(kind, outputs) == np.asarray(target)))

    def describe(self, kind, row, labels):
        row = np.asarray(row)
        k = int(np.argmax(row))
        return {"label": labels[k] if labels else str(k), "class": k, "probability": float(kind.probabilities(row)[k])}

    def describe_target(self, target, labels):
        k = int(np.asarray(target).reshape(-1)[0])
        return labels[k] if labels else str(k)


class Sequence(MultiClass):
    """One class per time step (a character per step); metric: whole sequences right."""

    name = "sequence"
    kinds = (SEQUENCE_LOGITS, SEQUENCE_LOG_PROBS)

    def loss(self, kind):
        return PerStepLoss(super().loss(kind))

    def score(self, kind, outputs, target):
        return float(np.mean(np.all(self.decisions(kind, outputs) == np.asarray(target), axis=-1)))

    def describe(self, kind, row, labels):
        return {"text": spell(np.asarray(row).argmax(-1).reshape(-1), labels)}

    def describe_target(self, target, labels):
        return spell(np.asarray(target).reshape(-1), labels)


def spell(steps: np.ndarray, labels: tuple[str, ...]) -> str:
    """A sequence of class indices as text: characters joined ("ihello"), words or numbers space-separated
    ("PAD NOUN VERB", "3 0 1")."""
    words = [labels[int(i)] if labels else str(int(i)) for i in steps]
    chars = bool(labels) and all(len(label) == 1 for label in labels)
    return ("" if chars else " ").join(words)


def summary(a: np.ndarray) -> dict:
    """A multi-element output row in a few figures: its shape, mean, min and max."""
    a = np.asarray(a, dtype=np.float64)
    return {"shape": list(a.shape), "mean": float(a.mean()), "min": float(a.min()), "max": float(a.max())}


REGRESSION, BINARY, MULTICLASS, SEQUENCE = Regression(), Binary(), MultiClass(), Sequence()
TASKS = {t.name: t for t in (REGRESSION, BINARY, MULTICLASS, SEQUENCE)}

"""The check record (docs/contracts.md): its typed shape, loaded and saved only through this type.

`zeroserve client check --json` prints it: one `ModelCheck` per model checked (`client/check.py`'s
`check_model` returns one), each with a `CheckRow` per (protocol, format) compared, and the models
and formats skipped with why.
"""

from __future__ import annotations

from typing import ClassVar

from zeroserve.records.base import Block, Record
from zeroserve.records.measured import MeasuredOn


class OutputAgreement(Block):
    """One output of a served model against eager PyTorch (zeroserve/parity.py's per-output numbers)."""

    passed: bool
    max_abs: float
    """The largest absolute difference (Infinity when the output did not line up)."""
    max_rel: float
    outside_tolerance: int
    """Elements outside atol + rtol * |eager|."""
    top1_agreement: float | None = None
    """The share of decisions that agree (null for an output that makes no decisions)."""
    disagreements: int
    """Decisions that differ outside a near tie: each one fails."""
    near_ties: int
    near_tie_flips: int
    """Decisions that differ at a near tie: allowed."""
    worst_index: list[int]
    """Where the largest difference is."""
    error: str | None = None
    """Why the output could not be compared (its shape differs)."""


class CheckRow(Block):
    """One served model over one protocol compared with eager PyTorch (or why it could not be)."""

    model: str
    triton_model: str
    protocol: str
    format: str
    state: str | None = None
    """"recovering" when the server was reloading the model (its requests fail until then)."""
    seconds: float | None = None
    """How long sending the held-out set took."""
    failed_requests: int
    error: str | None = None
    """Why it failed (not served, a request failed, outputs that do not line up)."""
    passed: bool | None = None
    """The parity rule's verdict (absent when nothing was compared)."""
    max_abs: float | None = None
    max_rel: float | None = None
    outside_tolerance: int | None = None
    top1_agreement: float | None = None
    """The primary output's."""
    near_ties: int | None = None
    near_tie_flips: int | None = None
    disagreements: int | None = None
    worst_output: str | None = None
    worst_index: list[int] | None = None
    outputs: dict[str, OutputAgreement] | None = None
    """Per output, by tensor name."""
    metric_fp32: float | None = None
    """A variant's: eager's (fp32) value of the metric its rule judges."""
    metric_variant: float | None = None
    metric_bound: float | None = None
    """A variant's: the value its metric had to reach."""
    failed_rules: list[str] | None = None
    """A variant's: each rule it failed, in one line (present for every variant row)."""
    rule: str | None = None
    """A variant's rule in words."""
    samples: int | None = None
    metric: str | None = None
    """The task metric ("accuracy", "max_abs_error", ...)."""
    metric_served: float | None = None
    metric_eager: float | None = None
    variant_metric: str | None = None
    """A variant's: the metric its rule judges."""
    status: str
    """"PASS" or "FAIL" (last, as check writes it: the verdict on the figures before it)."""


class CheckSkip(Block):
    """A model (or one of its formats over a protocol) not checked, and why."""

    model: str
    """The model (at the top level, a served name with its protocol in brackets for a skipped format)."""
    triton_model: str | None = None
    protocol: str | None = None
    format: str | None = None
    reason: str


class ModelCheck(Block):
    """One model's check: every (protocol, format) compared, on which data, with which tolerances."""

    model: str
    atol: float
    rtol: float
    samples: int
    """Held-out rows compared."""
    data: str
    """Where the held-out rows came from."""
    split_rule: str
    rows: list[CheckRow]
    skipped: list[CheckSkip]
    status: str
    """"PASS", "FAIL", or "SKIPPED" when nothing was compared."""
    measured_on: MeasuredOn | None = None
    """The engine the first served format runs on, and this machine."""


class CheckRecord(Record):
    """The check record: the verdict, one `ModelCheck` per model (`client.check.check_model` returns one) and
    what was skipped."""

    KIND: ClassVar[str] = "check record"
    VERSION: ClassVar[int] = 1
    REMEDY: ClassVar[str] = "run `zeroserve client check --json` again"

    status: str
    """"PASS" when every row passed (and something was checked), else "FAIL"."""
    models: list[ModelCheck]
    skipped: list[CheckSkip]
    """Models not checked (no checkpoint, no data, ...) and the formats skipped, with why."""

    @property
    def rows(self) -> list[CheckRow]:
        """Every row of every model."""
        return [r for m in self.models for r in m.rows]

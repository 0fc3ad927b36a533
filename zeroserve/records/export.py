"""The export record (docs/contracts.md): its typed shape, loaded and saved only through this type.

`ExportRecord` is export.json (what deploy, check, status and bench read); `ExportFailures` is
export-failed.json, the same shape holding the numbers of an export whose gate failed.
"""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import Field, field_validator

from zeroserve.records.base import Block, Record


def _file_name(name: str) -> str:
    """A file name inside the model's folder (a record never points outside it)."""
    if not name or "/" in name or "\\" in name or name in (".", ".."):
        raise ValueError("must be a file name in the model's folder, not a path")
    return name


class GatePoint(Block):
    """One point of the parity gate's grid (`zeroserve.parity.compare`'s numbers), or where an export failed."""

    point: str
    """The grid point ("random batch=7", "held-out batch=8"), or "export" when the format could not be made."""
    shapes: list[list[int]] | None = None
    """The input shapes of the point."""
    passed: bool | None = None
    max_abs: float | None = None
    max_rel: float | None = None
    top1_agreement: float | None = None
    near_ties: int | None = None
    error: str | None = None
    """Why the point (or the export) failed, in one line."""


class HeldOut(Block):
    """The held-out set a variant was judged on."""

    samples: int
    data: str | None = None
    """The data source in words."""


class RuleBlock(Block):
    """A variant gate's rule (`zeroserve.parity.VariantRule`) and its words."""

    max_metric_drop: float | None = None
    min_agreement: float | None = None
    max_mse_increase: float | None = None
    text: str | None = None
    """The rule in words."""


class Latency(Block):
    """In-process latencies (ms) by batch size: `batch_<n>` maps each path (eager, a format key) to its p50."""

    threads: int | None = None
    device: str | None = None

    def at(self, batch: int) -> dict[str, float] | None:
        """The latencies at batch size `batch` (`batch_<n>`), None when not measured."""
        return self.batches().get(f"batch_{batch}")

    def batches(self) -> dict[str, dict[str, float]]:
        """Every `batch_<n>` measured: {path (eager, a format key): p50 ms}."""
        return {k: v for k, v in (self.model_extra or {}).items() if k.startswith("batch_") and isinstance(v, dict)}


class CompiledFor(Block):
    """What a PT2 package was compiled for (AOTInductor's metadata and the machine)."""

    device: str | None = None
    """"cpu" or "cuda"."""
    cpu: str | None = None
    """The CPU model it was compiled on (a CPU package)."""
    cpu_isa: str | None = None
    compute_capability: str | None = None
    compiler: str | None = None


class FormatEntry(Block):
    """One exported format (or variant): its file, what its runtime records about it, and its gate's verdict.

    A runtime's own facts (ONNX `opset`, `ir_version`, `exporter`; `method`; a variant's `calibration`,
    `quantized`) are kept as written."""

    file: str
    """The artifact's file name in artifacts/<model>/."""
    status: str
    """"PASS", "FAIL", or "UNVERIFIED" (a GPU-only variant where no GPU is)."""
    sha256: str | None = None
    bytes: int | None = None
    export_seconds: float | None = None
    error: str | None = None
    """Why the format could not be made (its status is FAIL)."""
    opset: int | None = None
    ir_version: int | None = None
    """The ONNX file's IR version."""
    compiled_for: CompiledFor | None = None
    """A PT2 package's target."""
    exporter: str | None = None
    """The ONNX exporter that made it ("legacy" or "dynamo"; absent: legacy)."""
    atol: float | None = None
    rtol: float | None = None
    near_ties: int | None = None
    grid: list[GatePoint] | None = None
    """Every point of the parity gate."""
    worst: GatePoint | None = None
    """The worst point of the gate (failed first, then the largest absolute error)."""
    variant: str | None = None
    """The variant's `--variant` name (a variant entry only)."""
    base: str | None = None
    """The format the variant was made from."""
    base_sha256: str | None = None
    """The base artifact the variant was made from (a variant is kept only while its base is that one)."""
    rule: RuleBlock | None = None
    held_out: HeldOut | None = None
    metric: str | None = None
    metric_fp32: float | None = None
    metric_variant: float | None = None
    metric_bound: float | None = None
    top1_agreement: float | None = None
    max_abs: float | None = None
    max_rel: float | None = None
    disagreements: int | None = None
    failed_rules: list[str] | None = None
    """The variant rules it failed, one line each with the numbers."""
    reason: str | None = None
    """Why a variant is UNVERIFIED."""
    note: str | None = None
    """What a variant's builder noted (e.g. the ops left in float32)."""
    latency_ms: Latency | None = None
    """The variant beside its base, in-process."""

    @field_validator("file")
    @classmethod
    def _inside(cls, name: str) -> str:
        return _file_name(name)


class SkippedVariant(Block):
    """A variant the model could not take (`export all` goes on without it; never written to the file)."""

    format: str
    variant: str
    reason: str


class ExportRecord(Record):
    """The export record: every gated format of a model, its tensors, and the inputs it was gated on."""

    KIND: ClassVar[str] = "export record"
    VERSION: ClassVar[int] = 1
    REMEDY: ClassVar[str] = "run `zeroserve export` again"

    model: str
    """The model's registry name."""
    status: str
    """"PASS" when every primary format exported passed its gate, else "FAIL"."""
    formats: dict[str, FormatEntry]
    """Every exported format by format key (zeroserve.formats)."""
    max_batch_size: int | None = None
    atol: float | None = None
    rtol: float | None = None
    inputs: list[dict[str, Any]] | None = None
    """The input tensors (TensorSpec.as_json)."""
    outputs: list[dict[str, Any]] | None = None
    """The output tensors (TensorSpec.as_json)."""
    checkpoint_sha256: str | None = None
    real_samples: bool | None = None
    """Whether the gate ran real held-out rows."""
    versions: dict[str, str] | None = None
    latency_ms: Latency | None = None
    """Eager and every primary format, in-process."""
    sample: str | None = None
    """The held-out sample's file name (sample.npz), when export kept one."""

    @field_validator("sample")
    @classmethod
    def _inside(cls, name: str | None) -> str | None:
        return None if name is None else _file_name(name)

    skipped_variants: list[SkippedVariant] | None = Field(default=None, exclude=True)
    """The variants `export_model` left out (skip_unfit): what the CLI reports, never written or printed."""


class ExportFailures(ExportRecord):
    """A failed export's record (export-failed.json): the numbers of the gate that failed; the previous export stays."""

    KIND: ClassVar[str] = "export failure record"
    REMEDY: ClassVar[str] = "delete it; the next export that passes removes it"

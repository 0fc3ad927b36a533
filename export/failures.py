"""One line for what failed an export: a primary format's worst gate point, or a failed variant's rule and numbers."""

from __future__ import annotations

from pathlib import Path

from zeroserve import formats as F
from zeroserve.export import variant_gate
from zeroserve.records.export import ExportRecord, FormatEntry
from zeroserve.spec import ModelSpec


def variant_failures(spec: ModelSpec, record: ExportRecord, keys=None) -> list[str]:
    """One line per variant of `record` (of `keys`, if given) that failed its gate, naming the rule and numbers."""
    return [
        variant_gate.failure_line(spec, k, e)
        for k, e in record.formats.items()
        if k in F.FORMATS and F.get(k).variant and e.status == "FAIL" and (keys is None or k in keys)
    ]


def gate_failure_line(spec: ModelSpec, entries: dict[str, FormatEntry], failures: Path) -> str:
    """The first failed primary format's worst point in one line; `failures`: the file holding the numbers."""
    fmt, entry = next((f, e) for f, e in entries.items() if e.status != "PASS")
    w = entry.worst
    kept = f"previous artifacts kept, numbers in {failures}"
    if w is None or w.point == "export":
        return f"{spec.name} {fmt} export failed: {w.error if w else entry.error}; {kept}"
    if w.error is not None:
        detail = f"at {w.point}: {w.error}"
    else:
        detail = (
            f"at {w.point} (shapes {w.shapes}): max abs error {w.max_abs:.3g}, "
            f"max rel error {w.max_rel:.3g}, top-1 agreement {w.top1_agreement}"
        )
    return f"{spec.name} {fmt} failed the parity gate {detail} (atol {entry.atol}, rtol {entry.rtol}); {kept}"

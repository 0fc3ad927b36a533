"""The perf record (docs/contracts.md): its typed shape, loaded and saved only through this type."""

from __future__ import annotations

from typing import ClassVar

from zeroserve.records.base import Record


class PerfRecord(Record):
    """The perf record."""

    KIND: ClassVar[str] = "perf record"
    VERSION: ClassVar[int] = 1
    REMEDY: ClassVar[str] = "run `zeroserve client perf --json` again"

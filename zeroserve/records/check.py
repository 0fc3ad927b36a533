"""The check record (docs/contracts.md): its typed shape, loaded and saved only through this type."""

from __future__ import annotations

from typing import ClassVar

from zeroserve.records.base import Record


class CheckRecord(Record):
    """The check record."""

    KIND: ClassVar[str] = "check record"
    VERSION: ClassVar[int] = 1
    REMEDY: ClassVar[str] = "run `zeroserve client check --json` again"

"""The tune record (docs/contracts.md): its typed shape, loaded and saved only through this type."""

from __future__ import annotations

from typing import ClassVar

from zeroserve.records.base import Record


class TuneRecord(Record):
    """The tune record."""

    KIND: ClassVar[str] = "tune record"
    VERSION: ClassVar[int] = 1
    REMEDY: ClassVar[str] = "run `zeroserve tune --json` again"

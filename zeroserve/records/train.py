"""The train record (docs/contracts.md): its typed shape, loaded and saved only through this type."""

from __future__ import annotations

from typing import ClassVar

from zeroserve.records.base import Record


class TrainRecord(Record):
    """The train record."""

    KIND: ClassVar[str] = "train record"
    VERSION: ClassVar[int] = 1
    REMEDY: ClassVar[str] = "run `zeroserve train` again"

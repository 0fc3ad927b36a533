"""The repository manifest (docs/contracts.md): its typed shape, loaded and saved only through this type."""

from __future__ import annotations

from typing import ClassVar

from zeroserve.records.base import Record


class Manifest(Record):
    """The repository manifest."""

    KIND: ClassVar[str] = "repository manifest"
    VERSION: ClassVar[int] = 1
    REMEDY: ClassVar[str] = "run `zeroserve deploy` again"

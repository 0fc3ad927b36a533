"""The server state (docs/contracts.md): its typed shape, loaded and saved only through this type."""

from __future__ import annotations

from typing import ClassVar

from zeroserve.records.base import Record


class ServerState(Record):
    """The server state."""

    KIND: ClassVar[str] = "server state"
    VERSION: ClassVar[int] = 1
    REMEDY: ClassVar[str] = "`zeroserve stop` the server and start it again"

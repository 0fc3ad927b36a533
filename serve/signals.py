"""SIGTERM handled as Ctrl-C: the one handler for the foreground server, its supervisor and tune.

`zeroserve stop` and service managers send SIGTERM; a user presses Ctrl-C. Both must stop a
server the same way (unload, drain, end the stubs, clean shared memory), so within `stop_signals()`
SIGTERM raises `Terminated`, a KeyboardInterrupt, and Ctrl-C raises KeyboardInterrupt even when
the process started with SIGINT ignored (a shell's `&`).
"""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Iterator


class Terminated(KeyboardInterrupt):
    """SIGTERM: stop as Ctrl-C does (exit 143 where the command reports it)."""


def _raise_terminated(signum, frame):
    raise Terminated()


@contextlib.contextmanager
def stop_signals() -> Iterator[None]:
    """SIGTERM -> Terminated and SIGINT -> KeyboardInterrupt within the block; the previous handlers after."""
    previous_term = signal.signal(signal.SIGTERM, _raise_terminated)
    previous_int = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous_term)
        signal.signal(signal.SIGINT, previous_int)

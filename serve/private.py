"""A private server: one this process starts for its own measurements, on free ports, always stopped.

Tune, every benchmark and the tests start their servers here, so the sandbox is written once:
a temporary cache (the user's state files and runs never meet it), ports chosen free together
and chosen again when another process takes one before tritonserver binds it, the start and its
wait, and a stop however the block ends. (It lives in the serve stage, not in zeroserve/triton/:
it deploys nothing itself but starts `serve`'s server, so below serve its arrow would run backwards.)
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from zeroserve.errors import ServerError
from zeroserve.serve import state as st
from zeroserve.serve.handle import Server
from zeroserve.serve.server import start_server
from zeroserve.triton.ports import DEFAULT_HOST, resolve_free_ports

CACHE_ENV = "ZEROSERVE_CACHE"
PORT_ATTEMPTS = 3  # a port taken between choosing it and tritonserver binding it: choose again


@contextlib.contextmanager
def temporary_cache(prefix: str = "zs-private-cache-") -> Iterator[Path]:
    """`ZEROSERVE_CACHE` pointed at a fresh folder for the block (state files, runtime copies, logs), then removed."""
    cache = Path(tempfile.mkdtemp(prefix=prefix))
    before = os.environ.get(CACHE_ENV)
    os.environ[CACHE_ENV] = str(cache)
    try:
        yield cache
    finally:
        if before is None:
            os.environ.pop(CACHE_ENV, None)
        else:
            os.environ[CACHE_ENV] = before
        shutil.rmtree(cache, ignore_errors=True)


def _port_taken(error: ServerError) -> bool:
    return "in use" in str(error).lower()  # check_ports' "is in use", the OS's "Address already in use"


def start_private(
    repository: Path,
    models: Iterable[str] | None = None,
    *,
    purpose: str,
    host: str = DEFAULT_HOST,
    ports: tuple[int, int, int] | None = None,
    **options: Any,
) -> Server:
    """Start a server on `ports` (else free ones, chosen again when one is taken first); `purpose` in its state.

    `options` are `start_server`'s (noop_of, model_control, queue_delay_us, timeout, ...).
    """
    models = list(models) if models is not None else None
    for attempt in range(1 if ports else PORT_ATTEMPTS):
        http, grpc, metrics = ports or resolve_free_ports(host, dict.fromkeys(("http", "grpc", "metrics"), 0)).values()
        try:
            server = start_server(
                repository, models, host=host, http_port=http, grpc_port=grpc, metrics_port=metrics, **options
            )
        except ServerError as exc:
            if ports or attempt == PORT_ATTEMPTS - 1 or not _port_taken(exc):
                raise
            continue
        server.state = server.state.updated(purpose=purpose)
        st.write_state(server.state)
        return server
    raise AssertionError("unreachable: the last attempt raises")


@contextlib.contextmanager
def private_server(
    repository: Path,
    models: Iterable[str] | None = None,
    *,
    purpose: str,
    own_cache: bool = True,
    **options: Any,
) -> Iterator[Server]:
    """A private server for the block, stopped when it ends (an error, Ctrl-C or a return alike).

    Args:
        purpose: what it is for, in its state file (`zeroserve status` shows it while it runs).
        own_cache: its state and run folder in a temporary cache (benchmarks, tests); False keeps
            them in the user's cache, so a run killed before its stop leaves a state file that
            `zeroserve stop --all` finds (tune).
        options: `start_private`'s and `start_server`'s (ports, host, noop_of, model_control, ...).
    """
    with contextlib.ExitStack() as stack:
        if own_cache:
            stack.enter_context(temporary_cache())
        server = start_private(repository, models, purpose=purpose, **options)
        try:
            yield server
        finally:
            server.stop()

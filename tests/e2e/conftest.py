"""Session fixtures for tests through a real Triton server (reused by the client tests).

- `serve_cache`: a private ZEROSERVE_CACHE for the session, so state files, runtime folders
  and the prepared backend never touch a user's cache or servers.
- `deployed_repository`: the lead's `exported` artifacts (tests/conftest.py) deployed with
  `zeroserve.serve.repository.deploy_model` into a temporary canonical repository; models
  whose export did not PASS are left out (test_serving checks that all twenty made it).
- `server`: the embedded engine serving every model of `deployed_repository` on free ports
  of 127.0.0.1 (zeroserve's client may use its shared memory: `allow_client_shm`), as an `Endpoints`
  (host, http_port, grpc_port, metrics_port, models,
  http_url, grpc_url, pid, artifacts, repository). Stopped, stubs and shared memory
  cleaned, at the end of the session.
- `free_ports()`: a function returning three distinct free ports on 127.0.0.1.
- `start_server(repository, models, **engine_options)`: a factory for tests that need their
  own server (a subset of models, a queue delay); each one is stopped when the test ends.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from zeroserve import registry


@dataclass
class Endpoints:
    """Where a test server listens, and what it serves."""

    host: str
    http_port: int
    grpc_port: int
    metrics_port: int
    models: list[str]
    pid: int
    artifacts: Path | None = None
    repository: Path | None = None
    handle: object = field(default=None, repr=False)  # the engine's Server, for stop tests

    @property
    def http_url(self) -> str:
        return f"{self.host}:{self.http_port}"

    @property
    def grpc_url(self) -> str:
        return f"{self.host}:{self.grpc_port}"


def pick_free_ports(n: int = 3, host: str = "127.0.0.1") -> list[int]:
    """`n` distinct free ports: hold every socket until all are chosen so none repeats."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind((host, 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def launch(repository: Path, models: list[str] | None = None, artifacts: Path | None = None, **options) -> Endpoints:
    """Start the embedded engine on free ports and describe it."""
    from zeroserve.serve.server import start_server

    http, grpc, metrics = pick_free_ports()
    server = start_server(repository, models, http_port=http, grpc_port=grpc, metrics_port=metrics, **options)
    return Endpoints(
        "127.0.0.1", http, grpc, metrics, list(server.state["models"]), server.pid, artifacts, Path(repository), server
    )


@pytest.fixture(scope="session")
def free_ports() -> Callable[[], list[int]]:
    """Three distinct free ports (http, grpc, metrics) each time it is called."""
    return pick_free_ports


@pytest.fixture(scope="session")
def serve_cache(tmp_path_factory) -> Iterator[Path]:
    """A private cache folder for the session (state files, runtime repositories, logs)."""
    cache = tmp_path_factory.mktemp("zeroserve-cache")
    before = os.environ.get("ZEROSERVE_CACHE")
    os.environ["ZEROSERVE_CACHE"] = str(cache)
    yield cache
    if before is None:
        os.environ.pop("ZEROSERVE_CACHE", None)
    else:
        os.environ["ZEROSERVE_CACHE"] = before


@pytest.fixture(scope="session")
def deployed_repository(exported, tmp_path_factory) -> Path:
    """A canonical repository with every model whose export passed, in both formats."""
    from zeroserve.serve.repository import deploy_model

    artifacts, recs = exported
    repository = tmp_path_factory.mktemp("model_repository")
    for name, spec in registry.REGISTRY.items():
        formats = tuple(
            f for f, entry in recs.get(name, {}).get("formats", {}).items() if entry.get("status") == "PASS"
        )
        if formats:
            deploy_model(spec, artifacts, repository, formats=formats)
    return repository


@pytest.fixture(scope="session")
def server(deployed_repository, exported, serve_cache) -> Iterator[Endpoints]:
    """The embedded Triton server with every deployed model READY, for the whole session.

    Started as `serve --allow-client-shm` is, so the client's shared-memory tests run on it; tests of the
    default (closed) start their own (test_closed.py).
    """
    endpoints = launch(deployed_repository, None, artifacts=exported[0], allow_client_shm=True)
    yield endpoints
    endpoints.handle.stop()


@pytest.fixture
def start_server(serve_cache) -> Iterator[Callable[..., Endpoints]]:
    """Factory: start an extra server (free ports); every one is stopped when the test ends."""
    started: list[Endpoints] = []

    def start(repository: Path, models: list[str] | None = None, **options) -> Endpoints:
        endpoints = launch(repository, models, **options)
        started.append(endpoints)
        return endpoints

    yield start
    for endpoints in started:
        endpoints.handle.stop()

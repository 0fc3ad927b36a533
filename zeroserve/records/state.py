"""The server state (docs/contracts.md, "Running servers"): its typed shape, loaded and saved only through this type.

`<cache>/servers/<run_id>.json` is rewritten often by a server and its supervisor and read concurrently by
`status`, `stop` and the client: `ServerState.load_if_valid(path)` is the one reader that never fails on a
half-written file (None instead), `ServerState.load` the one that says what is wrong with it. A state file
of a server started by main 53e25ec (no schema version, fewer fields) reads as version 1: every field but
where the server listens is optional.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar, Self

from zeroserve.records.base import Block, Record


class ProcessRef(Block):
    """A process, named so that a recycled pid is never mistaken for it."""

    pid: int | None = None
    create_time: float | None = None
    """The kernel's start time of the process (seconds since the epoch)."""


class Crash(Block):
    """One crash of the tritonserver process (the supervisor keeps the last 10)."""

    time: str | None = None
    pid: int | None = None
    exit_code: int | None = None
    signal: str | None = None
    """The signal's name, or null when it exited by itself."""
    exit: str | None = None
    """How it ended, in words."""
    log: str | None = None
    """The kept `crash-<n>.log`."""
    tail: str | list[str] | None = None
    """The log's last lines."""
    cause: str | None = None
    """Why the supervisor ended it (e.g. "<model> failed to reload")."""
    hung: bool | None = None
    gave_up: bool | None = None


class Recovery(Block):
    """One model recovered by a reload (the last 10)."""

    model: str | None = None
    time: str | None = None
    seconds: float | None = None
    how: str | None = None
    generation: int | None = None


class Recovering(Block):
    """A model being reloaded after its stub died."""

    since: float | str | None = None
    stubs: Any = None
    instances: Any = None
    generation: int | None = None


class ReloadFailure(Block):
    """A reload that failed (the last 10); a restart follows."""

    model: str | None = None
    time: str | None = None
    reason: str | None = None
    """Triton's, or why the artifact did not verify."""
    log: str | None = None
    """The kept crash log once the server was restarted."""


class ArtifactRef(Block):
    """What the runtime copy of a model serves (what a reload or restart verifies)."""

    artifact: str | None = None
    """The file under the model folder, e.g. "1/model.onnx"."""
    sha256: str | None = None


class Reaped(Block):
    """What was cleaned up when the server was found dead."""

    killed: Any = None
    shm_removed: Any = None


class StartError(Block):
    """Why a detached start failed, as the supervisor recorded it for the waiting CLI."""

    message: str | None = None
    exit_code: int | None = None


class ServerState(Record):
    """A running (or dead) server of one `serve` run: where it listens, its process and what its supervisor did."""

    KIND: ClassVar[str] = "server state"
    VERSION: ClassVar[int] = 1
    REMEDY: ClassVar[str] = "`zeroserve stop` the server and start it again"
    MODE: ClassVar[int | None] = 0o600  # it holds the run's api_key

    run_id: str
    """The run (`YYYYmmdd-HHMMSS-<hex>`); it outlives a restart of the tritonserver process."""
    pid: int | None
    """The current tritonserver's pid (a restart rewrites it)."""
    host: str
    http_port: int
    grpc_port: int | None
    """Null only for a server zeroserve did not start, asked by its HTTP port (`status --http-port`)."""
    metrics_port: int | None = None
    create_time: float | None = None
    """The process's start time: a pid whose create time differs is another program and is never signalled."""
    runtime_dir: str | None = None
    log: str | None = None
    models: list[str] | None = None
    """The Triton names served."""
    started: str | None = None
    status: str | None = None
    """"starting" (also while a crashed server is restarted), "running" or "dead"."""
    shm_prefix: str | None = None
    repository: str | None = None
    """The canonical repository served (resolved)."""
    engine: str | None = None
    model_control: str | None = None
    """"poll" (served) or "explicit" (a private short-lived server)."""
    purpose: str | None = None
    """What a private server is for (tune's)."""
    supervisor: ProcessRef | None = None
    """The process supervising the server, or null; a state whose supervisor runs counts as running."""
    api_key: str | None = None
    """The run's key for Triton's restricted APIs (the file is 0600 for it)."""
    restricted_apis: list[str] | None = None
    allow_client_shm: bool | None = None
    metrics_interval_ms: int | None = None
    restarts: int | None = None
    last_restart: str | None = None
    crash_count: int | None = None
    crashes: list[Crash] | None = None
    recoveries: list[Recovery] | None = None
    recovering: dict[str, Recovering] | None = None
    recovered: int | None = None
    shm_removed: int | None = None
    """Dead stubs' shared-memory regions the supervisor unlinked."""
    reload_failures: list[ReloadFailure] | None = None
    failed: dict[str, str] | None = None
    """{triton name: reason} of the models that did not load, whose reload failed, or that were given up."""
    given_up: list[str] | None = None
    unservable: dict[str, str] | None = None
    artifacts: dict[str, ArtifactRef] | None = None
    progress: dict[str, list[Any]] | None = None
    """{triton name: [state, seconds]} of the start (what a detached start's CLI shows)."""
    next_start: float | None = None
    """When a restarting server starts again (seconds since the epoch)."""
    attempt: int | None = None
    crash_loop: dict[str, Any] | None = None
    """{"crashes", "window_s"} while crashes come fast (several within the restart policy's window)."""
    memory_limit: dict[str, Any] | None = None
    """{"bytes", "note"}: the server's memory ceiling."""
    ended: str | None = None
    reason: str | None = None
    """Why a dead server ended."""
    reaped: Reaped | None = None
    error: StartError | None = None
    """A detached start's failure (the waiting CLI raises it)."""
    state_unreadable: str | None = None
    """Set on a state made from tritonserver's command line when the file cannot be read (never written)."""

    @classmethod
    def of_run(cls, path: Path) -> Self | None:
        """The state at `path` when it reads and belongs to that file's run, else None (torn, garbage, foreign)."""
        state = cls.load_if_valid(path)
        return state if state is not None and state.run_id == Path(path).stem else None

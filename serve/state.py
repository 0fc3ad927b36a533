"""Server state files: one JSON per server run under the cache folder (docs/contracts.md).

`<cache>/servers/<run_id>.json` holds where a server listens, its process (pid and create
time, so a recycled pid is never mistaken for it), its runtime folder and log, and its
`status`: "starting" (also while its supervisor restarts a crashed server), "running" or
"dead", and what the supervisor recorded (restarts, crashes, recoveries, models recovering).
The run id names the run, not the process: it outlives a restart of the tritonserver process.

Reading never changes anything: `list_servers`, `read_states` and `resolve_server` only read.
Only `serve` and `stop` write (serve/server.py): a dead server is marked dead (its stubs
killed, its shared memory unlinked) and keeps its runtime folder and log until `stop`.

A state file that cannot be read (truncated, garbage) never hurts its live run: the run's
supervisor writes it again, `list_servers` still finds the live tritonserver from its command
line (`from_processes`), and a run folder is judged orphaned by its processes, never by a file.

Which server a command that names none means is decided here once (`choose`), for `status`,
`stop` and the client: explicit ports (and host), else the server serving this folder's
repository, else the only one running; otherwise the list to choose from.
"""

from __future__ import annotations

import datetime as dt
import os
import secrets
from pathlib import Path

import psutil

from zeroserve.errors import InputError, ServerError
from zeroserve.records.state import Recovering, ServerState

STARTING, RUNNING, DEAD = "starting", "running", "dead"


def cache_dir() -> Path:
    """`$ZEROSERVE_CACHE`, else `~/.cache/zeroserve`."""
    env = os.environ.get("ZEROSERVE_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "zeroserve"


def servers_dir() -> Path:
    return cache_dir() / "servers"


def runs_dir() -> Path:
    """Where each run keeps its runtime repository and log (`runs/<run_id>/`)."""
    return cache_dir() / "runs"


def private_dirs() -> None:
    """Create the cache root, `servers/` and `runs/` readable by this user only (0700), or make them so."""
    for folder in (cache_dir(), servers_dir(), runs_dir()):
        folder.mkdir(parents=True, exist_ok=True)
        try:
            if folder.stat().st_mode & 0o077:
                os.chmod(folder, 0o700)
        except OSError:
            pass


def new_run_id() -> str:
    """A run id: sortable by start time, unique across servers started in the same second."""
    return f"{dt.datetime.now():%Y%m%d-%H%M%S}-{secrets.token_hex(3)}"


def state_path(run_id: str) -> Path:
    return servers_dir() / f"{run_id}.json"


def process_of(pid: int | None, create_time: float | None) -> psutil.Process | None:
    """The process `pid` if it still is the one created at `create_time` and has not exited (zombie)."""
    if not pid:
        return None
    try:
        proc = psutil.Process(int(pid))
        if create_time is not None and abs(proc.create_time() - float(create_time)) > 0.01:
            return None  # the pid was recycled by another process
        if proc.status() in (psutil.STATUS_ZOMBIE, psutil.STATUS_DEAD):
            return None
        return proc
    except (psutil.NoSuchProcess, psutil.AccessDenied, ValueError):
        return None


def create_time(pid: int) -> float | None:
    """The kernel's start time of `pid` (what `process_of` compares), or None when it is gone."""
    try:
        return psutil.Process(pid).create_time()
    except psutil.Error:
        return None


def is_running(state: ServerState) -> bool:
    """True when the state's server process is alive, or its supervisor is (restarting the server)."""
    if state.status == DEAD:
        return False
    if process_of(state.pid, state.create_time) is not None:
        return True
    sup = state.supervisor
    return sup is not None and process_of(sup.pid, sup.create_time) is not None


def read_state_file(path: Path) -> ServerState | None:
    """One state file's content, or None when it cannot be read or is not a server state (torn, garbage)."""
    return ServerState.of_run(path)


def _scan() -> tuple[list[ServerState], list[Path]]:
    """One read of every state file: (the readable states, oldest first; the paths that cannot be read)."""
    folder = servers_dir()
    states: list[ServerState] = []
    unreadable: list[Path] = []
    for path in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        state = read_state_file(path)
        if state is None:
            unreadable.append(path)
        else:
            states.append(state)
    return sorted(states, key=lambda s: s.started or ""), unreadable


def read_states() -> list[ServerState]:
    """Every readable state file (running, starting or dead), oldest first. Torn files are skipped, not removed."""
    return _scan()[0]


def unreadable_states() -> list[Path]:
    """State files that cannot be read (`status` warns about each)."""
    return _scan()[1]


def from_processes(known: set[str]) -> list[ServerState]:
    """Live tritonservers on one of our run folders whose run id is not in `known` (their state file cannot be
    read): a minimal state from the command line, with `state_unreadable` naming the file."""
    from zeroserve.serve.processes import servers_in_runs

    out = []
    for state in servers_in_runs(runs_dir()):
        if state.run_id not in known:
            out.append(state.updated(status=RUNNING, state_unreadable=str(state_path(state.run_id)), models=[]))
    return out


def list_servers() -> list[ServerState]:
    """The servers whose process runs, oldest first (read only); a live server whose state file cannot be read is
    found from its command line."""
    states, unreadable = _scan()
    running = [s for s in states if is_running(s)]
    if not unreadable:  # the process table is scanned only when a state file cannot be read
        return running
    return running + from_processes({s.run_id for s in states})


def dead_servers() -> list[ServerState]:
    """The servers whose process is gone, marked dead or not yet (read only)."""
    return [s for s in read_states() if not is_running(s)]


def write_state(state: ServerState) -> Path:
    """Write one server's state file atomically, readable by its owner only (it holds the run's `api_key`)."""
    path = state_path(state.run_id)
    if not path.parent.is_dir():
        private_dirs()
    state.save(path)
    return path


def remove_state(state: ServerState) -> None:
    state_path(state.run_id).unlink(missing_ok=True)


def describe(state: ServerState) -> str:
    """One line naming a server: pid, endpoints and model count."""
    return (
        f"pid {state.pid} at {state.host} (http {state.http_port}, grpc {state.grpc_port}, "
        f"metrics {state.metrics_port}), {len(state.models or [])} models, started {state.started}"
        + (f" ({state.purpose})" if state.purpose else "")
    )


def same_host(a: str, b: str) -> bool:
    norm = lambda h: "127.0.0.1" if h.strip("[]") == "localhost" else h.strip("[]")  # noqa: E731 - a one-line local helper
    return norm(a) == norm(b)


def matching(
    states: list[ServerState], host: str | None = None, http_port: int | None = None, grpc_port: int | None = None
) -> list[ServerState]:
    """The states whose endpoint matches every part given (`[::1]` and `::1`, `localhost` and 127.0.0.1 alike)."""
    return [
        s
        for s in states
        if (host is None or same_host(s.host, host))
        and (http_port is None or s.http_port == int(http_port))
        and (grpc_port is None or s.grpc_port == int(grpc_port))
    ]


DEFAULT_REPOSITORY = Path("model_repository")


def default_choice(states: list[ServerState], repository: Path | None = None) -> list[ServerState]:
    """The servers a command that names none means, in order: the ones serving `repository` (this folder's
    `model_repository/` by default), else the one served server when a private one (tune's, which has a
    `purpose`) runs beside it, else all of them. A private server is chosen by its ports (or --all)."""
    if len(states) <= 1:
        return states
    try:
        here = str(Path(repository or DEFAULT_REPOSITORY).resolve())
    except OSError:
        here = None
    serving_here = [s for s in states if here is not None and s.repository == here]
    if serving_here:
        states = serving_here
    public = [s for s in states if not s.purpose]
    return public if len(states) > 1 and len(public) == 1 else states


def choose(
    states: list[ServerState],
    host: str | None = None,
    http_port: int | None = None,
    grpc_port: int | None = None,
    repository: Path | None = None,
) -> list[ServerState]:
    """The servers among `states` a command means: those matching the endpoint parts given, else
    `default_choice`. One element: that server; several: the caller lists them; none: no server."""
    if host is None and http_port is None and grpc_port is None:
        return default_choice(states, repository)
    return matching(states, host, http_port, grpc_port)


def resolve_server(
    host: str | None = None, http_port: int | None = None, grpc_port: int | None = None, repository: Path | None = None
) -> ServerState:
    """The one running server a command means (`choose`).

    Raises:
        ServerError: no running server (matching them).
        InputError: several match and none was chosen; the message lists them.
    """
    match = choose(list_servers(), host, http_port, grpc_port, repository)
    if not match:
        chosen = ", ".join(
            f"{k} {v}" for k, v in (("host", host), ("http port", http_port), ("grpc port", grpc_port)) if v is not None
        )
        where = f" matching {chosen}" if chosen else ""
        raise ServerError(
            f"no running zeroserve server{where} (state files in {servers_dir()}); start one with `zeroserve serve`"
        )
    if len(match) > 1:
        listing = "; ".join(describe(s) for s in match)
        raise InputError(f"{len(match)} servers are running, choose one with --http-port/--grpc-port: {listing}")
    return match[0]


def server_at(host: str, port: int) -> ServerState | None:
    """The state of the running zeroserve server listening on `host:port` (HTTP or gRPC), or None (read only)."""
    for state in matching(list_servers(), host):
        if int(port) in (state.http_port, state.grpc_port):
            return state
    return None


def recovering_models(host: str, port: int) -> dict[str, Recovering]:
    """Models that the supervisor of the running server listening on `host:port` (HTTP or gRPC) is reloading.

    Triton 2.51 keeps calling a model READY after its stub died; the supervisor's state says
    otherwise. Read only; {} when no zeroserve server listens there.
    """
    state = server_at(host, port)
    return dict(state.recovering or {}) if state is not None else {}


def restarting(host: str, port: int) -> str | None:
    """One line saying that the zeroserve server listening on `host:port` (HTTP or gRPC) is restarting (attempt,
    next start in, last crash), or None when it is not (or no zeroserve server listens there). Read only."""
    import time

    state = server_at(host, port)
    if state is None or state.status != STARTING or not (state.restarts or state.crashes):
        return None  # not zeroserve's, running, or still in its first start
    left = state.next_start
    when = f"next start in {max(0.0, float(left) - time.time()):.0f} s" if left else "starting now"
    crash = state.crashes[-1] if state.crashes else None
    last = f"; last crash: tritonserver {crash.exit} (log: {crash.log})" if crash is not None and crash.exit else ""
    return (
        f"the zeroserve server at {host}:{port} is restarting (attempt {state.attempt or 1}, {when})"
        f"{last}; try again then (`zeroserve status` shows it)"
    )


def port_holder(host: str, port: int) -> str | None:
    """The zeroserve server holding `port` on `host`, for the "port in use" message (ports.check_ports)."""
    owners = [x for x in list_servers() if port in (x.http_port, x.grpc_port, x.metrics_port) and x.host == host]
    return f"the zeroserve server with pid {owners[0].pid}" if owners else None

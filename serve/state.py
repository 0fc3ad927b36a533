"""Running-server state files: one JSON per server under the cache folder (docs/contracts.md).

`<cache>/servers/<pid>.json` = {"pid", "host", "http_port", "grpc_port", "metrics_port",
"runtime_dir", "log", "models", "started"} (plus "shm_prefix", which `stop` uses to clean
the Python backend's shared memory). Written by `serve`, removed when the server stops;
`status`, `stop` and the client read it when no ports are given.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from zeroserve import records
from zeroserve.errors import InputError, ServerError

SERVER_BINARY = "tritonserver"


def cache_dir() -> Path:
    """`$ZEROSERVE_CACHE`, else `~/.cache/zeroserve`."""
    env = os.environ.get("ZEROSERVE_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "zeroserve"


def servers_dir() -> Path:
    return cache_dir() / "servers"


def state_path(pid: int) -> Path:
    return servers_dir() / f"{pid}.json"


def pid_alive(pid: int, binary: str | None = SERVER_BINARY) -> bool:
    """True when `pid` runs (not a zombie) and, if `binary` is given, is that program.

    Checking the program name guards against a recycled pid after a crash.
    """
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return False
    # The state letter follows the parenthesised command name, which may itself hold spaces.
    if stat[stat.rfind(")") + 2:][:1] in ("Z", "X"):
        return False
    if binary is None:
        return True
    try:
        exe = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0].decode(errors="replace")
    except OSError:
        return False
    return Path(exe).name == binary


def write_state(state: dict[str, Any]) -> Path:
    """Write one server's state file atomically; returns its path."""
    path = state_path(int(state["pid"]))
    records.write_json(path, state)
    return path


def remove_state(pid: int) -> None:
    state_path(pid).unlink(missing_ok=True)


def stale_states() -> list[dict[str, Any]]:
    """States whose server is gone (crashed or killed): what `stop` still has to clean after."""
    folder = servers_dir()
    out = []
    for path in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        try:
            state = json.loads(path.read_text())
            if not pid_alive(int(state["pid"])):
                out.append(state)
        except (OSError, ValueError, KeyError, TypeError):
            continue
    return out


def list_servers() -> list[dict[str, Any]]:
    """The running servers' states, oldest first; state files of dead pids are pruned (and their
    leftover stubs and shared memory cleaned)."""
    folder = servers_dir()
    if not folder.is_dir():
        return []
    out = []
    for path in sorted(folder.glob("*.json")):
        try:
            state = json.loads(path.read_text())
            pid = int(state["pid"])
        except (OSError, ValueError, KeyError, TypeError):
            path.unlink(missing_ok=True)  # a torn or foreign file cannot name a live server
            continue
        if pid_alive(pid):
            out.append(state)
        else:
            _clean_after(state)
            path.unlink(missing_ok=True)
    return sorted(out, key=lambda s: str(s.get("started", "")))


def _clean_after(state: dict[str, Any]) -> None:
    """A server that died without a stop leaves its stubs and shared memory: clean them with its state file."""
    from zeroserve.serve.engine import stop_server  # engine imports this module

    try:
        stop_server(state, timeout=0.0)
    except (OSError, KeyError, ValueError):
        pass  # pruning the state file below is what list_servers promises


def describe(state: dict[str, Any]) -> str:
    """One line naming a server: pid, endpoints and model count."""
    return (f"pid {state['pid']} at {state['host']} (http {state['http_port']}, grpc {state['grpc_port']}, "
            f"metrics {state['metrics_port']}), {len(state.get('models', []))} models, started {state.get('started')}")


def resolve_server(host: str | None = None, http_port: int | None = None,
                   grpc_port: int | None = None) -> dict[str, Any]:
    """The one running server matching the given endpoint parts.

    Raises:
        ServerError: no running server (matching them).
        InputError: several match and none was chosen; the message lists them.
    """
    servers = list_servers()
    match = [s for s in servers
             if (host is None or s["host"] == host)
             and (http_port is None or int(s["http_port"]) == int(http_port))
             and (grpc_port is None or int(s["grpc_port"]) == int(grpc_port))]
    if not match:
        chosen = ", ".join(f"{k} {v}" for k, v in (("host", host), ("http port", http_port),
                                                    ("grpc port", grpc_port)) if v is not None)
        where = f" matching {chosen}" if chosen else ""
        raise ServerError(f"no running zeroserve server{where} (state files in {servers_dir()}); "
                          "start one with `zeroserve serve`")
    if len(match) > 1:
        listing = "; ".join(describe(s) for s in match)
        raise InputError(f"{len(match)} servers are running, choose one with --http-port/--grpc-port: {listing}")
    return match[0]

"""Stopping servers and reaping after the ones that died: what `zeroserve stop` does, over the state files.

A stop ends the run's supervisor first (so nothing restarts the server behind it), then the server
(unload, SIGINT, SIGKILL of what remains), its stubs and its shared memory; a dead server is marked
dead with its run folder and log kept until a stop names it. Only serve/ changes state files: this
module and serve/server.py (which writes a run's state when it starts).
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

from zeroserve.errors import InputError, ZeroserveError
from zeroserve.records.state import ServerState
from zeroserve.serve import processes as ps
from zeroserve.serve import state as st
from zeroserve.triton import restricted
from zeroserve.triton.control import Control

STOP_TIMEOUT_S = 20.0
PRUNE_GRACE_S = 120.0  # a run folder without a state file younger than this may belong to a server still starting


def _now() -> str:
    return dt.datetime.now().isoformat(timespec="seconds")


def _unload_all(state: ServerState, timeout: float) -> str | None:
    """Unload every model through the API so each stub runs finalize() and frees its shared memory itself.

    The load API of an explicit-mode server is restricted to the run's key: `Control` sends it.
    Returns why the models were not unloaded (the server is then stopped by signal alone), or None.
    """
    try:
        with Control.of(state, max(timeout, 0.1)) as control:
            return None if control.unload_all(wait_s=timeout) else f"models still unloading after {timeout:g} s"
    except ZeroserveError as exc:  # typed: did not answer, timed out, refused, failed
        return str(exc)


def stop_server(
    state: ServerState,
    process: subprocess.Popen | None = None,
    timeout: float = STOP_TIMEOUT_S,
    keep_run: bool = False,
    reason: str | None = None,
) -> dict[str, Any]:
    """End one server and everything it started: unload, SIGINT, then SIGKILL of what remains; shm unlinked.

    Args:
        process: the Popen of a server this process started (so it is reaped, not left a zombie).
        keep_run: mark the state dead and keep the run folder and log (a failed start, a crash)
            instead of removing them with the state file.
        reason: why the run ended, recorded in a kept state.

    Returns:
        {"pid", "run_id", "graceful", "killed": [pids], "shm_removed": [names]}, and "unload": why
        an explicit-mode server's models were not unloaded first, when they were not.
    """
    prefix = state.shm_prefix or ""
    supervisor_gone = stop_supervisor(state, timeout)
    server = st.process_of(state.pid, state.create_time)
    others = [p for p in ps.run_processes(prefix) if server is None or p.pid != server.pid]
    others = list({p.pid: p for p in [*others, *ps.server_processes(server, prefix)]}.values())
    graceful = supervisor_gone
    unload_note = None
    if server is not None:
        if state.model_control == "explicit":
            unload_note = _unload_all(state, timeout)
        ps.send(server, signal.SIGINT)  # Triton drains connections and in-flight requests, then exits
        if ps.wait_gone([server], timeout):
            graceful = False
            ps.kill([server, *ps.server_processes(server, prefix)])
    if process is not None:
        try:
            process.wait(timeout=5.0)
        except subprocess.TimeoutExpired:
            pass
    # Stubs whose server is gone exit on their own within a moment; what remains is killed.
    ps.wait_gone(others, 2.0 if graceful and server is not None else 0.0)
    killed = ps.kill([*others, *ps.run_processes(prefix)])
    report = {
        "pid": state.pid,
        "run_id": state.run_id,
        "graceful": graceful,
        "killed": killed,
        "shm_removed": ps.unlink_shm(prefix),
        **({"unload": unload_note} if unload_note else {}),
    }
    if keep_run:
        log = state.log
        if log and not Path(log).exists():  # renamed when its last crash was kept: point at that one
            log = next((c.log for c in reversed(state.crashes or []) if c.log and Path(c.log).exists()), log)
        st.write_state(
            state.updated(
                log=log,
                status=st.DEAD,
                ended=state.ended or _now(),
                reason=state.reason or reason,
                reaped={"killed": report["killed"], "shm_removed": report["shm_removed"]},
            )
        )
    else:
        remove_run(state)
    return report


def stop_supervisor(state: ServerState, timeout: float = STOP_TIMEOUT_S) -> bool:
    """End the run's supervisor (when another process is one) so nothing restarts the server behind a stop.

    SIGTERM first (it stops between two steps), SIGKILL when it does not end in time.
    Returns False when it had to be killed.
    """
    sup = state.supervisor
    proc = st.process_of(sup.pid, sup.create_time) if sup is not None else None
    if proc is None or proc.pid == os.getpid():
        return True
    ps.send(proc, signal.SIGTERM)
    if ps.wait_gone([proc], timeout):
        ps.kill([proc])
        return False
    return True


def reap_dead() -> list[dict[str, Any]]:
    """Mark dead every server whose process is gone and was not marked yet: stubs killed, shm unlinked.

    Its run folder and log stay (`stop` of that server or `stop --all` removes them).
    """
    return [
        stop_server(s, timeout=0.0, keep_run=True, reason="the tritonserver process died without a stop")
        for s in st.dead_servers()
        if s.status != st.DEAD
    ]


def remove_run(state: ServerState) -> None:
    """Delete a run's folder (runtime repository and log) and its state file."""
    if state.runtime_dir:
        shutil.rmtree(state.runtime_dir, ignore_errors=True)
    st.remove_state(state)


def prune_orphan_runs() -> list[Path]:
    """Remove run folders that nothing owns: no process of the run lives (its tritonserver, stubs or supervisor
    name the run in their command lines) and no readable state file keeps it (a dead run's log).

    "Orphaned" is decided from the processes, never from a state file that cannot be read: a live run
    whose state file was truncated keeps its folder. The unreadable state file of a run that is gone
    goes with its folder.
    """
    runs = st.runs_dir()
    if not runs.is_dir():
        return []
    known = {Path(s.runtime_dir).resolve() for s in st.read_states() if s.runtime_dir}
    candidates = []
    for run in runs.iterdir():
        try:
            young = time.time() - run.stat().st_mtime < PRUNE_GRACE_S
        except OSError:
            continue
        if run.resolve() not in known and not young:
            candidates.append(run)
    alive = ps.live_run_ids([run.name for run in candidates])
    removed = []
    for run in candidates:
        if run.name in alive:
            continue
        shutil.rmtree(run, ignore_errors=True)
        path = st.state_path(run.name)
        if path.exists() and st.read_state_file(path) is None:
            path.unlink(missing_ok=True)
        removed.append(run)
    return removed


def stop_servers(
    all_servers: bool = False,
    host: str | None = None,
    http_port: int | None = None,
    grpc_port: int | None = None,
    repository: Path | None = None,
) -> dict[str, Any]:
    """What `zeroserve stop` does: reap dead servers, stop the chosen running one(s), remove chosen dead runs.

    Without a choice: the server `state.choose` means (the one serving `repository`, else the only one; a private
    one, tune's, with a `purpose`, only when it is the only one; InputError listing them when several run).
    With ports: the running server they name, else the dead runs they name (removing their
    folder and log). `all_servers`: every running server and every dead run. Nothing to stop
    is not an error.

    Returns:
        {"stopped": [stop reports], "reaped": [...], "removed": [dead states removed],
        "kept": [dead states left], "pruned": [orphan run folders]}.
    """
    reaped = reap_dead()
    running, dead = st.list_servers(), st.dead_servers()
    if all_servers:
        targets, removed = running, dead
    elif host is None and http_port is None and grpc_port is None:
        running = st.choose(running, repository=repository)
        if len(running) > 1:
            raise InputError(
                f"{len(running)} servers are running, choose one with --http-port/--grpc-port or "
                f"stop them all with --all: {'; '.join(st.describe(s) for s in running)}"
            )
        targets, removed = running, []
    else:
        targets = st.matching(running, host, http_port, grpc_port)
        if len(targets) > 1:
            raise InputError(
                f"{len(targets)} servers match, choose one with --http-port/--grpc-port: "
                f"{'; '.join(st.describe(s) for s in targets)}"
            )
        removed = [] if targets else st.matching(dead, host, http_port, grpc_port)
    stopped = [stop_server(s) for s in targets]
    for s in removed:
        remove_run(s)
    kept = [s for s in dead if s not in removed]
    return {
        "stopped": stopped,
        "reaped": reaped,
        "removed": [restricted.public(s) for s in removed],
        "kept": [restricted.public(s) for s in kept],
        "pruned": prune_orphan_runs(),
    }

"""A server's processes and shared memory: find them, end them, clean after them.

Processes are `psutil.Process` objects taken with their create time, so a pid that was
recycled by another program since is never signalled (psutil checks before each signal).
A server's Python-backend stubs are found by the run's unique shared-memory prefix in their
argv, which they keep after their server is gone; while the server runs, its children too.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

import psutil

from zeroserve.records.state import ServerState
from zeroserve.triton.wheel import SERVER_BINARY, STUB_NAME

SHM_DIR = Path("/dev/shm")


def stubs(shm_prefix: str | None) -> list[psutil.Process]:
    """The Python-backend stubs started under this shared-memory prefix, wherever their parent went."""
    if not shm_prefix:
        return []
    out = []
    for proc in psutil.process_iter(["name", "cmdline"]):
        cmd = proc.info.get("cmdline") or []
        if cmd and Path(cmd[0]).name == STUB_NAME and any(shm_prefix in a for a in cmd):
            out.append(proc)
    return out


def run_processes(shm_prefix: str | None) -> list[psutil.Process]:
    """Every tritonserver and stub started with this run's shared-memory prefix in its argv.

    Finds a server that a supervisor started a moment ago, before its pid reached the state file.
    """
    if not shm_prefix:
        return []
    out = []
    for proc in psutil.process_iter(["name", "cmdline"]):
        cmd = proc.info.get("cmdline") or []
        if cmd and Path(cmd[0]).name in (STUB_NAME, SERVER_BINARY) and any(shm_prefix in a for a in cmd):
            out.append(proc)
    return [p for p in out if _alive(p)]


def stub_regions(shm_prefix: str | None) -> dict[int, tuple[str, str]]:
    """Live stubs: pid -> (model folder, shared-memory region name), both read from the stub's argv.

    A stub's argv is `stub <repository>/<model>/<version>/model.py <region> ...`.
    """
    out: dict[int, tuple[str, str]] = {}
    for proc in stubs(shm_prefix):
        try:
            cmd = proc.cmdline()
        except psutil.Error:
            continue
        if len(cmd) > 2 and _alive(proc):
            out[proc.pid] = (Path(cmd[1]).parent.parent.name, cmd[2])
    return out


def server_processes(server: psutil.Process | None, shm_prefix: str | None) -> list[psutil.Process]:
    """The server's descendants while it runs (when given) and every stub of its prefix, server excluded."""
    found = {p.pid: p for p in stubs(shm_prefix)}
    if server is not None:
        try:
            found.update({p.pid: p for p in server.children(recursive=True)})
        except psutil.Error:
            pass
    return [p for p in found.values() if _alive(p)]


def _alive(proc: psutil.Process) -> bool:
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def send(proc: psutil.Process, sig: int) -> bool:
    """Signal `proc` if it is still the same process; True when the signal was sent."""
    try:
        proc.send_signal(sig)  # psutil refuses a pid reused since `proc` was taken
        return True
    except psutil.Error:
        return False


def wait_gone(procs: list[psutil.Process], timeout: float) -> list[psutil.Process]:
    """Wait up to `timeout` s for `procs` to exit (reaping our own children); returns those still alive."""
    if not procs:
        return []
    _, alive = psutil.wait_procs(procs, timeout=max(timeout, 0.0))
    return [p for p in alive if _alive(p)]


def kill(procs: list[psutil.Process], timeout: float = 5.0) -> list[int]:
    """SIGKILL each process still alive and wait for them; returns the pids killed."""
    killed = [p.pid for p in procs if _alive(p) and send(p, signal.SIGKILL)]
    wait_gone([p for p in procs if p.pid in killed], timeout)
    return killed


def shm_segments(shm_prefix: str | None) -> list[Path]:
    """The /dev/shm segments the Python backend created under this server's prefix."""
    if not shm_prefix:
        return []
    return sorted(SHM_DIR.glob(f"{shm_prefix}*"))


def private_shm(shm_prefix: str | None) -> list[str]:
    """chmod 0600 this prefix's segments that others can read.

    The Python backend creates its regions through Boost.Interprocess, which sets 0644
    explicitly after creating them (the umask does not apply), so the server's owner closes them.
    """
    fixed = []
    for seg in shm_segments(shm_prefix):
        try:
            if seg.stat().st_mode & 0o077:
                os.chmod(seg, 0o600)
                fixed.append(seg.name)
        except OSError:
            pass
    return fixed


def unlink_shm(shm_prefix: str | None) -> list[str]:
    """Remove this prefix's shared-memory segments; returns their names."""
    removed = []
    for seg in shm_segments(shm_prefix):
        try:
            seg.unlink()
            removed.append(seg.name)
        except FileNotFoundError:
            pass
    return removed


def _cmdlines() -> list[tuple[psutil.Process, list[str]]]:
    out = []
    for proc in psutil.process_iter(["cmdline"]):
        cmd = proc.info.get("cmdline") or []
        if cmd and _alive(proc):
            out.append((proc, cmd))
    return out


def live_run_ids(run_ids: list[str]) -> set[str]:
    """The run ids some live process names in its command line: the run's tritonserver (its runtime folder), its
    stubs (their model.py path) or its detached supervisor (its options). Decides "orphaned" without any file."""
    if not run_ids:
        return set()
    joined = [" ".join(cmd) for _, cmd in _cmdlines()]
    return {rid for rid in run_ids if any(rid in line for line in joined)}


def servers_in_runs(runs_dir: Path) -> list[ServerState]:
    """tritonservers running on a runtime folder under `runs_dir`, read from their command lines.

    Each as a minimal state ({run_id, pid, create_time, host, http_port, grpc_port, metrics_port,
    runtime_dir, log, shm_prefix}): how `status` and `stop` still find a live server whose state
    file cannot be read.
    """
    prefix = f"--model-repository={runs_dir}{os.sep}"
    out = []
    lines = _cmdlines()
    supervisors = [(p, " ".join(c)) for p, c in lines if "zeroserve.serve.supervisor" in " ".join(c)]
    for proc, cmd in lines:
        if Path(cmd[0]).name != SERVER_BINARY:
            continue
        opts = dict(a[2:].split("=", 1) for a in cmd[1:] if a.startswith("--") and "=" in a)
        repo = next((a for a in cmd if a.startswith(prefix)), None)
        if repo is None:
            continue
        run_dir = Path(repo.split("=", 1)[1]).parent
        shm = opts.get("backend-config", "").partition("shm-region-prefix-name=")[2] or None
        sup = next((p for p, line in supervisors if run_dir.name in line), None)
        try:
            created = proc.create_time()
            supervisor = {"pid": sup.pid, "create_time": sup.create_time()} if sup is not None else None
            state = ServerState.model_validate(
                {
                    "supervisor": supervisor,
                    "run_id": run_dir.name,
                    "pid": proc.pid,
                    "create_time": created,
                    "host": opts.get("http-address", "127.0.0.1").removeprefix("ipv6:"),
                    "http_port": int(opts["http-port"]),
                    "grpc_port": int(opts["grpc-port"]),
                    "metrics_port": int(opts["metrics-port"]),
                    "runtime_dir": str(run_dir),
                    "log": str(run_dir / "server.log"),
                    "shm_prefix": shm,
                }
            )
        except (KeyError, ValueError, psutil.Error):
            continue
        out.append(state)
    return out

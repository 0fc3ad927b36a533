"""The detached start (`serve --detach`): a supervisor in its own session starts tritonserver; this side waits.

Both halves of the protocol live here: `start_detached` checks what it can before anything starts,
launches `python -m zeroserve.serve.supervisor OPTIONS_JSON` (the options `supervisor.main`
reads) and follows the run's state file, where the supervisor writes each model's progress,
until the server runs or the start fails with one clear error.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from zeroserve.deploy.contents import canonical_models
from zeroserve.errors import InputError, ServerError, ZeroserveError
from zeroserve.records.state import ServerState
from zeroserve.serve import state as st
from zeroserve.serve.handle import OnModel
from zeroserve.serve.logs import log_tail
from zeroserve.serve.metrics import DEFAULT_INTERVAL_MS
from zeroserve.serve.restarts import RestartPolicy
from zeroserve.serve.server import start_server
from zeroserve.serve.signals import stop_signals
from zeroserve.serve.stop import STOP_TIMEOUT_S, stop_server
from zeroserve.serve.supervisor import HANG_TIMEOUT_S, Supervisor
from zeroserve.triton.ports import check_ports
from zeroserve.triton.wheel import find_tritonserver

STOP_WAIT_S = 10.0


def start_detached(
    repository: Path,
    models: list[str] | None,
    *,
    host: str,
    http_port: int,
    grpc_port: int,
    metrics_port: int,
    ort_threads: int | None,
    timeout: float,
    policy: RestartPolicy,
    hang_timeout: float = HANG_TIMEOUT_S,
    memory_limit: str = "auto",
    allow_client_shm: bool = False,
    metrics_interval_ms: int = DEFAULT_INTERVAL_MS,
    on_model: OnModel = lambda name, state, seconds: None,
) -> ServerState:
    """Start a detached supervisor that starts and supervises tritonserver; wait for it to run.

    Returns the run's state once it is running; each model's progress goes to `on_model` meanwhile.
    The supervisor runs in its own session under umask 077 and writes into the state file; its
    own log is `supervisor.log` in the run folder. Ctrl-C while waiting stops what it started.
    """
    canonical_models(repository, models)  # input errors here, before anything starts
    check_ports(host, {"http": http_port, "grpc": grpc_port, "metrics": metrics_port}, st.port_holder)
    find_tritonserver()
    run_id = st.new_run_id()
    st.private_dirs()
    run_dir = st.runs_dir() / run_id
    run_dir.mkdir(parents=True)
    os.chmod(run_dir, 0o700)
    options = {
        "repository": str(Path(repository).resolve()),
        "models": models,
        "host": host,
        "http_port": http_port,
        "grpc_port": grpc_port,
        "metrics_port": metrics_port,
        "ort_threads": ort_threads,
        "timeout": timeout,
        "run_id": run_id,
        "memory_limit": memory_limit,
        "hang_timeout": hang_timeout,
        "allow_client_shm": allow_client_shm,
        "metrics_interval_ms": metrics_interval_ms,
    }
    sup_log = run_dir / "supervisor.log"
    with open(os.open(sup_log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "wb") as fh:
        proc = subprocess.Popen(
            supervisor_command(options, policy),
            stdin=subprocess.DEVNULL,
            stdout=fh,
            stderr=subprocess.STDOUT,
            cwd=run_dir,
            start_new_session=True,
            umask=0o077,
        )
    try:
        return _wait(proc, run_id, sup_log, time.monotonic() + timeout + 30.0, on_model)
    except KeyboardInterrupt:  # Ctrl-C while waiting: the supervisor stops what it started
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=STOP_TIMEOUT_S + 5)
        raise


def _wait(proc: subprocess.Popen, run_id: str, sup_log: Path, deadline: float, on_model: OnModel) -> ServerState:
    """Follow the detached start's state file until it runs (or fails: one clear error)."""
    path = st.state_path(run_id)
    while True:
        state = st.read_state_file(path)  # None while it is being written, or not yet there
        for name, (mstate, seconds) in ((state.progress if state else None) or {}).items():
            on_model(name, mstate, seconds)
        if state and state.status == st.RUNNING:
            return state
        error = state.error if state else None
        if error or proc.poll() is not None:
            proc.wait(timeout=STOP_WAIT_S)
            if error:
                raise (InputError if error.exit_code == 2 else ServerError)(str(error.message))
            raise ServerError(
                f"the supervisor exited with code {proc.returncode} before the server was ready: "
                f"{log_tail(sup_log)} (log: {sup_log})"
            )
        if time.monotonic() > deadline:
            if state:
                stop_server(state, keep_run=True, reason="the detached start did not finish in time")
            else:
                proc.kill()
            raise ServerError(f"the detached server was not ready within --timeout (log: {sup_log})")
        time.sleep(0.2)


# ---------------------------------------------------------------- the supervisor process's side


def supervisor_command(options: dict[str, Any], policy: RestartPolicy) -> list[str]:
    """The detached supervisor's command line: `start_server`'s options and the restart policy, as JSON."""
    doc = {
        **options,
        "policy": {"first_s": policy.first_s, "max_s": policy.max_s, "cap": policy.cap, "window_s": policy.window_s},
    }
    return [sys.executable, "-m", "zeroserve.serve.supervisor", json.dumps(doc)]


def supervisor_main(argv: list[str] | None = None) -> int:
    """`python -m zeroserve.serve.supervisor OPTIONS_JSON`: start the server, then supervise it until stopped."""
    parser = argparse.ArgumentParser(
        description="The detached supervisor: start the server, supervise it until stopped."
    )
    parser.add_argument("options", help="start_server's keyword arguments and the restart policy, as JSON")
    opts = json.loads(parser.parse_args(argv).options)
    os.umask(0o077)
    with stop_signals():  # SIGTERM (what `zeroserve stop` sends first) and Ctrl-C stop the server
        return _supervise(opts)


def _now() -> str:
    return dt.datetime.now().isoformat(timespec="seconds")


def _supervise(opts: dict[str, Any]) -> int:
    policy = RestartPolicy.from_env(**opts.pop("policy", {}))
    me = {"pid": os.getpid(), "create_time": st.create_time(os.getpid())}
    say = lambda text: print(f"{_now()} {text}", flush=True)  # noqa: E731 - the supervisor's own log

    def on_model(name: str, state: str, seconds: float) -> None:
        say(f"{name}: {state}" + (f" in {seconds:.1f} s" if state != "loading" else ""))

    server = None
    try:
        hang_timeout = float(opts.pop("hang_timeout", HANG_TIMEOUT_S))
        # detach=False: tritonserver gets the parent-death signal, so it ends with this supervisor
        server = start_server(
            Path(opts["repository"]),
            opts.get("models"),
            detach=False,
            supervisor=me,
            on_model=on_model,
            **{k: v for k, v in opts.items() if k not in ("repository", "models")},
        )
        Supervisor(server, policy, say, hang_timeout=hang_timeout).run()
    except KeyboardInterrupt:  # SIGTERM or Ctrl-C (signals.Terminated)
        if server is not None:
            say("stopping (SIGTERM)")
            server.stop(STOP_TIMEOUT_S)
        return 0
    except ZeroserveError as exc:
        say(f"error: {exc}")
        _record_failure(opts.get("run_id"), exc)
        return exc.exit_code
    return 0


def _record_failure(run_id: str | None, exc: ZeroserveError) -> None:
    """Put the error's message and exit code into the run's state (the waiting CLI reads them)."""
    if not run_id:
        return
    path = st.state_path(run_id)
    state = st.read_state_file(path)
    if state is not None:
        st.write_state(state.updated(error={"message": str(exc), "exit_code": exc.exit_code}))

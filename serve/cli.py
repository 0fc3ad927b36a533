"""`zeroserve serve`, `status` and `stop`."""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape
from rich.progress import Progress, SpinnerColumn, TaskID, TextColumn, TimeElapsedColumn
from rich.table import Table

from zeroserve import registry
from zeroserve.app.cliutil import (
    ArtifactsOpt,
    JsonOpt,
    ModelFilesOpt,
    choices,
    console,
    err_console,
    handle_errors,
    port_callback,
    positive_seconds,
    print_json,
)
from zeroserve.artifacts import DEFAULT_ARTIFACTS
from zeroserve.deploy.repository import DEFAULT_REPOSITORY
from zeroserve.errors import InputError, ServerError
from zeroserve.serve import server as srv
from zeroserve.serve import state as st
from zeroserve.serve import stop
from zeroserve.serve.docker import docker_command
from zeroserve.serve.status import collect_status, duration_text, find_target
from zeroserve.serve.supervisor import HANG_TIMEOUT_S, RestartPolicy, Supervisor
from zeroserve.triton.ports import (
    DEFAULT_HOST,
    DEFAULT_PORTS,
    check_bind_host,
    hostport,
    non_loopback,
    resolve_free_ports,
)

STOP_WAIT_S = 10.0

if TYPE_CHECKING:  # mypy sees the value each choice stands for; typer gets the choice Enum at run time
    Engine = str
else:
    Engine = choices("Engine", ("embedded", "docker"))

RepositoryOpt = Annotated[Path, typer.Option("--repository", help="The canonical Triton model repository.")]
HostOpt = Annotated[
    str,
    typer.Option(
        "--host",
        help="Address the server binds to (and clients reach): loopback "
        "(127.0.0.1, ::1, localhost) unless --allow-remote.",
    ),
]
_FREE = " (1-65535; 0 picks a free port and prints it)"
HttpPortOpt = Annotated[
    int, typer.Option("--http-port", help="KServe v2 HTTP port" + _FREE + ".", callback=port_callback(allow_zero=True))
]
GrpcPortOpt = Annotated[
    int, typer.Option("--grpc-port", help="KServe v2 gRPC port" + _FREE + ".", callback=port_callback(allow_zero=True))
]
MetricsPortOpt = Annotated[
    int,
    typer.Option(
        "--metrics-port", help="Prometheus metrics port" + _FREE + ".", callback=port_callback(allow_zero=True)
    ),
]
# status and stop choose a running server by its ports
ChoosePort = port_callback()


def register(app: typer.Typer) -> None:
    app.command("serve")(serve_cmd)
    app.command("status")(status_cmd)
    app.command("stop")(stop_cmd)


def _target_image() -> str:
    """The NGC image of the Triton release the canonical repository targets (deploy's constant)."""
    from zeroserve.deploy.release import TARGET

    return TARGET.image


class _Terminated(KeyboardInterrupt):
    """SIGTERM in the foreground: stop the server the same way as Ctrl-C."""


def _on_sigterm(signum, frame):
    raise _Terminated()


@handle_errors
def serve_cmd(
    repository: RepositoryOpt = DEFAULT_REPOSITORY,
    models: Annotated[
        list[str] | None,
        typer.Option(
            "--models",
            help="Model names, the course's or your own (every deployed format), or Triton names (one "
            "format); default: all deployed.",
        ),
    ] = None,
    host: HostOpt = DEFAULT_HOST,
    http_port: HttpPortOpt = DEFAULT_PORTS["http"],
    grpc_port: GrpcPortOpt = DEFAULT_PORTS["grpc"],
    metrics_port: MetricsPortOpt = DEFAULT_PORTS["metrics"],
    ort_threads: Annotated[
        int | None,
        typer.Option(
            help="ONNX Runtime (and TorchScript) intra-op threads per instance "
            "(default: the config's intra_op_thread_count / INTRA_OP_THREAD_COUNT, else 1)."
        ),
    ] = None,
    detach: Annotated[
        bool,
        typer.Option("--detach", help="Return once every model is READY; the server runs on until `zeroserve stop`."),
    ] = False,
    engine_name: Annotated[
        Engine,
        typer.Option(
            "--engine",
            help="embedded (tritonserver from the nvidia-pytriton wheel) or docker (NGC image on a GPU host).",
        ),
    ] = "embedded",
    print_only: Annotated[
        bool, typer.Option("--print", help="With --engine docker: print the docker command.")
    ] = False,
    timeout: Annotated[
        float,
        typer.Option(
            help="One deadline in seconds (> 0) for the server to come up and every model to be READY.",
            callback=positive_seconds,
        ),
    ] = srv.READY_TIMEOUT_S,
    max_restarts: Annotated[
        int | None,
        typer.Option(
            "--max-restarts",
            help="A hard cap: crashes of tritonserver tolerated within 10 minutes, the next one ending "
            "`serve` (default: no cap, a crash loop backs off up to 5 minutes between starts; or "
            "ZEROSERVE_RESTART_CAP=count,window_s).",
            min=0,
        ),
    ] = None,
    restart_backoff: Annotated[
        float | None,
        typer.Option(
            "--restart-backoff",
            help="Seconds before the first restart after a crash, doubled for each further crash "
            "within 10 minutes up to 300 (default 1, or ZEROSERVE_RESTART_BACKOFF=first_s,max_s).",
            min=0,
        ),
    ] = None,
    hang_timeout: Annotated[
        float,
        typer.Option(
            "--hang-timeout",
            help="Seconds without an answer to /v2/health/live after which a running server is "
            "recorded as hung, killed and restarted.",
            callback=positive_seconds,
        ),
    ] = HANG_TIMEOUT_S,
    memory_limit: Annotated[
        str,
        typer.Option(
            "--memory-limit",
            help="Data ceiling per process (RLIMIT_DATA) for tritonserver and, inherited, each of its "
            "stubs: a size (3G, 512M), 'auto' (25% of this machine's memory, at least 2 GiB; not applied on a GPU "
            "host) "
            "or 'off'. A request that declares a huge tensor then ends that server, which is restarted, instead of "
            "exhausting the host.",
        ),
    ] = "auto",
    model_files: ModelFilesOpt = None,
    allow_remote: Annotated[
        bool,
        typer.Option(
            "--allow-remote",
            help="Allow --host to be an address other machines reach (not loopback); prints a warning.",
        ),
    ] = False,
    allow_client_shm: Annotated[
        bool,
        typer.Option(
            "--allow-client-shm",
            help="Let zeroserve's own client use "
            "Triton's shared-memory API (`client perf --shared-memory system`"
            "); it stays closed to other callers (docs/serving.md).",
        ),
    ] = False,
):
    """Serve the model repository with a real Triton server (embedded by default) until Ctrl-C or SIGTERM.

    The server is supervised: a tritonserver that dies or hangs (--hang-timeout) is restarted on the
    same ports with a backoff that grows to 5 minutes in a crash loop (--max-restarts sets a hard
    cap; each crash's log is kept), and a model whose Python-backend stub died is reloaded alone
    while the others serve. tritonserver and its stubs end with their supervisor, and run under a
    per-process memory ceiling (--memory-limit). The server has no
    model-control API (load and unload requests are refused). A model that fails to load is
    named and the others serve.

    The embedded engine serves a runtime copy of the repository (under the cache folder) through
    Triton's Python backend; the canonical repository is never modified. Exit 3 when the server
    cannot start (port in use, binary missing, a model failing to load), 2 for a bad repository.
    """
    registry.select(["all"], model_files)  # a bad model file is refused here; names resolve in the repository
    if engine_name == "docker":
        # loopback unless --allow-remote, as the embedded engine; --allow-remote with a loopback --host: every interface
        warning = check_bind_host(host, allow_remote)
        bind = None if allow_remote and not non_loopback(host) else host
        if bind is None:
            warning = (
                "the docker command publishes the ports on every interface (--allow-remote): anyone who can "
                "reach them can call the served models; Triton there has no authentication or TLS"
            )
        if warning:
            err_console.print(f"[yellow]warning:[/] {escape(warning)}", highlight=False, soft_wrap=True)
        cmd = docker_command(
            repository, _target_image(), {"http": http_port, "grpc": grpc_port, "metrics": metrics_port}, bind_host=bind
        )
        if print_only:
            console.print(shlex.join(cmd), highlight=False, soft_wrap=True)
            return
        if shutil.which("docker") is None:
            raise ServerError("docker is not installed here; use --print and run the command on a GPU host")

        os.execvp(cmd[0], cmd)
    if print_only:
        raise InputError("--print goes with --engine docker")
    host, http_port, grpc_port, metrics_port = _bind_checks(host, allow_remote, http_port, grpc_port, metrics_port)

    policy = RestartPolicy.from_env(cap=max_restarts, first_s=restart_backoff)
    srv.memory_ceiling(memory_limit, gpu=False)  # a bad size is refused before anything starts
    if detach:
        state = _start_detached(
            repository,
            models,
            host,
            http_port,
            grpc_port,
            metrics_port,
            ort_threads,
            timeout,
            policy,
            hang_timeout,
            memory_limit,
            allow_client_shm,
        )
        _print_endpoints(state)
        console.print(
            f"detached: supervisor pid {state['supervisor']['pid']}, tritonserver pid {state['pid']}, "
            f"log {state['log']}; stop it with `zeroserve stop`",
            highlight=False,
        )
        return
    previous = signal.signal(signal.SIGTERM, _on_sigterm)
    # Ctrl-C stops the server even when this process started with SIGINT ignored (a shell's `&`).
    previous_int = signal.signal(signal.SIGINT, signal.default_int_handler)
    server = None
    try:
        me = {"pid": os.getpid(), "create_time": st.create_time(os.getpid())}
        with _progress() as on_model:
            server = srv.start_server(
                repository,
                models,
                host=host,
                http_port=http_port,
                grpc_port=grpc_port,
                metrics_port=metrics_port,
                ort_threads=ort_threads,
                timeout=timeout,
                on_model=on_model,
                supervisor=me,
                memory_limit=memory_limit,
                allow_client_shm=allow_client_shm,
            )
        _print_endpoints(server.state)
        console.print(
            "serving (supervised: a crashed server is restarted, a dead model reloaded); Ctrl-C stops the server",
            highlight=False,
        )
        Supervisor(
            server, policy, say=lambda text: err_console.print(text, highlight=False), hang_timeout=hang_timeout
        ).run()
    except KeyboardInterrupt:  # Ctrl-C or SIGTERM (_Terminated)
        if server is None:  # start_server already stopped what it had started
            console.print("stopped during the start; nothing left running", highlight=False)
            return
        err_console.print("stopping...")
        report = server.stop()
        console.print(
            f"stopped pid {report['pid']}{'' if report['graceful'] else ' (forced)'}; stubs and shared memory cleaned",
            highlight=False,
        )
        return
    finally:
        signal.signal(signal.SIGTERM, previous)
        signal.signal(signal.SIGINT, previous_int)


def _bind_checks(host: str, allow_remote: bool, *ports: int) -> tuple:
    """Refuse a non-loopback --host without --allow-remote (warn with it); replace each port 0 by a free one.

    Returns the host (`localhost` as 127.0.0.1, which tritonserver binds and gRPC reaches at once)
    and the three ports.
    """
    host = DEFAULT_HOST if host == "localhost" else host.strip("[]")
    warning = check_bind_host(host, allow_remote)
    if warning:
        err_console.print(f"[yellow]warning:[/] {escape(warning)}", highlight=False, soft_wrap=True)
    names = ("http", "grpc", "metrics")
    chosen = resolve_free_ports(host, dict(zip(names, ports)))
    picked = [f"{k} {chosen[k]}" for k, p in zip(names, ports) if p == 0]
    if picked:
        err_console.print(f"free port(s) chosen on {host}: {', '.join(picked)}", highlight=False)
    return (host, *(chosen[k] for k in names))


@contextlib.contextmanager
def _progress() -> Iterator[Callable[[str, str, float], None]]:
    """A progress display of each model's load; yields the `on_model(name, state, seconds)` callback."""
    columns = (
        SpinnerColumn(),
        TextColumn("{task.description}"),
        TextColumn("{task.fields[state]}"),
        TimeElapsedColumn(),
    )
    lock = threading.Lock()
    tasks: dict[str, TaskID] = {}
    shown: dict[str, str] = {}
    with Progress(*columns, console=err_console, transient=False) as progress:

        def on_model(name: str, state: str, seconds: float) -> None:
            with lock:
                if shown.get(name) == state:
                    return
                shown[name] = state
                if name not in tasks:
                    tasks[name] = progress.add_task(name, state="loading", total=1)
                done = state in ("READY", "FAILED", "timed out", "skipped", srv.NOT_SERVED)
                colour = {
                    "READY": "green",
                    "FAILED": "red",
                    "timed out": "red",
                    "skipped": "dim",
                    srv.NOT_SERVED: "red",
                }.get(state, "yellow")
                progress.update(
                    tasks[name],
                    state=f"[{colour}]{state}[/]" + (f" in {seconds:.1f} s" if done else ""),
                    completed=1 if done else 0,
                )
                if done:
                    progress.stop_task(tasks[name])

        yield on_model


def _start_detached(
    repository,
    models,
    host,
    http_port,
    grpc_port,
    metrics_port,
    ort_threads,
    timeout,
    policy: RestartPolicy,
    hang_timeout: float = HANG_TIMEOUT_S,
    memory_limit: str = "auto",
    allow_client_shm: bool = False,
) -> dict:
    """Start a detached supervisor that starts and supervises tritonserver; wait for READY with progress.

    Returns the run's state once it is running. The supervisor runs in its own session under
    umask 077 and writes into the state file; its own log is `supervisor.log` in the run folder.
    """
    from zeroserve.deploy.contents import canonical_models
    from zeroserve.triton.ports import check_ports
    from zeroserve.triton.wheel import find_tritonserver

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
        "policy": {"first_s": policy.first_s, "max_s": policy.max_s, "cap": policy.cap, "window_s": policy.window_s},
    }
    sup_log = run_dir / "supervisor.log"
    with open(os.open(sup_log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "wb") as fh:
        proc = subprocess.Popen(
            [sys.executable, "-m", "zeroserve.serve.supervisor", json.dumps(options)],
            stdin=subprocess.DEVNULL,
            stdout=fh,
            stderr=subprocess.STDOUT,
            cwd=run_dir,
            start_new_session=True,
            umask=0o077,
        )
    try:
        return _wait_detached(proc, run_id, sup_log, time.monotonic() + timeout + 30.0)
    except KeyboardInterrupt:  # Ctrl-C while waiting: the supervisor stops what it started
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=stop.STOP_TIMEOUT_S + 5)
        raise


def _wait_detached(proc: subprocess.Popen, run_id: str, sup_log: Path, deadline: float) -> dict:
    """Show the detached start's progress from its state file until it runs (or fails: one clear error)."""
    path = st.state_path(run_id)
    with _progress() as on_model:
        while True:
            try:
                state = json.loads(path.read_text())
            except (OSError, ValueError):
                state = None
            for name, (mstate, seconds) in ((state or {}).get("progress") or {}).items():
                on_model(name, mstate, seconds)
            if state and state.get("status") == st.RUNNING:
                return state
            error = (state or {}).get("error")
            if error or proc.poll() is not None:
                proc.wait(timeout=STOP_WAIT_S)
                if error:
                    raise (InputError if error.get("exit_code") == 2 else ServerError)(error["message"])
                raise ServerError(
                    f"the supervisor exited with code {proc.returncode} before the server was ready: "
                    f"{srv.log_tail(sup_log)} (log: {sup_log})"
                )
            if time.monotonic() > deadline:
                if state:
                    stop.stop_server(state, keep_run=True, reason="the detached start did not finish in time")
                else:
                    proc.kill()
                raise ServerError(f"the detached server was not ready within --timeout (log: {sup_log})")
            time.sleep(0.2)


def _print_endpoints(s: dict) -> None:
    failed = s.get("failed") or {}
    ready = len(s["models"]) - len(failed)
    table = Table(title=f"tritonserver pid {s['pid']}: {ready} of {len(s['models'])} models READY")
    table.add_column("endpoint")
    table.add_column("address")
    table.add_row("HTTP (KServe v2)", f"http://{hostport(s['host'], s['http_port'])}")
    table.add_row("gRPC (KServe v2)", hostport(s["host"], s["grpc_port"]))
    table.add_row("metrics", f"http://{hostport(s['host'], s['metrics_port'])}/metrics")
    table.add_row("runtime repository", f"{s['runtime_dir']}/repository")
    table.add_row("log", s["log"])
    console.print(table)
    for name, reason in failed.items():
        err_console.print(f"[red]model {name} failed to load[/] (the others serve): {escape(reason)}", highlight=False)
    for name, reason in (s.get("unservable") or {}).items():
        err_console.print(f"[red]not served:[/] {escape(name)}: {escape(reason)}", highlight=False)


@handle_errors
def status_cmd(
    artifacts: ArtifactsOpt = DEFAULT_ARTIFACTS,
    repository: RepositoryOpt = DEFAULT_REPOSITORY,
    host: Annotated[str | None, typer.Option("--host", help="Server host (default: the running server's).")] = None,
    http_port: Annotated[
        int | None,
        typer.Option("--http-port", help="Server HTTP port (default: the running server's).", callback=ChoosePort),
    ] = None,
    grpc_port: Annotated[
        int | None, typer.Option("--grpc-port", help="Choose a server by its gRPC port.", callback=ChoosePort)
    ] = None,
    model_files: ModelFilesOpt = None,
    as_json: JsonOpt = False,
):
    """Where each model stands per format: trained (metric), exported (gate), deployed (version, sha), served.

    The server asked is the one --host/--http-port/--grpc-port name, else the one serving --repository,
    else the only one running (several: they are listed). A state file that cannot be read is named in a
    warning and its live server still reported.

    Exit codes, with --json too (its `exit_code` and `verdict`): 0 when every model the server serves is
    READY and the server runs supervised; 1 when a model is recovering or failed (one that fails at start
    keeps the server not ready, as Triton's strict readiness does) or the server is restarting, dead
    (its run is kept with its log until `zeroserve stop`) or unsupervised; 3 when no server runs or it
    does not answer.
    """
    server, dead_meant = find_target(host, http_port, grpc_port, repository)
    report = collect_status(artifacts, repository, server, model_files, dead_meant=dead_meant)
    for path in report["unreadable_state_files"]:
        err_console.print(f"[yellow]warning:[/] state file unreadable: {escape(path)}", highlight=False, soft_wrap=True)
    if as_json:
        print_json(report)
        raise typer.Exit(report["exit_code"])
    server = report["server"]
    title = (
        "no running server"
        if server is None
        else f"server {server['host']}:{server['http_port']}" + (f" (pid {server['pid']})" if server.get("pid") else "")
    )
    table = Table(title=f"zeroserve status: {artifacts}/, {repository}/, {title}")
    for col in ("model", "format", "data", "trained", "exported", "deployed", "served"):
        if col == "data":
            table.add_column(col, max_width=20, no_wrap=True, overflow="ellipsis")
        else:
            table.add_column(col)
    mark = {
        "PASS": "green",
        "READY": "green",
        "yes": "green",
        "no": "dim",
        "no server": "dim",
        "recovering": "red",
        "UNAVAILABLE": "red",
        "failed": "red",
        "unsupervised": "red",
    }
    paint = lambda text, state: f"[{mark.get(state, 'yellow')}]{text}[/]"  # noqa: E731 - a one-line local helper
    shown: set[str] = set()
    for row in report["models"]:
        t, e, d, s = row["trained"], row["exported"], row["deployed"], row["served"]
        trained = t["state"] if "metric" not in t else f"{t['state']} {t['metric']} {t['value']:.4f}"
        deployed = d["state"] if d["state"] == "no" else f"v{d['version']} {str(d['sha256'])[:12]}"
        data, first = row["data"], row["model"] not in shown  # the data column once per model
        shown.add(row["model"])
        source = escape(data["source"]) if data["from"] == "train.json" else f"[dim]{escape(data['source'])}[/]"
        source = "" if not first else f"[yellow]fell back: {source}[/]" if data["note"] else source
        table.add_row(
            row["model"],
            row["format"],
            source,
            paint(trained, t["state"]),
            paint(e["state"], e["state"]),
            paint(deployed, d["state"]),
            paint(s["state"] + (f" ({s['note']})" if s.get("note") else ""), s["state"]),
        )
    console.print(table)
    for name, state in (server or {}).get("other_models", {}).items():
        console.print(f"also served (no registry entry): {escape(name)} {paint(state, state)}", soft_wrap=True)
    for name, reason in (server or {}).get("unservable", {}).items():
        console.print(f"[red]not served:[/] {escape(name)}: {escape(reason)}", soft_wrap=True)
    if server and server.get("error"):
        err_console.print(f"[yellow]warning:[/] {server['error']}", highlight=False)
    if server and server.get("model_control"):
        _print_supervision(server)
    for d in report["dead"]:
        console.print(
            f"dead server run {d['run_id']} (pid {d['pid']}, http port {d['http_port']}): "
            f"{d.get('reason') or 'not yet reaped'}; log: {d['log']}",
            highlight=False,
            soft_wrap=True,
        )
        for crash in d.get("crashes", [])[-1:]:
            console.print(
                f"  last crash {crash['time']}: tritonserver {crash['exit']}; log kept: {crash['log']}",
                highlight=False,
                soft_wrap=True,
            )
    colour = "green" if report["exit_code"] == 0 else "red"
    console.print(
        f"[{colour}]{escape(report['verdict'])}[/] (exit {report['exit_code']})", highlight=False, soft_wrap=True
    )
    raise typer.Exit(report["exit_code"])


def _print_supervision(server: dict) -> None:
    """The supervisor's record: restarts, the last crash and its kept log, recoveries, models recovering or failed."""
    sup = f"supervisor pid {server['supervisor_pid']}" if server.get("supervised") else "[red]no supervisor running[/]"
    console.print(
        f"{sup}; restarts: {server['restarts']}; model recoveries: {server['recovered']}; "
        f"model control API: off ({server['model_control']})"
        if server["model_control"] == "poll"
        else f"{sup}; restarts: {server['restarts']}; model control API: open ({server['model_control']})",
        highlight=False,
        soft_wrap=True,
    )
    crash = server.get("last_crash")
    if server.get("supervisor_gone"):
        console.print(
            f"[red]dead: its supervisor (pid {server['supervisor_pid']}) is gone[/]; nothing restarts or "
            "recovers this server: `zeroserve stop` it and serve again",
            highlight=False,
            soft_wrap=True,
        )
    if server.get("next_start_in_s") is not None:
        loop = server.get("crash_loop")
        console.print(
            "[red]"
            + (
                f"crash loop: {loop['crashes']} crashes in {loop['window_s'] / 60:.0f} min, "
                if loop
                else "restarting: "
            )
            + f"next start in {duration_text(server['next_start_in_s'])}[/]"
            + (f"; last crash log: {crash['log']}" if crash else ""),
            highlight=False,
            soft_wrap=True,
        )
    if crash:
        console.print(
            f"last crash {crash['time']}: tritonserver {crash['exit']}; log kept: {crash['log']}",
            highlight=False,
            soft_wrap=True,
        )
    limit = server.get("memory_limit") or {}
    if limit.get("note"):
        console.print(f"memory limit: {limit['note']}", highlight=False, soft_wrap=True)
    rec = server.get("last_recovery")
    if rec:
        console.print(f"last recovery {rec['time']}: {rec['model']} reloaded in {rec['seconds']} s", highlight=False)
    for name in server.get("recovering", []):
        console.print(
            f"[red]{name} is recovering[/]: its stub died; requests fail until it is reloaded", highlight=False
        )
    for fail in server.get("reload_failures", [])[-1:]:
        console.print(
            f"last failed reload {fail['time']}: {fail['model']}: {escape(fail['reason'])}; log: {fail['log']}",
            highlight=False,
            soft_wrap=True,
        )
    for name, reason in (server.get("failed") or {}).items():
        console.print(f"[red]{name} failed[/]: {escape(reason)}", highlight=False, soft_wrap=True)
    if server.get("state_unreadable"):
        console.print(
            f"[yellow]found from its processes[/]: its state file {server['state_unreadable']} cannot be "
            "read (its supervisor writes it again)",
            highlight=False,
            soft_wrap=True,
        )


@handle_errors
def stop_cmd(
    all_servers: Annotated[bool, typer.Option("--all", help="Stop every running zeroserve server.")] = False,
    host: Annotated[str | None, typer.Option("--host", help="Choose a server by host.")] = None,
    http_port: Annotated[
        int | None, typer.Option("--http-port", help="Choose a server by HTTP port.", callback=ChoosePort)
    ] = None,
    grpc_port: Annotated[
        int | None, typer.Option("--grpc-port", help="Choose a server by gRPC port.", callback=ChoosePort)
    ] = None,
    repository: Annotated[
        Path, typer.Option("--repository", help="Without ports: the server serving this repository is the one meant.")
    ] = DEFAULT_REPOSITORY,
    as_json: JsonOpt = False,
):
    """Stop a running server (the one chosen by its ports, else the one serving --repository, else the only one;
    --all for every one) and clean up after it.

    Ends tritonserver and every Python-backend stub it started, removes its shared-memory
    segments, state file, runtime folder and log. A server that died without a stop is marked
    dead (stubs and shared memory cleaned) and keeps its log until it is chosen by its ports
    or --all is given. Nothing to stop is not an error (exit 0).
    """
    report = stop.stop_servers(all_servers, host, http_port, grpc_port, repository)
    if as_json:
        print_json({**report, "pruned": [str(p) for p in report["pruned"]]})
        return
    for r in report["reaped"]:
        console.print(
            f"pid {r['pid']} had died without a stop: marked dead, "
            f"{len(r['killed'])} leftover process(es) killed, {len(r['shm_removed'])} shared-memory "
            "segment(s) removed",
            highlight=False,
        )
    for r in report["stopped"]:
        extra = [f"killed {len(r['killed'])} leftover process(es)"] if r["killed"] else []
        extra += [f"removed {len(r['shm_removed'])} shared-memory segment(s)"] if r["shm_removed"] else []
        console.print(
            f"stopped pid {r['pid']}{'' if r['graceful'] else ' (forced)'}"
            + (f"; {', '.join(extra)}" if extra else ""),
            highlight=False,
        )
    for s in report["removed"]:
        console.print(
            f"removed dead server run {s['run_id']} (pid {s['pid']}): its runtime folder and log", highlight=False
        )
    if not report["stopped"] and not report["removed"]:
        console.print(
            "no running zeroserve server"
            + (" matching the options" if host or http_port or grpc_port else "")
            + "; nothing to stop",
            highlight=False,
        )
    if report["kept"]:
        logs = ", ".join(s["log"] for s in report["kept"])
        console.print(
            f"{len(report['kept'])} dead server run(s) keep their logs ({logs}); choose one by its ports "
            "or use `zeroserve stop --all` to remove them",
            highlight=False,
            soft_wrap=True,
        )
    if report["pruned"]:
        console.print(
            f"pruned {len(report['pruned'])} orphaned runtime folder(s) under {st.runs_dir()}", highlight=False
        )

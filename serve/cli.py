"""`zeroserve serve`, `status` and `stop`."""

from __future__ import annotations

import os
import shlex
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape

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
from zeroserve.deploy.release import TARGET
from zeroserve.deploy.repository import DEFAULT_REPOSITORY
from zeroserve.errors import InputError, ServerError
from zeroserve.serve import server as srv
from zeroserve.serve import state as st
from zeroserve.serve import stop
from zeroserve.serve.cli_options import (
    GrpcPortOpt,
    HostOpt,
    HttpPortOpt,
    MetricsIntervalOpt,
    MetricsPortOpt,
    RepositoryOpt,
)
from zeroserve.serve.cli_views import print_endpoints, print_status, progress
from zeroserve.serve.detach import start_detached
from zeroserve.serve.docker import docker_plan
from zeroserve.serve.handle import READY_TIMEOUT_S
from zeroserve.serve.limits import memory_ceiling
from zeroserve.serve.metrics import DEFAULT_INTERVAL_MS
from zeroserve.serve.restarts import RestartPolicy
from zeroserve.serve.signals import stop_signals
from zeroserve.serve.status import collect_status, find_target
from zeroserve.serve.supervisor import HANG_TIMEOUT_S, Supervisor
from zeroserve.triton.ports import DEFAULT_HOST, DEFAULT_PORTS, bind_plan

if TYPE_CHECKING:  # mypy sees the value each choice stands for; typer gets the choice Enum at run time
    Engine = str
else:
    Engine = choices("Engine", ("embedded", "docker"))

# status and stop choose a running server by its ports
ChoosePort = port_callback()


def register(app: typer.Typer) -> None:
    app.command("serve")(serve_cmd)
    app.command("status")(status_cmd)
    app.command("stop")(stop_cmd)


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
    ] = READY_TIMEOUT_S,
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
    metrics_interval_ms: MetricsIntervalOpt = DEFAULT_INTERVAL_MS,
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
        cmd, warning = docker_plan(
            repository,
            TARGET.image,
            host,
            allow_remote,
            {"http": http_port, "grpc": grpc_port, "metrics": metrics_port},
        )
        if warning:
            err_console.print(f"[yellow]warning:[/] {escape(warning)}", highlight=False, soft_wrap=True)
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
    memory_ceiling(memory_limit, gpu=False)  # a bad size is refused before anything starts
    start = {  # start_server's options, the same for a detached and a foreground server
        "host": host,
        "http_port": http_port,
        "grpc_port": grpc_port,
        "metrics_port": metrics_port,
        "ort_threads": ort_threads,
        "timeout": timeout,
        "memory_limit": memory_limit,
        "allow_client_shm": allow_client_shm,
        "metrics_interval_ms": metrics_interval_ms,
    }
    if detach:
        with progress() as on_model:
            state = start_detached(
                repository, models, policy=policy, hang_timeout=hang_timeout, on_model=on_model, **start
            )
        print_endpoints(state)
        console.print(
            f"detached: supervisor pid {state.supervisor.pid if state.supervisor else None}, tritonserver pid "
            f"{state.pid}, log {state.log}; stop it with `zeroserve stop`",
            highlight=False,
        )
        return
    with stop_signals():
        _serve_foreground(repository, models, policy, hang_timeout, **start)


def _serve_foreground(repository: Path, models, policy: RestartPolicy, hang_timeout: float, **options) -> None:
    """Start the server with this process as its supervisor and supervise it until Ctrl-C or SIGTERM."""
    server = None
    try:
        me = {"pid": os.getpid(), "create_time": st.create_time(os.getpid())}
        with progress() as on_model:
            server = srv.start_server(repository, models, on_model=on_model, supervisor=me, **options)
        print_endpoints(server.state)
        console.print(
            "serving (supervised: a crashed server is restarted, a dead model reloaded); Ctrl-C stops the server",
            highlight=False,
        )
        Supervisor(
            server, policy, say=lambda text: err_console.print(text, highlight=False), hang_timeout=hang_timeout
        ).run()
    except KeyboardInterrupt:  # Ctrl-C or SIGTERM (signals.Terminated)
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


def _bind_checks(host: str, allow_remote: bool, *ports: int) -> tuple:
    """`ports.bind_plan`, its warning and the ports it picked printed."""
    host, chosen, warning, picked = bind_plan(host, allow_remote, ports)
    if warning:
        err_console.print(f"[yellow]warning:[/] {escape(warning)}", highlight=False, soft_wrap=True)
    if picked:
        err_console.print(f"free port(s) chosen on {host}: {', '.join(picked)}", highlight=False)
    return (host, *chosen)


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
    print_status(report, artifacts, repository)
    raise typer.Exit(report["exit_code"])


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

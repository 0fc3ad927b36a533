"""`zeroserve serve`, `status` and `stop`."""

from __future__ import annotations

import shlex
import shutil
import signal
import threading
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from zeroserve.artifacts import DEFAULT_ARTIFACTS
from zeroserve import registry
from zeroserve.cliutil import (ArtifactsOpt, JsonOpt, ModelFilesOpt, choices, console, err_console, handle_errors,
                               print_json)
from zeroserve.errors import InputError, ServerError
from zeroserve.serve import server as srv
from zeroserve.serve import state as st
from zeroserve.serve.docker import docker_command
from zeroserve.serve.ports import DEFAULT_HOST, DEFAULT_PORTS
from zeroserve.serve.repository import DEFAULT_REPOSITORY
from zeroserve.serve.status import collect_status, find_server

Engine = choices("Engine", ("embedded", "docker"))

RepositoryOpt = Annotated[Path, typer.Option("--repository", help="The canonical Triton model repository.")]
HostOpt = Annotated[str, typer.Option("--host", help="Address the server binds to (and clients reach).")]
HttpPortOpt = Annotated[int, typer.Option("--http-port", help="KServe v2 HTTP port.")]
GrpcPortOpt = Annotated[int, typer.Option("--grpc-port", help="KServe v2 gRPC port.")]
MetricsPortOpt = Annotated[int, typer.Option("--metrics-port", help="Prometheus metrics port.")]


def register(app: typer.Typer) -> None:
    app.command("serve")(serve_cmd)
    app.command("status")(status_cmd)
    app.command("stop")(stop_cmd)


def _target_image() -> str:
    """The NGC image of the Triton release the canonical repository targets (deploy's constant)."""
    from zeroserve.serve.target import TARGET

    return TARGET.image


class _Terminated(Exception):
    """SIGTERM in the foreground: stop the server the same way as Ctrl-C."""


def _on_sigterm(signum, frame):
    raise _Terminated()


@handle_errors
def serve_cmd(
    repository: RepositoryOpt = DEFAULT_REPOSITORY,
    models: Annotated[list[str] | None, typer.Option(
        "--models", help="Model names, the course's or your own (every deployed format), or Triton names (one "
        "format); default: all deployed.")] = None,
    host: HostOpt = DEFAULT_HOST,
    http_port: HttpPortOpt = DEFAULT_PORTS["http"],
    grpc_port: GrpcPortOpt = DEFAULT_PORTS["grpc"],
    metrics_port: MetricsPortOpt = DEFAULT_PORTS["metrics"],
    ort_threads: Annotated[int | None, typer.Option(
        help="ONNX Runtime (and TorchScript) intra-op threads per instance "
             "(default: the config's intra_op_thread_count / INTRA_OP_THREAD_COUNT, else 1).")] = None,
    detach: Annotated[bool, typer.Option("--detach", help="Return once every model is READY; "
                                                          "the server runs on until `zeroserve stop`.")] = False,
    engine_name: Annotated[Engine, typer.Option("--engine", help="embedded (tritonserver from the nvidia-pytriton "
                                                                 "wheel) or docker (NGC image on a GPU host).")]
    = "embedded",
    print_only: Annotated[bool, typer.Option("--print", help="With --engine docker: print the docker command.")] = False,
    timeout: Annotated[float, typer.Option(help="One deadline in seconds for the server to come up and every model "
                                                "to be READY.")] = srv.READY_TIMEOUT_S,
    model_files: ModelFilesOpt = None,
):
    """Serve the model repository with a real Triton server (embedded by default) until Ctrl-C or SIGTERM.

    The embedded engine serves a runtime copy of the repository (under the cache folder) through
    Triton's Python backend; the canonical repository is never modified. Exit 3 when the server
    cannot start (port in use, binary missing, a model failing to load), 2 for a bad repository.
    """
    registry.select(["all"], model_files)  # a bad model file is refused here; names resolve in the repository
    if engine_name == "docker":
        cmd = docker_command(repository, _target_image(),
                                    {"http": http_port, "grpc": grpc_port, "metrics": metrics_port})
        if print_only:
            console.print(shlex.join(cmd), highlight=False, soft_wrap=True)
            return
        if shutil.which("docker") is None:
            raise ServerError("docker is not installed here; use --print and run the command on a GPU host")
        import os

        os.execvp(cmd[0], cmd)
    if print_only:
        raise InputError("--print goes with --engine docker")

    previous = signal.signal(signal.SIGTERM, _on_sigterm)
    # Ctrl-C stops the server even when this process started with SIGINT ignored (a shell's `&`).
    previous_int = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        server = _start_with_progress(repository, models, host, http_port, grpc_port, metrics_port,
                                      ort_threads, detach, timeout)
        _print_endpoints(server)
        if detach:
            console.print(f"detached: pid {server.pid}, log {server.log}; stop it with `zeroserve stop`",
                          highlight=False)
            return
        console.print("serving; Ctrl-C stops the server", highlight=False)
        try:
            while server.alive():
                time.sleep(0.5)
        except (KeyboardInterrupt, _Terminated):
            err_console.print("stopping...")
            report = server.stop()
            console.print(f"stopped pid {report['pid']}"
                          f"{'' if report['graceful'] else ' (forced)'}; stubs and shared memory cleaned",
                          highlight=False)
            return
        reason = f"tritonserver exited on its own with code {server.process.returncode}"
        server.stop(keep_run=True, reason=reason)
        raise ServerError(f"{reason}: {srv.log_tail(server.log)} (log, kept until `zeroserve stop --all`: "
                          f"{server.log})")
    finally:
        signal.signal(signal.SIGTERM, previous)
        signal.signal(signal.SIGINT, previous_int)


def _start_with_progress(repository, models, host, http_port, grpc_port, metrics_port, ort_threads, detach,
                         timeout) -> srv.Server:
    columns = (SpinnerColumn(), TextColumn("{task.description}"), TextColumn("{task.fields[state]}"),
               TimeElapsedColumn())
    lock = threading.Lock()
    tasks: dict[str, int] = {}
    with Progress(*columns, console=err_console, transient=False) as progress:
        def on_model(name: str, state: str, seconds: float) -> None:
            with lock:
                if name not in tasks:
                    tasks[name] = progress.add_task(name, state="loading", total=1)
                done = state in ("READY", "FAILED", "timed out", "skipped")
                colour = {"READY": "green", "FAILED": "red", "timed out": "red", "skipped": "dim"}.get(state, "yellow")
                progress.update(tasks[name], state=f"[{colour}]{state}[/]"
                                + (f" in {seconds:.1f} s" if done else ""), completed=1 if done else 0)
                if done:
                    progress.stop_task(tasks[name])

        return srv.start_server(repository, models, host=host, http_port=http_port, grpc_port=grpc_port,
                                   metrics_port=metrics_port, ort_threads=ort_threads, detach=detach,
                                   timeout=timeout, on_model=on_model)


def _print_endpoints(server: srv.Server) -> None:
    s = server.state
    table = Table(title=f"tritonserver pid {server.pid}: {len(s['models'])} models READY")
    table.add_column("endpoint")
    table.add_column("address")
    table.add_row("HTTP (KServe v2)", f"http://{s['host']}:{s['http_port']}")
    table.add_row("gRPC (KServe v2)", f"{s['host']}:{s['grpc_port']}")
    table.add_row("metrics", f"http://{s['host']}:{s['metrics_port']}/metrics")
    table.add_row("runtime repository", f"{s['runtime_dir']}/repository")
    table.add_row("log", s["log"])
    console.print(table)


@handle_errors
def status_cmd(
    artifacts: ArtifactsOpt = DEFAULT_ARTIFACTS,
    repository: RepositoryOpt = DEFAULT_REPOSITORY,
    host: Annotated[str | None, typer.Option("--host", help="Server host (default: the running server's).")] = None,
    http_port: Annotated[int | None, typer.Option("--http-port", help="Server HTTP port "
                                                                      "(default: the running server's).")] = None,
    grpc_port: Annotated[int | None, typer.Option("--grpc-port", help="Choose a server by its gRPC port.")] = None,
    model_files: ModelFilesOpt = None,
    as_json: JsonOpt = False,
):
    """Where each model stands per format: trained (metric), exported (gate), deployed (version, sha), served."""
    server = find_server(host, http_port, grpc_port)
    report = collect_status(artifacts, repository, server, model_files)
    if as_json:
        print_json(report)
        return
    server = report["server"]
    title = "no running server" if server is None else f"server {server['host']}:{server['http_port']}" + (
        f" (pid {server['pid']})" if server.get("pid") else "")
    table = Table(title=f"zeroserve status: {artifacts}/, {repository}/, {title}")
    for col in ("model", "format", "data", "trained", "exported", "deployed", "served"):
        table.add_column(col, **({"max_width": 20, "no_wrap": True, "overflow": "ellipsis"} if col == "data" else {}))
    mark = {"PASS": "green", "READY": "green", "yes": "green", "no": "dim", "no server": "dim"}
    paint = lambda text, state: f"[{mark.get(state, 'yellow')}]{text}[/]"  # noqa: E731
    shown: set[str] = set()
    for row in report["models"]:
        t, e, d, s = row["trained"], row["exported"], row["deployed"], row["served"]
        trained = t["state"] if "metric" not in t else f"{t['state']} {t['metric']} {t['value']:.4f}"
        deployed = d["state"] if d["state"] == "no" else f"v{d['version']} {str(d['sha256'])[:12]}"
        data, first = row["data"], row["model"] not in shown  # the data column once per model
        shown.add(row["model"])
        source = escape(data["source"]) if data["from"] == "train.json" else f"[dim]{escape(data['source'])}[/]"
        source = "" if not first else f"[yellow]fell back: {source}[/]" if data["note"] else source
        table.add_row(row["model"], row["format"], source,
                      paint(trained, t["state"]), paint(e["state"], e["state"]),
                      paint(deployed, d["state"]), paint(s["state"], s["state"]))
    console.print(table)
    if server and server.get("error"):
        err_console.print(f"[yellow]warning:[/] {server['error']}", highlight=False)
    for d in report["dead"]:
        console.print(f"dead server run {d['run_id']} (pid {d['pid']}, http port {d['http_port']}): "
                      f"{d.get('reason') or 'not yet reaped'}; log: {d['log']}", highlight=False, soft_wrap=True)


@handle_errors
def stop_cmd(
    all_servers: Annotated[bool, typer.Option("--all", help="Stop every running zeroserve server.")] = False,
    host: Annotated[str | None, typer.Option("--host", help="Choose a server by host.")] = None,
    http_port: Annotated[int | None, typer.Option("--http-port", help="Choose a server by HTTP port.")] = None,
    grpc_port: Annotated[int | None, typer.Option("--grpc-port", help="Choose a server by gRPC port.")] = None,
    as_json: JsonOpt = False,
):
    """Stop a running server (the only one, or the one chosen; --all for every one) and clean up after it.

    Ends tritonserver and every Python-backend stub it started, removes its shared-memory
    segments, state file, runtime folder and log. A server that died without a stop is marked
    dead (stubs and shared memory cleaned) and keeps its log until it is chosen by its ports
    or --all is given. Nothing to stop is not an error (exit 0).
    """
    report = srv.stop_servers(all_servers, host, http_port, grpc_port)
    if as_json:
        print_json({**report, "pruned": [str(p) for p in report["pruned"]]})
        return
    for r in report["reaped"]:
        console.print(f"pid {r['pid']} had died without a stop: marked dead, "
                      f"{len(r['killed'])} leftover process(es) killed, {len(r['shm_removed'])} shared-memory "
                      "segment(s) removed", highlight=False)
    for r in report["stopped"]:
        extra = [f"killed {len(r['killed'])} leftover process(es)"] if r["killed"] else []
        extra += [f"removed {len(r['shm_removed'])} shared-memory segment(s)"] if r["shm_removed"] else []
        console.print(f"stopped pid {r['pid']}{'' if r['graceful'] else ' (forced)'}"
                      + (f"; {', '.join(extra)}" if extra else ""), highlight=False)
    for s in report["removed"]:
        console.print(f"removed dead server run {s['run_id']} (pid {s['pid']}): its runtime folder and log",
                      highlight=False)
    if not report["stopped"] and not report["removed"]:
        console.print("no running zeroserve server" + (" matching the options" if host or http_port or grpc_port
                                                       else "") + "; nothing to stop", highlight=False)
    if report["kept"]:
        logs = ", ".join(s["log"] for s in report["kept"])
        console.print(f"{len(report['kept'])} dead server run(s) keep their logs ({logs}); choose one by its ports "
                      "or use `zeroserve stop --all` to remove them", highlight=False, soft_wrap=True)
    if report["pruned"]:
        console.print(f"pruned {len(report['pruned'])} orphaned runtime folder(s) under {st.runs_dir()}",
                      highlight=False)

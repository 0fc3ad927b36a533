"""What `serve`, `status` and `stop` show: each model's load as it happens, the endpoints, the status table.

Renderings only: the commands (serve/cli.py) call the library and hand its records here.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

from rich.markup import escape
from rich.progress import Progress, SpinnerColumn, TaskID, TextColumn, TimeElapsedColumn
from rich.table import Table

from zeroserve.app.cliutil import console, err_console
from zeroserve.records.state import ServerState
from zeroserve.serve.server import NOT_SERVED
from zeroserve.serve.status import duration_text
from zeroserve.triton.ports import hostport


@contextlib.contextmanager
def progress() -> Iterator[Callable[[str, str, float], None]]:
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
                done = state in ("READY", "FAILED", "timed out", "skipped", NOT_SERVED)
                colour = {
                    "READY": "green",
                    "FAILED": "red",
                    "timed out": "red",
                    "skipped": "dim",
                    NOT_SERVED: "red",
                }.get(state, "yellow")
                progress.update(
                    tasks[name],
                    state=f"[{colour}]{state}[/]" + (f" in {seconds:.1f} s" if done else ""),
                    completed=1 if done else 0,
                )
                if done:
                    progress.stop_task(tasks[name])

        yield on_model


def print_endpoints(s: ServerState) -> None:
    failed = s.failed or {}
    models = s.models or []
    ready = len(models) - len(failed)
    table = Table(title=f"tritonserver pid {s.pid}: {ready} of {len(models)} models READY")
    table.add_column("endpoint")
    table.add_column("address")
    table.add_row("HTTP (KServe v2)", f"http://{hostport(s.host, s.http_port)}")
    table.add_row("gRPC (KServe v2)", hostport(s.host, s.grpc_port or 0))
    table.add_row("metrics", f"http://{hostport(s.host, s.metrics_port or 0)}/metrics")
    table.add_row("runtime repository", f"{s.runtime_dir}/repository")
    table.add_row("log", s.log or "")
    console.print(table)
    for name, reason in failed.items():
        err_console.print(f"[red]model {name} failed to load[/] (the others serve): {escape(reason)}", highlight=False)
    for name, reason in (s.unservable or {}).items():
        err_console.print(f"[red]not served:[/] {escape(name)}: {escape(reason)}", highlight=False)


def print_figures(figures: dict) -> None:
    """Requests and failures per model since the server started (its metrics endpoint), its CPU and memory."""
    if figures.get("error"):
        console.print(f"[yellow]metrics:[/] {escape(figures['error'])}", highlight=False, soft_wrap=True)
    for name, m in (figures.get("models") or {}).items():
        failed = f"[red]{m['failure']} failed[/]" if m["failure"] else "0 failed"
        reasons = ", ".join(f"{r} {v}" for r, v in m["failure_by_reason"].items())
        console.print(
            f"{escape(name)}: {m['requests']} requests since start (warm-up included), {failed}"
            + (f" ({reasons})" if reasons else ""),
            highlight=False,
            soft_wrap=True,
        )
    res = figures.get("resources")
    if res:
        console.print(
            f"server process tree (tritonserver and {res['processes'] - 1} stubs): CPU {res['cpu_cores']:.2f} "
            f"cores, RSS {res['rss_mb']:.0f} MB",
            highlight=False,
        )


def print_supervision(server: dict) -> None:
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


def print_status(report: dict, artifacts: Path, repository: Path) -> None:
    """`zeroserve status`'s table, the models it cannot place, the supervision record, dead runs and the verdict."""
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
        source = escape(data["source"]) if data["from"] != "registry" else f"[dim]{escape(data['source'])}[/]"
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
    if server and server.get("figures"):
        print_figures(server["figures"])
    if server and server.get("model_control"):
        print_supervision(server)
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

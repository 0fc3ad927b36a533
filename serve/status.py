"""Where each model stands, per format: trained, exported, deployed, served, from each stage's own record.

Only reads: the records, the state files and the server's repository index.

`status` exits with what a script or a probe can trust (`exit_code`): 0 when every model the
run serves is READY and the server is supervised and running; 1 when one is recovering or
failed (at start, a failed reload, given up), or the server is restarting, dead or
unsupervised; 3 when no server runs or none answers.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from zeroserve import formats as F
from zeroserve import registry
from zeroserve.errors import ServerError, ZeroserveError
from zeroserve.records.export import ExportFailures, ExportRecord
from zeroserve.records.layout import ModelFolder, RepositoryLayout
from zeroserve.records.manifest import Manifest, ManifestEntry
from zeroserve.records.state import Recovering, ServerState
from zeroserve.records.train import TrainRecord
from zeroserve.serve import metrics
from zeroserve.serve import state as st
from zeroserve.triton.control import Control


def _trained(rec: TrainRecord | None) -> dict[str, Any]:
    if rec is None:
        return {"state": "no"}
    return {"state": rec.status, "metric": rec.metric.name, "value": rec.metric.value}


def _data(rec: TrainRecord | None, folder: ModelFolder, spec) -> dict[str, Any]:
    """What the model trained on (its train record), else what its registry entry would read."""
    if rec is None:
        source = spec.data.description if spec.data else f"none (checkpoint {spec.checkpoint})"
        return {"source": source, "note": "", "from": "registry"}
    return {"source": rec.data.source, "note": rec.data.note or "", "from": folder.train_record.name}


def _exported(rec: ExportRecord | None, failures: ExportFailures | None, fmt: str) -> dict[str, Any]:
    entry = rec.formats.get(fmt) if rec is not None else None
    if entry is not None:
        return {"state": entry.status, "sha256": entry.sha256}
    failed = failures.formats.get(fmt) if failures is not None else None
    if failed is not None:
        return {"state": failed.status}
    return {"state": "no"}


def _deployed(repository: Path, manifest: dict[str, ManifestEntry], name: str) -> dict[str, Any]:
    entry = manifest.get(name)
    if entry is None or not (repository / name / "config.pbtxt").is_file():
        return {"state": "no"}
    return {"state": "yes", "version": entry.version, "sha256": entry.artifact_sha256}


RECOVERING = "recovering"
FAILED = "failed"
EXIT_OK, EXIT_NOT_READY, EXIT_NO_SERVER = 0, 1, 3


def supervision(state: ServerState) -> dict[str, Any]:
    """What the supervisor recorded: restarts, the last crash (with its kept log), recoveries, models recovering."""
    import time

    sup = state.supervisor
    crashes = state.crashes or []
    supervised = sup is not None and st.process_of(sup.pid, sup.create_time) is not None
    next_start = state.next_start
    starting = state.status == st.STARTING
    return {
        "supervisor_pid": sup.pid if sup is not None else None,
        "supervised": supervised,
        # a supervisor was recorded and is gone: nothing restarts or recovers this server any more
        "supervisor_gone": bool(sup is not None and sup.to_json()) and not supervised,
        "next_start_in_s": round(max(0.0, float(next_start) - time.time()), 1) if next_start and starting else None,
        "crash_loop": state.crash_loop if starting else None,
        "memory_limit": state.memory_limit,
        "model_control": state.model_control,
        "restarts": state.restarts or 0,
        "last_crash": crashes[-1].to_json() if crashes else None,
        "recovered": state.recovered or 0,
        "last_recovery": state.recoveries[-1].to_json() if state.recoveries else None,
        "recovering": sorted(state.recovering or {}),
        "failed": state.failed or {},
        "given_up": list(state.given_up or []),
        "reload_failures": [f.to_json() for f in state.reload_failures or []],
        "status": state.status,
        "models_served": list(state.models or []),
        "state_unreadable": state.state_unreadable,
    }


def model_serving_state(state: ServerState | None, triton_name: str) -> str | None:
    """ "recovering" when the run's supervisor is reloading this model, else None (ask the server)."""
    return RECOVERING if state is not None and triton_name in (state.recovering or {}) else None


def find_server(
    host: str | None, http_port: int | None, grpc_port: int | None, repository: Path | None = None
) -> ServerState | None:
    """The server to ask (`state.choose`): the one named by ports, the one serving `repository`, the only one
    running; None when none runs and none was named."""
    try:
        return st.resolve_server(host=host, http_port=http_port, grpc_port=grpc_port, repository=repository)
    except ServerError:
        if http_port is not None:  # a server zeroserve did not start (docker, another host): ask it directly
            return ServerState(run_id="", host=host or "127.0.0.1", http_port=http_port, grpc_port=None, pid=None)
        return None


def find_target(
    host: str | None, http_port: int | None, grpc_port: int | None, repository: Path
) -> tuple[ServerState | None, str | None]:
    """What `status` reports on: (the server to ask, or None; the run id of the dead run meant, or None).

    `find_server`'s choice, except that from a folder whose own run died, that dead run is the one meant
    (not another server that happens to run); with no live server, the dead run the ports name.
    """
    server = find_server(host, http_port, grpc_port, repository)
    live = server is not None and server.pid is not None
    dead = [] if live else st.choose(st.dead_servers(), host, http_port, grpc_port, repository)
    if host is None and http_port is None and grpc_port is None:
        here = str(Path(repository).resolve())
        dead_here = [s for s in st.dead_servers() if s.repository == here]
        if dead_here and (server is None or server.repository != here):
            server, dead = None, dead_here
    return server, dead[-1].run_id if dead else None


def _dead_reason(state: ServerState) -> str:
    """Why a run is dead: its recorded reason, else what its processes tell."""
    if state.reason:
        return state.reason
    sup = state.supervisor
    if sup is not None and sup.to_json() and st.process_of(sup.pid, sup.create_time) is None:
        return (
            f"its supervisor (pid {sup.pid}) is gone and tritonserver ended with it (not yet reaped: the "
            "next `serve` or `stop` cleans after it)"
        )
    return "the tritonserver process died without a stop (not yet reaped)"


def _dead_run(state: ServerState) -> dict[str, Any]:
    """A dead run as `status` lists it: where it listened, its log, when and why it ended, its crashes."""
    return {
        **state.model_dump(include={"run_id", "pid", "http_port", "log", "ended"}),
        "reason": _dead_reason(state),
        "crashes": [c.to_json() for c in state.crashes or []],
    }


def collect_status(
    artifacts: Path,
    repository: Path,
    server: ServerState | None,
    model_files: list[Path] | None = None,
    dead_meant: str | None = None,
) -> dict[str, Any]:
    """One row per model (the course's and the user's own) and format (variants once made), and the server asked.

    Returns:
        {"server": {..., "other_models": {triton name: state} (served, no registry entry), "unservable":
        {folder: reason}} | None, "models": [{"model", "format", "triton_name", "data", "trained",
        "exported", "deployed", "served"}], "dead": [{"run_id", "pid", "http_port", "log",
        "reason", "ended"}]}; each stage entry has a "state"; "data" has "source", "note"
        (why it fell back, with the fetch command) and "from" (train.json, or the registry when
        untrained). "dead" lists the runs whose server is gone, with the log each keeps until
        `zeroserve stop`.
    """
    artifacts, repository = Path(artifacts), Path(repository)
    manifest_read = Manifest.load_if_valid(RepositoryLayout(repository).manifest)
    manifest = manifest_read.models if manifest_read is not None else {}
    served: dict[str, str] | None = None
    server_note = None
    if server is not None:
        try:
            with Control.of(server) as control:
                served = control.states()
        except ZeroserveError as exc:  # typed: did not answer, timed out, refused the key, failed
            server_note = str(exc)
    recovering = (server.recovering if server is not None else None) or {}
    failed = (server.failed if server is not None else None) or {}
    server_gone = server is not None and supervision(server)["supervisor_gone"]
    rows = []
    for spec in registry.select(["all"], model_files)[0]:
        folder = ModelFolder.of(artifacts, spec.name)
        own = {"state": "own checkpoint", "path": str(spec.checkpoint)}  # a user's weights, not trained here
        train = TrainRecord.load_if_valid(folder.train_record)  # each record read once per model, not per format
        export = ExportRecord.load_if_valid(folder.export_record)
        failures = ExportFailures.load_if_valid(folder.export_failures)
        trained, data = _trained(train) if spec.checkpoint is None else own, _data(train, folder, spec)
        for fmt in F.FORMATS.values():
            name = fmt.triton_name(spec.name)
            if served is None:
                serving = {"state": "no server" if server is None or server_note else "?"}
            else:
                serving = _serving(name, served, recovering, failed, server_gone)
                if fmt.gpu_only and name not in served:
                    serving["note"] = "runs on GPU instances only"
            row: dict[str, Any] = {
                "model": spec.name,
                "format": fmt.key,
                "triton_name": name,
                "data": data,
                "trained": trained,
                "exported": _exported(export, failures, fmt.key),
                "deployed": _deployed(repository, manifest, name),
                "served": serving,
            }
            present = any(
                row[k]["state"] not in ("no", "not loaded", "no server", "?")
                for k in ("exported", "deployed", "served")
            )
            if fmt.base is None or present:  # a variant gets a row once some stage has made it
                rows.append(row)
    info: dict[str, Any] | None = None
    if server is not None:
        info = {**server.model_dump(include={"pid", "host", "http_port", "grpc_port", "metrics_port"})}
        info.update(supervision(server))
        if server_note:
            info["error"] = server_note
        # models no registry entry describes (hand-written folders, another Triton's), and folders not served
        known = {r["triton_name"] for r in rows}
        info["other_models"] = {n: state for n, state in sorted((served or {}).items()) if n not in known}
        info["unservable"] = dict(server.unservable or {})
        run_models = _run_models(server, served, recovering, failed, server_gone)
        info["models"] = run_models
        info["ready"] = served is not None and all(m["state"] == "READY" for m in run_models.values())
        # the server's own figures: requests and failures per model (metrics endpoint), CPU and memory (process tree)
        info["figures"] = metrics.status_figures(server)
    dead = [_dead_run(s) for s in st.dead_servers()]
    report: dict[str, Any] = {
        "server": info,
        "models": rows,
        "dead": dead,
        "dead_meant": dead_meant,
        "unreadable_state_files": [str(p) for p in st.unreadable_states()],
    }
    code, why = exit_code(report)
    report["exit_code"], report["verdict"] = code, why
    return report


def _serving(
    name: str, served: dict[str, str], recovering: dict[str, Recovering], failed: dict, gone: bool
) -> dict[str, Any]:
    """How one model stands on a server that answered: Triton's index state, unless the run says otherwise.

    A run whose supervisor is gone is "unsupervised" (nothing recovers a dead stub); a model whose stubs
    died is "recovering" (Triton still says READY, but requests fail until it is reloaded); one that
    failed at start, whose reload failed or that was given up is "failed" (the index may still say READY).
    """
    index = served.get(name, "not loaded")
    if gone:
        return {"state": "unsupervised", "index": index}
    if name in recovering:
        return {"state": RECOVERING, "since": recovering[name].since}
    if name in failed:
        return {"state": FAILED, "reason": failed[name], "index": index}
    return {"state": index}


def _run_models(
    server: ServerState, served: dict[str, str] | None, recovering: dict, failed: dict, gone: bool = False
) -> dict:
    """Every model the run serves (its state's `models`; the index's for a server zeroserve did not start):
    name -> `_serving`'s answer, or "no answer" when the server did not answer."""
    names = list(server.models or []) or sorted(served or {})
    return {
        n: {"state": "no answer"} if served is None else _serving(n, served, recovering, failed, gone) for n in names
    }


def duration_text(seconds: float) -> str:
    """`4 min 12 s` or `12 s`."""
    seconds = int(round(seconds))
    return f"{seconds // 60} min {seconds % 60} s" if seconds >= 60 else f"{seconds} s"


def exit_code(report: dict[str, Any]) -> tuple[int, str]:
    """What `status` exits with, and why in one line (docs: docs/serving.md, "`status` exit codes")."""
    server = report.get("server")
    dead = next((d for d in report.get("dead") or [] if d["run_id"] == report.get("dead_meant")), None)
    if dead is not None and (server is None or server.get("pid") is None):
        return EXIT_NOT_READY, f"dead: {dead['reason']}; log: {dead['log']}"
    if server is None:
        return EXIT_NO_SERVER, "no zeroserve server is running"
    if server.get("pid") is not None:  # one zeroserve started: its supervisor and status count first
        if server.get("status") == st.DEAD:
            return EXIT_NOT_READY, "the server is dead"
        if server.get("supervisor_gone"):
            return EXIT_NOT_READY, (
                f"dead: its supervisor (pid {server.get('supervisor_pid')}) is gone, so nothing "
                "restarts or recovers this server; `zeroserve stop` it and serve again"
            )
        if server.get("status") == st.STARTING:
            loop = server.get("crash_loop")
            when = server.get("next_start_in_s")
            return EXIT_NOT_READY, (
                ("restarting" if server.get("last_crash") else "starting")
                + (f" (crash loop: {loop['crashes']} crashes in {loop['window_s'] / 60:.0f} min)" if loop else "")
                + (f", next start in {duration_text(when)}" if when else "")
            )
    if server.get("error"):
        return EXIT_NO_SERVER, f"the server does not answer: {server['error']}"
    if server.get("pid") is not None and not server.get("supervised"):
        return EXIT_NOT_READY, "no supervisor runs for this server"
    bad = {n: m["state"] for n, m in (server.get("models") or {}).items() if m["state"] != "READY"}
    if bad:
        return EXIT_NOT_READY, "not READY: " + ", ".join(f"{n} ({s})" for n, s in bad.items())
    if not server.get("models"):
        return EXIT_NOT_READY, "the server serves no model"
    return EXIT_OK, "every model READY, supervised"

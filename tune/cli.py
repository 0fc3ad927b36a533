"""`zeroserve tune`: the best serving configuration under a latency budget, measured on a private server."""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from zeroserve import formats as F
from zeroserve import registry
from zeroserve.app.cliutil import JsonOpt, ModelFilesOpt, console, err_console, handle_errors, print_json
from zeroserve.deploy.repository import DEFAULT_REPOSITORY
from zeroserve.errors import CheckFailed, InputError
from zeroserve.options import from_command_line, given_params, keyword, typer_parameters
from zeroserve.records.tune import TuneRecord
from zeroserve.serve.signals import Terminated, stop_signals


def register(app: typer.Typer) -> None:
    app.command("tune")(_command())


def tune_cmd(**values) -> None:
    """Find the serving configuration with the highest throughput within a latency budget, on a private server.

    Starts its own embedded server on free loopback ports (explicit model control, stopped at the end,
    also after Ctrl-C), loads each candidate config under its own name, measures it with the perf
    engine and unloads it; the served server and the repository are not touched unless --apply.
    Exit 0 with a best config; 1 when none meets the budget or --max-minutes ran out; 2 for a budget
    below the server's floor, a model not deployed, or options that leave no candidate; 3 server.
    """
    from zeroserve.tune.options import Options
    from zeroserve.tune.runner import run_tune

    given = given_params(values.pop("ctx"))
    spec = registry.get(values["model"], values["model_files"])
    fmt, repository, as_json = values["fmt"], values["repository"], values["as_json"]
    if fmt is not None:
        F.get(fmt)
    if values["revert"]:
        if values["apply"] or "budget_ms_0" in given:
            raise InputError("--revert takes no measurement: give it without --apply and --latency-budget-ms")
        _revert(spec, repository, fmt, as_json)
        return
    opts = from_command_line(Options, values, given)
    on_event = None if as_json else _on_event
    try:
        with stop_signals():
            rec = run_tune(spec, repository, opts, fmt=fmt, on_event=on_event)
    except Terminated:
        err_console.print("terminated: the private server was stopped")
        raise typer.Exit(143) from None
    _finish(rec, spec, repository, values["apply"], values["report"], as_json)


def _revert(spec, repository: Path, fmt: str | None, as_json: bool) -> None:
    from zeroserve.tune import apply as ap
    from zeroserve.tune.tuner import deployed_formats

    done = [
        ap.revert_tuning(repository, name)
        for name in deployed_formats(spec, repository, fmt).values()
        if (repository / name / ap.PREVIOUS).is_file()
    ]
    if not done:
        raise InputError(f"{spec.name} has no applied tuning to revert in {repository}")
    if as_json:
        print_json({"reverted": done})
    else:
        for e in done:
            console.print(f"reverted {e['name']} to its config from before tuning", highlight=False)


def _on_event(kind: str, data: dict) -> None:
    if kind == "server":
        if data["state"] == "ready":
            err_console.print(
                f"private server pid {data['pid']} on 127.0.0.1 (http {data['http_port']}, grpc "
                f"{data['grpc_port']}), explicit model control",
                highlight=False,
            )
        elif data["state"] == "stopped":
            err_console.print(f"private server pid {data['pid']} stopped", highlight=False)
    elif kind == "measured":
        m = data["measurement"]
        what = (
            f"{m.throughput:.0f} infer/s at c={m.concurrency}"
            if m.meets_budget
            else m.error or "over the budget at c=1"
        )
        err_console.print(
            f"  {escape(data['candidate'].label())}{' (deployed)' if data.get('deployed') else ''}: {escape(what)}",
            highlight=False,
        )


def _finish(rec: TuneRecord, spec, repository: Path, apply: bool, report: Path | None, as_json: bool) -> None:
    """Apply the chosen config when asked, write the report, print, and exit 1 when nothing qualified."""
    from zeroserve.tune import apply as ap
    from zeroserve.tune import report as rp
    from zeroserve.tune.search import DIMENSIONS, Candidate

    applied = None
    chosen = rec.chosen
    if apply and rec.outcome.exit_code == 0 and chosen and not rec.chosen_is_deployed:
        c = Candidate(**{d: getattr(chosen.candidate, d) for d in DIMENSIONS})
        name = rec.formats[c.fmt]
        measurement = {
            "throughput": chosen.throughput,
            "concurrency": chosen.concurrency,
            "latency_ms": chosen.latency_ms,
            "p50_ms": chosen.p50_ms,
            "p99_ms": chosen.p99_ms,
            "server_resources": chosen.server_resources.to_json() if chosen.server_resources else None,
            "side_by_side_ratio": rec.gain,
        }
        context = {
            "latency_budget_ms": rec.latency_budget_ms,
            "latency_metric": rec.latency_metric,
            "protocol": rec.protocol,
            "search": rec.search,
            "min_throughput": rec.min_throughput,
        }
        tuned_on = rec.tuned_on.to_json() if rec.tuned_on else {}
        applied = ap.apply_tuning(repository, name, c, measurement, tuned_on, context)
    tuning = applied.tuning if applied else None
    rec.applied = applied.name if applied else None
    rec.applied_engine_differs = tuning.engine_differs if tuning else None
    paths = rp.write_report(rec, report or Path("reports") / "tune" / spec.name)
    if as_json:
        rec.report = {k: str(v) for k, v in paths.items()}  # --json's output only: tune.json is written already
        print_json(rec.to_json())
    else:
        console.print(rp.table(rec))
        for line in rp.closing(rec):
            console.print(escape(line), highlight=False, soft_wrap=True)
        for note in rec.notes:
            console.print(f"note: {escape(note)}", highlight=False, soft_wrap=True)
        if applied:
            console.print(
                f"applied to {repository / applied.name}/config.pbtxt (previous config: "
                f"{ap.PREVIOUS}; undo with `zeroserve tune {spec.name} --revert`)",
                highlight=False,
            )
            if tuning and tuning.engine_differs:
                console.print(f"[yellow]note:[/] {escape(ap.engine_note(tuning))}", soft_wrap=True)
        elif apply and rec.outcome.exit_code == 0:
            console.print("--apply: the deployed config is the best; nothing written", highlight=False)
        console.print(
            f"report: {paths['html']} ({paths['png'].name}, {paths['json'].name}); {rec.seconds / 60:.1f} min",
            highlight=False,
        )
    if rec.outcome.exit_code == 1:
        raise CheckFailed(rec.outcome.reason)


def _signature() -> inspect.Signature:
    """tune's command line: the model, what to do with the answer, and one option per Options field."""
    from zeroserve.tune.options import Options

    model = Annotated[str, typer.Argument(help="Registry model name (deployed in --repository).", show_default=False)]
    fmt = Annotated[
        str | None,
        typer.Option(
            "--format",
            help="Tune this deployed format only (default: every deployed format of the model, "
            "the deployed onnx config as the baseline).",
            show_default=False,
        ),
    ]
    apply = Annotated[
        bool,
        typer.Option(
            "--apply",
            help="Write the best settings into the canonical repository (atomic; the previous config kept "
            "beside it as config.pbtxt.before-tune; recorded in manifest.json).",
        ),
    ]
    revert = Annotated[
        bool, typer.Option("--revert", help="Put back the config from before `--apply` (no measurement).")
    ]
    repository = Annotated[Path, typer.Option("--repository", help="The canonical model repository.")]
    report = Annotated[
        Path | None,
        typer.Option(
            "--report",
            help="Folder for tune.json, tune.png and tune.html (default reports/tune/MODEL).",
            show_default=False,
        ),
    ]
    fixed = [
        keyword("ctx", typer.Context),
        keyword("model", model),
        keyword("fmt", fmt, None),
        keyword("apply", apply, False),
        keyword("revert", revert, False),
        keyword("repository", repository, DEFAULT_REPOSITORY),
        keyword("report", report, None),
        keyword("model_files", ModelFilesOpt, None),
        keyword("as_json", JsonOpt, False),
    ]
    return inspect.Signature(fixed + typer_parameters(Options))


def _command():
    command = handle_errors(tune_cmd)
    command.__signature__ = _signature()  # Typer reads the generated signature
    return command

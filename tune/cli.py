"""`zeroserve tune`: the best serving configuration under a latency budget, measured on a private server."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape

from zeroserve import formats as F
from zeroserve import registry
from zeroserve.app.cliutil import JsonOpt, ModelFilesOpt, choices, console, err_console, handle_errors, print_json
from zeroserve.client.endpoints import PROTOCOLS
from zeroserve.deploy.repository import DEFAULT_REPOSITORY
from zeroserve.errors import CheckFailed, InputError
from zeroserve.serve.signals import Terminated, stop_signals

if TYPE_CHECKING:  # mypy sees the value each choice stands for; typer gets the choice Enum at run time
    Protocol = str
    Mode = str
    Preferred = str
else:
    Protocol = choices("Protocol", PROTOCOLS)
    Mode = choices("Mode", ("quick", "brute"))
    Preferred = choices("Preferred", ("both", "none", "max"))


def register(app: typer.Typer) -> None:
    app.command("tune")(tune_cmd)


def _ints(text: str | None, what: str) -> tuple[int, ...] | None:
    if text is None:
        return None
    try:
        values = tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise InputError(f"{what}: expected integers separated by commas, got {text!r}") from None
    if not values:
        raise InputError(f"{what}: give at least one value")
    return values


@handle_errors
def tune_cmd(
    model: Annotated[str, typer.Argument(help="Registry model name (deployed in --repository).", show_default=False)],
    latency_budget_ms: Annotated[
        float | None,
        typer.Option(
            "--latency-budget-ms",
            help="The latency budget: candidates are compared by their throughput at the "
            "highest concurrency whose latency percentile (--percentile) stays within it.",
            show_default=False,
        ),
    ] = None,
    fmt: Annotated[
        str | None,
        typer.Option(
            "--format",
            help="Tune this deployed format only (default: every deployed format of the model, "
            "the deployed onnx config as the baseline).",
            show_default=False,
        ),
    ] = None,
    min_throughput: Annotated[
        float | None,
        typer.Option(
            "--min-throughput", help="Inferences/s a candidate must reach within the budget.", show_default=False
        ),
    ] = None,
    protocol: Annotated[Protocol, typer.Option("--protocol", help="Wire protocol the load is sent over.")] = "grpc",
    search_mode: Annotated[
        Mode,
        typer.Option(
            "--search", help="quick: hill climb from the deployed config; brute: every combination within the caps."
        ),
    ] = "quick",
    max_minutes: Annotated[
        float,
        typer.Option(
            "--max-minutes",
            help="Stop searching after this long: no measurement level starts later (exit 1, "
            "the best so far reported, nothing applied).",
        ),
    ] = 60.0,
    apply: Annotated[
        bool,
        typer.Option(
            "--apply",
            help="Write the best settings into the canonical repository (atomic; the previous config kept "
            "beside it as config.pbtxt.before-tune; recorded in manifest.json).",
        ),
    ] = False,
    revert: Annotated[
        bool, typer.Option("--revert", help="Put back the config from before `--apply` (no measurement).")
    ] = False,
    percentile: Annotated[float, typer.Option("--percentile", help="The latency percentile the budget bounds.")] = 99.0,
    max_concurrency: Annotated[int, typer.Option("--max-concurrency", help="Highest concurrency tried.")] = 64,
    window: Annotated[
        float,
        typer.Option(
            "--window", help="Measurement window in seconds (perf's stability windows; the warm-up is as long)."
        ),
    ] = 1.0,
    max_trials: Annotated[
        int,
        typer.Option("--max-trials", help="Windows per level before it is kept as unstable (flagged, not an abort)."),
    ] = 6,
    instances: Annotated[
        str | None,
        typer.Option(
            "--instances", help="Instance counts to try, e.g. 1,2 (default 1 up to the cores).", show_default=False
        ),
    ] = None,
    batch_sizes: Annotated[
        str | None,
        typer.Option(
            "--batch-sizes",
            help="Max batch sizes to try (default powers of two from 8 up to the gated maximum).",
            show_default=False,
        ),
    ] = None,
    queue_delays: Annotated[
        str | None,
        typer.Option(
            "--queue-delays-us", help="Max queue delays to try in µs (default 0,100,500,1000,2000).", show_default=False
        ),
    ] = None,
    threads: Annotated[
        str | None,
        typer.Option(
            "--threads",
            help="ONNX Runtime / TorchScript intra-op threads to try (default 1 up to the cores).",
            show_default=False,
        ),
    ] = None,
    preferred: Annotated[
        Preferred,
        typer.Option("--preferred", help="Preferred batch size: both (try none and the max batch size), none or max."),
    ] = "both",
    ports: Annotated[
        str | None,
        typer.Option(
            "--ports",
            help="HTTP,GRPC,METRICS ports of the private server on 127.0.0.1 (default: free ones).",
            show_default=False,
        ),
    ] = None,
    repository: Annotated[
        Path, typer.Option("--repository", help="The canonical model repository.")
    ] = DEFAULT_REPOSITORY,
    report: Annotated[
        Path | None,
        typer.Option(
            "--report",
            help="Folder for tune.json, tune.png and tune.html (default reports/tune/MODEL).",
            show_default=False,
        ),
    ] = None,
    model_files: ModelFilesOpt = None,
    as_json: JsonOpt = False,
):
    """Find the serving configuration with the highest throughput within a latency budget, on a private server.

    Starts its own embedded server on free loopback ports (explicit model control, stopped at the end,
    also after Ctrl-C), loads each candidate config under its own name, measures it with the perf
    engine and unloads it; the served server and the repository are not touched unless --apply.
    Exit 0 with a best config; 1 when none meets the budget or --max-minutes ran out; 2 for a budget
    below the server's floor, a model not deployed, or options that leave no candidate; 3 server.
    """
    from zeroserve.tune import apply as ap
    from zeroserve.tune import report as rp
    from zeroserve.tune.runner import Options, deployed_formats, run_tune
    from zeroserve.tune.search import DIMENSIONS, Candidate

    spec = registry.get(model, model_files)
    if fmt is not None:
        F.get(fmt)
    if revert:
        if apply or latency_budget_ms is not None:
            raise InputError("--revert takes no measurement: give it without --apply and --latency-budget-ms")
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
        return
    if latency_budget_ms is None:
        raise InputError("give --latency-budget-ms (the p99 latency, by default, each candidate must stay within)")
    opts = Options(
        budget_ms=latency_budget_ms,
        min_throughput=min_throughput,
        protocol=str(protocol),
        mode=str(search_mode),
        max_minutes=max_minutes,
        percentile=percentile,
        max_concurrency=max_concurrency,
        window_s=window,
        max_trials=max_trials,
        instances=_ints(instances, "--instances"),
        batch_sizes=_ints(batch_sizes, "--batch-sizes"),
        queue_delays_us=_ints(queue_delays, "--queue-delays-us"),
        threads=_ints(threads, "--threads"),
        preferred={"both": None, "none": (False,), "max": (True,)}[str(preferred)],
        ports=_ints(ports, "--ports"),
    )
    if opts.ports is not None and (len(opts.ports) != 3 or not all(1 <= p <= 65535 for p in opts.ports)):
        raise InputError("--ports: give three ports between 1 and 65535, HTTP,GRPC,METRICS")
    if not 0 < percentile < 100:
        raise InputError(f"--percentile must be between 0 and 100 (exclusive), got {percentile:g}")
    if window <= 0 or max_trials < 3:
        raise InputError("need --window > 0 and --max-trials >= 3")

    def on_event(kind: str, data: dict) -> None:
        if as_json:
            return
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
                f"{m['throughput']:.0f} infer/s at c={m['concurrency']}"
                if m["meets_budget"]
                else m.get("error") or "over the budget at c=1"
            )
            err_console.print(
                f"  {escape(data['candidate'].label())}{' (deployed)' if data.get('deployed') else ''}: {escape(what)}",
                highlight=False,
            )

    try:
        with stop_signals():
            rec = run_tune(spec, repository, opts, fmt=fmt, on_event=on_event)
    except Terminated:
        err_console.print("terminated: the private server was stopped")
        raise typer.Exit(143) from None

    applied = None
    chosen = rec["chosen"]
    if apply and rec["outcome"]["exit_code"] == 0 and chosen and not rec["chosen_is_deployed"]:
        c = Candidate(**{d: chosen["candidate"][d] for d in DIMENSIONS})
        name = rec["formats"][c.fmt]
        measurement = {k: chosen[k] for k in ("throughput", "concurrency", "latency_ms", "p50_ms", "p99_ms")}
        measurement["server_resources"] = chosen.get("server_resources")
        measurement["side_by_side_ratio"] = rec["gain"]
        context = {
            "latency_budget_ms": rec["latency_budget_ms"],
            "latency_metric": rec["latency_metric"],
            "protocol": rec["protocol"],
            "search": rec["search"],
            "min_throughput": rec["min_throughput"],
        }
        applied = ap.apply_tuning(repository, name, c, measurement, rec["tuned_on"], context)
    rec["applied"] = applied["name"] if applied else None
    paths = rp.write_report(rec, report or Path("reports") / "tune" / spec.name)
    if as_json:
        print_json({**rec, "report": {k: str(v) for k, v in paths.items()}})
    else:
        console.print(rp.table(rec))
        for line in rp.closing(rec):
            console.print(escape(line), highlight=False, soft_wrap=True)
        for note in rec["notes"]:
            console.print(f"note: {escape(note)}", highlight=False, soft_wrap=True)
        if applied:
            console.print(
                f"applied to {repository / applied['name']}/config.pbtxt (previous config: "
                f"{ap.PREVIOUS}; undo with `zeroserve tune {spec.name} --revert`)",
                highlight=False,
            )
        elif apply and rec["outcome"]["exit_code"] == 0:
            console.print("--apply: the deployed config is the best; nothing written", highlight=False)
        console.print(
            f"report: {paths['html']} ({paths['png'].name}, {paths['json'].name}); {rec['seconds'] / 60:.1f} min",
            highlight=False,
        )
    if rec["outcome"]["exit_code"] == 1:
        raise CheckFailed(rec["outcome"]["reason"])

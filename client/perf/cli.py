"""`zeroserve client perf`: its options from the fields (perf/command_line.py), one run, the outputs asked for."""

from __future__ import annotations

import functools
import inspect
from typing import Annotated

import typer

from zeroserve import formats as F
from zeroserve import records
from zeroserve.app.cliutil import console, data_dir_in_use, err_console, handle_errors, print_json
from zeroserve.client.connection import DEFAULT_TIMEOUT_S
from zeroserve.client.endpoints import Endpoint, choose_protocol, resolve_endpoint
from zeroserve.client.perf.options import latency_name
from zeroserve.errors import InputError
from zeroserve.options import given_params
from zeroserve.records.perf import PerfLevel, PerfRecord

HELP = """Load-test one served model the way perf_analyzer does (warm-up, stable windows, percentiles).

Speaks zeroserve's options and perf_analyzer's (`-m M -u HOST:PORT -i grpc --concurrency-range 1:8:2 -p 5000
-f out.csv`): a line with a perf_analyzer-only flag gets perf_analyzer's defaults (HTTP on 127.0.0.1:8000,
no warm-up) and units (ms windows, percent stability); mixing the two spellings of an option is refused,
and so is a perf_analyzer flag with no counterpart, by name (the table: docs/perf.md). Requests are
encoded once per level and re-sent as wire bytes; every answer is checked for status and size. Outputs
asked for are written in every case. Exit code, first match wins: 3 the server is unreachable at the end;
1 a request failed (unless --allow-failures); 4 a level did not stabilise (unless --allow-unstable); else 0.
"""


def budget_line(rec: PerfRecord) -> str:
    """The latency-budget search's answer, naming the latency the search compared (right by construction)."""
    best = rec.best
    return (
        f"highest concurrency with {latency_name(rec.latency_metric)} ≤ {rec.latency_budget_ms:g} ms: "
        f"{best if best else 'none (over budget at concurrency 1)'}"
    )


def perf_cmd(**values) -> None:
    from zeroserve.client.perf import command_line as pc
    from zeroserve.client.perf import pa_csv
    from zeroserve.client.perf import report as rep
    from zeroserve.client.perf.floor import perf_with_floor
    from zeroserve.client.perf.levels import raise_for_outcome
    from zeroserve.client.perf.run import run_perf

    given = given_params(values.pop("ctx"))
    opts, command, pa = pc.resolve(values, given)
    model = _model(values.get("model_arg"), command["model"])
    fmt = _format(values.get("fmt"), values.get("variant"))
    http_port, grpc_port = values["http_port"], values["grpc_port"]
    if pa:  # perf_analyzer's protocol and -u default (localhost:8000, or 8001 for grpc)
        urls = opts.urls or (pc.pa_default_url(opts.protocol),)
        opts = type(opts)(**{**_fields(opts), "urls": urls})
        endpoint = Endpoint(source="-u")
    else:
        protocol = choose_protocol(opts.protocol if "protocol_0" in given else None, http_port, grpc_port)
        opts = type(opts)(**{**_fields(opts), "protocol": str(protocol)})
        endpoint = resolve_endpoint(values["host"], http_port, grpc_port, (protocol,)) if not opts.urls else None
    data_dir = values["data_dir"]
    if opts.input_mode == "sample" and opts.input_data is None:
        data_dir = data_dir_in_use(data_dir)
    as_json = values["as_json"]
    measure = functools.partial(perf_with_floor, run_perf) if command["floor"] else run_perf
    rec = measure(
        model,
        endpoint or Endpoint(source="--url"),
        opts,
        fmt=fmt,
        data_dir=data_dir,
        timeout=values["timeout"],
        model_files=values["model_files"],
        on_level=None if as_json else _progress,
        metrics_url=command["metrics_url"],
        metrics_interval_s=(command["metrics_interval_ms"] or 1000.0) / 1000,
        require_metrics=bool(command["collect_metrics"]),
    )
    if command["pa_csv"]:
        metrics = command["collect_metrics"]
        records.write_bytes(command["pa_csv"], pa_csv.to_csv(rec, command["verbose_csv"], metrics).encode())
    if command["csv"]:
        records.write_bytes(command["csv"], rep.to_csv(rec).encode())
    paths = rep.write_report(rec, command["report"]) if command["report"] else {}
    if as_json:
        print_json(rec.to_json())
    else:
        _print(rec, paths)
    raise_for_outcome(rec)


def _perf(**values) -> None:
    perf_cmd(**values)  # looked up when called, so that a test can stand in for the run


def _fields(opts) -> dict:
    import dataclasses

    return {f.name: getattr(opts, f.name) for f in dataclasses.fields(opts)}


def _model(argument: str | None, dash_m: str | None) -> str:
    if argument and dash_m and argument != dash_m:
        raise InputError(f"two models: {argument} and -m {dash_m}; give one")
    model = argument or dash_m
    if not model:
        raise InputError("give the model: MODEL (or perf_analyzer's -m MODEL)")
    return model


def _format(fmt, variant: str | None) -> str | None:
    if variant is None:
        return None if fmt is None else str(fmt)
    keys = F.parse_variants(variant)
    if len(keys) != 1 or (fmt is not None and str(fmt) not in (F.DEFAULT_FORMAT, keys[0])):
        raise InputError(f"give one --variant ({', '.join(F.VARIANTS)}), or --format, not both")
    return keys[0]


def _progress(level: PerfLevel, measured: str = "model") -> None:
    from zeroserve.client.perf import report as rep
    from zeroserve.client.perf.levels import level_count

    failed = level_count(level)
    err_console.print(
        f"  {'floor ' if measured == 'floor' else ''}{rep.level_label(level)}: "
        f"{level.throughput:.1f} infer/s, "
        f"p50 {level.p50_ms:.2f} ms, p99 {level.p99_ms:.2f} ms, {level.trials} windows"
        f"{'' if level.stable else ' (not stable)'}"
        f"{f', {failed} failed' if failed else ''}",
        highlight=False,
    )


def _print(rec: PerfRecord, paths: dict) -> None:
    from zeroserve.client.perf import report as rep

    console.print(rep.table(rec))
    if rec.floor:
        from zeroserve.client.perf.floor import table as floor_table

        console.print(floor_table(rec))
    if rec.mode == "latency_budget":
        console.print(budget_line(rec), highlight=False)
    for note in rec.notes:
        console.print(f"[yellow]note:[/] {note}", highlight=False, soft_wrap=True)
    if paths:
        console.print(
            f"report: {paths['html']} ({paths['png'].name}, {paths['csv'].name}, {paths['json'].name})",
            highlight=False,
        )


def register(app: typer.Typer, fixed: dict[str, object]) -> None:
    """Add `perf` to the client app: `fixed` are the shared options (name -> Annotated type) it takes beside
    the generated ones."""
    from zeroserve.client.perf import command_line as perf_cli

    model_arg = Annotated[
        str | None,
        typer.Argument(
            help="A registry name, or any model the server serves (its Triton name); or -m.",
            show_default=False,
            metavar="MODEL",
        ),
    ]
    params = [
        inspect.Parameter("ctx", inspect.Parameter.KEYWORD_ONLY, annotation=typer.Context),
        inspect.Parameter("model_arg", inspect.Parameter.KEYWORD_ONLY, default=None, annotation=model_arg),
    ]
    defaults = {"timeout": DEFAULT_TIMEOUT_S, "as_json": False}
    for name, annotation in fixed.items():
        params.append(
            inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=defaults.get(name), annotation=annotation)
        )
    command = handle_errors(_perf)
    command.__signature__ = perf_cli.signature(params)  # type: ignore[attr-defined]  # Typer reads the generated one
    command.__doc__ = HELP
    app.command("perf")(command)

"""perf's options declared once: bounds checked once, perf_analyzer's spellings and units, refusals, the CSV."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import client_helpers as H  # tests/ is on sys.path (its conftest)
import pytest
from perf_fakes import perf_level, perf_record  # tests/ is on sys.path (its conftest)
from typer.testing import CliRunner

from zeroserve.client.perf import command_line as cl
from zeroserve.client.perf import pa_csv, pa_flags
from zeroserve.client.perf.cli import budget_line
from zeroserve.client.perf.options import PerfOptions
from zeroserve.errors import InputError
from zeroserve.options import given_params

ROOT = Path(__file__).resolve().parents[3]

PA_VERBOSE = H.PA_CONCURRENCY + H.PA_VERBOSE
PA_METRICS = PA_VERBOSE + H.PA_METRICS
PA_CONCURRENCY, PA_RATE, PA_METRICS_ROW = H.PA_CONCURRENCY, H.PA_RATE, H.PA_METRICS_ROW


def _resolve(*args: str):
    """Parse a `client perf` line the way the command does, without running it."""
    from zeroserve.app.cli import app

    seen = {}

    def capture(**values):
        ctx = values.pop("ctx")
        seen["result"] = cl.resolve(values, given_params(ctx))

    import zeroserve.client.perf.cli as perf_cli

    original = perf_cli.perf_cmd
    perf_cli.perf_cmd = capture  # type: ignore[assignment]  # the registered command calls it through the module
    try:
        res = CliRunner().invoke(app, ["client", "perf", *args])
    finally:
        perf_cli.perf_cmd = original
    return res, seen.get("result")


def test_every_perf_analyzer_flag_is_mapped_accepted_or_refused_by_name():
    assert len(pa_flags.LONG_OPTIONS) == len(set(pa_flags.LONG_OPTIONS)) == 67
    mapped = {n for names, _ in cl.mapped_flags() for n in names.split("/")}
    listed = {n for f in (*pa_flags.ACCEPTED, *pa_flags.REFUSED) for n in f.names}
    assert not mapped & listed
    every = mapped | listed
    missing = [f"--{o}" for o in pa_flags.LONG_OPTIONS if f"--{o}" not in every]
    missing += [o for o in pa_flags.SHORT_OPTIONS if o not in every]
    assert not missing, f"perf_analyzer flags with no entry: {missing}"


def test_the_docs_table_is_the_generated_one():
    table = pa_flags.markdown_table(cl.mapped_flags())
    assert table in (ROOT / "docs" / "perf.md").read_text()
    assert table.count("\n| `") >= 67 + 5


def test_perf_analyzer_units_and_defaults_apply_to_a_perf_analyzer_line():
    res, (opts, command, pa) = _resolve(
        "-m", "m", "--concurrency-range", "1:5:2", "-p", "3000", "-s", "5", "--percentile=95", "-b", "2", "-f", "o.csv"
    )
    assert res.exit_code == 0, res.output
    assert pa and command["model"] == "m" and command["pa_csv"] == Path("o.csv")
    assert opts.concurrency == (1, 3, 5) and opts.window == 3.0 and opts.stability == 0.05
    assert opts.percentile == 95 and opts.batch_size == 2
    assert opts.protocol == "http" and opts.warmup == 0.0  # perf_analyzer's: HTTP, no warm-up
    _, (opts, _, pa) = _resolve("m", "--concurrency", "1,2", "--window", "2")
    assert not pa and opts.protocol == "grpc" and opts.warmup == 2.0 and opts.concurrency == (1, 2)


def test_request_rate_binary_search_and_input_data_spellings():
    _, (opts, _, _) = _resolve("-m", "m", "--request-rate-range", "100:300:100", "--request-distribution", "poisson")
    assert opts.request_rate == (100.0, 200.0, 300.0) and opts.distribution == "poisson" and opts.mode == "request_rate"
    _, (opts, _, _) = _resolve("-m", "m", "--concurrency-range", "2:16", "--binary-search", "-l", "5")
    assert opts.mode == "latency_budget" and opts.latency_budget_ms == 5
    assert (opts.start_concurrency, opts.max_concurrency) == (2, 16) and opts.concurrency is None
    _, (opts, _, _) = _resolve("-m", "m", "--input-data", "zero")
    assert opts.input_mode == "zero" and opts.input_data is None
    _, (opts, _, _) = _resolve("-m", "m", "-i", "GRPC", "-u", "127.0.0.1:9001")
    assert opts.protocol == "grpc" and opts.urls == ("127.0.0.1:9001",)


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["-m", "m", "-H", "x: y"], "perf_analyzer's -H is not supported"),
        (["-m", "m", "--ssl-grpc-use-ssl", "true"], "--ssl-grpc-use-ssl is not supported"),
        (["m", "--request-intervals", "f.txt"], "--request-intervals is not supported"),
        (["m", "-d"], "-d is not supported"),
    ],
)
def test_a_refused_flag_is_named_in_one_line_exit_2(args, says):
    res, _ = _resolve(*args)
    assert res.exit_code == 2 and says in res.output, res.output


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["-m", "m", "--window", "1"], "use -p/--measurement-interval (ms) instead"),
        (["m", "--concurrency", "1,2", "--concurrency-range", "1:2"], "use --concurrency-range"),
        (["m", "-p", "500", "--stability", "0.2"], "use -s/--stability-percentage (%) instead"),
        (["m", "-i", "grpc", "--grpc-port", "8001"], "use -u HOST:PORT instead"),
        (["m", "--concurrency-range", "1:4", "--latency-budget-ms", "3"], "-l/--latency-threshold (ms)"),
        (["m", "--window", "1", "-p", "500"], "use -p/--measurement-interval (ms) instead"),
        (["m", "--concurrency-range", "1:2", "-t", "3"], "set the same option"),
    ],
)
def test_a_line_mixing_the_two_vocabularies_is_refused_with_the_spelling_to_use(args, says):
    res, _ = _resolve(*args)
    assert res.exit_code == 2 and says in res.output, res.output


@pytest.mark.parametrize(
    ("fields", "says"),
    [
        (dict(window_s=0), "--window (s) / -p/--measurement-interval (ms)"),
        (dict(stability=1.5), "-s/--stability-percentage (%)"),
        (dict(max_trials=2), "must be >= 3"),
        (dict(distribution="burst"), "'burst' is not one of constant, poisson"),
        (dict(concurrency=(1, 0)), "must be >= 1"),
        (dict(concurrency=(1,), request_rate=(10.0,)), "choose one of"),
        (dict(streaming=True, protocol="http"), "grpc protocol"),
        (dict(binary_search=True), "needs -l"),
        (dict(workers=17), "must be <= 16"),
    ],
)
def test_options_are_checked_once_when_made(fields, says):
    with pytest.raises(InputError) as info:
        PerfOptions(**fields)
    assert says in str(info.value)


def test_the_budget_message_names_the_latency_the_search_compared():
    mean, p99 = PerfOptions(latency_budget_ms=2.0), PerfOptions(latency_budget_ms=2.0, percentile=99)
    rec = {"best": 8, "latency_budget_ms": 2.0}
    assert "with average latency ≤ 2 ms: 8" in budget_line(perf_record(**rec, latency_metric=mean.latency_key))
    assert "with p99 latency ≤ 2 ms: 8" in budget_line(perf_record(**rec, latency_metric=p99.latency_key))


def _level(c, tput, mean_ms=0.5, rate=None, **more):
    return perf_level(
        **more,
        **{
            "concurrency": c,
            "request_rate": rate,
            "throughput": tput,
            "mean_ms": mean_ms,
            "p50_ms": 0.4,
            "p90_ms": 0.46,
            "p95_ms": 0.485,
            "p99_ms": 0.5491,
            "client": {"send_us": 31.4, "check_us": 0.2},
            "server": {
                "queue_us": 73.2,
                "compute_input_us": 13.0,
                "compute_infer_us": 154.9,
                "compute_output_us": 31.0,
            },
        },
    )


def test_the_csv_is_perf_analyzers_header_order_units_and_rows():
    rec = perf_record(mode="concurrency", latency_metric="mean_ms", levels=[_level(2, 2675.31), _level(1, 2316.634)])
    text = pa_csv.to_csv(rec)
    lines = text.splitlines()
    assert lines[0] == PA_CONCURRENCY and text.endswith("\n")
    assert lines[1] == "1,2316.63,31,198,73,13,154,31,0,400,460,485,549"  # µs, whole; network = wait - server
    rows = list(csv.DictReader(io.StringIO(text)))
    assert [r["Concurrency"] for r in rows] == ["1", "2"]  # by throughput, not in the order measured
    verbose = pa_csv.to_csv(rec, verbose=True).splitlines()
    assert verbose[0] == PA_VERBOSE and verbose[1].endswith(",500,31,469")
    metrics = pa_csv.to_csv(rec, verbose=True, metrics=True).splitlines()
    assert (
        metrics[0] == PA_METRICS and metrics[1].endswith(",,,,") and metrics[1].count(",") == PA_METRICS_ROW.count(",")
    )
    assert pa_csv.to_csv(rec, metrics=True).splitlines()[0] == PA_CONCURRENCY  # metrics columns need --verbose-csv
    gpu = {"Avg GPU Utilization": "0.5", "Total GPU Memory": "16000000000.0"}
    with_gpu = perf_record(mode="concurrency", levels=[_level(1, 10.0, gpu_metrics=gpu)])
    assert pa_csv.to_csv(with_gpu, verbose=True, metrics=True).splitlines()[1].endswith(",0.5,,,16000000000.0")


def test_the_csv_in_request_rate_mode_and_within_a_latency_threshold():
    rec = perf_record(mode="request_rate", latency_metric="mean_ms", levels=[_level(None, 99.89, rate=100.0)])
    lines = pa_csv.to_csv(rec).splitlines()
    assert lines[0] == PA_RATE and lines[1].startswith("100,99.89,")
    levels = [_level(1, 100.0, mean_ms=0.5), _level(8, 900.0, mean_ms=3.0)]
    over = perf_record(mode="concurrency", latency_metric="mean_ms", latency_threshold_ms=1.0, levels=levels)
    assert [r["Concurrency"] for r in csv.DictReader(io.StringIO(pa_csv.to_csv(over)))] == ["1"]


def test_a_binary_search_keeps_its_range_through_a_copy():
    import dataclasses

    opts = PerfOptions(binary_search=True, latency_threshold_ms=5.0, concurrency=(2, 3, 4))
    copy = dataclasses.replace(opts, window_s=0.5)  # what run_perf does with keyword fields
    assert (copy.start_concurrency, copy.max_concurrency, copy.latency_budget_ms) == (2, 4, 5.0)

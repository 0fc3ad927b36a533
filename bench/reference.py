"""`make bench`'s reference: Triton's perf_analyzer and `client perf` on one server, side by side.

When ZEROSERVE_PERF_ANALYZER names a perf_analyzer binary or wrapper (or `perf_analyzer` is on
PATH), cnn_mnist's ONNX deployment is measured by both, interleaved (perf_analyzer then client
perf, level by level, protocol by protocol, ROUNDS times), with the same method: windows of
WINDOW_S, stability within STABILITY, p50 as the latency (`--percentile=50`). The ratios are
printed against the bars; nothing is asserted. Also measured: the generator's cost per request,
part by part, on real answers from the same server.
"""

from __future__ import annotations

import csv
import os
import re
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

from zeroserve import registry
from zeroserve.client.connection import Client
from zeroserve.client.endpoints import Endpoint

ENV = "ZEROSERVE_PERF_ANALYZER"
MODEL = "cnn_mnist"
LEVELS = (1, 16)
ROUNDS = 2
WINDOW_S = 2.0
STABILITY = 0.10
MAX_TRIALS = 10
PASS_LINE = re.compile(r"Pass \[\d+\] throughput: ([\d.]+) infer/sec\. p50 latency: (\d+) usec")
PA_TIMEOUT_S = 300  # the wrapper may download perf_analyzer on its first run
# the bars, client perf / perf_analyzer: (protocol, concurrency, figure, client perf --workers) -> bar
BARS = {
    ("http", 1, "p50_ms", 1): ("<=", 1.10),
    ("grpc", 1, "p50_ms", 1): ("<=", 1.40),
    ("http", 16, "throughput", 1): (">=", 0.90),
    ("grpc", 16, "throughput", 1): (">=", 0.90),
    # grpcio spends its own threads' CPU per call: a second generator process, measured beside the default
    ("grpc", 16, "throughput", 2): (">=", 0.90),
}


def find_perf_analyzer() -> tuple[list[str] | None, str]:
    """The command that runs perf_analyzer, or None and why not."""
    named = os.environ.get(ENV)
    if named:
        path = shutil.which(named) or (named if Path(named).is_file() else None)
        if path is None:
            return None, f"{ENV}={named!r} is not an executable file"
        return [path], f"{ENV}={named}"
    found = shutil.which("perf_analyzer")
    if found:
        return [found], f"perf_analyzer on PATH ({found})"
    return None, (
        f"no perf_analyzer: set {ENV} to a perf_analyzer binary or wrapper, or put perf_analyzer on "
        "PATH (`pip install perf-analyzer` ships the binary for glibc >= 2.38)"
    )


def run_perf_analyzer(command: list[str], model: str, url: str, protocol: str, concurrency: int, workdir: Path) -> dict:
    """One perf_analyzer level: {"throughput", "p50_ms", "stable", ...} or {"error"}."""
    out = workdir / f"pa-{protocol}-{concurrency}-{time.monotonic_ns()}.csv"
    args = [
        *command,
        "-m",
        model,
        "-u",
        url,
        "-i",
        protocol,
        "--concurrency-range",
        str(concurrency),
        "-p",
        str(int(WINDOW_S * 1000)),
        "-s",
        str(int(STABILITY * 100)),
        "--max-trials",
        str(MAX_TRIALS),
        "--percentile=50",
        "-f",
        str(out),
        "-v",
    ]
    try:
        proc = subprocess.run(args, capture_output=True, text=True, timeout=PA_TIMEOUT_S)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return {"error": f"{type(exc).__name__}: {exc}"}
    if not out.is_file():  # perf_analyzer writes no level that did not stabilise: its last 3 passes, as ours
        passes = [(float(m[1]), float(m[2]) / 1e3) for m in PASS_LINE.finditer(proc.stdout)][-3:]
        if len(passes) < 3:
            tail = (proc.stdout + proc.stderr).strip().splitlines()[-1:] or [f"exit {proc.returncode}"]
            return {"error": tail[0][:200]}
        return {
            "throughput": statistics.fmean(p[0] for p in passes),
            "p50_ms": statistics.fmean(p[1] for p in passes),
            "stable": False,
        }
    rows = list(csv.DictReader(out.open()))
    if not rows:
        return {"error": "perf_analyzer wrote no level"}
    row = rows[0]
    return {
        "throughput": float(row["Inferences/Second"]),
        "p50_ms": float(row["p50 latency"]) / 1e3,
        "p99_ms": float(row["p99 latency"]) / 1e3,
        "stable": True,
        "client_send_us": float(row.get("Client Send") or 0),
        "client_recv_us": float(row.get("Client Recv") or 0),
    }


def run_client_perf(spec, endpoint: Endpoint, protocol: str, concurrency: int, workers: int = 1) -> dict:
    """The same level measured by `client perf` with perf_analyzer's settings."""
    from zeroserve.client.perf.run import run_perf

    rec = run_perf(
        spec,
        endpoint,
        protocol=protocol,
        concurrency=[concurrency],
        window_s=WINDOW_S,
        warmup_s=WINDOW_S / 2,
        stability=STABILITY,
        max_trials=MAX_TRIALS,
        percentile=50,
        allow_unstable=True,
        workers=workers,
    )
    lv = rec.levels[0]
    return {
        "throughput": lv.throughput,
        "p50_ms": lv.p50_ms,
        "p99_ms": lv.p99_ms,
        "stable": lv.stable,
        "client_cpu_us": lv.client.cpu_us,
        "client_send_us": lv.client.send_us,
        "client_check_us": lv.client.check_us,
        "failed": rec.outcome.exit_code == 1,
    }


def _line(fig: dict) -> str:
    if "error" in fig:
        return fig["error"]
    return f"{fig['throughput']:.0f}/s p50 {fig['p50_ms']:.3f} ms" + (
        "" if fig.get("stable", True) else " (not stable: last 3 windows)"
    )


def compare(endpoint: Endpoint, command: list[str], console: Console, workdir: Path) -> dict:
    """Interleaved rounds; the median of each figure per tool, the ratios and the bars."""
    spec = registry.get(MODEL)
    triton_name = spec.triton_name("onnx")
    runs: dict[tuple, list[dict]] = {}
    for rnd in range(ROUNDS):
        for protocol in ("http", "grpc"):
            url = endpoint.url(protocol)
            for c in LEVELS:
                pa = run_perf_analyzer(command, triton_name, url, protocol, c, workdir)
                runs.setdefault(("perf_analyzer", protocol, c, 1), []).append(pa)
                line = f"round {rnd + 1} {protocol} c={c}: perf_analyzer " + _line(pa)
                for workers in sorted({w for (p, n, _, w) in BARS if (p, n) == (protocol, c)}):
                    ours = run_client_perf(spec, endpoint, protocol, c, workers)
                    runs.setdefault(("client perf", protocol, c, workers), []).append(ours)
                    line += f"; client perf{f' --workers {workers}' if workers > 1 else ''} " + _line(ours)
                console.print(line, highlight=False)
    rows: list[dict] = []
    for (protocol, c, key, workers), (op, bar) in BARS.items():
        figure = f"{protocol} c={c} {key}" + (f" (client perf --workers {workers})" if workers > 1 else "")
        pa_figures = [r[key] for r in runs[("perf_analyzer", protocol, c, 1)] if "error" not in r]
        our_figures = [r[key] for r in runs[("client perf", protocol, c, workers)]]
        if not pa_figures:
            rows.append({"figure": figure, "error": runs[("perf_analyzer", protocol, c, 1)][0]["error"]})
            continue
        ratio = statistics.median(our_figures) / statistics.median(pa_figures)
        rows.append(
            {
                "figure": figure,
                "perf_analyzer": statistics.median(pa_figures),
                "client_perf": statistics.median(our_figures),
                "ratio": ratio,
                "bar": f"{op} {bar:.2f}",
                "meets_bar": ratio <= bar if op == "<=" else ratio >= bar,
                "perf_analyzer_runs": pa_figures,
                "client_perf_runs": our_figures,
            }
        )
    table = Table(
        title=f"perf_analyzer vs client perf: {triton_name}, batch 1, {ROUNDS} interleaved rounds, "
        f"windows of {WINDOW_S:g} s, stability {STABILITY:.0%}, p50 as latency (medians)"
    )
    for col in ("figure", "perf_analyzer", "client perf", "client / perf_analyzer", "bar", "met"):
        table.add_column(col, justify="left" if col == "figure" else "right")
    for r in rows:
        if "error" in r:
            table.add_row(r["figure"], f"failed: {r['error']}", "", "", "", "")
            continue
        unit = "{:.3f} ms" if "p50_ms" in r["figure"] else "{:.0f} /s"
        table.add_row(
            r["figure"],
            unit.format(r["perf_analyzer"]),
            unit.format(r["client_perf"]),
            f"{r['ratio']:.2f}x",
            r["bar"],
            "yes" if r["meets_bar"] else "no",
        )
    console.print(table)
    return {"rows": rows, "runs": {f"{k[0]} {k[1]} c={k[2]} workers={k[3]}": v for k, v in runs.items()}}


def part_costs(endpoint: Endpoint, repeat: int = 2000) -> dict[str, float]:
    """The generator's cost per request of each part, in µs, timed in-process on real answers."""
    import asyncio

    import grpc

    from zeroserve.client.perf import generator as G
    from zeroserve.client.perf import load, wire
    from zeroserve.client.perf.transport import HttpConnection

    spec = registry.get(MODEL)
    triton_name = spec.triton_name("onnx")
    arrays = spec.random_inputs(1, np.random.default_rng(0))
    costs: dict[str, float] = {}

    def timed(name: str, fn, n: int = repeat) -> None:
        fn()
        t0 = time.perf_counter()
        for _ in range(n):
            fn()
        costs[name] = (time.perf_counter() - t0) / n * 1e6

    for protocol in ("http", "grpc"):
        with Client(endpoint, protocol) as client:
            reference = client.infer(spec, triton_name, arrays)
        expected = wire.expected_outputs([t.name for t in spec.outputs], reference)
        plan = G.LoadPlan(
            G.Tensors(spec.inputs, spec.outputs),
            triton_name,
            protocol,
            [endpoint.url(protocol)],
            arrays,
            10.0,
            concurrency=1,
            expected=expected,
        )
        timed(f"{protocol}: encode a request (once per level)", lambda: G.build_templates(plan), 200)
        ((template,),) = G.build_templates(plan)
        if protocol == "http":
            raw = _raw_http(endpoint.url("http"), template.payload)
            conn, loop, answers = HttpConnection(), asyncio.new_event_loop(), []

            def parse_once() -> None:
                conn.waiter = fut = loop.create_future()
                conn.data_received(raw)
                answers.append(fut.result())

            timed("http: read an answer (head parse, body cut)", parse_once)
            answer = answers[-1]
            loop.close()
            wire.check_http(template, answer)
            timed("http: check an answer (status, size)", lambda: wire.check_http(template, answer))
            timed(
                "http: decode and validate a sampled answer",
                lambda: wire.validate_http(answer[2], answer[1], expected, False),
            )
        else:
            with grpc.insecure_channel(endpoint.url("grpc")) as channel:
                body = channel.unary_unary(wire.INFER_METHOD)(template.payload, timeout=10)
            wire.check_grpc(template, body)
            timed("grpc: check an answer (size)", lambda: wire.check_grpc(template, body))
            timed("grpc: decode and validate a sampled answer", lambda: wire.validate_grpc(body, expected, False))
    recorder = load.Recorder()
    timed("record a latency (HdrHistogram) and the send", lambda: (recorder.sent(0.0), recorder.record(4e-4, True)))
    return costs


def _raw_http(url: str, payload: bytes) -> bytes:
    """One request on a blocking socket; the whole raw answer (head and body)."""
    import socket

    host, port = url.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(payload)
        raw = b""
        while True:
            raw += sock.recv(65536)
            head, sep, body = raw.partition(b"\r\n\r\n")
            length = [line.split(b":")[1] for line in head.split(b"\r\n") if line.lower().startswith(b"content-length")]
            if sep and length and len(body) >= int(length[0]):
                return raw


def main(endpoint: Endpoint, console: Console) -> dict:
    """The reference comparison and the part costs, or a line saying why the comparison was skipped."""
    result: dict = {"part_costs_us": part_costs(endpoint)}
    t = Table(title="the generator's cost per request, part by part (in-process, real answers)")
    t.add_column("part")
    t.add_column("µs", justify="right")
    for part, us in result["part_costs_us"].items():
        t.add_row(part, f"{us:.1f}")
    console.print(t)
    command, how = find_perf_analyzer()
    if command is None:
        console.print(f"perf_analyzer reference skipped: {how}", highlight=False)
        result["comparison"] = {"skipped": how}
        return result
    console.print(f"perf_analyzer reference: {how}", highlight=False)
    with tempfile.TemporaryDirectory(prefix="zs-pa-") as tmp:
        result["comparison"] = {"perf_analyzer": how, **compare(endpoint, command, console, Path(tmp))}
    return result

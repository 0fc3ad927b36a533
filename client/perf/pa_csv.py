"""perf_analyzer's CSV (`-f FILE`), exactly as perf_analyzer 2.60 writes it, from a perf record.

Header and column order as 2.60 writes them (recorded from `../shared/tools/perf_analyzer.sh`, see
tests/unit/client/test_pa_csv.py): `Concurrency` (or `Request Rate` in request-rate mode), then
Inferences/Second and the latency split in whole µs, rows sorted by throughput. `--verbose-csv`
adds `Avg latency,request/response,response wait`; with `--collect-metrics` too, the four GPU
metric columns, filled from each level's `gpu_metrics` (the metrics collection of issue 33 puts
them there; empty cells without it, as perf_analyzer writes them on a machine without a GPU).
With perf_analyzer's -l (or a budget search) only the levels within the threshold are written.
"""

from __future__ import annotations

from zeroserve.records.perf import PerfLevel, PerfRecord

BASE = (
    "Inferences/Second",
    "Client Send",
    "Network+Server Send/Recv",
    "Server Queue",
    "Server Compute Input",
    "Server Compute Infer",
    "Server Compute Output",
    "Client Recv",
    "p50 latency",
    "p90 latency",
    "p95 latency",
    "p99 latency",
)
VERBOSE = ("Avg latency", "request/response", "response wait")
GPU_METRICS = ("Avg GPU Utilization", "Avg GPU Power Usage", "Max GPU Memory Usage", "Total GPU Memory")


def header(request_rate: bool, verbose: bool = False, metrics: bool = False) -> list[str]:
    """perf_analyzer's CSV header for the mode and extra-column options."""
    cols = ["Request Rate" if request_rate else "Concurrency", *BASE]
    if verbose:
        cols += VERBOSE
        if metrics:
            cols += GPU_METRICS
    return cols


def _num(x: float) -> str:
    """A rate as perf_analyzer's C++ stream prints a double (6 significant digits)."""
    return format(x, ".6g")


def _us(ms: float) -> int:
    return int(ms * 1e3)


def row(level: PerfLevel, verbose: bool = False, metrics: bool = False) -> list[str]:
    """One level's cells: latencies in whole µs; network = client wait minus the server's part, floored at 0."""
    server, client = level.server, level.client
    send, recv = int(client.send_us), int(client.check_us)
    split = (
        (server.queue_us, server.compute_input_us, server.compute_infer_us, server.compute_output_us) if server else ()
    )
    phases = [int(x) for x in split] or [0, 0, 0, 0]
    avg = _us(level.mean_ms)
    wait = max(0, avg - send - recv)
    network = max(0, wait - sum(phases))
    first = level.request_rate if level.request_rate else level.concurrency
    cells = [_num(first or 0), _num(level.throughput), str(send), str(network), *map(str, phases), str(recv)]
    cells += [str(_us(x)) for x in (level.p50_ms, level.p90_ms, level.p95_ms, level.p99_ms)]
    if verbose:
        cells += [str(avg), str(send + recv), str(wait)]
        if metrics:
            gpu = level.gpu_metrics or {}  # perf_analyzer's GPU cells by column name (client/perf/metrics.py)
            cells += [str(gpu[c]) if gpu.get(c) is not None else "" for c in GPU_METRICS]
    return cells


def kept_levels(rec: PerfRecord) -> list[PerfLevel]:
    """The levels perf_analyzer would write: within its latency threshold (or the budget), by throughput."""
    limit = rec.latency_threshold_ms or rec.latency_budget_ms
    levels = [lv for lv in rec.levels if limit is None or lv.figure(rec.latency_metric) <= limit]
    return sorted(levels, key=lambda lv: lv.throughput)


def to_csv(rec: PerfRecord, verbose: bool = False, metrics: bool = False) -> str:
    """The whole file: header, then one line per kept level (commas, no quoting, '\\n' line ends)."""
    lines = [",".join(header(rec.mode == "request_rate", verbose, metrics))]
    lines += [",".join(row(lv, verbose, metrics)) for lv in kept_levels(rec)]
    return "\n".join(lines) + "\n"

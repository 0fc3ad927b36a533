"""Renderings of a perf record: rich table, CSV, JSON, a PNG plot and a self-contained HTML page."""

from __future__ import annotations

import base64
import csv
import html
import io
import json
from pathlib import Path

from rich.table import Table

from zeroserve import engine, plots, records
from zeroserve.client.perf import metrics, panels
from zeroserve.client.perf.floor import floor_line
from zeroserve.client.perf.levels import level_count, level_failures
from zeroserve.records.perf import PerfLevel, PerfRecord
from zeroserve.records.tune import TuneRecord

CSV_COLUMNS = (
    "concurrency",
    "request_rate",
    "throughput",
    "requests_per_s",
    "p50_ms",
    "p90_ms",
    "p95_ms",
    "p99_ms",
    "max_ms",
    "mean_ms",
    "requests",
    "ok",
    "failed",
    "stable",
    "trials",
    "server_queue_us",
    "server_compute_input_us",
    "server_compute_infer_us",
    "server_compute_output_us",
    "client_cpu_us",
    "client_send_us",
    "client_check_us",
    "generator_cpu",
    "loop_cpu",
    "achieved_rate",
    "send_lag_p99_ms",
    "all_requests",
    "all_failed",
    "failures",
)


level_label = panels.label  # `c=4` or `100/s`: one spelling for tables, plots and notes


def flat_row(level: PerfLevel) -> dict:
    """One level as a flat dict of CSV_COLUMNS."""
    fields = level.to_json()
    row = {k: fields.get(k) for k in CSV_COLUMNS}  # the level's own figures under their names, the rest below
    server, client = level.server, level.client
    row["server_queue_us"] = server.queue_us if server else None
    row["server_compute_input_us"] = server.compute_input_us if server else None
    row["server_compute_infer_us"] = server.compute_infer_us if server else None
    row["server_compute_output_us"] = server.compute_output_us if server else None
    row["client_cpu_us"], row["client_send_us"], row["client_check_us"] = client.cpu_us, client.send_us, client.check_us
    row["all_requests"], row["all_failed"] = all_requests(level)
    row["failures"] = ";".join(f"{k}={v}" for k, v in level_failures(level)[0].items())
    return row


def all_requests(level: PerfLevel) -> tuple[int, int]:
    """(requests, failed) over the whole level (warm-up, windows, drain)."""
    return level_count(level, "requests"), level_count(level, "failed")


def title(rec: PerfRecord) -> str:
    return (
        f"{rec.triton_model} over {rec.protocol}, batch {rec.batch_size}, input {rec.input}, "
        f"shared memory {rec.shared_memory}, {len(rec.urls)} server(s)"
    )


def engine_title(rec: PerfRecord | TuneRecord) -> str:
    """The engine and machine the record was measured on, in one line (every report's title carries it)."""
    on = rec.measured_on if isinstance(rec, PerfRecord) else rec.tuned_on  # a tune record: its tuned_on
    facts = on.to_json() if on is not None else None
    return "measured on " + (engine.describe(facts) if facts else "an engine and machine the record does not name")


def table(rec: PerfRecord) -> Table:
    """The human table: one row per level."""
    t = Table(title=f"{title(rec)}\n{engine_title(rec)}")
    cols = (
        "level",
        "infer/s",
        "p50 ms",
        "p90 ms",
        "p95 ms",
        "p99 ms",
        "max ms",
        "mean ms",
        "requests",
        "failed",
        "server queue/in/infer/out µs",
        "client cpu/send/check µs",
        "gen CPU",
        "stable",
    )
    for c in cols:
        t.add_column(c, justify="left" if c == "level" else "right")
    for lv in rec.levels:
        s, cost = lv.server, lv.client
        server_split = (
            "/".join(f"{x:.0f}" for x in (s.queue_us, s.compute_input_us, s.compute_infer_us, s.compute_output_us))
            if s
            else "-"
        )
        client = "/".join(f"{x:.0f}" for x in (cost.cpu_us, cost.send_us, cost.check_us))
        mark = "" if lv.rate_kept in (True, None) else " (rate not kept)"
        requests, failed = all_requests(lv)
        t.add_row(
            level_label(lv) + mark,
            f"{lv.throughput:.1f}",
            *(f"{x:.2f}" for x in _latencies(lv)),
            str(requests),
            str(failed),
            server_split,
            client,
            f"{lv.generator_cpu:.0%}",
            "yes" if lv.stable else f"no ({lv.trials})",
        )
    return t


def _latencies(lv: PerfLevel) -> tuple[float, ...]:
    return lv.p50_ms, lv.p90_ms, lv.p95_ms, lv.p99_ms, lv.max_ms, lv.mean_ms


def to_csv(rec: PerfRecord) -> str:
    buf = io.StringIO()
    gpu = tuple(metrics.CSV_COLUMNS) if rec.collect_metrics else ()  # perf_analyzer's --collect-metrics
    w = csv.DictWriter(buf, fieldnames=(*CSV_COLUMNS, *gpu), lineterminator="\n")
    w.writeheader()
    for lv in rec.levels:
        w.writerow({**flat_row(lv), **(metrics.csv_columns(lv) if gpu else {})})
    return buf.getvalue()


def perf_figure(rec: PerfRecord):
    """The summary figure (client/perf/panels.py): throughput vs p99 per level (a level that did not stabilise
    ringed in red and labelled "not stable"), the latency breakdown, server CPU and memory; engine and floor in the
    title."""
    return panels.perf_figure(rec, floor_line(rec))


def plot_png(rec: PerfRecord) -> bytes:
    """The perf figure as PNG bytes."""
    return plots.png(perf_figure(rec))


def html_page(
    page_title: str,
    heading: str,
    head: list[str],
    rows: list[str],
    png: bytes,
    alt: str,
    notes_title: str,
    notes: str,
    settings: dict,
    subtitle: str = "",
) -> str:
    """One self-contained report page (perf's and tune's): a table, the plot as base64, notes and settings."""
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>{html.escape(page_title)}</title>
<style>body{{font-family:sans-serif;margin:2em}}table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:4px 8px;text-align:right}}th{{background:#eee}}</style></head>
<body><h1>{html.escape(heading)}</h1>
{"".join(f"<p><b>{html.escape(line)}</b></p>" for line in subtitle.splitlines())}
<table><tr>{"".join(f"<th>{html.escape(h)}</th>" for h in head)}</tr>{"".join(rows)}</table>
<p><img alt="{html.escape(alt)}" src="data:image/png;base64,{base64.b64encode(png).decode()}"></p>
<h2>{html.escape(notes_title)}</h2><ul>{notes}</ul>
<h2>Settings</h2><pre>{html.escape(json.dumps(settings, indent=2, default=str))}</pre>
</body></html>
"""


def to_html(rec: PerfRecord, png: bytes) -> str:
    """A self-contained page: the table, the plot embedded as base64, the notes and the settings."""
    head = [
        "level",
        "infer/s",
        "p50 ms",
        "p90 ms",
        "p95 ms",
        "p99 ms",
        "max ms",
        "mean ms",
        "requests",
        "failed",
        "queue µs",
        "compute input µs",
        "infer µs",
        "compute output µs",
        "client CPU µs",
        "generator CPU",
        "server counted",
        "server CPU cores",
        "server RSS MB",
        "stable",
    ]
    rows = []
    for lv in rec.levels:
        s = lv.server
        split = (s.queue_us, s.compute_input_us, s.compute_infer_us, s.compute_output_us) if s else (0.0,) * 4
        requests, failed = all_requests(lv)
        cells = [
            level_label(lv),
            f"{lv.throughput:.1f}",
            *(f"{x:.3f}" for x in _latencies(lv)),
            str(requests),
            str(failed),
            *(f"{x:.1f}" for x in split),
            f"{lv.client.cpu_us:.0f}",
            f"{lv.generator_cpu:.0%}",
            *server_cells(lv),
            "yes" if lv.stable else "no",
        ]
        rows.append("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in cells) + "</tr>")
    notes = "".join(f"<li>{html.escape(n)}</li>" for n in [*floor_notes(rec), *rec.notes])
    fields = rec.to_json()
    settings = {  # the run's settings as the record holds them, by their record names
        k: fields[k]
        for k in (
            "model",
            "triton_model",
            "protocol",
            "format",
            "urls",
            "batch_size",
            "input",
            "shared_memory",
            "mode",
            "distribution",
            "latency_budget_ms",
            "best",
            "window_s",
            "stability",
            "max_trials",
            "started",
            "streaming",
            "latency_metric",
            "outcome",
        )
        if k in fields
    }
    return html_page(
        f"zeroserve perf: {rec.triton_model}",
        f"zeroserve perf: {title(rec)}",
        head,
        rows,
        png,
        "throughput vs p99, latency breakdown, server CPU and memory vs throughput",
        "Notes",
        notes,
        settings,
        subtitle="\n".join(x for x in (engine_title(rec), floor_line(rec)) if x),
    )


def server_cells(level: PerfLevel) -> list[str]:
    """The server's own figures of a level: its count of the requests (against the client's), CPU and RSS."""
    m, res = level.server_metrics, level.server_resources
    counted = (
        "-"
        if m is None or m.requests is None
        else f"{m.requests}" + ("" if m.agrees else f" (client {m.client_requests})")
    )
    return [
        counted,
        f"{res.cpu_cores:.2f}" if res else "-",
        f"{res.peak_rss_mb if res.peak_rss_mb is not None else res.rss_mb:.0f}" if res else "-",
    ]


def floor_notes(rec: PerfRecord) -> list[str]:
    """One line per level of the model beside its floor (client perf --floor)."""
    floor = rec.floor
    if not floor:
        return []
    return [
        f"{level_label(p)}: model p50 {p.model_p50_ms:.3f} ms, floor ({floor.triton_model}) "
        f"{p.floor_p50_ms:.3f} ms, the model adds {p.added_p50_ms:+.3f} ms; throughput "
        f"{p.model_throughput:,.0f} vs {p.floor_throughput:,.0f} infer/s"
        for p in floor.comparison
    ]


def write_report(rec: PerfRecord, folder: Path) -> dict[str, Path]:
    """perf.json, perf.csv, perf.png and perf.html in `folder`; their paths."""
    folder = records.ensure_writable_dir(Path(folder))
    png = plot_png(rec)
    paths = {
        "json": folder / "perf.json",
        "csv": folder / "perf.csv",
        "png": folder / "perf.png",
        "html": folder / "perf.html",
    }
    rec.save(paths["json"])
    records.write_bytes(paths["csv"], to_csv(rec).encode())
    records.write_bytes(paths["png"], png)
    records.write_bytes(paths["html"], to_html(rec, png).encode())
    return paths

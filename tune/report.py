"""Renderings of a tuning record: the rich table, a PNG (throughput against latency, the Pareto front), HTML."""

from __future__ import annotations

import html
from pathlib import Path

from rich.table import Table

from zeroserve import plots, records
from zeroserve.client.perf import panels
from zeroserve.client.perf.report import engine_title, html_page
from zeroserve.records.tune import TuneEntry, TuneRecord


def _fmt(v, spec: str = ".2f", none: str = "-") -> str:
    return none if v is None else format(v, spec)


def _split(m: TuneEntry) -> str:
    s = m.server
    if s is None:
        return "-"
    return "/".join(f"{v:.0f}" for v in (s.queue_us, s.compute_input_us, s.compute_infer_us, s.compute_output_us))


def _status(m: TuneEntry, rec: TuneRecord) -> str:
    if m.error:
        return m.error
    if not m.meets_budget:
        return "over budget at c=1"
    if m.failed:
        return f"{m.failed} failed requests"
    if rec.min_throughput and m.throughput < rec.min_throughput:
        return "under --min-throughput"
    flag = f" (unstable at c={','.join(map(str, m.unstable_levels))})" if m.unstable_levels else ""
    return "ok" + flag


def pareto(points: list[tuple[float, float]]) -> list[int]:
    """Indices of the points (throughput, latency) no other point beats on both: higher throughput, lower latency."""
    front = []
    for i, (t, lat) in enumerate(points):
        if not any((t2 >= t and l2 <= lat) and (t2 > t or l2 < lat) for j, (t2, l2) in enumerate(points) if j != i):
            front.append(i)
    return sorted(front, key=lambda i: points[i][0])


def table(rec: TuneRecord) -> Table:
    metric = rec.latency_metric.removesuffix("_ms")
    t = Table(
        title=f"zeroserve tune {rec.model}: {rec.search} search, budget {rec.latency_budget_ms:g} ms "
        f"{metric}, over {rec.protocol}\n{engine_title(rec)}"
    )
    for c in (
        "#",
        "config",
        "c",
        "infer/s in budget",
        "p50 ms",
        f"{metric} ms",
        "server queue/in/infer/out µs",
        "status",
    ):
        t.add_column(c, justify="left" if c in ("config", "status") else "right")
    best = rec.chosen.candidate if rec.chosen else None
    for i, m in enumerate(rec.candidates, 1):
        mark = (" [bold green]← chosen[/]" if m.candidate == best else "") + (" (deployed)" if m.deployed else "")
        t.add_row(
            str(i),
            m.label + mark,
            _fmt(m.concurrency, "d"),
            _fmt(m.throughput, ".0f"),
            _fmt(m.p50_ms),
            _fmt(m.latency_ms),
            _split(m),
            _status(m, rec),
        )
    return t


def closing(rec: TuneRecord) -> list[str]:
    """The closing lines: the choice, the side-by-side re-measurement and its ratio."""
    lines = []
    chosen, side = rec.chosen, rec.side_by_side
    if side:
        deployed, best = side.median["deployed"], side.median["best"]
        ratio = "-" if side.ratio is None else f"{side.ratio:.3f}"
        lines.append(
            f"side by side, interleaved, median of {len(side.rounds)}: deployed "
            f"{deployed.throughput:.0f} infer/s (p99 {deployed.p99_ms:.2f} ms), best "
            f"{best.throughput:.0f} infer/s (p99 {best.p99_ms:.2f} ms): "
            f"ratio {ratio}x"
        )
    if chosen:
        if rec.chosen_is_deployed:
            lines.append(
                f"best: the deployed config ({chosen.label}), {chosen.throughput:.0f} infer/s within "
                "the budget; nothing to change"
            )
        else:
            gain = f", {rec.gain:.2f}x the deployed config" if rec.gain else ""
            lines.append(
                f"best: {chosen.label}, {chosen.throughput:.0f} infer/s within the budget at "
                f"c={chosen.concurrency}{gain}"
            )
    return lines


def plot_png(rec: TuneRecord) -> bytes:
    """The summary figure (client/perf/panels.py): each candidate's levels against the budget's latency with the
    Pareto front of the in-budget points and the chosen one, each candidate's latency breakdown, server CPU and memory
    against throughput; the engine and the floor in the title."""
    return plots.png(panels.tune_figure(rec, pareto))


def to_html(rec: TuneRecord, png: bytes) -> str:
    head = [
        "#",
        "config",
        "concurrency",
        "infer/s in budget",
        "p50 ms",
        "latency ms",
        "server queue/in/infer/out µs",
        "status",
    ]
    best = rec.chosen.candidate if rec.chosen else None
    rows = []
    for i, m in enumerate(rec.candidates, 1):
        cells = [
            str(i),
            m.label + (" (deployed)" if m.deployed else "") + (" (chosen)" if m.candidate == best else ""),
            _fmt(m.concurrency, "d"),
            _fmt(m.throughput, ".1f"),
            _fmt(m.p50_ms, ".3f"),
            _fmt(m.latency_ms, ".3f"),
            _split(m),
            _status(m, rec),
        ]
        rows.append("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in cells) + "</tr>")
    notes = "".join(f"<li>{html.escape(n)}</li>" for n in [*closing(rec), rec.outcome.reason, *rec.notes] if n)
    settings = rec.model_dump(  # the settings as the record's JSON holds them
        mode="json",
        include={
            "model",
            "triton_model",
            "search",
            "latency_budget_ms",
            "latency_metric",
            "min_throughput",
            "protocol",
            "max_concurrency",
            "window_s",
            "space",
            "floor",
            "tuned_on",
            "seconds",
            "outcome",
        },
    )
    floor = rec.floor
    return html_page(
        f"zeroserve tune: {rec.model}",
        f"zeroserve tune: {rec.model}",
        head,
        rows,
        png,
        "throughput against latency per candidate, Pareto front",
        "Result",
        notes,
        settings,
        subtitle=engine_title(rec)
        + (f"\nfloor (no-op twin) at c=1: p50 {floor.p50_ms:.3f} ms, p99 {floor.p99_ms:.3f} ms" if floor else ""),
    )


def write_report(rec: TuneRecord, folder: Path) -> dict[str, Path]:
    """tune.json, tune.png and tune.html in `folder`; their paths."""
    folder = records.ensure_writable_dir(Path(folder))
    png = plot_png(rec)
    paths = {"json": folder / "tune.json", "png": folder / "tune.png", "html": folder / "tune.html"}
    rec.save(paths["json"])
    records.write_bytes(paths["png"], png)
    records.write_bytes(paths["html"], to_html(rec, png).encode())
    return paths

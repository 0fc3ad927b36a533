"""The summary figure a Model Analyzer user recognises, for a perf record and for a tune record.

Four panels on one PNG: throughput against p99 latency (per level; per candidate for tune, with
the Pareto front marked), the latency breakdown as stacked bars per level (client send,
network and server send/recv, server queue, compute input/infer/output, client receive, as
perf_analyzer splits it), and the server's CPU and memory (its process tree) against throughput.
A level that did not stabilise is ringed in red. The title names the engine measured on and, when
measured, its floor (the no-op twin).
"""

from __future__ import annotations

from typing import Any, NamedTuple

from zeroserve import engine, plots
from zeroserve.records.measured import MeasuredOn
from zeroserve.records.perf import FloorComparison, PerfLevel, PerfRecord, ServerResources
from zeroserve.records.tune import TuneEntry, TuneLevel, TuneRecord

UNSTABLE = {"s": 170, "facecolors": "none", "edgecolors": "red", "linewidths": 1.5, "zorder": 3}
# perf_analyzer's breakdown, bottom to top; None: what the rest leaves of the average latency
PARTS = (
    "client send",
    "network + server send/recv",
    "server queue",
    "compute input",
    "compute infer",
    "compute output",
    "client receive",
)
COLOURS = ("#9edae5", "#c7c7c7", "#ff7f0e", "#bcbd22", "#1f77b4", "#17becf", "#aec7e8")
PANELS = (
    "throughput vs p99 latency",
    "latency breakdown",
    "server CPU vs throughput",
    "server memory vs throughput",
)


class Point(NamedTuple):
    """One level as the panels draw it (a perf level's, or a tune candidate's level)."""

    throughput: float
    latency: float
    """The latency the series is drawn against (p99 by default)."""
    p99_ms: float
    stable: bool
    load: float
    """The load offered (concurrency or request rate): the order the levels were measured in."""
    resources: ServerResources | None = None


def point(level: PerfLevel, key: str = "p99_ms") -> Point:
    return Point(
        level.throughput,
        level.figure(key),
        level.p99_ms,
        level.stable,
        level.concurrency or level.request_rate or level.throughput,
        level.server_resources,
    )


def label(level: PerfLevel | FloorComparison) -> str:
    """`c=4` (a concurrency level) or `100/s` (a request rate)."""
    return f"c={level.concurrency}" if level.concurrency else f"{level.request_rate or 0:g}/s"


def breakdown(
    mean: float | None, server: tuple[float, float, float, float] | None, client: tuple[float, float] | None
) -> dict[str, float] | None:
    """A level's average latency split as perf_analyzer splits it (ms); None without the average or server split.

    `server`: µs of queue, compute input, infer and output per request; `client`: µs of send and receive."""
    if mean is None or not server:
        return None
    send, receive = client or (0.0, 0.0)
    us = (send, 0.0, *server, receive)
    parts = {name: part / 1e3 for name, part in zip(PARTS, us)}
    parts["network + server send/recv"] = max(0.0, mean - sum(parts.values()))
    return parts


def level_breakdown(level: PerfLevel) -> dict[str, float] | None:
    """A perf level's breakdown (`breakdown`)."""
    s, c = level.server, level.client
    server = (s.queue_us, s.compute_input_us, s.compute_infer_us, s.compute_output_us) if s else None
    return breakdown(level.mean_ms, server, (c.send_us, c.check_us))


def _bars(ax, names: list[str], parts: list[dict[str, float] | None], unstable: list[bool]) -> None:
    ax.set_title(PANELS[1], fontsize=9)
    if not any(parts):
        ax.text(0.5, 0.5, "no server-side split recorded", ha="center", va="center", transform=ax.transAxes)
        return
    bottom = [0.0] * len(names)
    for part, colour in zip(PARTS, COLOURS):
        heights = [(p or {}).get(part, 0.0) for p in parts]
        ax.bar(names, heights, bottom=bottom, label=part, color=colour, edgecolor="white", linewidth=0.5)
        bottom = [b + h for b, h in zip(bottom, heights)]
    for i, bad in enumerate(unstable):
        if bad:
            ax.annotate("not stable", (i, bottom[i]), ha="center", va="bottom", fontsize=7, color="red")
    ax.set_ylabel("average latency (ms)")
    ax.tick_params(axis="x", labelsize=7, rotation=30)
    ax.legend(fontsize=6, loc="upper left")


def _resources(ax_cpu, ax_mem, series: list[tuple[str, list[Point], dict[str, Any]]]) -> None:
    """Server CPU and memory (process tree) against throughput, one line per series."""
    ax_cpu.set_title(PANELS[2], fontsize=9)
    ax_mem.set_title(PANELS[3], fontsize=9)
    drawn = False
    for name, levels, style in series:
        pts = sorted((p for p in levels if p.resources), key=lambda p: p.load)
        if not pts:
            continue
        drawn = True
        xs = [p.throughput for p in pts]
        bad = [i for i, p in enumerate(pts) if not p.stable]
        used = [p.resources for p in pts if p.resources]
        for ax, ys in (
            (ax_cpu, [r.cpu_cores for r in used]),
            (ax_mem, [r.peak_rss_mb if r.peak_rss_mb is not None else r.rss_mb for r in used]),
        ):
            ax.plot(xs, ys, label=name, **style)
            if bad:
                ax.scatter([xs[i] for i in bad], [ys[i] for i in bad], **UNSTABLE)
    for ax, what in ((ax_cpu, "server CPU (cores busy)"), (ax_mem, "server RSS (MB, peak)")):
        ax.set_xlabel("throughput (inferences/s)")
        ax.set_ylabel(what)
        ax.grid(alpha=0.3)
        if not drawn:
            ax.text(0.5, 0.5, "no process-tree figures recorded", ha="center", va="center", transform=ax.transAxes)
        elif len(series) > 1:
            ax.legend(fontsize=6)


def _latency(
    ax, series: list[tuple[str, list[Point], dict[str, Any]]], budget: float | None = None, key: str = "p99_ms"
) -> None:
    """Throughput (x) against `key`'s latency (y, p99 by default), one line per series; unstable levels ringed."""
    ax.set_title(PANELS[0], fontsize=9)
    ringed = False
    for name, levels, style in series:
        levels = sorted(levels, key=lambda p: p.load)  # in the order of the load offered, as the levels were measured
        if not levels:
            continue
        ax.plot([p.throughput for p in levels], [p.latency for p in levels], label=name, **style)
        bad = [p for p in levels if not p.stable]
        if bad:
            ax.scatter(
                [p.throughput for p in bad],
                [p.p99_ms for p in bad],
                **UNSTABLE,
                label=None if ringed else "not stable",
            )
            ringed = True
    if budget is not None:
        ax.axhline(budget, color="grey", linestyle="--", linewidth=1, label="budget")
    ax.set_xlabel("throughput (inferences/s)")
    ax.set_ylabel(f"{key.removesuffix('_ms')} latency (ms)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=6)


def _title(fig, first: str, facts: MeasuredOn | dict | None, floor: str = "") -> None:
    if isinstance(facts, MeasuredOn):
        facts = facts.to_json()
    where = engine.describe(facts) if facts else "engine and machine not recorded"
    fig.suptitle("\n".join(x for x in (first, f"measured on {where}", floor) if x), fontsize=9)


def perf_figure(rec: PerfRecord, floor_line: str = ""):
    """The perf record's summary: four panels, one point per level (the floor's beside it when measured)."""
    fig, axes = plots.subplots((12, 8.5), grid=(2, 2))
    levels = rec.levels
    series = [(rec.triton_model, [point(lv) for lv in levels], {"marker": "o", "color": "#1f77b4"})]
    if rec.floor and rec.floor.levels:
        floor = [point(lv) for lv in rec.floor.levels]
        series.append((f"floor: {rec.floor.triton_model}", floor, {"marker": "s", "color": "grey", "ls": "--"}))
    _latency(axes[0][0], series)
    for lv in levels:
        text = label(lv) + ("" if lv.stable else " (not stable)")
        axes[0][0].annotate(text, (lv.throughput, lv.p99_ms), xytext=(3, 4), textcoords="offset points", fontsize=7)
    _bars(
        axes[0][1],
        [label(lv) for lv in levels],
        [level_breakdown(lv) for lv in levels],
        [not lv.stable for lv in levels],
    )
    _resources(axes[1][0], axes[1][1], series)
    _title(
        fig,
        f"zeroserve perf: {rec.triton_model} over {rec.protocol}, batch {rec.batch_size}",
        rec.measured_on,
        floor_line,
    )
    return fig


def tune_figure(rec: TuneRecord, pareto) -> Any:
    """The tune record's summary: each candidate's levels against p99 with the Pareto front of the candidates'
    in-budget points, each candidate's breakdown at its chosen level, and its server CPU and memory."""
    fig, axes = plots.subplots((12, 8.5), grid=(2, 2))
    rows = [m for m in rec.candidates if m.levels]
    number = {id(m): i for i, m in enumerate(rec.candidates, 1)}  # the table's numbering
    key = rec.latency_metric
    series = [
        (_short(m, number[id(m)]), _tune_points(m.levels, key), {"marker": ".", "alpha": 0.7, "lw": 1}) for m in rows
    ]
    _latency(axes[0][0], series, rec.latency_budget_ms, key)
    met = [m for m in rows if m.meets_budget and m.latency_ms is not None]
    pts = [(m.throughput, float(m.latency_ms or 0.0)) for m in met]
    front = pareto(pts)
    if front:
        axes[0][0].plot(
            [pts[i][0] for i in front],
            [pts[i][1] for i in front],
            color="#d62728",
            lw=2,
            marker="D",
            label="Pareto front",
        )
    chosen = rec.chosen.candidate if rec.chosen else None
    for m in met:
        if m.candidate == chosen:
            axes[0][0].scatter(
                [m.throughput], [m.latency_ms], s=160, marker="*", color="#2ca02c", zorder=4, label="chosen"
            )
    axes[0][0].legend(fontsize=6, ncol=2)
    shown = met or rows
    _bars(
        axes[0][1],
        [_short(m, number[id(m)], full=False) for m in shown],
        [_tune_breakdown(m) for m in shown],
        [not m.stable for m in shown],
    )
    _resources(axes[1][0], axes[1][1], series)
    floor = rec.floor
    floor_text = (
        f"floor (no-op twin) at c=1: p50 {floor.p50_ms:.2f} ms, p99 {floor.p99_ms:.2f} ms"
        if floor and floor.p50_ms
        else ""
    )
    _title(
        fig,
        f"zeroserve tune {rec.model}: {len(rec.candidates)} candidates, budget {rec.latency_budget_ms:g} ms "
        f"{rec.latency_metric.removesuffix('_ms')}",
        rec.tuned_on,
        floor_text,
    )
    return fig


def _tune_points(levels: list[TuneLevel], key: str) -> list[Point]:
    """A tune candidate's levels (tune/record.py's summary of its perf levels) as the panels' points."""
    return [
        Point(
            lv.throughput,
            lv.figure(key) or 0.0,
            lv.figure("p99_ms") or 0.0,
            lv.stable,
            lv.concurrency or lv.throughput,
            lv.server_resources,
        )
        for lv in levels
    ]


def _tune_breakdown(m: TuneEntry) -> dict[str, float] | None:
    server, client = m.server, m.client
    return breakdown(
        m.mean_ms,
        (server.queue_us, server.compute_input_us, server.compute_infer_us, server.compute_output_us)
        if server
        else None,
        (client.send_us, client.check_us) if client else None,
    )


def _short(m: TuneEntry, number: int, full: bool = True) -> str:
    """`#2 onnx inst 1, ...` in legends; `#2` under a bar (the legend and the table name it)."""
    if not full:
        return f"#{number}" + (" (deployed)" if m.deployed else "")
    return f"#{number} {m.label}" + (" (deployed)" if m.deployed else "")

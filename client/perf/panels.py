"""The summary figure a Model Analyzer user recognises, for a perf record and for a tune record.

Four panels on one PNG: throughput against p99 latency (per level; per candidate for tune, with
the Pareto front marked), the latency breakdown as stacked bars per level (client send,
network and server send/recv, server queue, compute input/infer/output, client receive, as
perf_analyzer splits it), and the server's CPU and memory (its process tree) against throughput.
A level that did not stabilise is ringed in red. The title names the engine measured on and, when
measured, its floor (the no-op twin).
"""

from __future__ import annotations

from typing import Any

from zeroserve import engine, plots

UNSTABLE = {"s": 170, "facecolors": "none", "edgecolors": "red", "linewidths": 1.5, "zorder": 3}
# perf_analyzer's breakdown, bottom to top: (label, how to get µs from a level)
PARTS = (
    ("client send", lambda lv: (lv.get("client") or {}).get("send_us", 0.0)),
    ("network + server send/recv", None),  # what the rest leaves of the average latency
    ("server queue", lambda lv: (lv.get("server") or {}).get("queue_us", 0.0)),
    ("compute input", lambda lv: (lv.get("server") or {}).get("compute_input_us", 0.0)),
    ("compute infer", lambda lv: (lv.get("server") or {}).get("compute_infer_us", 0.0)),
    ("compute output", lambda lv: (lv.get("server") or {}).get("compute_output_us", 0.0)),
    ("client receive", lambda lv: (lv.get("client") or {}).get("check_us", 0.0)),
)
COLOURS = ("#9edae5", "#c7c7c7", "#ff7f0e", "#bcbd22", "#1f77b4", "#17becf", "#aec7e8")
PANELS = (
    "throughput vs p99 latency",
    "latency breakdown",
    "server CPU vs throughput",
    "server memory vs throughput",
)


def label(level: dict) -> str:
    """`c=4` (a concurrency level) or `100/s` (a request rate)."""
    return f"c={level['concurrency']}" if level.get("concurrency") else f"{level.get('request_rate') or 0:g}/s"


def breakdown(level: dict) -> dict[str, float] | None:
    """A level's average latency split as perf_analyzer splits it (ms); None without the average or server split."""
    mean = level.get("mean_ms")
    if mean is None or not level.get("server"):
        return None
    parts = {name: (get(level) / 1e3 if get else 0.0) for name, get in PARTS}
    parts["network + server send/recv"] = max(0.0, mean - sum(parts.values()))
    return parts


def _bars(ax, names: list[str], parts: list[dict[str, float] | None], unstable: list[bool]) -> None:
    ax.set_title(PANELS[1], fontsize=9)
    if not any(parts):
        ax.text(0.5, 0.5, "no server-side split recorded", ha="center", va="center", transform=ax.transAxes)
        return
    bottom = [0.0] * len(names)
    for (part, _), colour in zip(PARTS, COLOURS):
        heights = [(p or {}).get(part, 0.0) for p in parts]
        ax.bar(names, heights, bottom=bottom, label=part, color=colour, edgecolor="white", linewidth=0.5)
        bottom = [b + h for b, h in zip(bottom, heights)]
    for i, bad in enumerate(unstable):
        if bad:
            ax.annotate("not stable", (i, bottom[i]), ha="center", va="bottom", fontsize=7, color="red")
    ax.set_ylabel("average latency (ms)")
    ax.tick_params(axis="x", labelsize=7, rotation=30)
    ax.legend(fontsize=6, loc="upper left")


def _resources(ax_cpu, ax_mem, series: list[tuple[str, list[dict], dict[str, Any]]]) -> None:
    """Server CPU and memory (process tree) against throughput, one line per series."""
    ax_cpu.set_title(PANELS[2], fontsize=9)
    ax_mem.set_title(PANELS[3], fontsize=9)
    drawn = False
    for name, levels, style in series:
        pts = [(lv["throughput"], lv["server_resources"], lv) for lv in levels if lv.get("server_resources")]
        pts.sort(key=lambda p: _load(p[2]))
        if not pts:
            continue
        drawn = True
        xs = [p[0] for p in pts]
        bad = [i for i, p in enumerate(pts) if not p[2].get("stable", True)]
        for ax, ys in (
            (ax_cpu, [p[1]["cpu_cores"] for p in pts]),
            (ax_mem, [p[1].get("peak_rss_mb", p[1]["rss_mb"]) for p in pts]),
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
    ax, series: list[tuple[str, list[dict], dict[str, Any]]], budget: float | None = None, key: str = "p99_ms"
) -> None:
    """Throughput (x) against `key`'s latency (y, p99 by default), one line per series; unstable levels ringed."""
    ax.set_title(PANELS[0], fontsize=9)
    ringed = False
    for name, levels, style in series:
        levels = sorted(levels, key=_load)  # in the order of the load offered, as the levels were measured
        if not levels:
            continue
        ax.plot([lv["throughput"] for lv in levels], [lv[key] for lv in levels], label=name, **style)
        bad = [lv for lv in levels if not lv.get("stable", True)]
        if bad:
            ax.scatter(
                [lv["throughput"] for lv in bad],
                [lv["p99_ms"] for lv in bad],
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


def _title(fig, first: str, facts: dict | None, floor: str = "") -> None:
    where = engine.describe(facts) if facts else "engine and machine not recorded"
    fig.suptitle("\n".join(x for x in (first, f"measured on {where}", floor) if x), fontsize=9)


def perf_figure(rec: dict, floor_line: str = ""):
    """The perf record's summary: four panels, one point per level (the floor's beside it when measured)."""
    fig, axes = plots.subplots((12, 8.5), grid=(2, 2))
    levels = rec["levels"]
    floor = (rec.get("floor") or {}).get("levels") or []
    series = [(rec["triton_model"], levels, {"marker": "o", "color": "#1f77b4"})]
    if floor:
        series.append((f"floor: {rec['floor']['triton_model']}", floor, {"marker": "s", "color": "grey", "ls": "--"}))
    _latency(axes[0][0], series)
    for lv in levels:
        text = label(lv) + ("" if lv.get("stable", True) else " (not stable)")
        axes[0][0].annotate(
            text, (lv["throughput"], lv["p99_ms"]), xytext=(3, 4), textcoords="offset points", fontsize=7
        )
    _bars(
        axes[0][1],
        [label(lv) for lv in levels],
        [breakdown(lv) for lv in levels],
        [not lv.get("stable", True) for lv in levels],
    )
    _resources(axes[1][0], axes[1][1], series)
    _title(
        fig,
        f"zeroserve perf: {rec['triton_model']} over {rec['protocol']}, batch {rec['batch_size']}",
        rec.get("measured_on"),
        floor_line,
    )
    return fig


def tune_figure(rec: dict, pareto) -> Any:
    """The tune record's summary: each candidate's levels against p99 with the Pareto front of the candidates'
    in-budget points, each candidate's breakdown at its chosen level, and its server CPU and memory."""
    fig, axes = plots.subplots((12, 8.5), grid=(2, 2))
    rows = [m for m in rec["candidates"] if m.get("levels")]
    number = {id(m): i for i, m in enumerate(rec["candidates"], 1)}  # the table's numbering
    series = [(_short(m, number[id(m)]), m["levels"], {"marker": ".", "alpha": 0.7, "lw": 1}) for m in rows]
    key = rec["latency_metric"]
    _latency(axes[0][0], series, rec.get("latency_budget_ms"), key)
    met = [m for m in rows if m["meets_budget"] and m.get("latency_ms") is not None]
    pts = [(m["throughput"], m["latency_ms"]) for m in met]
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
    chosen = (rec.get("chosen") or {}).get("candidate")
    for m in met:
        if m["candidate"] == chosen:
            axes[0][0].scatter(
                [m["throughput"]], [m["latency_ms"]], s=160, marker="*", color="#2ca02c", zorder=4, label="chosen"
            )
    axes[0][0].legend(fontsize=6, ncol=2)
    shown = met or rows
    _bars(
        axes[0][1],
        [_short(m, number[id(m)], full=False) for m in shown],
        [breakdown(m) for m in shown],
        [not m.get("stable", True) for m in shown],
    )
    _resources(axes[1][0], axes[1][1], series)
    floor = rec.get("floor") or {}
    floor_text = (
        f"floor (no-op twin) at c=1: p50 {floor['p50_ms']:.2f} ms, p99 {floor['p99_ms']:.2f} ms"
        if floor.get("p50_ms")
        else ""
    )
    _title(
        fig,
        f"zeroserve tune {rec['model']}: {len(rec['candidates'])} candidates, budget {rec['latency_budget_ms']:g} ms "
        f"{rec['latency_metric'].removesuffix('_ms')}",
        rec.get("tuned_on"),
        floor_text,
    )
    return fig


def _load(level: dict) -> float:
    return level.get("concurrency") or level.get("request_rate") or level["throughput"]


def _short(m: dict, number: int, full: bool = True) -> str:
    """`#2 onnx inst 1, ...` in legends; `#2` under a bar (the legend and the table name it)."""
    if not full:
        return f"#{number}" + (" (deployed)" if m.get("deployed") else "")
    return f"#{number} {m['label']}" + (" (deployed)" if m.get("deployed") else "")

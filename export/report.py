"""The variant report: per model and variant, what it costs and what it buys, from the export records.

Every figure comes from `export.json` (the variant gate's held-out numbers and the in-process latencies
measured beside the base in the same run), plus served figures when the caller measured them (a
server up). The verdict only says what was measured: faster and within the gate, faster but over
the gate, no faster, or slower; an fp16 without a GPU is not measured at all.
"""

from __future__ import annotations

from pathlib import Path

from rich.table import Table

from zeroserve import formats as F
from zeroserve import plots, records
from zeroserve.records.export import ExportRecord, Latency

SAME_SPEED = 0.05  # a ratio within 5% of 1 is no measurable speed-up on a shared CPU


def _ratio(
    lat: Latency | None, batch: int, base: str | None, key: str
) -> tuple[float | None, float | None, float | None]:
    row = (lat.at(batch) if lat else None) or {}
    b, v = row.get(str(base)), row.get(key)
    return b, v, (b / v if b and v else None)


def verdict(row: dict) -> str:
    """One line from the measured figures only."""
    if row["status"] == "UNVERIFIED":
        return "not measured here (needs a GPU)"
    speed = row.get("speedup_large")
    gate = "within the gate" if row["status"] == "PASS" else f"over the gate ({'; '.join(row['failed_rules'])})"
    if speed is None:
        return f"speed not measured; {gate}"
    if speed >= 1 + SAME_SPEED:
        return (
            f"faster ({speed:.2f}x at batch {row['large_batch']}) and {gate}"
            if row["status"] == "PASS"
            else f"faster ({speed:.2f}x at batch {row['large_batch']}) but {gate}"
        )
    if speed <= 1 - SAME_SPEED:
        return f"slower ({speed:.2f}x at batch {row['large_batch']}); {gate}"
    return f"no faster ({speed:.2f}x at batch {row['large_batch']}); {gate}"


def rows(done: list[ExportRecord], variants: tuple[str, ...] | None = None, served: dict | None = None) -> list[dict]:
    """One row per model and variant of the export records `done` (only `variants`, if given).

    Args:
        served: optional {triton name: {"c1_p50_ms", "c16_throughput"}} measured on a running server.
    """
    out = []
    for rec in done:
        big = int(rec.max_batch_size or 64)
        for key, e in rec.formats.items():
            fmt = F.FORMATS.get(key)
            if fmt is None or not fmt.variant or (variants and key not in variants):
                continue
            base = rec.formats.get(str(fmt.base))
            lat = e.latency_ms
            b1 = _ratio(lat, 1, fmt.base, key)
            bl = _ratio(lat, big, fmt.base, key)
            name = fmt.triton_name(rec.model)
            row = {
                "model": rec.model,
                "variant": fmt.variant,
                "format": key,
                "triton_name": name,
                "status": e.status,
                "bytes": e.bytes,
                "base_bytes": base.bytes if base else None,
                "metric": e.metric,
                "metric_fp32": e.metric_fp32,
                "metric_variant": e.metric_variant,
                "top1_agreement": e.top1_agreement,
                "max_abs": e.max_abs,
                "large_batch": big,
                "latency_b1_ms": {"base": b1[0], "variant": b1[1]},
                "speedup_b1": b1[2],
                "latency_large_ms": {"base": bl[0], "variant": bl[1]},
                "speedup_large": bl[2],
                "served": (served or {}).get(name),
                "served_base": (served or {}).get(F.get(str(fmt.base)).triton_name(rec.model)),
                "failed_rules": e.failed_rules or [],
                "note": e.note or e.reason or "",
            }
            row["verdict"] = verdict(row)
            out.append(row)
    return out


def _fmt(v, spec: str) -> str:
    return "-" if v is None else format(v, spec)


def _served(r: dict) -> str:
    """`base → variant` c=1 p50 and c=16 throughput, where measured."""
    v, b = r.get("served") or {}, r.get("served_base") or {}
    if not v:
        return "no server"
    return (
        f"{_fmt(b.get('c1_p50_ms'), '.2f')} → {_fmt(v.get('c1_p50_ms'), '.2f')} ms / "
        f"{_fmt(b.get('c16_throughput'), ',.0f')} → {_fmt(v.get('c16_throughput'), ',.0f')}/s"
    )


def table(rows: list[dict]) -> Table:
    t = Table(title="variants: in-process, 1 CPU thread, measured beside the base in one run")
    for c in (
        "model",
        "variant",
        "gate",
        "size",
        "b1 ms base→variant",
        "b64 ms base→variant",
        "metric fp32→variant",
        "top-1 agree",
        "served fp32→variant c=1 p50 / c=16",
        "verdict",
    ):
        t.add_column(c)
    for r in rows:
        b1, bl = r["latency_b1_ms"], r["latency_large_ms"]
        t.add_row(
            r["model"],
            r["variant"],
            r["status"],
            f"{_fmt(r['base_bytes'], ',')} → {_fmt(r['bytes'], ',')} B",
            f"{_fmt(b1['base'], '.3f')} → {_fmt(b1['variant'], '.3f')}",
            f"{_fmt(bl['base'], '.3f')} → {_fmt(bl['variant'], '.3f')}",
            f"{r['metric'] or ''} {_fmt(r['metric_fp32'], '.4f')} → {_fmt(r['metric_variant'], '.4f')}",
            "-" if r["top1_agreement"] is None else f"{r['top1_agreement']:.2%}",
            _served(r),
            r["verdict"],
        )
    return t


def markdown(rows: list[dict]) -> str:
    head = (
        "| model | variant | gate | bytes | b1 ms | b64 ms | metric fp32 → variant | top-1 agreement | "
        "served fp32 → variant: c=1 p50 / c=16 | verdict |\n|" + " --- |" * 10 + "\n"
    )
    lines = []
    for r in rows:
        b1, bl = r["latency_b1_ms"], r["latency_large_ms"]
        agree = "-" if r["top1_agreement"] is None else f"{r['top1_agreement']:.2%}"
        lines.append(
            f"| {r['model']} | {r['variant']} | {r['status']} | {_fmt(r['base_bytes'], ',')} → "
            f"{_fmt(r['bytes'], ',')} | {_fmt(b1['base'], '.3f')} → {_fmt(b1['variant'], '.3f')} | "
            f"{_fmt(bl['base'], '.3f')} → {_fmt(bl['variant'], '.3f')} | {r['metric'] or ''} "
            f"{_fmt(r['metric_fp32'], '.4f')} → {_fmt(r['metric_variant'], '.4f')} | {agree} | "
            + _served(r)
            + f" | {r['verdict']} |"
        )
    notes = [f"- {r['model']} {r['variant']}: {r['note']}" for r in rows if r.get("note")]
    return (
        "# Variant report\n\nIn-process medians on 1 CPU thread, each variant timed beside its fp32 base in "
        "the same run; metric and agreement on the whole held-out set.\n\n"
        + head
        + "\n".join(lines)
        + "\n"
        + ("\n" + "\n".join(notes) + "\n" if notes else "")
    )


def plot_png(rows: list[dict]) -> bytes:
    """Speed-up over fp32 at batch 1 and the large batch, per model and variant (gate failures hatched)."""
    labels = [f"{r['model']}\n{r['variant']}" for r in rows]
    fig, ax = plots.subplots((max(5.0, 1.1 * len(rows) + 2), 4.2))
    width = 0.38
    big = rows[0]["large_batch"] if rows else 64
    for j, (field, label) in enumerate((("speedup_b1", "batch 1"), ("speedup_large", f"batch {big}"))):
        xs = [i + (j - 0.5) * width for i in range(len(rows))]
        ys = [r[field] or 0 for r in rows]
        bars = ax.bar(xs, ys, width, label=label)
        for bar, r in zip(bars, rows):
            if r["status"] == "FAIL":
                bar.set_hatch("//")
    ax.axhline(1.0, color="gray", lw=1, ls="--")
    ax.set_xticks(range(len(rows)), labels, fontsize=8)
    ax.set_ylabel("speed-up over fp32 (×)")
    ax.set_title("variants vs fp32, in-process, 1 thread\n(hatched: over the gate; no bar: not measured)", fontsize=10)
    ax.legend()
    return plots.png(fig)


def write(rows: list[dict], folder: Path) -> dict[str, Path]:
    """variants.md, variants.json and variants.png in `folder` (each written atomically); their paths."""
    folder = records.ensure_writable_dir(Path(folder))
    paths = {"md": folder / "variants.md", "json": folder / "variants.json", "png": folder / "variants.png"}
    png = plot_png(rows)
    records.write_bytes(
        paths["json"], (records.dumps({"schema": records.SCHEMA, "rows": rows}, indent=2) + "\n").encode()
    )
    records.write_bytes(paths["md"], markdown(rows).encode())
    records.write_bytes(paths["png"], png)
    return paths

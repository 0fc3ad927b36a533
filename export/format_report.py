"""The format comparison: per model and path (TorchScript, ONNX legacy, ONNX dynamo, PT2), what it costs.

Rows hold the export time and file size from the export record, the gate's verdict and worst error,
in-process medians at batch 1 and the max batch (1 CPU thread, the paths timed side by side), and
the served c=1 p50 where measured. `zeroserve export --report` writes them from one export's records
(one ONNX exporter); `make bench` (export/bench_formats.py) from all four paths of each model.
"""

from __future__ import annotations

import os
from pathlib import Path

from rich.table import Table

from zeroserve import records
from zeroserve.records.export import ExportRecord, FormatEntry
from zeroserve.spec import ModelSpec
from zeroserve.triton import machine

LABELS = {"torchscript": "TorchScript", "pt2": "PT2"}


def label(fmt: str, entry: FormatEntry) -> str:
    """`ONNX dynamo`, `TorchScript`, `PT2`: a path's name in the comparison."""
    return f"ONNX {entry.exporter or 'legacy'}" if fmt == "onnx" else LABELS.get(fmt, fmt)


def rows(spec: ModelSpec, paths: dict[str, dict], latency: dict, served: dict[str, dict]) -> list[dict]:
    """One row per path of `spec`.

    Args:
        paths: {label: {"entry": its export-record entry (a FormatEntry)} or {"reason": why it could not be made}}.
        latency: `exporter.measure_latency`'s record over the labels (and "eager").
        served: {label: {"batch_1": p50 ms or a reason, "batch_<max>": ...}}.
    """
    big = spec.max_batch_size
    out = []
    for name, p in paths.items():
        e: FormatEntry | None = p.get("entry")
        b1 = (latency.get("batch_1") or {}).get(name)
        bl = (latency.get(f"batch_{big}") or {}).get(name)
        worst = e.worst if e is not None else None
        out.append(
            {
                "model": spec.name,
                "path": name,
                "status": e.status if e is not None else "not made",
                "reason": p.get("reason", ""),
                "export_seconds": e.export_seconds if e is not None else None,
                "bytes": e.bytes if e is not None else None,
                "max_abs": worst.max_abs if worst is not None else None,
                "large_batch": big,
                "in_process_ms": {"batch_1": b1, f"batch_{big}": bl},
                "eager_ms": {
                    "batch_1": (latency.get("batch_1") or {}).get("eager"),
                    f"batch_{big}": (latency.get(f"batch_{big}") or {}).get("eager"),
                },
                "served_p50_ms": served.get(name, {}),
            }
        )
    return out


def from_records(done: list[ExportRecord], specs: dict[str, ModelSpec]) -> list[dict]:
    """Rows from export records (`zeroserve export --report`): each format timed in the record's latency."""
    out = []
    for rec in done:
        lat = rec.latency_ms.batches() if rec.latency_ms else {}
        keys = [k for k in rec.formats if k in (lat.get("batch_1") or {})]
        names = {k: label(k, rec.formats[k]) for k in keys}
        by_label = {
            batch: {names[k]: row.get(k) for k in keys} | {"eager": row.get("eager")} for batch, row in lat.items()
        }
        out += rows(specs[rec.model], {names[k]: {"entry": rec.formats[k]} for k in keys}, by_label, {})
    return out


def _ms(v) -> str:
    if v is None:
        return "-"
    return f"{v:.3f}" if isinstance(v, (int, float)) else "n/a"


def _cells(r: dict) -> list[str]:
    big = f"batch_{r['large_batch']}"
    ip, srv = r["in_process_ms"], r["served_p50_ms"] or {}
    size = (
        "-"
        if r["bytes"] is None
        else (f"{r['bytes'] / 1e6:.2f} MB" if r["bytes"] >= 1e5 else f"{r['bytes'] / 1e3:.1f} kB")
    )
    secs = "-" if r["export_seconds"] is None else f"{r['export_seconds']:.2g} s"
    err = "-" if r["max_abs"] is None else f"{r['max_abs']:.1e}"
    return [
        r["model"],
        r["path"],
        r["status"] if not r["reason"] else f"{r['status']}: {r['reason']}",
        secs,
        size,
        err,
        _ms(ip.get("batch_1")),
        _ms(ip.get(big)),
        _ms(srv.get("batch_1")),
        _ms(srv.get(big)),
    ]


HEADERS = (
    "model",
    "path",
    "gate",
    "export",
    "size",
    "max abs err",
    "in-process b1 ms",
    "in-process b64 ms",
    "served b1 p50 ms",
    "served b64 p50 ms",
)


def table(rows: list[dict]) -> Table:
    t = Table(title="formats: export time, size, in-process (1 thread) and served (gRPC c=1) latency")
    for h in HEADERS:
        t.add_column(h)
    for r in rows:
        t.add_row(*_cells(r))
    return t


def markdown(rows: list[dict], seconds: float | None = None) -> str:
    head = "| " + " | ".join(HEADERS) + " |\n|" + " --- |" * len(HEADERS) + "\n"
    lines = ["| " + " | ".join(c.replace("|", "/") for c in _cells(r)) + " |" for r in rows]
    notes = sorted(
        {
            f"- {r['model']} {r['path']}: {r['served_p50_ms'][k]}"
            for r in rows
            for k in r["served_p50_ms"]
            if isinstance(r["served_p50_ms"][k], str)
        }
    )
    took = f" The run took {seconds / 60:.1f} min." if seconds else ""
    return (
        "# Format comparison\n\n"
        f"Measured on {machine.cpu_model()} ({os.cpu_count()} cores, shared).{took} Export time includes "
        "the gate's export step only (PT2: torch.export and the AOTInductor compile); in-process medians on 1 "
        "CPU thread, every path timed side by side in one pass; served: the embedded engine (Triton 2.51, "
        "Python backend), gRPC, c=1 p50 (b64 column: batch = the model's max batch size).\n\n"
        + head
        + "\n".join(lines)
        + "\n"
        + ("\n" + "\n".join(notes) + "\n" if notes else "")
    )


def write(rows: list[dict], folder: Path, seconds: float | None = None) -> dict[str, Path]:
    """formats.md and formats.json in `folder` (each written atomically); their paths."""
    folder = records.ensure_writable_dir(Path(folder))
    paths = {"md": folder / "formats.md", "json": folder / "formats.json"}
    records.write_bytes(
        paths["json"], (records.dumps({"schema": records.SCHEMA, "rows": rows}, indent=2) + "\n").encode()
    )
    records.write_bytes(paths["md"], markdown(rows, seconds).encode())
    return paths

"""What `deploy` shows: the models written, skipped or failed, their warnings, the KServe manifests."""

from __future__ import annotations

from pathlib import Path

from rich.markup import escape
from rich.table import Table

from zeroserve.app.cliutil import console, err_console
from zeroserve.deploy.release import TARGET
from zeroserve.records.manifest import ManifestEntry


def print_deployed(
    repository: Path, deployed: list[ManifestEntry], skipped: list, failed: list, manifests: list
) -> None:
    """`deploy`'s table: each model written (backend, batch, queue, instances, warmup, sha), skipped or failed."""
    table = Table(title=f"deployed into {repository}/ for {TARGET.image}")
    for col in ("triton model", "backend", "max batch", "queue µs", "instances", "warmup", "artifact sha256"):
        table.add_column(col)
    for e in deployed:
        group = e.instance_group
        backend = f"{e.backend}" + (f" + TensorRT {e.tensorrt}" if e.tensorrt else "")
        table.add_row(
            e.name,
            backend,
            str(e.max_batch_size),
            str(e.max_queue_delay_us),
            f"{group.count} × {group.kind}" if group else "",
            e.warmup or "",
            (e.artifact_sha256 or "")[:12],
        )
    for s in skipped + failed:
        table.add_row(s["model"], "", "", "", "", "skipped" if s in skipped else "FAILED", "")
    console.print(table)
    for e in deployed:
        for line in e.warnings or []:
            err_console.print(f"[yellow]warning:[/] {escape(e.name)}: {escape(line)}", highlight=False, soft_wrap=True)
    for m in manifests:
        console.print(
            escape(f"KServe InferenceService {m['name']}: {m['path']} (checked; {m['upload']})"),
            highlight=False,
            soft_wrap=True,
        )

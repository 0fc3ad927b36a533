"""The format comparison for `make bench`: TorchScript, ONNX (legacy exporter), ONNX (dynamo exporter) and PT2.

Per model, each path is exported from the same checkpoint and gated (export time and file size
from its export record), then timed in-process side by side in one pass (1 CPU thread, batch 1 and
the model's max batch) and served by the embedded engine (`client perf`'s engine, gRPC, c=1 p50 at
batch 1 and the max batch). PT2 is deployed as the target serves it, max_batch_size 1, so it has no
served figure at the large batch. A path a model cannot take is a row with the reason.
Figures are printed and written (reports/formats/formats.md, .json), never asserted.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from pathlib import Path

from rich.console import Console

from zeroserve import formats as F
from zeroserve import registry
from zeroserve.artifacts import DEFAULT_ARTIFACTS, load_trained
from zeroserve.client.endpoints import Endpoint
from zeroserve.client.perf.run import run_perf
from zeroserve.errors import ZeroserveError
from zeroserve.export import exporter, runners
from zeroserve.export import format_report as R
from zeroserve.records.layout import ModelFolder
from zeroserve.spec import ModelSpec

# (path label, format key, ONNX exporter, folder): the legacy and dynamo ONNX files share a name, so
# each exporter's artifacts live in their own folder (and repository, and server).
PATHS = (
    ("TorchScript", "torchscript", "legacy", "legacy"),
    ("ONNX legacy", "onnx", "legacy", "legacy"),
    ("ONNX dynamo", "onnx", "dynamo", "dynamo"),
    ("PT2", "pt2", "dynamo", "dynamo"),
)
REPORT = Path("reports") / "formats"
WINDOW_S = 1.0


def _seed(spec: ModelSpec, source: Path, folder: Path) -> None:
    """The trained checkpoint (and its train.json) copied into a fresh artifacts folder."""
    src, dst = ModelFolder.of(source, spec.name), ModelFolder.of(folder, spec.name)
    dst.root.mkdir(parents=True, exist_ok=True)
    for mine, theirs in ((src.checkpoint, dst.checkpoint), (src.train_record, dst.train_record)):
        if mine.is_file():
            shutil.copyfile(mine, theirs)


def export_paths(spec: ModelSpec, source: Path, scratch: Path, data_dir: Path) -> dict[str, dict]:
    """Every path exported and gated: {label: {"folder", "format", "entry"} or {"reason"}}."""
    out: dict[str, dict] = {}
    for folder_name, exporter_name, formats in (
        ("legacy", "legacy", ("onnx", "torchscript")),
        ("dynamo", "dynamo", ("onnx",)),
        ("dynamo", "dynamo", ("pt2",)),
    ):
        folder = scratch / folder_name
        _seed(spec, source, folder)
        labels = [p for p in PATHS if p[3] == folder_name and p[1] in formats]
        try:
            rec = exporter.export_model(
                spec, folder, formats=formats, exporter=exporter_name, data_dir=data_dir, latency=False
            )
        except ZeroserveError as exc:
            for label, *_ in labels:
                out[label] = {"reason": str(exc).removeprefix(f"{spec.name}: ")}
            continue
        for label, key, *_ in labels:
            out[label] = {"folder": folder, "format": key, "entry": rec.formats[key]}
    return out


def in_process(spec: ModelSpec, source: Path, paths: dict[str, dict]) -> dict:
    """Median latency per path (and eager) at batch 1 and the max batch, timed side by side in one pass."""
    timed = {"eager": runners.eager_runner(load_trained(spec, source))}
    for label, p in paths.items():
        if "entry" in p:
            file = ModelFolder.of(p["folder"], spec.name).file(p["entry"].file)
            timed[label] = exporter.runner_of(p["format"], file, spec, threads=exporter.LATENCY_THREADS)
    return exporter.measure_latency(spec, timed, (1, spec.max_batch_size), budget_s=1.0)


def served(spec: ModelSpec, paths: dict[str, dict], scratch: Path, console: Console) -> dict[str, dict]:
    """c=1 p50 (ms) per path at batch 1 and the max batch, one private server per exporter folder."""
    from zeroserve.deploy.repository import deploy_model
    from zeroserve.serve.private import private_server

    out: dict[str, dict] = {}
    for folder_name in ("legacy", "dynamo"):
        mine = {label: p for label, p in paths.items() if "entry" in p and p["folder"].name == folder_name}
        if not mine:
            continue
        repo = scratch / f"repo-{folder_name}"
        try:
            deploy_model(spec, scratch / folder_name, repo, formats=tuple(p["format"] for p in mine.values()))
            with private_server(repo, None, purpose=f"zeroserve bench (formats, {folder_name})") as server:
                endpoint = Endpoint("127.0.0.1", server.state.http_port, server.state.grpc_port or 0, "bench")
                out.update({label: _served_figures(spec, endpoint, p["format"]) for label, p in mine.items()})
        except ZeroserveError as exc:
            console.print(f"[yellow]not served[/] {spec.name} ({folder_name}): {exc}")
    return out


def _served_figures(spec: ModelSpec, endpoint: Endpoint, fmt: str) -> dict[str, float | str]:
    figures: dict[str, float | str] = {}
    limit = F.get(fmt).handler.max_batch_size
    for batch in (1, spec.max_batch_size):
        if limit is not None and batch > limit:
            figures[f"batch_{batch}"] = f"n/a (max_batch_size {limit} on the target)"
            continue
        rec = run_perf(
            spec,
            endpoint,
            fmt=fmt,
            protocol="grpc",
            concurrency=[1],
            batch_size=batch,
            window_s=WINDOW_S,
            warmup_s=0.5,
            max_trials=3,
            allow_unstable=True,
        )
        figures[f"batch_{batch}"] = rec.levels[0].p50_ms
    return figures


def compare(spec: ModelSpec, source: Path, data_dir: Path, console: Console, serve: bool = True) -> list[dict]:
    """One row per path of `spec`: export time, size, gate, in-process and served latency."""
    with tempfile.TemporaryDirectory(prefix=f"zs-bench-formats-{spec.name}-") as tmp:
        scratch = Path(tmp)
        paths = export_paths(spec, source, scratch, data_dir)
        lat = in_process(spec, source, paths)
        srv = served(spec, paths, scratch, console) if serve else {}
    return R.rows(spec, paths, lat, srv)


def main(
    artifacts: Path = DEFAULT_ARTIFACTS,
    models: list[str] | None = None,
    model_files=None,
    serve: bool = True,
    report: Path = REPORT,
) -> list[dict]:
    """The comparison for `models` (default: every registry model; one not trained under `artifacts` is
    trained first, in a scratch folder)."""
    from zeroserve.data.readers import default_data_dir

    console = Console(width=160)
    data_dir = default_data_dir()
    specs, _ = registry.select(models or ["all"], model_files)
    cache = tempfile.mkdtemp(prefix="zs-bench-formats-")
    rows: list[dict] = []
    started = time.time()
    try:
        for spec in specs:
            source = Path(artifacts)
            if not ModelFolder.of(source, spec.name).checkpoint.is_file() and spec.checkpoint is None:
                from zeroserve.train import train_model

                source = Path(cache) / "trained"  # as the export bench does: trained here when not under artifacts/
                try:
                    train_model(spec, data_dir, source)
                except ZeroserveError as exc:
                    console.print(f"[yellow]skipped[/] {spec.name}: {exc}")
                    continue
            console.print(f"formats bench: {spec.name}", highlight=False)
            rows += compare(spec, source, data_dir, console, serve)
    finally:
        shutil.rmtree(cache, ignore_errors=True)
    console.print(R.table(rows))
    paths = R.write(rows, report, seconds=time.time() - started)
    console.print(f"  format comparison: {paths['md']} ({paths['json'].name})", highlight=False)
    return rows


if __name__ == "__main__":
    import sys

    main(Path(os.environ.get("ZEROSERVE_ARTIFACTS", DEFAULT_ARTIFACTS)), sys.argv[1:] or None)

"""Client benchmark for `make bench`: every model served, side by side with in-process paths and PyTriton.

First the generator's own cost per request, part by part, and (when ZEROSERVE_PERF_ANALYZER names
perf_analyzer, see bench_reference) perf_analyzer against `client perf` on cnn_mnist, interleaved;
`python -m zeroserve.bench.client --reference` runs only that. Then each model's ONNX deployment at
concurrency 1 and 16 over gRPC and HTTP (perf's method, short windows), beside the same ONNX file in ONNX Runtime
in-process and eager PyTorch from the
checkpoint; then cnn_mnist's ONNX model bound through PyTriton (`Triton` + `bind`) and loaded the
same way. The generator's own CPU use is reported per level. Figures are printed, never asserted.
"""

from __future__ import annotations

import contextlib
import os
import statistics
import sys
import sysconfig
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

from zeroserve import engine, records, registry
from zeroserve.artifacts import DEFAULT_ARTIFACTS, load_trained
from zeroserve.client.endpoints import Endpoint
from zeroserve.client.perf import load
from zeroserve.client.perf.run import run_perf
from zeroserve.client.perf.windows import percentiles
from zeroserve.errors import ZeroserveError
from zeroserve.records.layout import ModelFolder
from zeroserve.triton import machine

LEVELS = (1, 16)
WINDOW_S = 0.5
WARMUP_S = 0.3
TRIALS = 3
INPROCESS_S = 0.5
BUDGET_S = 8 * 60  # stop starting new models past this, so `make bench` stays bounded
PYTRITON_MODEL = "cnn_mnist"


def _inprocess(call: Callable[[], None], concurrency: int, seconds: float) -> dict:
    """Closed loop of `concurrency` threads calling `call` for `seconds`: throughput and percentiles."""
    hists = [load.new_histogram() for _ in range(concurrency)]
    deadline = time.perf_counter() + seconds

    def worker(h) -> None:
        for _ in range(1_000_000):  # bounded in count as well as time
            t0 = time.perf_counter()
            call()
            t1 = time.perf_counter()
            h.record_value(max(1, round((t1 - t0) * 1e6)))
            if t1 >= deadline:
                return

    call()  # warm-up
    start = time.perf_counter()
    threads = [threading.Thread(target=worker, args=(h,), daemon=True) for h in hists]
    for t in threads:
        t.start()
    for t in threads:
        t.join(seconds + 30)
    wall = time.perf_counter() - start
    total = load.new_histogram()
    for h in hists:
        total.add(h)
    return {"throughput": total.get_total_count() / wall, **percentiles(total), "generator_cpu": None}


def _ort_call(path: Path, spec, arrays: list[np.ndarray]) -> Callable[[], None]:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1  # as the served session runs
    opts.inter_op_num_threads = 1
    session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    feed = {t.name: a for t, a in zip(spec.inputs, arrays)}
    return lambda: session.run(None, feed)


def _eager_call(spec, artifacts: Path, arrays: list[np.ndarray]) -> Callable[[], None]:
    import torch

    torch.set_num_threads(1)  # as the served ONNX Runtime session runs: one intra-op thread
    model = load_trained(spec, artifacts)
    tensors = [torch.from_numpy(a) for a in arrays]

    def call() -> None:
        with torch.no_grad():
            model(*tensors)

    return call


def _row(model: str, path: str, c: int, fig: dict) -> dict:
    return {
        "model": model,
        "path": path,
        "concurrency": c,
        "throughput": fig["throughput"],
        "p50_ms": fig["p50_ms"],
        "p99_ms": fig["p99_ms"],
        "generator_cpu": fig.get("generator_cpu"),
        "generator_us_per_request": (
            fig["generator_cpu"] * fig["seconds"] / fig["ok"] * 1e6
            if fig.get("generator_cpu") is not None and fig.get("ok")
            else None
        ),
        "stable": fig.get("stable", True),
        "measured_on": fig.get("measured_on"),
    }


def _served(spec, endpoint: Endpoint, protocol: str, path: str, url: str | None = None) -> list[dict]:
    """perf's levels of one served path as bench rows (the figures `_row` reads, and where they were measured)."""
    rec = run_perf(
        spec,
        endpoint,
        protocol=protocol,
        concurrency=list(LEVELS),
        window_s=WINDOW_S,
        warmup_s=WARMUP_S,
        max_trials=TRIALS,
        allow_unstable=True,
        urls=[url] if url else None,
    )
    on = rec.measured_on.to_json() if rec.measured_on else None
    return [
        _row(
            spec.name,
            path,
            lv.concurrency or 0,
            {
                "throughput": lv.throughput,
                "p50_ms": lv.p50_ms,
                "p99_ms": lv.p99_ms,
                "generator_cpu": lv.generator_cpu,
                "seconds": lv.seconds,
                "ok": lv.ok,
                "stable": lv.stable,
                "measured_on": on,
            },
        )
        for lv in rec.levels
    ]


@contextlib.contextmanager
def _pytriton(spec, onnx_path: Path):
    """The ONNX session bound through PyTriton on free loopback ports; yields the gRPC url."""
    import onnxruntime as ort
    from pytriton.decorators import batch
    from pytriton.model_config import DynamicBatcher, ModelConfig, Tensor
    from pytriton.triton import Triton, TritonConfig, TritonSecurityConfig

    from zeroserve.triton.ports import resolve_free_ports

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    session = ort.InferenceSession(str(onnx_path), opts, providers=["CPUExecutionProvider"])

    @batch
    def infer(**inputs):
        outs = session.run(None, {t.name: inputs[t.name] for t in spec.inputs})
        return {t.name: o for t, o in zip(spec.outputs, outs)}

    # The proxy's stub links libpython3.11: this interpreter's library must be found first,
    # or it fails in multiprocessing.
    env_before = {k: os.environ.get(k) for k in ("LD_LIBRARY_PATH", "PATH")}
    os.environ["LD_LIBRARY_PATH"] = ":".join(
        p for p in (sysconfig.get_config_var("LIBDIR"), env_before["LD_LIBRARY_PATH"]) if p
    )
    os.environ["PATH"] = f"{Path(sys.prefix) / 'bin'}:{env_before['PATH'] or ''}"
    ports = resolve_free_ports("127.0.0.1", dict.fromkeys(("http", "grpc", "metrics"), 0))
    grpc_port = ports["grpc"]
    config = TritonConfig(
        http_address="127.0.0.1",
        http_port=ports["http"],
        grpc_address="127.0.0.1",
        grpc_port=grpc_port,
        metrics_address="127.0.0.1",
        metrics_port=ports["metrics"],
        exit_timeout_secs=5,
        log_file=Path(tempfile.gettempdir()) / f"zs-pytriton-{os.getpid()}.log",
    )
    # perf reads the statistics extension, which PyTriton guards with a token by default; this
    # server listens on loopback only and lives for the benchmark, so it is left open.
    security = TritonSecurityConfig(restricted_endpoints=[])
    try:
        with Triton(config=config, security_config=security) as triton:
            triton.bind(
                model_name=spec.triton_name("onnx"),
                infer_func=infer,
                inputs=[Tensor(name=t.name, dtype=np.dtype(t.dtype), shape=tuple(t.triton_dims)) for t in spec.inputs],
                outputs=[
                    Tensor(name=t.name, dtype=np.dtype(t.dtype), shape=tuple(t.triton_dims)) for t in spec.outputs
                ],
                config=ModelConfig(
                    max_batch_size=spec.max_batch_size, batcher=DynamicBatcher(max_queue_delay_microseconds=100)
                ),
            )
            triton.run()
            yield f"127.0.0.1:{grpc_port}"
    finally:
        for k, v in env_before.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _print(console: Console, rows: list[dict], measured_on: dict) -> None:
    t = Table(
        title=f"client benchmark: batch 1, c=1 and c=16, windows of {WINDOW_S} s "
        f"(in-process paths: {INPROCESS_S} s per level)\nserved rows measured on {engine.describe(measured_on)}"
    )
    for c in (
        "model",
        "path",
        "c=1 p50 ms",
        "c=1 infer/s",
        "c=16 p50 ms",
        "c=16 p99 ms",
        "c=16 infer/s",
        "gen CPU (c=16)",
        "gen µs/request",
    ):
        t.add_column(c, justify="left" if c in ("model", "path") else "right")
    keyed = {(r["model"], r["path"], r["concurrency"]): r for r in rows}
    for model, path in dict.fromkeys((r["model"], r["path"]) for r in rows):
        one, many = keyed.get((model, path, 1)), keyed.get((model, path, 16))
        fmt = lambda r, k, f: f.format(r[k]) if r and r.get(k) is not None else "-"  # noqa: E731 - a one-line local helper
        t.add_row(
            model,
            path,
            fmt(one, "p50_ms", "{:.3f}"),
            fmt(one, "throughput", "{:.0f}"),
            fmt(many, "p50_ms", "{:.3f}"),
            fmt(many, "p99_ms", "{:.3f}"),
            fmt(many, "throughput", "{:.0f}"),
            fmt(many, "generator_cpu", "{:.0%}"),
            fmt(many, "generator_us_per_request", "{:.0f}"),
        )
    console.print(t)


def main(artifacts: Path = DEFAULT_ARTIFACTS, models: list[str] | None = None, reference_only: bool = False) -> dict:
    """Run the client benchmark, print the table and write reports/bench-client.json; returns the figures.

    Args:
        models: registry names (default all); a model not exported in `artifacts` gets a 1-epoch scratch run.
        reference_only: only the perf_analyzer reference and the generator's part costs (bench_reference).
    """
    from zeroserve.bench import reference as bench_reference
    from zeroserve.bench.common import deploy_scratch
    from zeroserve.serve.private import private_server, temporary_cache

    console = Console(width=160)
    started = time.monotonic()
    rows: list[dict] = []
    reference: dict = {}
    if reference_only:
        models = [bench_reference.MODEL]
    notes = [f"this machine has {os.cpu_count()} cores shared by the servers and the load generator"]
    with temporary_cache() as tmp:  # the benchmark's servers never meet a user's
        scratch, repository = Path(tmp) / "artifacts", Path(tmp) / "model_repository"
        deployed = deploy_scratch(models or list(registry.REGISTRY), Path(artifacts), scratch, repository, console)
        if not deployed:
            console.print("[yellow]client benchmark skipped: no model could be deployed[/]")
            return {"rows": rows}
        with private_server(
            repository,
            [registry.get(n).triton_name("onnx") for n in deployed],
            purpose="zeroserve bench (client)",
            own_cache=False,
        ) as server:
            endpoint = Endpoint("127.0.0.1", server.state.http_port, server.state.grpc_port or 0, "bench")
            if bench_reference.MODEL in deployed:
                reference = bench_reference.main(endpoint, console)
            for name in [] if reference_only else deployed:
                if time.monotonic() - started > BUDGET_S:
                    notes.append(f"time budget reached: {name} and later models not measured")
                    break
                rows += _measure_model(registry.get(name), endpoint, artifacts, scratch, repository, console)
        if PYTRITON_MODEL in deployed and not reference_only and time.monotonic() - started < BUDGET_S:
            rows += _measure_pytriton(registry.get(PYTRITON_MODEL), repository, console, notes)
    # the served rows' engine, as the server described it to perf (each row's own is in its record)
    measured_on = next((r["measured_on"] for r in rows if r.get("measured_on")), machine.measured_on(None).to_json())
    _print(console, rows, measured_on)
    served = [r["generator_us_per_request"] for r in rows if r["generator_us_per_request"] is not None]
    if served:
        notes.append(
            f"generator overhead: median {statistics.median(served):.0f} µs of CPU per request "
            f"(max {max(served):.0f}) across served levels; at c=16 it used up to "
            f"{max(r['generator_cpu'] or 0 for r in rows):.0%} of a core"
        )
    for note in notes:
        console.print(f"note: {note}", highlight=False)
    result = {
        "rows": rows,
        "reference": reference,
        "notes": notes,
        "seconds": round(time.monotonic() - started, 1),
        "measured_on": measured_on,
        "versions": records.versions("tritonclient", "onnxruntime-gpu", "nvidia-pytriton"),
    }
    with contextlib.suppress(OSError, ZeroserveError):
        records.write_json(Path("reports") / "bench-client.json", result)
    console.print(f"client benchmark took {result['seconds']:.0f} s", highlight=False)
    return result


def _artifacts_of(spec, artifacts: Path, scratch: Path) -> Path:
    return artifacts if ModelFolder.of(artifacts, spec.name).checkpoint.is_file() else scratch


def _measure_model(
    spec, endpoint: Endpoint, artifacts: Path, scratch: Path, repository: Path, console: Console
) -> list[dict]:
    rows = []
    try:
        for protocol in ("grpc", "http"):
            rows += _served(spec, endpoint, protocol, f"Triton {protocol}")
        arrays = spec.random_inputs(1, np.random.default_rng(0))
        onnx_path = repository / spec.triton_name("onnx") / "1" / "model.onnx"
        eager = _eager_call(spec, _artifacts_of(spec, Path(artifacts), scratch), arrays)
        ort_call = _ort_call(onnx_path, spec, arrays)
        for c in LEVELS:
            rows.append(_row(spec.name, "ONNX Runtime in-process", c, _inprocess(ort_call, c, INPROCESS_S)))
            rows.append(_row(spec.name, "eager PyTorch in-process", c, _inprocess(eager, c, INPROCESS_S)))
    except ZeroserveError as exc:
        console.print(f"[yellow]{spec.name}:[/] {exc}", highlight=False)
    console.print(f"measured {spec.name}", highlight=False)
    return rows


def _measure_pytriton(spec, repository: Path, console: Console, notes: list[str]) -> list[dict]:
    rows = []
    try:
        with _pytriton(spec, repository / spec.triton_name("onnx") / "1" / "model.onnx") as url:
            rows += _served(spec, Endpoint(source="pytriton"), "grpc", "PyTriton grpc (same ONNX session)", url)
    except Exception as exc:  # noqa: BLE001 - the comparison is optional: say why it is missing
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        notes.append(f"PyTriton comparison not measured: {first}")
    return rows


if __name__ == "__main__":
    main(reference_only="--reference" in sys.argv[1:])

"""Serving benchmark for `make bench`: cnn_mnist through the embedded Triton server, against its floor.

One load generator (closed loop, one tritonclient per worker thread, fixed time per level)
drives, side by side on the same server: cnn_mnist_onnx (model.py running ONNX Runtime) and
its no-op twin (same tensors, same model.py path, answers zeros) over HTTP (binary tensors)
and gRPC, at concurrency 1 and 16; the same ONNX Runtime session in-process is the third
column. Two servers, at max_queue_delay 0 and 100 µs (deploy's default is chosen from these),
are up together and every target of a level runs in turn in short rounds, so the machine's
drift falls on all of them alike.
Then the resident memory of a server with all twenty models loaded.

Bars (issue 4), as ratios to the no-op floor because absolute times drift here: at c=1 the
model adds at most 0.15 ms to the no-op's p50 on each protocol; at c=16 it keeps at least
80% of the no-op's throughput. Figures are printed, never asserted.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.table import Table

from zeroserve import engine, registry
from zeroserve.artifacts import DEFAULT_ARTIFACTS
from zeroserve.bench.common import deploy_scratch
from zeroserve.serve.private import private_server, temporary_cache
from zeroserve.serve.processes import stubs as stubs_of
from zeroserve.triton import machine

LEVELS = (1, 16)
QUEUE_DELAYS_US = (0, 100)
SECONDS_PER_LEVEL = 3.0
WARMUP_S = 0.25
ROUNDS = 4  # targets alternate in short windows: A B A B ... rather than A then B
C1_BAR_MS = 0.15
C16_BAR = 0.80


# ---------------------------------------------------------------- the load generator


def run_level(make_call: Callable[[], Callable[[], None]], concurrency: int, seconds: float) -> dict:
    """Closed loop: `concurrency` threads, each making its own caller, for `seconds` after a warmup.

    Returns:
        {"p50_ms", "p99_ms", "throughput", "requests"} over the timed window.
    """
    latencies: list[list[float]] = [[] for _ in range(concurrency)]
    start_barrier = threading.Barrier(concurrency + 1)
    window: dict[str, float] = {}
    errors: list[BaseException] = []

    def worker(k: int) -> None:
        out = latencies[k]
        try:
            call = make_call()  # in this thread: tritonclient.http's gevent client is bound to its thread
        except BaseException as exc:  # noqa: BLE001 - the caller's thread re-raises it
            errors.append(exc)
            call = None
        start_barrier.wait()
        if call is None:
            return
        try:
            while time.perf_counter() < window["warm"]:
                call()
            while True:
                t0 = time.perf_counter()
                if t0 >= window["end"]:
                    break
                call()
                out.append(time.perf_counter() - t0)
        except BaseException as exc:  # noqa: BLE001 - reported after the level
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(k,), daemon=True) for k in range(concurrency)]
    for t in threads:
        t.start()
    now = time.perf_counter()
    window["warm"], window["end"] = now + WARMUP_S, now + WARMUP_S + seconds
    start_barrier.wait()
    for t in threads:
        t.join(timeout=seconds + 30)
    if errors:
        raise errors[0]
    return summarise([np.concatenate([np.asarray(x) for x in latencies])], seconds)


def summarise(latencies_s: list[np.ndarray], seconds: float) -> dict:
    """p50/p99 (ms) and throughput over one or several timed windows of `seconds` in total."""
    lat = np.concatenate(latencies_s)
    if not len(lat):
        return {"p50_ms": float("nan"), "p99_ms": float("nan"), "throughput": 0.0, "requests": 0, "latencies_s": lat}
    return {
        "p50_ms": float(np.percentile(lat * 1e3, 50)),
        "p99_ms": float(np.percentile(lat * 1e3, 99)),
        "throughput": len(lat) / seconds,
        "requests": int(len(lat)),
        "latencies_s": lat,
    }


def interleaved(
    makers: dict[Any, Callable[[], Callable[[], None]]], concurrency: int, seconds: float, rounds: int = ROUNDS
) -> dict[Any, dict]:
    """Each target in turn, `rounds` times, so the machine's drift falls on all of them alike."""
    windows: dict[str, list[np.ndarray]] = {k: [] for k in makers}
    for _ in range(rounds):
        for key, make in makers.items():
            windows[key].append(run_level(make, concurrency, seconds / rounds)["latencies_s"])
    return {key: summarise(w, seconds) for key, w in windows.items()}


def _triton_caller(
    protocol: str, url: str, model: str, image: np.ndarray, output: str, check: np.ndarray | None
) -> Callable[[], Callable[[], None]]:
    import tritonclient.grpc as grpcclient
    import tritonclient.http as httpclient

    def make() -> Callable[[], None]:
        if protocol == "http":
            client = httpclient.InferenceServerClient(url, concurrency=1)
            inp = httpclient.InferInput("image__0", list(image.shape), "FP32")
            inp.set_data_from_numpy(image, binary_data=True)
            outs = [httpclient.InferRequestedOutput(output, binary_data=True)]
        else:
            client = grpcclient.InferenceServerClient(url)
            inp = grpcclient.InferInput("image__0", list(image.shape), "FP32")
            inp.set_data_from_numpy(image)
            outs = [grpcclient.InferRequestedOutput(output)]
        got = client.infer(model, [inp], outputs=outs).as_numpy(output)
        # With numpy 2 this Python backend answered empty tensors without an error: check values, not only a reply.
        if check is not None and not np.allclose(got, check, atol=1e-5, rtol=1e-4):
            raise RuntimeError(f"{model} over {protocol} answered wrong values")
        return lambda: client.infer(model, [inp], outputs=outs)

    return make


def _ort_caller(path: Path, image: np.ndarray) -> tuple[Callable[[], Callable[[], None]], np.ndarray]:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    session = ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])
    expected = session.run(None, {"image__0": image})[0]
    return (lambda: lambda: session.run(None, {"image__0": image})), expected


# ---------------------------------------------------------------- memory


def _pss_rss_mb(pids: list[int]) -> tuple[float, float]:
    pss = rss = 0
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
                if line.startswith("Pss:"):
                    pss += int(line.split()[1])
                elif line.startswith("Rss:"):
                    rss += int(line.split()[1])
        except OSError:
            continue
    return pss / 1024, rss / 1024


# ---------------------------------------------------------------- main


def bench_engine() -> dict:
    """The engine the served rows run on: the embedded Triton, cnn_mnist_onnx's ONNX Runtime in the Python backend."""
    return machine.measured_on(engine.embedded("onnx", machine.gpu_names())).to_json()


def main(artifacts: Path = DEFAULT_ARTIFACTS, seconds: float = SECONDS_PER_LEVEL) -> dict:
    """Run the serving benchmark, print rich tables, return the figures."""
    console = Console(width=150)
    results: dict = {"levels": [], "memory": None, "measured_on": bench_engine()}
    with temporary_cache() as tmp:  # the benchmark's servers never meet a user's
        scratch, repository = Path(tmp) / "artifacts", Path(tmp) / "model_repository"
        if not deploy_scratch(["cnn_mnist"], Path(artifacts), scratch, repository, console):
            console.print("[yellow]serve benchmark skipped: cnn_mnist could not be deployed[/]")
            return results
        image = np.random.default_rng(0).random((1, 1, 28, 28), dtype=np.float32)
        onnx_path = repository / "cnn_mnist_onnx" / "1" / "model.onnx"
        ort_make, expected = _ort_caller(onnx_path, image)
        for c in LEVELS:
            results["levels"].append(
                {
                    "path": "ONNX Runtime in-process",
                    "protocol": "-",
                    "delay_us": None,
                    "concurrency": c,
                    **run_level(ort_make, c, seconds),
                }
            )
            results["levels"][-1].pop("latencies_s")
        results["levels"] += _serve_levels(repository, image, expected, seconds, console)
        _print_levels(console, results["levels"])
        results["memory"] = _memory(Path(artifacts), scratch, repository, console)
    return results


def _serve_levels(repository: Path, image, expected, seconds: float, console) -> list[dict]:
    """One server per queue delay, all up at once, so every target of a level is interleaved with the others."""
    servers = {}
    rows = []
    with contextlib.ExitStack() as stack:
        for delay in QUEUE_DELAYS_US:
            console.print(f"serve bench: starting cnn_mnist_onnx and its no-op twin at max_queue_delay {delay} µs")
            servers[delay] = stack.enter_context(
                private_server(
                    repository,
                    ["cnn_mnist_onnx"],
                    purpose="zeroserve bench (serve)",
                    own_cache=False,
                    queue_delay_us=delay,
                    noop_of=["cnn_mnist_onnx"],
                )
            )
        for protocol in ("http", "grpc"):
            makers = {}
            for delay, server in servers.items():
                url = server.http_url if protocol == "http" else server.grpc_url
                makers[(delay, "model.py + ONNX Runtime")] = _triton_caller(
                    protocol, url, "cnn_mnist_onnx", image, "log_probs__0", expected
                )
                makers[(delay, "no-op model.py (floor)")] = _triton_caller(
                    protocol, url, "cnn_mnist_onnx_noop", image, "log_probs__0", None
                )
            for c in LEVELS:
                for (delay, path), figures in interleaved(makers, c, seconds).items():
                    figures.pop("latencies_s")
                    rows.append({"path": path, "protocol": protocol, "delay_us": delay, "concurrency": c, **figures})
    return sorted(rows, key=lambda r: (r["delay_us"], r["protocol"] != "http", r["concurrency"]))


def _memory(artifacts: Path, scratch: Path, repository: Path, console) -> dict | None:
    names = deploy_scratch(list(registry.REGISTRY), artifacts, scratch, repository, console)
    t0 = time.perf_counter()
    with private_server(repository, names, purpose="zeroserve bench (memory)", own_cache=False) as server:
        load_s = time.perf_counter() - t0
        time.sleep(1.0)
        stubs = [p.pid for p in stubs_of(server.state.shm_prefix)]
        pss, rss = _pss_rss_mb([server.pid, *stubs])
        server_pss, server_rss = _pss_rss_mb([server.pid])
        onnx_stubs = [p for p in stubs if b"_onnx/" in Path(f"/proc/{p}/cmdline").read_bytes()]
        ts_stubs = [p for p in stubs if b"_torchscript/" in Path(f"/proc/{p}/cmdline").read_bytes()]
        mem = {
            "models": len(server.state.models or []),
            "stubs": len(stubs),
            "load_s": load_s,
            "total_pss_mb": pss,
            "total_rss_mb": rss,
            "server_rss_mb": server_rss,
            "onnx_stub_pss_mb": _pss_rss_mb(onnx_stubs)[0] / max(len(onnx_stubs), 1),
            "torchscript_stub_pss_mb": _pss_rss_mb(ts_stubs)[0] / max(len(ts_stubs), 1),
        }
    table = Table(
        title=f"resident memory: tritonserver with {mem['models']} models loaded ({mem['stubs']} stubs), "
        f"loaded in {mem['load_s']:.1f} s"
    )
    for col in ("what", "MB"):
        table.add_column(col, justify="right" if col == "MB" else "left")
    table.add_row("server + stubs, PSS (shared pages counted once)", f"{mem['total_pss_mb']:.0f}")
    table.add_row("server + stubs, RSS sum (shared pages counted per process)", f"{mem['total_rss_mb']:.0f}")
    table.add_row("tritonserver process RSS", f"{mem['server_rss_mb']:.0f}")
    table.add_row("per ONNX Runtime stub, PSS", f"{mem['onnx_stub_pss_mb']:.0f}")
    table.add_row("per TorchScript stub, PSS", f"{mem['torchscript_stub_pss_mb']:.0f}")
    console.print(table)
    return mem


def _print_levels(console: Console, rows: list[dict]) -> None:
    table = Table(
        title="serve benchmark: cnn_mnist, batch 1 per request, closed loop, one tritonclient per thread\n"
        f"served rows measured on {engine.describe(bench_engine())}"
    )
    for col in ("path", "protocol", "queue delay µs", "c", "p50 ms", "p99 ms", "req/s"):
        table.add_column(col, justify="left" if col in ("path", "protocol") else "right")
    for r in rows:
        table.add_row(
            r["path"],
            r["protocol"],
            "-" if r["delay_us"] is None else str(r["delay_us"]),
            str(r["concurrency"]),
            f"{r['p50_ms']:.3f}",
            f"{r['p99_ms']:.3f}",
            f"{r['throughput']:,.0f}",
        )
    console.print(table)

    bars = Table(
        title=f"bars against the no-op floor (c=1: model p50 - no-op p50 <= {C1_BAR_MS} ms; "
        f"c=16: model throughput >= {C16_BAR:.0%} of no-op)"
    )
    for col in ("queue delay µs", "protocol", "c=1 added p50 ms", "c=1 bar", "c=16 throughput ratio", "c=16 bar"):
        bars.add_column(col)
    pick = {
        (r["path"].startswith("no-op"), r["protocol"], r["delay_us"], r["concurrency"]): r
        for r in rows
        if r["delay_us"] is not None
    }
    for delay in QUEUE_DELAYS_US:
        for protocol in ("http", "grpc"):
            model1, noop1 = pick[(False, protocol, delay, 1)], pick[(True, protocol, delay, 1)]
            model16, noop16 = pick[(False, protocol, delay, 16)], pick[(True, protocol, delay, 16)]
            added = model1["p50_ms"] - noop1["p50_ms"]
            ratio = model16["throughput"] / noop16["throughput"]
            mark = lambda ok: "[green]met[/]" if ok else "[red]missed[/]"  # noqa: E731 - a one-line local helper
            bars.add_row(
                str(delay), protocol, f"{added:+.3f}", mark(added <= C1_BAR_MS), f"{ratio:.0%}", mark(ratio >= C16_BAR)
            )
    console.print(bars)


if __name__ == "__main__":
    main()

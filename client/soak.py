"""`make soak`: sustained load on the running server over both protocols, with its memory before and after.

Not part of `make test` or `make bench`. Against the running zeroserve server (the one state
file, or ZEROSERVE_SOAK_HTTP_PORT), it sends `SOAK_SECONDS` (default 600) of closed-loop load
at `SOAK_CONCURRENCY` (default 32) to `SOAK_MODEL` (default cnn_mnist, ONNX), half of the time
over gRPC and half over HTTP, through the perf engine (`client perf`'s generator: bounded in time,
every request counted). It prints requests, failures, and tritonserver's RSS and the run's
/dev/shm segments at the start and the end; exit 1 when a request failed or the server's
memory grew by more than `SOAK_RSS_GROWTH` (default 2.0x).
"""

from __future__ import annotations

import os
import sys
import time

import psutil

from zeroserve import registry
from zeroserve.client.endpoints import Endpoint
from zeroserve.client.perf import run as perf
from zeroserve.client.perf.levels import level_count, level_failures
from zeroserve.errors import ZeroserveError
from zeroserve.records.state import ServerState
from zeroserve.serve import processes as ps
from zeroserve.serve import state as st

TRIALS = 10  # windows per protocol: the run length is TRIALS windows, never a stability rule


def _env(name: str, default: float) -> float:
    raw = os.environ.get(name)
    return float(raw) if raw else default


def snapshot(state: ServerState) -> dict:
    """tritonserver's RSS, its stubs' RSS, and the run's /dev/shm segments (count and bytes)."""
    server = st.process_of(state.pid, state.create_time)
    stubs = ps.stubs(state.shm_prefix)
    segments = ps.shm_segments(state.shm_prefix)

    def rss(procs) -> int:
        total = 0
        for p in procs:
            try:
                total += p.memory_info().rss
            except psutil.Error:
                pass
        return total

    return {
        "pid": state.pid,
        "server_rss_mb": round(rss([server] if server else []) / 2**20, 1),
        "stubs": len(stubs),
        "stubs_rss_mb": round(rss(stubs) / 2**20, 1),
        "shm_segments": len(segments),
        "shm_mb": round(sum(s.stat().st_size for s in segments if s.exists()) / 2**20, 1),
    }


def main() -> int:
    seconds = _env("SOAK_SECONDS", 600.0)
    concurrency = int(_env("SOAK_CONCURRENCY", 32))
    growth = _env("SOAK_RSS_GROWTH", 2.0)
    model = os.environ.get("SOAK_MODEL", "cnn_mnist")
    try:
        state = st.resolve_server()
        spec = registry.get(model)
    except ZeroserveError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    endpoint = Endpoint(state.host, state.http_port, state.grpc_port or 0, "state file")
    window = max(seconds / 2 / TRIALS, 1.0)
    before = snapshot(state)
    print(
        f"soak: {model}_onnx at c={concurrency}, {seconds:.0f} s ({window * TRIALS:.0f} s per protocol), "
        f"server pid {state.pid}",
        flush=True,
    )
    print(f"start: {before}", flush=True)
    totals = {}
    t0 = time.monotonic()
    for protocol in ("grpc", "http"):
        rec = perf.run_perf(
            spec,
            endpoint,
            protocol=protocol,
            concurrency=[concurrency],
            window_s=window,
            warmup_s=0.0,
            stability=1e-9,
            max_trials=TRIALS,
            allow_unstable=True,
            allow_failures=True,
        )
        requests = sum(level_count(lv, "requests") for lv in rec.levels)
        failed = sum(level_count(lv, "failed") for lv in rec.levels)
        kinds: dict[str, int] = {}
        for lv in rec.levels:
            for k, v in level_failures(lv)[0].items():
                kinds[k] = kinds.get(k, 0) + v
        totals[protocol] = {"requests": requests, "failed": failed, "failures": kinds}
        print(f"{protocol}: {requests} requests, {failed} failed{f' {kinds}' if kinds else ''}", flush=True)
    # The same run, possibly a restarted process: read the state again for the pid now serving.
    now = next((s for s in st.list_servers() if s.run_id == state.run_id), state)
    after = snapshot(now)
    print(f"end ({time.monotonic() - t0:.0f} s): {after}", flush=True)
    if now.restarts or now.recovered:
        print(
            f"the supervisor restarted the server {now.restarts or 0} time(s) and reloaded models "
            f"{now.recovered or 0} time(s) during the soak",
            flush=True,
        )
    failed = sum(t["failed"] for t in totals.values())
    grew = before["server_rss_mb"] and after["server_rss_mb"] > growth * before["server_rss_mb"]
    if grew:
        print(
            f"tritonserver RSS grew from {before['server_rss_mb']} to {after['server_rss_mb']} MB "
            f"(more than {growth}x)",
            flush=True,
        )
    return 1 if failed or grew else 0


if __name__ == "__main__":
    sys.exit(main())

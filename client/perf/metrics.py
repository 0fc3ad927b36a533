"""The server's own figures over each perf level: its metrics endpoint and its process tree.

Around each level (warm-up, windows and drain) `LevelMetrics` reads each server's Prometheus
endpoint (serve/metrics.py) before the load starts and after the last request is answered, and
samples it every `interval_s` meanwhile (GPU gauges, as perf_analyzer's --metrics-interval). The
level record gets:

- `server_metrics`: the model's request, failure, inference and execution counts over the level,
  summed over the servers, its queue and compute durations per request, the GPU gauges (average
  utilisation and power, peak memory) where present, the endpoints read, and `client_requests`
  with `agrees`: the server's count of requests (success + failure) against the client's own;
- `server_resources`: the server's CPU (cores busy) and memory (RSS, peak over the samples) from its
  process tree (tritonserver and its stubs), for a zeroserve server on this host.

A difference between the two counts is a warning in the record's notes naming both numbers
(`count_warning`). `csv_columns(level)` gives perf_analyzer's --collect-metrics CSV columns.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from zeroserve.errors import ServerError
from zeroserve.records.perf import PerfLevel, ServerMetrics, ServerResources
from zeroserve.records.state import ServerState
from zeroserve.serve import metrics as M

DEFAULT_INTERVAL_S = 1.0  # perf_analyzer's --metrics-interval default (1000 ms)
SETTLE_READS = 5  # Triton counts a request a moment after its answer leaves: read again until the counts stop moving
SETTLE_S = 0.05
# perf_analyzer's --collect-metrics CSV columns (each cell `gpu_uuid:value;` per GPU), from the level's GPU figures
CSV_COLUMNS = {
    "Avg GPU Utilization": "avg_utilization",
    "Avg GPU Power Usage": "avg_power_w",
    "Max GPU Memory Usage": "max_memory_used_bytes",
    "Total GPU Memory": "memory_total_bytes",
}


class Source:
    """Where one server's figures are read: its metrics URL, and its process tree when it runs on this host."""

    def __init__(self, url: str | None, pid: int | None = None, shm_prefix: str | None = None):
        self.url, self.pid, self.shm_prefix = url, pid, shm_prefix

    @classmethod
    def of_state(cls, state: ServerState | None, url: str | None = None) -> Source | None:
        """A zeroserve server's (its state file), or only a given `--metrics-url`; None when neither is known."""
        url = url or M.metrics_url(state)
        pid = state.pid if state is not None else None
        if url is None and pid is None:
            return None
        return cls(url, pid, state.shm_prefix if state is not None else None)


class LevelMetrics:
    """`async with LevelMetrics(...) as probe:` around one level; then `probe.figures(client_requests)`."""

    def __init__(self, sources: list[Source], model: str, interval_s: float = DEFAULT_INTERVAL_S):
        self.sources, self.model, self.interval_s = sources, model, interval_s
        self.before: list[dict | None] = []
        self.after: list[dict | None] = []
        self.samples: list[list[dict]] = [[] for _ in sources]
        self.trees: list[M.ProcessTree | None] = []
        self.peak_rss: list[float] = [0.0 for _ in sources]
        self.errors: list[str] = []
        self._task: asyncio.Task | None = None

    async def _read(self, i: int) -> dict | None:
        url = self.sources[i].url
        if url is None:
            return None
        try:
            return await asyncio.to_thread(M.read, url)
        except ServerError as exc:
            self.errors.append(str(exc))
            return None

    async def __aenter__(self) -> LevelMetrics:
        self.before = [await self._read(i) for i in range(len(self.sources))]
        self.trees = [M.ProcessTree(s.pid, s.shm_prefix) if s.pid else None for s in self.sources]
        self._task = asyncio.create_task(self._sample())
        return self

    async def _sample(self) -> None:
        while True:
            await asyncio.sleep(self.interval_s)
            for i in range(len(self.sources)):
                snap = await self._read(i)
                if snap is not None and snap["gpu"]:
                    self.samples[i].append(snap)
                tree = self.trees[i]
                if tree is not None:
                    _, rss = await asyncio.to_thread(tree._read)
                    self.peak_rss[i] = max(self.peak_rss[i], rss / 2**20)

    async def __aexit__(self, *exc) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self.usage = [await asyncio.to_thread(t.sample) if t is not None else None for t in self.trees]
        self.after = [await self._read(i) for i in range(len(self.sources))]

    async def settle(self, client_requests: int) -> None:
        """Read the endpoints again (a few times, briefly) while the server's count is short of the client's."""
        for _ in range(SETTLE_READS):
            counted = self._counted()
            if counted is None or counted >= client_requests:
                return
            await asyncio.sleep(SETTLE_S)
            self.after = [await self._read(i) for i in range(len(self.sources))]

    def _deltas(self) -> list[dict]:
        out = []
        for b, a in zip(self.before, self.after):
            d = M.model_delta(b, a, self.model) if a is not None and b is not None else None
            if d is not None:
                out.append(d)
        return out

    def _counted(self) -> int | None:
        deltas = self._deltas()
        return sum(d["success"] + d["failure"] for d in deltas) if deltas else None

    def figures(self, client_requests: int) -> tuple[ServerMetrics | None, ServerResources | None]:
        """(server_metrics, server_resources) of the level; None for what could not be read."""
        return self._metrics(client_requests), self._resources()

    def _metrics(self, client_requests: int) -> ServerMetrics | None:
        deltas = self._deltas()
        if not deltas:
            return (
                ServerMetrics(error="; ".join(self.errors) or "no metrics endpoint listed the model")
                if self.errors
                else None
            )
        total: dict[str, Any] = {f: sum(d[f] for d in deltas) for f in (*M.COUNTERS.values(),)}
        reasons: dict[str, int] = {}
        for d in deltas:
            for r, v in d["failure_by_reason"].items():
                reasons[r] = reasons.get(r, 0) + v
        n = total["success"]
        out: dict[str, Any] = {
            "requests": total["success"] + total["failure"],
            "success": total["success"],
            "failure": total["failure"],
            "failure_by_reason": reasons,
            "inferences": total["inferences"],
            "executions": total["executions"],
            **{f"avg_{f}": (total[f] / n if n else 0.0) for f in M.DURATIONS},
            "client_requests": client_requests,
            "agrees": total["success"] + total["failure"] == client_requests,
            "endpoints": [s.url for s in self.sources if s.url],
            "gpu": self._gpu(),
        }
        if self.errors:
            out["errors"] = self.errors
        return ServerMetrics.model_validate(out)

    def _gpu(self) -> dict[str, dict[str, float]]:
        """Per GPU over the level's samples: average utilisation and power, peak and total memory (perf_analyzer's)."""
        per: dict[str, list[dict[str, float]]] = {}
        for snaps in self.samples:
            for snap in snaps:
                for uuid, g in snap["gpu"].items():
                    per.setdefault(uuid, []).append(g)
        return {
            uuid: {
                "avg_utilization": sum(g.get("utilization", 0.0) for g in gs) / len(gs),
                "avg_power_w": sum(g.get("power_w", 0.0) for g in gs) / len(gs),
                "max_memory_used_bytes": max(g.get("memory_used_bytes", 0.0) for g in gs),
                "memory_total_bytes": max(g.get("memory_total_bytes", 0.0) for g in gs),
                "samples": len(gs),
            }
            for uuid, gs in per.items()
        }

    def _resources(self) -> ServerResources | None:
        used = [(u, peak) for u, peak in zip(self.usage, self.peak_rss) if u is not None and u["processes"]]
        if not used:
            return None
        return ServerResources(
            cpu_cores=round(sum(u["cpu_cores"] for u, _ in used), 3),
            rss_mb=round(sum(u["rss_mb"] for u, _ in used), 1),
            peak_rss_mb=round(sum(max(u["rss_mb"], peak) for u, peak in used), 1),
            processes=sum(u["processes"] for u, _ in used),
            seconds=max(u["seconds"] for u, _ in used),
        )


def count_warning(level: PerfLevel, where: str) -> str | None:
    """A warning naming both numbers when the server's count of a level's requests is not the client's."""
    m = level.server_metrics
    if m is None or m.requests is None or m.agrees in (True, None):
        return None
    return (
        f"warning: at {where} the server's metrics counted {m.requests} requests for the model "
        f"({m.success} succeeded, {m.failure} failed) while the client sent {m.client_requests}: "
        "another client was using it, or requests were lost between the two"
    )


def csv_columns(level: PerfLevel) -> dict[str, str]:
    """perf_analyzer's --collect-metrics CSV columns for one level (`uuid:value;` per GPU; empty without a GPU)."""
    gpu = (level.server_metrics.gpu if level.server_metrics else None) or {}
    return {col: "".join(f"{uuid}:{getattr(g, key):g};" for uuid, g in gpu.items()) for col, key in CSV_COLUMNS.items()}

"""A perf level's windows: latency percentiles, the stability rule, counts, and the latency-budget search.

perf_analyzer's method: a level is stable when its last `STABLE_WINDOWS` windows agree within the
threshold on throughput and the chosen latency; figures come from those windows, every request is
counted in `totals`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from hdrh.histogram import HdrHistogram

from zeroserve.client.connection import server_split
from zeroserve.client.perf import load
from zeroserve.records.perf import PerfLevel

STABLE_WINDOWS = 3
PERCENTILES = (50, 90, 95, 99)
SATURATED = 0.9  # share of one core the event-loop thread may use before the generator is the bottleneck
MAX_SEARCH_CONCURRENCY = 256


def percentiles(hist: HdrHistogram, extra: float | None = None) -> dict[str, float]:
    """p50/p90/p95/p99 (and p`extra`), max and mean in milliseconds from a microsecond histogram (zeros when empty)."""
    points = PERCENTILES + ((extra,) if extra is not None and extra not in PERCENTILES else ())
    if hist.get_total_count() == 0:
        return {**{latency_key(p): 0.0 for p in points}, "max_ms": 0.0, "mean_ms": 0.0}
    out = {latency_key(p): hist.get_value_at_percentile(p) / 1e3 for p in points}
    out["max_ms"] = hist.get_max_value() / 1e3
    out["mean_ms"] = hist.get_mean_value() / 1e3
    return out


def latency_key(percentile: float | None) -> str:
    """The record key of the latency the stability rule and the budget search use: `p95_ms`, or `mean_ms`."""
    return "mean_ms" if percentile is None else f"p{percentile:g}_ms"


@dataclass
class Window:
    """One measurement window's figures (generator side, plus the server counters at its end)."""

    seconds: float
    counts: load.WindowCounts
    batch_size: int
    cpu_seconds: float = 0.0
    loop_cpu_seconds: float = 0.0
    stats: dict[str, int] | None = None

    @property
    def throughput(self) -> float:
        """Inferences per second (answered requests x batch size)."""
        return self.counts.ok * self.batch_size / self.seconds if self.seconds > 0 else 0.0

    def latency(self, key: str) -> float:
        """One latency figure of this window (`p99_ms`, `mean_ms`, ...)."""
        if key == "mean_ms":
            h = self.counts.histogram
            return h.get_mean_value() / 1e3 if h.get_total_count() else 0.0
        return self.counts.histogram.get_value_at_percentile(float(key[1:-3])) / 1e3

    def as_json(self, key: str = "mean_ms") -> dict:
        """The window's figures, so that drift across a level can be seen."""
        c = self.counts
        out = {
            "seconds": round(self.seconds, 4),
            "requests": c.ok + c.failed,
            "ok": c.ok,
            "failed": c.failed,
            "failures": dict(c.errors),
            "throughput": self.throughput,
            **{k: self.latency(k) for k in dict.fromkeys(("p50_ms", "p99_ms", "mean_ms", key))},
            "generator_cpu": self.cpu_seconds / self.seconds if self.seconds else 0.0,
        }
        return out


def is_stable(figures: list[tuple[float, float]], threshold: float, count: int = STABLE_WINDOWS) -> bool:
    """perf_analyzer's rule: the last `count` (throughput, latency) pairs each within `threshold` of their mean."""
    if len(figures) < count:
        return False
    last = figures[-count:]
    for k in range(2):
        values = [f[k] for f in last]
        mean = sum(values) / count
        if mean <= 0 or any(abs(v - mean) > threshold * mean for v in values):
            return False
    return True


def summarise(
    windows: list[Window], before: dict[str, int] | None, after: dict[str, int] | None, percentile: float | None = None
) -> dict:
    """A level's figures over the given windows: throughput, percentiles, counts, server split, client cost."""
    hist, lag = load.new_histogram(), load.new_histogram()
    for w in windows:
        hist.add(w.counts.histogram)
        lag.add(w.counts.lag)
    seconds = sum(w.seconds for w in windows)
    ok = sum(w.counts.ok for w in windows)
    failed = sum(w.counts.failed for w in windows)
    sent = sum(w.counts.sent for w in windows)
    failures, messages = count_failures(w.counts for w in windows)
    batch = windows[0].batch_size if windows else 1
    cpu = sum(w.cpu_seconds for w in windows)
    per = 1e6 / (ok + failed) if ok + failed else 0.0
    fig = {
        "windows_used": len(windows),
        "seconds": seconds,
        "throughput": ok * batch / seconds if seconds else 0.0,
        "requests_per_s": ok / seconds if seconds else 0.0,
        **percentiles(hist, percentile),
        "requests": ok + failed,
        "ok": ok,
        "failed": failed,
        "sent": sent,
        "late_sends": sum(w.counts.late for w in windows),
        "send_lag_p99_ms": lag.get_value_at_percentile(99) / 1e3 if lag.get_total_count() else 0.0,
        "generator_cpu": cpu / seconds if seconds else 0.0,
        "loop_cpu": sum(w.loop_cpu_seconds for w in windows) / seconds if seconds else 0.0,
        # the client side of each request, beside the server's split (perf_analyzer's Client Send/Recv)
        "client": {
            "cpu_us": cpu * per,
            "send_us": sum(w.counts.send_s for w in windows) * per,
            "check_us": sum(w.counts.check_s for w in windows) * per,
        },
        "failures": failures,
        "failure_messages": messages,
        "server": server_split(before, after) if before and after else None,
    }
    fig["generator_saturated"] = fig["loop_cpu"] >= SATURATED
    return fig


def count_failures(windows) -> tuple[dict[str, int], dict[str, str]]:
    """Failures by kind over several windows' counts, and the first message of each kind."""
    failures: dict[str, int] = {}
    messages: dict[str, str] = {}
    for c in windows:
        for k, v in c.errors.items():
            failures[k] = failures.get(k, 0) + v
        for k, m in c.messages.items():
            messages.setdefault(k, m)
    return failures, messages


def totals(windows: list[Window]) -> dict:
    """Every request of the given windows: counts, failures by kind, throughput and latency over them all."""
    hist = load.new_histogram()
    for w in windows:
        hist.add(w.counts.histogram)
    seconds = sum(w.seconds for w in windows)
    ok = sum(w.counts.ok for w in windows)
    failed = sum(w.counts.failed for w in windows)
    failures, messages = count_failures(w.counts for w in windows)
    batch = windows[0].batch_size if windows else 1
    fig = percentiles(hist)
    return {
        "windows": len(windows),
        "seconds": seconds,
        "requests": ok + failed,
        "ok": ok,
        "failed": failed,
        "failures": failures,
        "failure_messages": messages,
        "throughput": ok * batch / seconds if seconds else 0.0,
        "p50_ms": fig["p50_ms"],
        "p99_ms": fig["p99_ms"],
        "mean_ms": fig["mean_ms"],
        "max_ms": fig["max_ms"],
    }


def latency_budget_search(
    measure: Callable[[int], PerfLevel | None],
    budget_ms: float,
    key: str = "mean_ms",
    max_concurrency: int = MAX_SEARCH_CONCURRENCY,
    start: int = 1,
    resolution: float = 0.0,
) -> tuple[PerfLevel | None, list[PerfLevel]]:
    """The highest concurrency whose latency `key` stays within the budget: doubling, then bisection.

    Assumes latency grows with concurrency (as perf_analyzer's search does). Returns (best level or
    None when even concurrency 1 is over budget, every level measured in concurrency order). A
    measured level that comes back as None (the run had to stop) ends the search.

    Args:
        start: the first level tried (a hint from an earlier search): doubling up from it when it
            is within the budget, halving down towards 1 when it is not.
        resolution: bisection stops once the gap between the last good and bad levels is at most
            this share of the good one (0: exact, to one concurrency step).
    """
    measured: dict[int, PerfLevel] = {}

    def within(c: int) -> bool:
        if c not in measured:
            level = measure(c)
            if level is None:
                raise _SearchStopped
            measured[c] = level
        return measured[c].figure(key) <= budget_ms

    levels = lambda: [measured[c] for c in sorted(measured)]  # noqa: E731 - a one-line local helper
    good = None
    try:
        c = max(1, min(start, max_concurrency))
        bad = None
        while not within(c):  # halve towards 1
            bad = c
            if c == 1:
                return None, levels()
            c = max(1, c // 2)
        good = c
        while bad is None and good < max_concurrency:
            nxt = min(good * 2, max_concurrency)
            if within(nxt):
                good = nxt
            else:
                bad = nxt
        if bad is not None:
            while bad - good > max(1, int(resolution * good)):
                mid = (good + bad) // 2
                if within(mid):
                    good = mid
                else:
                    bad = mid
    except _SearchStopped:
        pass
    return (measured[good] if good else None), levels()


class _SearchStopped(Exception):
    """A level of the budget search stopped the run (server gone, every request failed, unstable)."""

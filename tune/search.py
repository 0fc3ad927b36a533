"""The tuning search, pure: candidates, the search space, and quick (hill climb) or brute search.

Nothing here starts a server or sends a request: `search` calls a `measure(candidate)` function
(tune/runner.py's real one, or a synthetic one in the tests) and decides from what it returns.

A measurement (records/tune.py's `Measurement`) holds `throughput` (inferences/s at the highest concurrency whose
latency stayed within the budget, 0 when none did), `meets_budget` (bool), `p99_ms`-like
`latency_ms` (the latency at that concurrency, or the lowest seen when none met the budget) and
`failed` (failed requests). A candidate *qualifies* when it meets the budget with no failed request
and reaches the minimum throughput; the best is the qualifying one with the highest throughput.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, replace

from zeroserve.records.tune import Measurement

DIMENSIONS = ("fmt", "instances", "max_batch_size", "prefer_max", "queue_delay_us", "threads")
DEFAULT_QUEUE_DELAYS_US = (0, 100, 500, 1000, 2000)
MODES = ("quick", "brute")
QUICK_MIN_GAIN = 0.05  # quick mode moves only for a neighbour this much better (shared-machine noise is ~5%)


@dataclass(frozen=True, order=True)
class Candidate:
    """One serving configuration of one model.

    Args:
        fmt: the deployed format (`onnx`, `torchscript`, `onnx_int8`, ...).
        instances: model instances (each its own stub process and runtime session).
        max_batch_size: the largest batch dynamic batching forms.
        prefer_max: dynamic batching's preferred batch size is `max_batch_size` (else any size).
        queue_delay_us: dynamic batching's max queue delay.
        threads: the runtime's intra-op threads per instance.
    """

    fmt: str
    instances: int
    max_batch_size: int
    prefer_max: bool
    queue_delay_us: int
    threads: int

    @property
    def preferred_batch_sizes(self) -> tuple[int, ...]:
        return (self.max_batch_size,) if self.prefer_max else ()

    def label(self) -> str:
        return (
            f"{self.fmt} inst {self.instances}, batch {self.max_batch_size}"
            f"{' preferred' if self.prefer_max else ''}, delay {self.queue_delay_us} µs, "
            f"threads {self.threads}"
        )

    def as_json(self) -> dict:
        return {**asdict(self), "preferred_batch_sizes": list(self.preferred_batch_sizes)}


@dataclass(frozen=True)
class Space:
    """The values each dimension may take, each sorted; a candidate is one value per dimension."""

    fmt: tuple[str, ...]
    instances: tuple[int, ...]
    max_batch_size: tuple[int, ...]
    prefer_max: tuple[bool, ...]
    queue_delay_us: tuple[int, ...]
    threads: tuple[int, ...]

    def size(self) -> int:
        n = 1
        for d in DIMENSIONS:
            n *= len(getattr(self, d))
        return n

    def __iter__(self) -> Iterator[Candidate]:
        for values in itertools.product(*(getattr(self, d) for d in DIMENSIONS)):
            yield Candidate(*values)

    def __contains__(self, c: Candidate) -> bool:
        return all(getattr(c, d) in getattr(self, d) for d in DIMENSIONS)

    def nearest(self, c: Candidate) -> Candidate:
        """`c` with each value replaced by the space's closest one (a start point inside the space)."""
        out = {}
        for d in DIMENSIONS:
            values, v = getattr(self, d), getattr(c, d)
            if v in values:
                out[d] = v
            elif isinstance(v, (bool, str)):
                out[d] = values[0]
            else:
                out[d] = min(values, key=lambda x: (abs(x - v), x))
        return Candidate(**out)

    def neighbours(self, c: Candidate) -> list[Candidate]:
        """One step up or down along each dimension (Model Analyzer's quick mode moves so)."""
        out = []
        for d in DIMENSIONS:
            values = getattr(self, d)
            i = values.index(getattr(c, d))
            for j in (i - 1, i + 1):
                if 0 <= j < len(values):
                    out.append(replace(c, **{d: values[j]}))
        return out

    def as_json(self) -> dict:
        return {d: list(getattr(self, d)) for d in DIMENSIONS}


def _sorted(values) -> tuple:
    return tuple(sorted(dict.fromkeys(values)))


def build_space(
    deployed: Candidate,
    formats: tuple[str, ...],
    cores: int,
    max_batch: int,
    *,
    instances: tuple[int, ...] | None = None,
    batch_sizes: tuple[int, ...] | None = None,
    queue_delays_us: tuple[int, ...] | None = None,
    threads: tuple[int, ...] | None = None,
    preferred: tuple[bool, ...] | None = None,
) -> tuple[Space, list[str]]:
    """The search space around the deployed config, within the caps; the values left out and why.

    Defaults: instances and threads 1 up to the cores, max batch sizes the powers of two from 8
    up to `max_batch` (and `max_batch` itself), queue delays 0 to 2 ms, preferred batch size on or
    off; the deployed config's own values are always in a default dimension. A value given by an
    option outside its bounds (more instances or threads than cores, a batch above `max_batch`,
    a negative delay) is dropped and named.
    """
    dropped: list[str] = []

    def keep(name: str, given, default, ok: Callable[[int], bool], bound: str) -> tuple:
        if given is None:
            return _sorted(v for v in default if ok(v))
        bad = [v for v in given if not ok(v)]
        if bad:
            dropped.append(f"{name} {', '.join(map(str, bad))} ({bound})")
        return _sorted(v for v in given if ok(v))

    pow2 = [b for b in (8, 16, 32, 64, 128, 256, 512) if b <= max_batch]
    space = Space(
        fmt=_sorted(formats),
        instances=keep(
            "instances",
            instances,
            [*range(1, cores + 1), deployed.instances],
            lambda v: 1 <= v <= cores,
            f"1 to the {cores} cores",
        ),
        max_batch_size=keep(
            "max batch size",
            batch_sizes,
            [*pow2, max_batch, deployed.max_batch_size],
            lambda v: 1 <= v <= max_batch,
            f"1 to the deployed max_batch_size {max_batch}",
        ),
        prefer_max=_sorted(preferred) if preferred is not None else (False, True),
        queue_delay_us=keep(
            "queue delay",
            queue_delays_us,
            [*DEFAULT_QUEUE_DELAYS_US, deployed.queue_delay_us],
            lambda v: 0 <= v <= 1_000_000,
            "0 to 1 s",
        ),
        threads=keep(
            "threads",
            threads,
            [*range(1, cores + 1), deployed.threads],
            lambda v: 1 <= v <= cores,
            f"1 to the {cores} cores",
        ),
    )
    return space, dropped


# ---------------------------------------------------------------- judging measurements


def qualifies(m: Measurement | None, min_throughput: float | None) -> bool:
    if m is None:
        return False
    return m.meets_budget and not m.failed and (min_throughput is None or m.throughput >= min_throughput)


def rank(m: Measurement | None, min_throughput: float | None) -> tuple:
    """Order of merit: qualifying ones by throughput, then the rest by how close they came."""
    if m is None:
        return (-1, 0.0)
    if qualifies(m, min_throughput):
        return (2, m.throughput)
    if m.meets_budget and not m.failed:
        return (1, m.throughput)  # within the budget, under the minimum throughput
    if m.latency_ms is None:
        return (-1, 0.0)  # not measured (did not load, or --max-minutes cut it off): no figure to compare
    return (0, -m.latency_ms)  # over the budget even at concurrency 1: the lowest latency is closest


@dataclass
class SearchResult:
    """Every candidate measured (in order), the best qualifying one, and whether time ran out."""

    measured: list[tuple[Candidate, Measurement]]
    best: tuple[Candidate, Measurement] | None
    closest: tuple[Candidate, Measurement] | None
    timed_out: bool
    mode: str


Measure = Callable[[Candidate], Measurement]


def search(
    space: Space,
    start: Candidate,
    measure: Measure,
    mode: str = "quick",
    *,
    min_throughput: float | None = None,
    time_left: Callable[[], bool] = lambda: True,
    known: dict[Candidate, Measurement] | None = None,
    min_gain: float = QUICK_MIN_GAIN,
) -> SearchResult:
    """Search `space` for the qualifying candidate with the highest throughput.

    quick: a hill climb from `start` (the deployed config, moved to its nearest point in the
    space): measure every unmeasured neighbour, move to the best one when it beats the current
    point by more than `min_gain`, stop when none does. brute: every candidate of the space, the
    start first. `known` holds measurements made already (the deployed config's). `time_left()`
    is asked before each measurement; when it says no the search stops with `timed_out`.
    """
    if mode not in MODES:
        raise ValueError(f"unknown search mode {mode!r}")
    results: dict[Candidate, Measurement] = dict(known or {})
    order: list[Candidate] = [c for c in results if c in space]
    timed_out = False

    def get(c: Candidate) -> Measurement | None:
        nonlocal timed_out
        if c in results:
            if c not in order:
                order.append(c)
            return results[c]
        if timed_out or not time_left():
            timed_out = True
            return None
        results[c] = measure(c)
        order.append(c)
        return results[c]

    start = space.nearest(start)
    if mode == "brute":
        for c in [start, *(c for c in space if c != start)]:
            if get(c) is None:
                break
    else:
        current = start
        get(current)
        while not timed_out:
            for n in space.neighbours(current):
                if get(n) is None:
                    break
            scored = [(rank(results[n], min_throughput), n) for n in space.neighbours(current) if n in results]
            if not scored:
                break
            best_rank, best_n = max(scored, key=lambda x: x[0])
            here = rank(results[current], min_throughput)
            better = best_rank[0] > here[0] or (
                best_rank[0] == here[0]
                and (best_rank[1] > here[1] * (1 + min_gain) if here[1] > 0 else best_rank[1] > here[1])
            )
            if not better:
                break
            current = best_n
    measured = [(c, results[c]) for c in order]
    good = [cm for cm in measured if qualifies(cm[1], min_throughput)]
    best = max(good, key=lambda cm: cm[1].throughput) if good else None
    closest = max(measured, key=lambda cm: rank(cm[1], min_throughput)) if measured else None
    return SearchResult(measured, best, closest, timed_out, mode)

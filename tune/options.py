"""`zeroserve tune`'s options, declared once: each field's default, bound, unit, help and spelling, checked once.

`run_tune` takes an `Options`; the tuning record embeds it (`options`); `tune/cli.py` builds its
command from these fields (zeroserve/options.py).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from zeroserve.client.endpoints import PROTOCOLS
from zeroserve.client.perf.windows import STABLE_WINDOWS
from zeroserve.errors import InputError
from zeroserve.options import PERCENTILE, POSITIVE, Spelling, as_json, check_fields, levels, opt
from zeroserve.tune.search import MODES

PREFERRED = {"both": None, "none": (False,), "max": (True,)}


def _ints(what: str) -> Callable[[str], tuple[int, ...]]:
    def parse(text: str) -> tuple[int, ...]:
        values = levels(int)(text)
        if not values:
            raise InputError(f"{what}: give at least one value")
        return values

    return parse


def _preferred(text: str) -> tuple[bool, ...] | None:
    if text not in PREFERRED:
        raise InputError(f"--preferred: {text!r} is not one of {', '.join(PREFERRED)}")
    return PREFERRED[text]


def _ints_opt(name: str, help: str, **kw):
    return opt(None, help, Spelling((name,), convert=_ints(name), metavar="N,N", kind=str), low=1, **kw)


@dataclass(frozen=True)
class Options:
    """How a tuning run measures and searches."""

    budget_ms: float | None = opt(
        None,
        "The latency budget: candidates are compared by their throughput at the highest concurrency whose "
        "latency percentile (--percentile) stays within it.",
        Spelling(("--latency-budget-ms",), kind=float),
        unit="ms",
        **POSITIVE,
    )
    min_throughput: float | None = opt(
        None,
        "Inferences/s a candidate must reach within the budget.",
        Spelling(("--min-throughput",), kind=float),
        unit="inferences/s",
        **POSITIVE,
    )
    protocol: str = opt("grpc", "Wire protocol the load is sent over.", Spelling(("--protocol",)), choices=PROTOCOLS)
    mode: str = opt(
        "quick",
        "quick: hill climb from the deployed config; brute: every combination within the caps.",
        Spelling(("--search",)),
        choices=MODES,
    )
    max_minutes: float = opt(
        60.0,
        "Stop searching after this long: no measurement level starts later (exit 1, the best so far "
        "reported, nothing applied).",
        Spelling(("--max-minutes",), kind=float),
        unit="min",
        **POSITIVE,
    )
    percentile: float = opt(
        99.0, "The latency percentile the budget bounds.", Spelling(("--percentile",), kind=float), **PERCENTILE
    )
    max_concurrency: int = opt(64, "Highest concurrency tried.", Spelling(("--max-concurrency",), kind=int), low=1)
    window_s: float = opt(
        1.0,
        "Measurement window (perf's stability windows; the warm-up is as long).",
        Spelling(("--window",), unit="s", kind=float),
        unit="s",
        **POSITIVE,
    )
    max_trials: int = opt(
        6,
        "Windows per level before it is kept as unstable (flagged, not an abort).",
        Spelling(("--max-trials",), kind=int),
        low=STABLE_WINDOWS,
    )
    stability: float = opt(0.10, "The stability threshold of perf's windows.", low=0, low_open=True, high=1)
    instances: tuple[int, ...] | None = _ints_opt("--instances", "Instance counts to try (default 1 up to the cores).")
    batch_sizes: tuple[int, ...] | None = _ints_opt(
        "--batch-sizes", "Max batch sizes to try (default powers of two from 8 up to the gated maximum)."
    )
    queue_delays_us: tuple[int, ...] | None = opt(
        None,
        "Max queue delays to try (default 0,100,500,1000,2000).",
        Spelling(("--queue-delays-us",), unit="µs", convert=_ints("--queue-delays-us"), metavar="N,N"),
        unit="µs",
        low=0,
    )
    threads: tuple[int, ...] | None = _ints_opt(
        "--threads", "ONNX Runtime / TorchScript intra-op threads to try (default 1 up to the cores)."
    )
    preferred: tuple[bool, ...] | None = opt(
        None,
        "Preferred batch size: both (try none and the max batch size), none or max.",
        Spelling(("--preferred",), convert=_preferred, metavar="both|none|max"),
    )
    request_timeout_s: float = opt(10.0, "Seconds before a request gives up.", unit="s", low=0, low_open=True)
    ports: tuple[int, int, int] | None = opt(
        None,
        "HTTP,GRPC,METRICS ports of the private server on 127.0.0.1 (default: free ones).",
        Spelling(("--ports",), convert=_ints("--ports"), metavar="HTTP,GRPC,METRICS"),
        low=1,
        high=65535,
    )

    def __post_init__(self) -> None:
        check_fields(self)
        if self.budget_ms is None:
            raise InputError(
                f"give --latency-budget-ms (the p{self.percentile:g} latency each candidate must stay within)"
            )
        if self.ports is not None and len(self.ports) != 3:
            raise InputError("--ports: give three ports between 1 and 65535, HTTP,GRPC,METRICS")

    @property
    def budget(self) -> float:
        assert self.budget_ms is not None  # checked when made
        return self.budget_ms

    def as_json(self) -> dict:
        return as_json(self)

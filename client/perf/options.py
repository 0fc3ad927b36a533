"""perf's options, declared once: each field's default, bound, unit, help text and spellings, checked once.

`PerfOptions` is what `run_perf` takes and what a perf record embeds (`options`). Each field's
`Opt` metadata carries its help, unit, bound or choices and its spellings: zeroserve's
(`--window` in s) and perf_analyzer's (`-p/--measurement-interval` in ms), each with the unit
conversion to the field's own unit. `client/perf/command_line.py` builds the `client perf` command from
these fields; `client/perf/pa_flags.py` lists every perf_analyzer flag, mapped or refused.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from zeroserve.client.endpoints import PROTOCOLS
from zeroserve.client.perf.load import DISTRIBUTIONS
from zeroserve.client.perf.windows import MAX_SEARCH_CONCURRENCY, STABLE_WINDOWS, latency_key
from zeroserve.errors import InputError
from zeroserve.options import BOTH, PERF_ANALYZER, POSITIVE, Spelling, as_json, check_fields, levels, opt, spelled

MEASUREMENT_MODES = ("time_windows", "count_windows")
SHARED_MEMORY = ("none", "system")
INPUT_MODES = ("random", "zero", "sample")
MAX_WORKERS = 16


def pa_range(kind: type) -> Callable[[str], tuple]:
    """perf_analyzer's `start[:end[:step]]` (end defaults to start, step to 1; end inclusive) -> the levels."""

    def parse(text: str) -> tuple:
        try:
            parts = [kind(p) for p in text.split(":")]
        except ValueError:
            raise InputError(f"expected start:end:step numbers, got {text!r}") from None
        if not 1 <= len(parts) <= 3:
            raise InputError(f"expected start:end:step, got {text!r}")
        start, end, step = (parts + [parts[0], kind(1)][len(parts) - 1 :])[:3]
        if step <= 0 or end < start:
            raise InputError(f"{text!r}: need start <= end and a positive step")
        out: list = []
        v = start
        while v <= end + 1e-9 and len(out) < 1000:
            out.append(v)
            v = v + step
        return tuple(out)

    return parse


def _parse_shapes(given: list[str]) -> dict[str, tuple[int, ...]]:
    from zeroserve.client.model import parse_shapes

    return parse_shapes(given)


def _lower(text: str) -> str:
    return text.lower()


PA = PERF_ANALYZER
LEVEL_HELP = (
    "Closed-loop levels: zeroserve 1,2,4,8; perf_analyzer its start, end (inclusive) and step, colon-separated."
)


@dataclass(frozen=True)
class PerfOptions:
    """How `client perf` loads one model: modes, windows, inputs, endpoints. Checked once, when made."""

    protocol: str = opt(
        "grpc",
        "Wire protocol (KServe v2); zeroserve's default grpc (http when only --http-port is given), "
        "perf_analyzer's http.",
        Spelling(("--protocol",)),
        Spelling(("-i",), PA, convert=_lower, metavar="http|grpc"),
        choices=PROTOCOLS,
        pa_default=("http",),
    )
    urls: tuple[str, ...] | None = opt(
        None,
        "HOST:PORT of the chosen protocol (loopback only); zeroserve's --url repeats to spread load over servers.",
        Spelling(("--url",), kind=list),
        Spelling(("-u",), PA, convert=lambda u: (u,), metavar="HOST:PORT"),
    )
    concurrency: tuple[int, ...] | None = opt(
        None,
        LEVEL_HELP + " Default 1.",
        Spelling(("--concurrency",), convert=levels(int), metavar="1,2,4"),
        Spelling(("--concurrency-range",), PA, convert=pa_range(int), metavar="START:END:STEP"),
        Spelling(("-t",), PA, convert=lambda n: (int(n),), metavar="N", help="Deprecated: one concurrency level."),
        low=1,
    )
    request_rate: tuple[float, ...] | None = opt(
        None,
        "Open-loop levels in requests/s: zeroserve 100,500; perf_analyzer its start, end and step, colon-separated.",
        Spelling(("--request-rate",), convert=levels(float), metavar="100,500"),
        Spelling(("--request-rate-range",), PA, convert=pa_range(float), metavar="START:END:STEP"),
        unit="requests/s",
        **POSITIVE,
    )
    distribution: str = opt(
        "constant",
        "Open-loop arrivals.",
        Spelling(("--distribution",)),
        Spelling(("--request-distribution",), PA),
        choices=DISTRIBUTIONS,
    )
    latency_budget_ms: float | None = opt(
        None,
        "Search the highest concurrency whose latency (--percentile's, else the average) stays within this "
        "budget (perf_analyzer: -l with --binary-search).",
        Spelling(("--latency-budget-ms",), kind=float),
        unit="ms",
        **POSITIVE,
    )
    latency_threshold_ms: float | None = opt(
        None,
        "perf_analyzer's -l: a sweep stops after the first level over it and its -f CSV keeps the levels "
        "within it; with --binary-search, the budget of the concurrency search.",
        Spelling(("-l", "--latency-threshold"), PA, unit="ms", kind=float),
        unit="ms",
        **POSITIVE,
    )
    binary_search: bool = opt(
        False,
        "perf_analyzer's --binary-search: search --concurrency-range for the highest level within -l.",
        Spelling(("--binary-search",), PA, kind=bool),
    )
    max_concurrency: int = opt(
        MAX_SEARCH_CONCURRENCY,
        "Highest concurrency the budget search tries.",
        Spelling(("--max-concurrency",), kind=int),
        low=1,
    )
    start_concurrency: int = opt(1, "The budget search's first level.", low=1)
    batch_size: int = opt(
        1, "Samples per request.", Spelling(("--batch-size",), kind=int), Spelling(("-b",), PA, kind=int), low=1
    )
    fmt: str | None = opt(None, "Served format of a registry name (or --variant's).")
    input_mode: str = opt(
        "random",
        "random, zero (any datatype) or sample (real held-out data, registry models).",
        Spelling(("--input",)),
        Spelling(("-z",), PA, kind=bool, convert=lambda on: "zero", help="Deprecated: zero input data."),
        choices=INPUT_MODES,
    )
    input_data: Path | None = opt(
        None,
        "zero, random, or a file: .npy/.npz/.json keyed by input name, or perf_analyzer's input-data JSON.",
        Spelling(("--input-data",), BOTH, metavar="zero|random|PATH"),
    )
    shapes: dict[str, tuple[int, ...]] | None = opt(
        None,
        "NAME:D1,D2 fixes an input's dynamic dims (batch axis excluded); repeat for several inputs.",
        Spelling(("--shape",), BOTH, kind=list, convert=lambda given: _parse_shapes(given)),
    )
    cast: bool = opt(
        False,
        "Convert input values the model's dtypes do not hold exactly (float64 rounded to float32, fractions "
        "truncated, integers saturated); without it such an input is refused.",
        Spelling(("--cast",), kind=bool),
    )
    allow_nonfinite: bool = opt(
        False, "Send NaN and infinite input values (else refused).", Spelling(("--allow-nonfinite",), kind=bool)
    )
    data_dir: Path | None = opt(None, "Course data folder (--input sample).")
    shared_memory: str = opt(
        "none",
        "Triton's system shared-memory extension for inputs and outputs (cuda: no GPU path here).",
        Spelling(("--shared-memory",), BOTH),
        choices=SHARED_MEMORY,
    )
    output_shared_memory_size: int | None = opt(
        None,
        "perf_analyzer's output region size; zeroserve sizes each region from the reference answer and "
        "refuses a size below it.",
        Spelling(("--output-shared-memory-size",), PA, unit="bytes", kind=int),
        unit="bytes",
        low=1,
    )
    measurement_mode: str = opt(
        "time_windows",
        "time_windows (each window --window long) or count_windows (at least --measurement-request-count requests).",
        Spelling(("--measurement-mode",), BOTH),
        choices=MEASUREMENT_MODES,
    )
    measurement_request_count: int = opt(
        50,
        "count_windows: the fewest requests in a window.",
        Spelling(("--measurement-request-count",), BOTH, kind=int),
        low=1,
    )
    window_s: float | None = opt(
        None,
        "Measurement window (default 5 s; with count_windows its starting length, 1 s).",
        Spelling(("--window",), unit="s", kind=float),
        Spelling(("-p", "--measurement-interval"), PA, unit="ms", kind=float, convert=lambda ms: ms / 1e3),
        unit="s",
        **POSITIVE,
    )
    warmup_s: float | None = opt(
        None,
        "Warm-up per level (zeroserve's default: one window; perf_analyzer's: none).",
        Spelling(("--warmup",), unit="s", kind=float),
        unit="s",
        low=0,
        pa_default=(0.0,),
    )
    stability: float = opt(
        0.10,
        f"The last {STABLE_WINDOWS} windows agree within this share on throughput and latency.",
        Spelling(("--stability",), unit="fraction", kind=float),
        Spelling(("-s", "--stability-percentage"), PA, unit="%", kind=float, convert=lambda pct: pct / 100),
        **POSITIVE,
        high=1,
        high_open=True,
    )
    max_trials: int = opt(
        10, "At most this many windows per level.", Spelling(("--max-trials", "-r"), BOTH, kind=int), low=STABLE_WINDOWS
    )
    percentile: float | None = opt(
        None,
        "Latency percentile for the stability rule and the budget search; default the average, as perf_analyzer.",
        Spelling(("--percentile",), BOTH, kind=float),
        **POSITIVE,
        high=100,
        high_open=True,
    )
    streaming: bool = opt(
        False, "gRPC only: send over ModelStreamInfer streams.", Spelling(("--streaming",), BOTH, kind=bool)
    )
    allow_unstable: bool = opt(
        False,
        "Go on past a level that never stabilised, and exit 0 instead of 4.",
        Spelling(("--allow-unstable",), kind=bool),
    )
    allow_failures: bool = opt(
        False,
        "Exit 0 instead of 1 when some requests failed (they are still counted).",
        Spelling(("--allow-failures",), kind=bool),
    )
    workers: int = opt(
        1,
        "Load-generator processes (each an asyncio loop).",
        Spelling(("--workers",), kind=int),
        low=1,
        high=MAX_WORKERS,
    )
    timeout: float = opt(10.0, "Seconds before a call to the server gives up.", unit="s", low=0, low_open=True)
    seed: int = opt(0, "Seed of random input data.")

    def __post_init__(self) -> None:
        check_fields(self)
        if self.binary_search and self.latency_threshold_ms is not None:  # perf_analyzer's search over its range
            object.__setattr__(self, "latency_budget_ms", self.latency_threshold_ms)
            if self.concurrency:  # made once: a copy (dataclasses.replace) keeps the range it became
                object.__setattr__(self, "start_concurrency", min(self.concurrency))
                object.__setattr__(self, "max_concurrency", max(self.concurrency))
                object.__setattr__(self, "concurrency", None)
        modes = [n for n in ("concurrency", "request_rate", "latency_budget_ms") if getattr(self, n) not in (None, ())]
        if len(modes) > 1:
            raise InputError(f"choose one of {', '.join(spelled(self, m) for m in modes)}")
        if self.streaming and self.protocol != "grpc":
            raise InputError("--streaming is gRPC's ModelStreamInfer: use it with the grpc protocol")
        if self.binary_search and self.latency_threshold_ms is None:
            raise InputError("--binary-search needs -l/--latency-threshold (ms)")

    @property
    def mode(self) -> str:
        return (
            "latency_budget"
            if self.latency_budget_ms is not None
            else "request_rate"
            if self.request_rate
            else "concurrency"
        )

    @property
    def concurrency_levels(self) -> list[int]:
        return list(self.concurrency or ([] if self.request_rate or self.latency_budget_ms is not None else [1]))

    @property
    def window(self) -> float:
        """The window in seconds: given, else 5 (1 with count_windows, as perf_analyzer)."""
        return self.window_s if self.window_s is not None else 1.0 if self.measurement_mode == "count_windows" else 5.0

    @property
    def warmup(self) -> float:
        return self.window if self.warmup_s is None else self.warmup_s

    @property
    def latency_key(self) -> str:
        return latency_key(self.percentile)

    def as_json(self) -> dict:
        """The options as a record embeds them."""
        return as_json(self)


def latency_name(key: str) -> str:
    """What a latency key measures, for a message: `average latency`, `p99 latency`."""
    return "average latency" if key == "mean_ms" else f"{key.removesuffix('_ms')} latency"

"""In-process latency of exported artifacts beside eager PyTorch: the median of timed runs per batch size."""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np
import torch

from zeroserve.spec import ModelSpec

LATENCY_THREADS = 1  # every path measured on one CPU thread


def median_ms(fn: Callable, inputs: list[np.ndarray], budget_s: float = 0.4, max_runs: int = 200) -> float:
    """Median wall time of `fn(inputs)` in ms: 2 warm-up calls, then at least 5 runs within the budget."""
    for _ in range(2):
        fn(inputs)
    times: list[float] = []
    deadline = time.perf_counter() + budget_s
    while len(times) < 5 or (time.perf_counter() < deadline and len(times) < max_runs):
        t0 = time.perf_counter()
        fn(inputs)
        times.append((time.perf_counter() - t0) * 1e3)
    return float(np.median(times))


def measure_latency(
    spec: ModelSpec, runners: dict[str, Callable], batches: tuple[int, ...], budget_s: float = 0.4
) -> dict:
    """In-process latency medians (ms) per path and batch size, on 1 CPU thread for every path."""
    previous = torch.get_num_threads()
    torch.set_num_threads(LATENCY_THREADS)
    try:
        rng = np.random.default_rng(1)
        out: dict = {"threads": LATENCY_THREADS, "device": "cpu"}
        for batch in batches:
            inputs = spec.random_inputs(batch, rng)
            out[f"batch_{batch}"] = {name: round(median_ms(fn, inputs, budget_s), 5) for name, fn in runners.items()}
        return out
    finally:
        torch.set_num_threads(previous)

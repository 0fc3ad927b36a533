"""One perf level's setup: the target, the request bodies, the clients and the load generator a level runs on."""

from __future__ import annotations

import time
from dataclasses import dataclass, replace

import numpy as np

from zeroserve.client.model import Target
from zeroserve.client.perf.generator import LoadPlan, LocalGenerator, ProcessGenerator, Tensors, WorkerPool
from zeroserve.client.perf.inputs import SharedMemory
from zeroserve.client.perf.metrics import DEFAULT_INTERVAL_S, Source
from zeroserve.client.perf.split import split_level
from zeroserve.client.perf.windows import (
    latency_key,
)
from zeroserve.client.perf.wire import OutputSpec


@dataclass
class Setup:
    """Everything a level needs, fixed for the whole run."""

    spec: Target  # what is sent: its input and output tensors
    triton_name: str
    protocol: str
    urls: list[str]
    arrays: list[np.ndarray]
    batch_size: int
    window_s: float
    warmup_s: float
    stability: float
    max_trials: int
    timeout: float
    shm: SharedMemory | None = None
    distribution: str = "constant"
    seed: int = 0
    pool: WorkerPool | None = None  # worker processes generating the load; None: this process's event loop
    expected: tuple[OutputSpec, ...] = ()
    streaming: bool = False
    percentile: float | None = None
    request_count: int | None = None  # count_windows: each window holds at least this many requests
    variants: tuple = ()  # further (arrays, expected) requests sent in turn (perf_analyzer input-data entries)
    extra_inputs: int = 0  # input-data entries beyond the first (sent only without shared memory)
    metrics: tuple[Source, ...] = ()  # where the servers' own figures are read around each level
    metrics_interval_s: float = DEFAULT_INTERVAL_S

    @property
    def latency_key(self) -> str:
        return latency_key(self.percentile)

    def generator(self, concurrency: int | None, rate: float | None):
        """The level's generator: local, or its plans spread over the worker pool."""
        regions = self.shm.output_regions if self.shm else []
        base = LoadPlan(
            Tensors(self.spec.inputs, self.spec.outputs),
            self.triton_name,
            self.protocol,
            self.urls,
            self.arrays,
            self.timeout,
            distribution=self.distribution,
            seed=self.seed,
            # workers need a moment to receive the level and connect before the first send
            start_at=time.perf_counter() + (0.5 if self.pool else 0.01),
            input_region=self.shm.input_region if self.shm else None,
            expected=self.expected,
            streaming=self.streaming,
            variants=self.variants,
        )
        if self.pool is None:
            return LocalGenerator(replace(base, concurrency=concurrency, rate=rate, output_regions=regions))
        plans = split_level(base, len(self.pool.procs), concurrency, rate, regions)
        return ProcessGenerator(self.pool, plans, self.timeout)

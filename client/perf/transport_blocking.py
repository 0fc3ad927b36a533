"""gRPC unary calls from blocking threads: at up to BLOCKING_GRPC_MAX_CONCURRENCY slots they beat grpc.aio here."""

from __future__ import annotations

import contextlib
import time

from zeroserve.client.perf import load, wire
from zeroserve.client.perf.transport import grpc_failure
from zeroserve.client.perf.wire import Template, WireFailure

BLOCKING_GRPC_MAX_CONCURRENCY = 2  # measured here: up to 2 slots blocking threads beat grpc.aio, from 4 on not


class BlockingGrpcLoop:
    """Closed loop of gRPC unary calls, one thread per slot making blocking calls on grpcio's sync channel.

    At low concurrency grpcio's blocking call answers sooner than its asyncio API (c=1 p50 0.49 against
    0.63-0.81 ms here); the GIL is released while a call waits. Counts go into `recorder` under `lock`.
    """

    def __init__(
        self,
        urls: list[str],
        templates: list[list[Template]],
        concurrency: int,
        timeout: float,
        recorder: load.Recorder,
        cycle: bool = False,
    ):
        import threading

        self.templates = templates
        self.cycle = cycle  # each thread sends its row's templates in turn (request variants), else one
        self.concurrency = concurrency
        self.timeout = timeout
        self.recorder = recorder
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.urls = urls
        self.channels: list = []
        self.threads: list = []

    def start(self) -> None:
        import threading

        import grpc

        self.channels = [grpc.insecure_channel(u, options=wire.GRPC_OPTIONS) for u in self.urls]
        calls = [c.unary_unary(wire.INFER_METHOD, _registered_method=True) for c in self.channels]
        for slot in range(self.concurrency):
            row = self.templates[slot % len(self.urls)]
            own = row[slot % len(row) :] + row[: slot % len(row)] if self.cycle else [row[slot % len(row)]]
            thread = threading.Thread(
                target=self._run, args=(calls[slot % len(self.urls)], own), daemon=True, name=f"zeroserve-grpc-{slot}"
            )
            thread.start()
            self.threads.append(thread)

    def _run(self, call, templates: list[Template]) -> None:
        import grpc

        clock, recorder, lock = time.perf_counter, self.recorder, self.lock
        turn = 0
        while not self.stop.is_set():
            template = templates[turn % len(templates)]
            turn += 1
            t0 = clock()
            failure: tuple[str, str] | None = None
            try:
                body = call(template.payload, timeout=self.timeout)
                t1 = clock()
                with lock:
                    wire.check_grpc(template, body)
            except grpc.RpcError as exc:
                failure = load.failure_kind(grpc_failure(exc))
            except WireFailure as exc:
                failure = load.failure_kind(exc)
            t2 = clock()
            with lock:
                window = recorder.current
                recorder.sent(0.0)
                if failure is None:
                    recorder.record(t1 - t0, True)
                    window.check_s += t2 - t1
                else:
                    recorder.record(t2 - t0, False, *failure)
            if failure is not None:
                self.stop.wait(load.FAILURE_BACKOFF_S)

    def swap(self) -> load.WindowCounts:
        with self.lock:
            return self.recorder.swap()

    def close(self) -> None:
        """Stop and join every thread (each call is bounded by `timeout`), then close the channels."""
        self.stop.set()
        for thread in self.threads:
            thread.join(self.timeout + 1.0)
        for channel in self.channels:
            with contextlib.suppress(Exception):
                channel.close()

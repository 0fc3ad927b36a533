"""The tuner: tune's private server and what is measured on it (candidates written, loaded, measured, unloaded).

`run_tune` (tune/runner.py) drives it; the server is the embedded engine on free loopback ports with
explicit model control, serving the deployed model and its no-op twin, stopped on exit however the
run ends.
"""

from __future__ import annotations

import shutil
import statistics
from collections.abc import Callable
from pathlib import Path
from typing import Any

from zeroserve import formats as F
from zeroserve.client.endpoints import Endpoint
from zeroserve.client.perf.levels import level_count
from zeroserve.client.perf.run import run_perf
from zeroserve.deploy.contents import canonical_models, read_deployed
from zeroserve.errors import InputError, ServerError, ZeroserveError
from zeroserve.records.perf import PerfRecord
from zeroserve.records.tune import Floor, Measurement, SideBySide, SideFigures
from zeroserve.serve.runtime import NOOP_SUFFIX, served_by, write_runtime_model
from zeroserve.spec import ModelSpec
from zeroserve.triton.control import Control
from zeroserve.triton.wheel import gpu_available
from zeroserve.tune import search as S
from zeroserve.tune.options import Options
from zeroserve.tune.record import summary
from zeroserve.tune.settings import candidate_of, config_for

SIDE_BY_SIDE_ROUNDS = 3
SEARCH_RESOLUTION = 0.1  # the concurrency search stops within 10%: throughput is flat near the knee
UNLOAD_TIMEOUT_S = 60.0
LOAD_TIMEOUT_S = 300.0

Event = Callable[[str, dict], None]


def deployed_formats(spec: ModelSpec, repository: Path, fmt: str | None) -> dict[str, str]:
    """Format key -> Triton name of the model's deployed formats (the one `fmt`), or InputError."""
    try:
        names = canonical_models(repository, [spec.name])
    except InputError as exc:
        raise InputError(f"{spec.name} is not deployed in {repository}: {exc}") from None
    found = {}
    for name in names:
        split = F.split_triton_name(name)
        if split and split[0] == spec.name:
            found[split[1].key] = name
    if fmt is not None:
        F.get(fmt)
        if fmt not in found:
            raise InputError(
                f"{spec.name} has no deployed {fmt} format in {repository} (deployed: "
                f"{', '.join(found) or 'none'}); run `zeroserve deploy {spec.name} --format {fmt}`"
            )
        return {fmt: found[fmt]}
    if not found:
        raise InputError(f"{spec.name} is not deployed in {repository}; run `zeroserve deploy {spec.name}`")
    return found


# ---------------------------------------------------------------- one measurement


def _load_failed(message: str, failed: int = 1, cut_short: bool = False) -> Measurement:
    """A candidate not measured (cut_short: the time ran out part-way through its search)."""
    m = Measurement(
        meets_budget=False,
        concurrency=None,
        throughput=0.0,
        latency_ms=None,
        p50_ms=None,
        p99_ms=None,
        stable=False,
        failed=failed,
        server=None,
        unstable_levels=[],
        levels=[],
        error=message,
    )
    if cut_short:
        m.cut_short = True
    return m


class Tuner:
    """The private server and what is measured on it. Use as a context manager: the server stops on exit."""

    def __init__(
        self, spec: ModelSpec, repository: Path, fmt: str | None, opts: Options, on_event: Event | None = None
    ) -> None:
        self.spec, self.repository, self.opts = spec, Path(repository), opts
        self.on_event = on_event or (lambda kind, data: None)
        self.formats = deployed_formats(spec, self.repository, fmt)
        self.base_fmt = fmt or (F.DEFAULT_FORMAT if F.DEFAULT_FORMAT in self.formats else next(iter(self.formats)))
        self.base_name = self.formats[self.base_fmt]
        self.deployed = {k: read_deployed(self.repository / n) for k, n in self.formats.items()}
        for k, n in self.formats.items():
            served_by(self.deployed[k], self.repository / n)
        self.server: Any = None  # the private Server once started
        self.count = 0
        self.kept: dict[S.Candidate, str] = {}  # candidate -> folder name still on the server (the best so far)
        self.hint = 1
        self.deadline: float | None = None  # time.monotonic() after which no measurement level starts

    # ------------------------------------------------------------ the server

    def __enter__(self) -> Tuner:
        from zeroserve.serve.private import start_private

        self.on_event("server", {"state": "starting"})
        self.server = start_private(
            self.repository,
            [self.base_name],
            purpose="zeroserve tune (private, stopped at the end of the run)",
            ports=self.opts.ports,
            noop_of=[self.base_name],
            model_control="explicit",
        )
        s = self.server.state
        self.on_event(
            "server",
            {
                "state": "ready",
                "pid": self.server.pid,
                "http_port": s.http_port,
                "grpc_port": s.grpc_port,
                "metrics_port": s.metrics_port,
            },
        )
        return self

    def __exit__(self, *exc) -> None:
        if self.server is not None:
            self.server.stop()
            self.on_event("server", {"state": "stopped", "pid": self.server.pid})
            self.server = None

    @property
    def endpoint(self) -> Endpoint:
        s = self.server.state
        return Endpoint(s.host, s.http_port, s.grpc_port or 0, "zeroserve tune's private server")

    def triton_version(self) -> str | None:
        """The private server's Triton version, as its metadata says."""
        from zeroserve.client.connection import Client
        from zeroserve.errors import ZeroserveError

        try:
            with Client(self.endpoint, "http", self.opts.request_timeout_s) as client:
                return client.server_version()
        except ZeroserveError:
            return None

    @property
    def runtime_repository(self) -> Path:
        return Path(self.server.state.runtime_dir or "") / "repository"

    def _load(self, name: str) -> None:
        with Control.of(self.server.state, LOAD_TIMEOUT_S) as control:
            control.load(name)

    def _unload(self, name: str) -> None:
        """Unload and wait until the model's stubs are gone, so the next candidate has the CPU to itself."""
        try:
            with Control.of(self.server.state, UNLOAD_TIMEOUT_S) as control:
                control.unload(name, wait_s=UNLOAD_TIMEOUT_S)
        except ZeroserveError:  # a candidate that will not unload is stopped with the server
            pass

    def _write(self, c: S.Candidate, name: str) -> None:
        src = self.repository / self.formats[c.fmt]
        config = config_for(self.deployed[c.fmt], c, name=name)
        write_runtime_model(src, config, self.runtime_repository, name=name, gpu=gpu_available())

    def _remove(self, name: str) -> None:
        shutil.rmtree(self.runtime_repository / name, ignore_errors=True)

    # ------------------------------------------------------------ measuring

    def perf(self, triton_name: str, fmt: str, **kwargs) -> PerfRecord:
        o = self.opts
        # each level's server_resources: the private server's process tree (client/perf/metrics.py)
        rec = run_perf(
            self.spec,
            self.endpoint,
            fmt=fmt,
            triton_name=triton_name,
            protocol=o.protocol,
            percentile=o.percentile,
            window_s=o.window_s,
            warmup_s=o.window_s,
            max_trials=o.max_trials,
            stability=o.stability,
            allow_unstable=True,
            allow_failures=True,
            timeout=o.request_timeout_s,
            **kwargs,
        )
        if rec.outcome.exit_code == 3:
            raise ServerError(f"the private server stopped answering: {rec.outcome.reason} (log: {self.server.log})")
        return rec

    def floor(self, budget_ms: float) -> Floor:
        """The serving path's own latency at concurrency 1 (the no-op twin): no config goes below it.

        Measured again when the first figure is over `budget_ms` (a moment of load from elsewhere
        should not end the run); the lower of the two counts.
        """
        figures = []
        for _ in range(2):
            rec = self.perf(f"{self.base_name}{NOOP_SUFFIX}", self.base_fmt, concurrency=[1])
            lv = rec.levels[0]
            figures.append(
                Floor(latency_ms=lv.figure(rec.latency_metric), p50_ms=lv.p50_ms, p99_ms=lv.p99_ms, stable=lv.stable)
            )
            if figures[-1].latency_ms <= budget_ms:
                break
        return min(figures, key=lambda f: f.latency_ms)

    def measure_budget(self, name: str, fmt: str, start: int | None = None) -> Measurement:
        o = self.opts
        rec = self.perf(
            name,
            fmt,
            latency_budget_ms=o.budget_ms,
            max_concurrency=o.max_concurrency,
            start_concurrency=start or self.hint,
            resolution=SEARCH_RESOLUTION,
            deadline=self.deadline,
        )
        if rec.cut_short:  # a search cut off part-way says nothing about the config
            ran_out = f"not measured to the end: --max-minutes ({o.max_minutes:g}) ran out"
            return _load_failed(ran_out, failed=0, cut_short=True)
        m = summary(rec)
        if m.meets_budget and m.concurrency:
            self.hint = m.concurrency
        return m

    def measure_deployed(self, start: int | None = None) -> tuple[S.Candidate, Measurement]:
        c = candidate_of(self.deployed[self.base_fmt], self.base_fmt)
        self.on_event("measuring", {"name": self.base_name, "candidate": c, "deployed": True})
        m = self.measure_budget(self.base_name, self.base_fmt, start)
        self.on_event("measured", {"name": self.base_name, "candidate": c, "measurement": m, "deployed": True})
        return c, m

    def measure_candidate(self, c: S.Candidate, is_best: Callable[[S.Candidate, Measurement], bool]) -> Measurement:
        """Write, load, measure, unload; the folder is kept (for the final re-measurement) while it is the best."""
        self.count += 1
        name = f"{self.formats[c.fmt]}_tune{self.count:03d}"
        self.on_event("measuring", {"name": name, "candidate": c})
        try:
            self._write(c, name)
            try:
                self._load(name)
            except ZeroserveError as exc:  # the candidate that does not load is data, unless the server died
                if not self.server.alive():
                    raise ServerError(f"the private server died loading {name} (log: {self.server.log})") from None
                message = (exc.said or str(exc))[:300]
                m = _load_failed(f"did not load: {message}")
            else:
                try:
                    m = self.measure_budget(name, c.fmt)
                finally:
                    self._unload(name)
        except BaseException:
            self._remove(name)
            raise
        m.name = name
        if is_best(c, m):
            for old in self.kept.values():
                self._remove(old)
            self.kept = {c: name}
        else:
            self._remove(name)
        self.on_event("measured", {"name": name, "candidate": c, "measurement": m})
        return m

    def side_by_side(self, best: S.Candidate, best_c: int, deployed_c: int) -> SideBySide:
        """Deployed and best, both loaded, each at its own concurrency, interleaved; medians of the rounds."""
        name = self.kept.get(best)
        if name is None:
            self.count += 1
            name = f"{self.formats[best.fmt]}_tune{self.count:03d}"
            self._write(best, name)
            self.kept[best] = name
        self._load(name)
        rounds: list[dict[str, SideFigures]] = []
        try:
            for i in range(SIDE_BY_SIDE_ROUNDS):
                pair = [("deployed", self.base_name, self.base_fmt, deployed_c), ("best", name, best.fmt, best_c)]
                got = {}
                for which, triton, fmt, c in pair if i % 2 == 0 else pair[::-1]:  # alternate who goes first
                    self.on_event("side_by_side", {"round": i + 1, "which": which, "concurrency": c})
                    lv = self.perf(triton, fmt, concurrency=[c]).levels[0]
                    got[which] = SideFigures(
                        concurrency=c,
                        throughput=lv.throughput,
                        p50_ms=lv.p50_ms,
                        p99_ms=lv.p99_ms,
                        stable=lv.stable,
                        failed=level_count(lv),
                    )
                rounds.append(got)
        finally:
            self._unload(name)
        med = {
            w: SideFigures(
                throughput=statistics.median(r[w].throughput for r in rounds),
                p50_ms=statistics.median(r[w].p50_ms for r in rounds),
                p99_ms=statistics.median(r[w].p99_ms for r in rounds),
            )
            for w in ("deployed", "best")
        }
        deployed = med["deployed"].throughput
        return SideBySide(rounds=rounds, median=med, ratio=med["best"].throughput / deployed if deployed else None)


# ---------------------------------------------------------------- the run

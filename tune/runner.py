"""`zeroserve tune`'s run: a private server, each candidate loaded, measured and unloaded, the answer re-measured.

The private server is the embedded engine (serve/server.py's `start_server`) on free loopback
ports with explicit model control, serving the deployed model and its no-op twin (the serving
path's floor). Each candidate is written as its own folder into that server's runtime repository
(serve/runtime.py's transform of a modified deployed config), loaded through the HTTP API,
measured with the perf engine (client/perf/run.py's latency-budget search), unloaded and removed. The
server is stopped at the end, after a failure and after Ctrl-C or SIGTERM alike; a served server
is never touched and the canonical repository is only read.
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from zeroserve import formats as F
from zeroserve import records
from zeroserve.client.endpoints import Endpoint
from zeroserve.client.perf.run import level_count, run_perf
from zeroserve.deploy.contents import canonical_models, read_deployed
from zeroserve.deploy.repository import read_manifest
from zeroserve.errors import InputError, ServerError, ZeroserveError
from zeroserve.serve.runtime import NOOP_SUFFIX, served_by, write_runtime_model
from zeroserve.spec import ModelSpec
from zeroserve.triton.control import Control
from zeroserve.triton.wheel import gpu_available
from zeroserve.tune import search as S
from zeroserve.tune.options import Options
from zeroserve.tune.settings import candidate_of, config_for, tuned_on

SIDE_BY_SIDE_ROUNDS = 3
SEARCH_RESOLUTION = 0.1  # the concurrency search stops within 10%: throughput is flat near the knee
UNLOAD_TIMEOUT_S = 60.0
LOAD_TIMEOUT_S = 300.0

Event = Callable[[str, dict], None]


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


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


def summary(rec: dict) -> dict:
    """A perf record of the latency-budget search as a tuning measurement (see tune/search.py)."""
    key = rec["latency_metric"]
    levels = rec["levels"]
    best = next((lv for lv in levels if lv["concurrency"] == rec["best"]), None) if rec["best"] else None
    failed = sum(level_count(lv) for lv in levels)
    seen = [lv[key] for lv in levels if lv["ok"]]
    shown = best or (min(levels, key=lambda lv: lv[key]) if levels else None)
    return {
        "meets_budget": best is not None,
        "concurrency": rec["best"],
        "throughput": best["throughput"] if best else 0.0,
        "latency_ms": best[key] if best else (min(seen) if seen else None),
        "p50_ms": shown["p50_ms"] if shown else None,
        "p99_ms": shown["p99_ms"] if shown else None,
        "stable": bool(best and best["stable"]),
        "failed": failed,
        "server": shown.get("server") if shown else None,
        # the latency breakdown of the level shown (tune's report draws it as perf's): average, client side
        "mean_ms": shown.get("mean_ms") if shown else None,
        "client": shown.get("client") if shown else None,
        "server_resources": best.get("server_resources") if best else None,
        "unstable_levels": [lv["concurrency"] for lv in levels if not lv["stable"]],
        "levels": [
            {
                "concurrency": lv["concurrency"],
                "throughput": lv["throughput"],
                "p50_ms": lv["p50_ms"],
                "p99_ms": lv["p99_ms"],
                "mean_ms": lv.get("mean_ms"),
                key: lv[key],
                "stable": lv["stable"],
                "failed": level_count(lv),
                "server_resources": lv.get("server_resources"),
            }
            for lv in levels
        ],
    }


def _load_failed(message: str) -> dict:
    return {
        "meets_budget": False,
        "concurrency": None,
        "throughput": 0.0,
        "latency_ms": None,
        "p50_ms": None,
        "p99_ms": None,
        "stable": False,
        "failed": 1,
        "server": None,
        "unstable_levels": [],
        "levels": [],
        "error": message,
    }


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
                "http_port": s["http_port"],
                "grpc_port": s["grpc_port"],
                "metrics_port": s["metrics_port"],
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
        return Endpoint(s["host"], int(s["http_port"]), int(s["grpc_port"]), "zeroserve tune's private server")

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
        return Path(self.server.state["runtime_dir"]) / "repository"

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

    def perf(self, triton_name: str, fmt: str, **kwargs) -> dict:
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
        if rec["outcome"]["exit_code"] == 3:
            raise ServerError(
                f"the private server stopped answering: {rec['outcome']['reason']} (log: {self.server.log})"
            )
        return rec

    def floor(self, budget_ms: float) -> dict:
        """The serving path's own latency at concurrency 1 (the no-op twin): no config goes below it.

        Measured again when the first figure is over `budget_ms` (a moment of load from elsewhere
        should not end the run); the lower of the two counts.
        """
        figures = []
        for _ in range(2):
            rec = self.perf(f"{self.base_name}{NOOP_SUFFIX}", self.base_fmt, concurrency=[1])
            lv = rec["levels"][0]
            key = rec["latency_metric"]
            figures.append(
                {"latency_ms": lv[key], "p50_ms": lv["p50_ms"], "p99_ms": lv["p99_ms"], "stable": lv["stable"]}
            )
            if figures[-1]["latency_ms"] <= budget_ms:
                break
        return min(figures, key=lambda f: f["latency_ms"])

    def measure_budget(self, name: str, fmt: str, start: int | None = None) -> dict:
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
        if rec["cut_short"]:  # a search cut off part-way says nothing about the config
            return {
                **_load_failed(f"not measured to the end: --max-minutes ({o.max_minutes:g}) ran out"),
                "failed": 0,
                "cut_short": True,
            }
        m = summary(rec)
        if m["meets_budget"]:
            self.hint = m["concurrency"]
        return m

    def measure_deployed(self, start: int | None = None) -> tuple[S.Candidate, dict]:
        c = candidate_of(self.deployed[self.base_fmt], self.base_fmt)
        self.on_event("measuring", {"name": self.base_name, "candidate": c, "deployed": True})
        m = self.measure_budget(self.base_name, self.base_fmt, start)
        self.on_event("measured", {"name": self.base_name, "candidate": c, "measurement": m, "deployed": True})
        return c, m

    def measure_candidate(self, c: S.Candidate, is_best: Callable[[S.Candidate, dict], bool]) -> dict:
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
        m["name"] = name
        if is_best(c, m):
            for old in self.kept.values():
                self._remove(old)
            self.kept = {c: name}
        else:
            self._remove(name)
        self.on_event("measured", {"name": name, "candidate": c, "measurement": m})
        return m

    def side_by_side(self, best: S.Candidate, best_c: int, deployed_c: int) -> dict:
        """Deployed and best, both loaded, each at its own concurrency, interleaved; medians of the rounds."""
        name = self.kept.get(best)
        if name is None:
            self.count += 1
            name = f"{self.formats[best.fmt]}_tune{self.count:03d}"
            self._write(best, name)
            self.kept[best] = name
        self._load(name)
        rounds: list[dict[str, dict]] = []
        try:
            for i in range(SIDE_BY_SIDE_ROUNDS):
                pair = [("deployed", self.base_name, self.base_fmt, deployed_c), ("best", name, best.fmt, best_c)]
                got = {}
                for which, triton, fmt, c in pair if i % 2 == 0 else pair[::-1]:  # alternate who goes first
                    self.on_event("side_by_side", {"round": i + 1, "which": which, "concurrency": c})
                    lv = self.perf(triton, fmt, concurrency=[c])["levels"][0]
                    got[which] = {
                        "concurrency": c,
                        "throughput": lv["throughput"],
                        "p50_ms": lv["p50_ms"],
                        "p99_ms": lv["p99_ms"],
                        "stable": lv["stable"],
                        "failed": level_count(lv),
                    }
                rounds.append(got)
        finally:
            self._unload(name)
        med = {
            w: {k: statistics.median(r[w][k] for r in rounds) for k in ("throughput", "p50_ms", "p99_ms")}
            for w in ("deployed", "best")
        }
        ratio = med["best"]["throughput"] / med["deployed"]["throughput"] if med["deployed"]["throughput"] else None
        return {"rounds": rounds, "median": med, "ratio": ratio}


# ---------------------------------------------------------------- the run


def run_tune(
    spec: ModelSpec, repository: Path, opts: Options, fmt: str | None = None, on_event: Event | None = None
) -> dict:
    """Tune one deployed model on a private server; the tuning record (its `outcome` says the exit code).

    Raises:
        InputError (exit 2): the model is not deployed, the options leave no candidate, or the budget
            is below the serving path's measured floor at concurrency 1.
        ServerError (exit 3): the private server could not start or stopped answering.
    """
    t0 = time.monotonic()
    deadline = t0 + opts.max_minutes * 60
    started = _now()
    tuner = Tuner(spec, repository, fmt, opts, on_event)
    tuner.deadline = deadline
    base = tuner.deployed[tuner.base_fmt]
    deployed_c = candidate_of(base, tuner.base_fmt)
    entries = read_manifest(repository).get("models", {})
    # as high as the export gate checked (a tuning may have lowered the deployed one), never above
    max_batch = max(
        max(m.max_batch_size, (entries.get(tuner.formats[k]) or {}).get("gated_max_batch_size", 0))
        for k, m in tuner.deployed.items()
    )
    space, dropped = S.build_space(
        deployed_c,
        tuple(tuner.formats),
        os.cpu_count() or 1,
        max_batch,
        instances=opts.instances,
        batch_sizes=opts.batch_sizes,
        queue_delays_us=opts.queue_delays_us,
        threads=opts.threads,
        preferred=opts.preferred,
    )
    if space.size() == 0:
        raise InputError(
            "the options leave no candidate to measure" + (f": dropped {'; '.join(dropped)}" if dropped else "")
        )
    notes = [f"dropped from the search: {d}" for d in dropped]
    cores = os.cpu_count() or 1
    if cores <= 4:
        notes.append(
            f"this machine has {cores} cores shared by the private server and the load generator: "
            "figures include that contention, and anything else running at the time"
        )
    with tuner:
        floor = tuner.floor(opts.budget)
        if floor["latency_ms"] > opts.budget:
            raise InputError(
                f"the latency budget {opts.budget:g} ms is below this server's measured floor: "
                f"{_metric(opts.percentile)} {floor['latency_ms']:.2f} ms at concurrency 1 for a "
                f"model that does nothing; give a budget above it"
            )
        dep_c, dep_m = tuner.measure_deployed()
        best_holder: dict[str, Any] = {"rank": S.rank(dep_m, opts.min_throughput) if dep_c in space else (-1, 0)}

        def is_best(c: S.Candidate, m: dict) -> bool:
            r = S.rank(m, opts.min_throughput)
            if S.qualifies(m, opts.min_throughput) and r > best_holder["rank"]:
                best_holder["rank"] = r
                return True
            return False

        result = S.search(
            space,
            dep_c,
            lambda c: tuner.measure_candidate(c, is_best),
            opts.mode,
            min_throughput=opts.min_throughput,
            time_left=lambda: time.monotonic() < deadline,
            known={dep_c: dep_m},
        )
        best = result.best
        if best is None and S.qualifies(dep_m, opts.min_throughput):
            best = (dep_c, dep_m)  # the deployed config, outside a narrowed space, is still an answer
        elif (
            best is not None and S.qualifies(dep_m, opts.min_throughput) and dep_m["throughput"] > best[1]["throughput"]
        ):
            best = (dep_c, dep_m)
        side = None
        chosen = best
        if best is not None and best[0] != dep_c and not result.timed_out and dep_m["meets_budget"]:
            if dep_m["concurrency"] < best[1]["concurrency"]:
                # the deployed config's search ran first and alone: one slow window stops it at a low
                # concurrency, and the side by side would then compare the two at unequal loads
                _, again = tuner.measure_deployed(start=best[1]["concurrency"])
                if again["meets_budget"] and again["throughput"] > dep_m["throughput"]:
                    notes.append(
                        f"the deployed config, searched again from c={best[1]['concurrency']}, reached "
                        f"{again['throughput']:.0f} infer/s at c={again['concurrency']} (first search: "
                        f"{dep_m['throughput']:.0f} at c={dep_m['concurrency']}); the comparison uses it"
                    )
                    dep_m = again
            side = tuner.side_by_side(best[0], best[1]["concurrency"], dep_m["concurrency"])
            over = [w for w in ("deployed", "best") if side["median"][w]["p99_ms"] > opts.budget]
            if over and opts.percentile == 99:
                notes.append(
                    f"re-measured, the {' and '.join(over)} config's median p99 went above the budget at "
                    "the concurrency its search chose: the machine was busier than during the search"
                )
            if side["ratio"] is not None and side["ratio"] < 1.0:
                chosen = (dep_c, dep_m)
                notes.append(
                    f"re-measured side by side, {best[0].label()} gave {side['ratio']:.3f}x the deployed "
                    "config's throughput: the deployed config is kept"
                )
        server_info = {k: tuner.server.state[k] for k in ("pid", "host", "http_port", "grpc_port", "metrics_port")}
        triton_version = tuner.triton_version()
    measured = [{"candidate": c.as_json(), "label": c.label(), "deployed": c == dep_c, **m} for c, m in result.measured]
    if dep_c not in space:
        measured.insert(0, {"candidate": dep_c.as_json(), "label": dep_c.label(), "deployed": True, **dep_m})
    seconds = time.monotonic() - t0
    record = {
        "schema": records.SCHEMA,
        "kind": "tune",
        "model": spec.name,
        "triton_model": tuner.base_name,
        "repository": str(Path(repository).resolve()),
        "formats": tuner.formats,
        "search": opts.mode,
        "latency_budget_ms": opts.budget,
        "options": opts.as_json(),
        "percentile": opts.percentile,
        "latency_metric": f"p{opts.percentile:g}_ms",
        "min_throughput": opts.min_throughput,
        "protocol": opts.protocol,
        "max_concurrency": opts.max_concurrency,
        "window_s": opts.window_s,
        "max_minutes": opts.max_minutes,
        "space": space.as_json(),
        "space_size": space.size(),
        "floor": floor,
        "deployed": {"candidate": dep_c.as_json(), "label": dep_c.label(), **dep_m},
        "candidates": measured,
        "best": _entry(best),
        "closest": _entry(result.closest) if best is None else None,
        "side_by_side": side,
        "chosen": _entry(chosen),
        "chosen_is_deployed": chosen is not None and chosen[0] == dep_c,
        "gain": (1.0 if chosen is not None and chosen[0] == dep_c else side["ratio"] if side else None),
        "timed_out": result.timed_out,
        "seconds": seconds,
        "started": started,
        "server": server_info,
        "tuned_on": tuned_on((chosen[0] if chosen else dep_c).fmt, triton_version),
        "notes": notes,
        "versions": records.versions("tritonclient", "onnxruntime"),
    }
    record["outcome"] = outcome(record)
    return record


def _metric(percentile: float) -> str:
    return f"p{percentile:g}"


def _entry(cm: tuple[S.Candidate, dict] | None) -> dict | None:
    if cm is None:
        return None
    c, m = cm
    return {"candidate": c.as_json(), "label": c.label(), **m}


def outcome(rec: dict) -> dict:
    """0 a best config; 1 no candidate met the budget (the closest named) or time ran out (best so far)."""
    metric = _metric(rec["percentile"])
    if rec["timed_out"]:
        best = rec["best"]
        return {
            "exit_code": 1,
            "reason": f"--max-minutes {rec['max_minutes']:g} ran out after "
            f"{len(rec['candidates'])} candidates; best so far: "
            + (f"{best['label']} ({best['throughput']:.0f} infer/s)" if best else "none within the budget")
            + "; nothing applied",
        }
    if rec["chosen"] is None:
        c = rec["closest"]
        minimum = f" and {rec['min_throughput']:g} infer/s" if rec["min_throughput"] else ""
        if c is None:
            return {"exit_code": 1, "reason": "no candidate was measured"}
        detail = (
            f"{c['throughput']:.0f} infer/s within the budget"
            if c["meets_budget"]
            else f"{metric} {c['latency_ms']:.2f} ms at concurrency 1"
            if c["latency_ms"] is not None
            else c.get("error", "no answer")
        )
        return {
            "exit_code": 1,
            "reason": f"no candidate met the {rec['latency_budget_ms']:g} ms {metric} budget"
            f"{minimum}; the closest: {c['label']} ({detail})",
        }
    return {"exit_code": 0, "reason": ""}

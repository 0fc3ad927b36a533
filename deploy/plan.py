"""Capacity from measurements: how many replicas a target load needs, from recorded tune or perf figures.

A replica's capacity is the highest throughput a recorded level sustained within the latency
budget (stable, no failed request); replicas are planned to run at (1 - headroom) of it. The
figures are refused unless they were measured on the kind of machine and engine the plan is for,
and the plan is always for KServe's Triton runtime (native backends) on the cluster's nodes, which
is never what zeroserve measures here: `assume_same` says to use them anyway, and the plan lists
what it assumed.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import ClassVar, NamedTuple

from zeroserve.deploy.release import TARGET
from zeroserve.errors import CheckFailed, InputError
from zeroserve.records.base import Record
from zeroserve.records.layout import RepositoryLayout
from zeroserve.records.manifest import Manifest
from zeroserve.records.perf import PerfRecord
from zeroserve.records.tune import TuneRecord

DEFAULT_HEADROOM = 0.3  # each replica planned at 70% of its measured capacity: bursts, noisy neighbours
MAX_REPLICAS_FACTOR = 2  # maxReplicas = 2 x minReplicas: room to absorb twice the target before queueing
MEMORY_MARGIN = 1.25  # the request over the measured RSS: the heap grows with batch sizes not measured
TUNE_REPORTS = Path("reports") / "tune"  # where `zeroserve tune` writes <model>/tune.json by default
TARGET_ENGINE = (
    f"Triton {TARGET.triton} ({TARGET.image}) in KServe's kserve-tritonserver runtime, native "
    "backends, on the cluster's nodes (CPU model, cores and GPU not known here)"
)
MACHINE_FACTS = ("engine", "cpu_model", "cores")


def default_records(model: str, reports: Path = TUNE_REPORTS) -> list[Path]:
    """The tune record `zeroserve tune MODEL` leaves by default, when it exists."""
    path = Path(reports) / model / "tune.json"
    return [path] if path.is_file() else []


class _Recorded(Record):
    """A tune or perf record before its kind is known: the one read of the file, then typed by its kind."""

    KIND: ClassVar[str] = "tune or perf record"
    REMEDY: ClassVar[str] = "give a record `zeroserve tune --json` or `client perf --json` wrote"
    kind: str | None = None


class _Level(NamedTuple):
    """One recorded level as the plan weighs it (from a perf level, or a tune candidate's level)."""

    throughput: float | None
    concurrency: int | None
    latency_ms: float | None
    failed: int
    stable: bool
    server_resources: dict | None


def _facts(rec: PerfRecord | TuneRecord) -> dict | None:
    on = rec.measured_on if isinstance(rec, PerfRecord) else rec.tuned_on
    if on is None or any(getattr(on, k) in (None, "") for k in MACHINE_FACTS):
        return None  # a record written before these facts, or a server zeroserve did not start
    return on.to_json()  # plan's own figures from here on (its JSON names where they were measured)


def _perf_levels(rec: PerfRecord, path: Path) -> tuple[str, str, str, list[_Level]]:
    """(Triton model, the config measured, the latency metric, its levels) of a perf record."""
    metric = rec.latency_metric or "p99_ms"
    levels = [
        _Level(
            lv.throughput,
            lv.concurrency,
            lv.figure(metric),
            lv.failed + lv.totals.failed,  # a level's failures are its windows' and its totals'
            lv.stable,
            lv.server_resources.to_json() if lv.server_resources else None,
        )
        for lv in rec.levels
    ]
    return str(rec.triton_model or rec.model or path), "the served config", metric, levels


def _levels(rec: PerfRecord | TuneRecord, path: Path) -> tuple[str, str, str, list[_Level]]:
    """(Triton model, the config measured, the latency metric, its levels) of a tune or perf record."""
    if isinstance(rec, PerfRecord):
        return _perf_levels(rec, path)
    # a tune record: the config the repository holds, the chosen one once applied (or when it is the deployed one)
    applied = rec.applied or rec.chosen_is_deployed
    entry = rec.chosen if applied and rec.chosen else rec.deployed
    if not entry:
        raise InputError(f"{path}: the tune record holds no measured config")
    name = rec.formats.get(entry.candidate.fmt, rec.triton_model)
    metric = rec.latency_metric
    levels = [
        _Level(
            lv.throughput,
            lv.concurrency,
            lv.figure(metric),
            lv.failed,
            lv.stable,
            lv.server_resources.to_json() if lv.server_resources else None,
        )
        for lv in entry.levels
    ]
    return name, f"tuned config {entry.label}" if applied else f"deployed config {entry.label}", metric, levels


def _read(path: Path) -> PerfRecord | TuneRecord:
    """The perf or tune record at `path`, typed by its kind; one line saying what is wrong otherwise."""
    rec = _Recorded.load(Path(path))
    if rec.kind == "perf":
        return PerfRecord.parse(rec.to_json(), f"perf record {path}")
    if rec.kind == "tune":
        return TuneRecord.parse(rec.to_json(), f"tune record {path}")
    raise InputError(f"{path}: not a tune or perf record (kind {rec.kind!r})")


def _recorded_levels(paths: list[Path], triton_name: str, latency_budget_ms: float) -> tuple[list, dict | None, list]:
    """The recorded levels of `triton_name` within the budget, the closest one over it, and where each was measured."""
    found: list[dict] = []
    closest: dict | None = None
    measured_on: list[dict] = []
    for path in paths:
        rec = _read(path)
        name, config, metric, levels = _levels(rec, path)
        model, kind = rec.model, "perf" if isinstance(rec, PerfRecord) else "tune"
        if name != triton_name and model != triton_name:
            continue
        facts = _facts(rec)
        measured_on.append({"record": str(path), "facts": facts})
        for lv in levels:
            latency = lv.latency_ms
            if latency is None or lv.failed or not lv.throughput:
                continue
            row = {
                "throughput": lv.throughput,
                "concurrency": lv.concurrency,
                "latency_ms": latency,
                "stable": lv.stable,
                "latency_metric": metric,
                "config": config,
                "record": str(path),
                "kind": kind,
                "server_resources": lv.server_resources,
                "facts": facts,
            }
            if latency <= latency_budget_ms:
                found.append(row)
            elif closest is None or latency < closest["latency_ms"]:
                closest = row
    return found, closest, measured_on


def plan(
    model: str,
    target_rps: float,
    latency_budget_ms: float,
    *,
    fmt: str = "onnx",
    record_paths: list[Path] | None = None,
    assume_same: bool = False,
    headroom: float = DEFAULT_HEADROOM,
    repository: Path | None = None,
) -> dict:
    """Replicas for `target_rps` within `latency_budget_ms`, from the recorded levels of `<model>_<fmt>`.

    `repository`: where the model is deployed; a tuning applied there (`tune --apply`, its manifest's `tuning`) is
    read, and the engine it was tuned on against the one the repository is written for is listed as assumed.

    Raises:
        InputError (exit 2): no record, a bad option, or figures from another machine/engine without assume_same.
        CheckFailed (exit 1): no recorded level met the budget.
    """
    if target_rps <= 0 or latency_budget_ms <= 0:
        raise InputError("--target-rps and --latency-budget-ms must be positive")
    if not 0 <= headroom < 1:
        raise InputError(f"--headroom must be in [0, 1), got {headroom:g}")
    triton_name = f"{model}_{fmt}"
    paths = list(record_paths or default_records(model))
    if not paths:
        raise InputError(
            f"no measurement of {model}: run `zeroserve tune {model} --latency-budget-ms "
            f"{latency_budget_ms:g}` (it writes {TUNE_REPORTS / model / 'tune.json'}) or give --record "
            "a tune or perf record"
        )
    found, closest, measured_on = _recorded_levels(paths, triton_name, latency_budget_ms)
    if not measured_on:
        raise InputError(f"no record of {', '.join(map(str, paths))} measured {triton_name}")
    if not found:
        detail = (
            f"the lowest: {closest['latency_metric'][:-3]} {closest['latency_ms']:.2f} ms at "
            f"{closest['throughput']:.0f} infer/s (c={closest['concurrency']})"
            if closest
            else "no stable level"
        )
        raise CheckFailed(f"no recorded level of {triton_name} met the {latency_budget_ms:g} ms budget; {detail}")
    # a stable level first; an unstable one (tune measures with allow_unstable) only when none is, and said so
    best = max(found, key=lambda r: (r["stable"], r["throughput"]))
    facts = best.pop("facts")
    where = (
        f"{facts['engine']} on {facts['cpu_model']} x {facts['cores']} cores, GPU: "
        f"{', '.join(facts.get('gpu') or []) or 'none'}"
        if facts
        else "an unknown machine and engine (the record does not say where it was measured)"
    )
    if not assume_same:
        raise InputError(
            f"{triton_name}'s figures were measured on {where}; the plan is for {TARGET_ENGINE}, "
            "another engine (and machine kind): give --assume-same to use them anyway"
        )
    usable = best["throughput"] * (1 - headroom)
    replicas = max(1, math.ceil(target_rps / usable))
    res = best["server_resources"]
    assumed = [
        f"one replica on {TARGET_ENGINE} sustains what {where} sustained: {best['throughput']:.0f} infer/s "
        f"within {latency_budget_ms:g} ms {best['latency_metric'][:-3]}",
        f"each replica runs at {100 * (1 - headroom):.0f}% of that ({usable:.0f} infer/s; headroom "
        f"{100 * headroom:.0f}%); maxReplicas = {MAX_REPLICAS_FACTOR} x minReplicas for bursts",
        "the figures include this machine's load generator sharing its cores with the server",
    ]
    if not best["stable"]:
        assumed.append(
            "that level did not stabilise (its windows' throughput or latency varied beyond the "
            "stability rule): no stable level met the budget, so its figures are the best recorded"
        )
    if res:
        assumed.append(
            f"a replica needs the CPU ({res['cpu_cores']:g} cores) and memory ({res['rss_mb']:g} MB RSS, "
            f"requested x {MEMORY_MARGIN:g}) the embedded engine used at that load"
        )
    tuned = applied_tuning(repository, triton_name) if repository is not None else None
    assumed += [tuned_assumption(triton_name, tuned)] if tuned else []
    return {
        "model": model,
        "triton_model": triton_name,
        "tuned": tuned,
        "target_rps": target_rps,
        "latency_budget_ms": latency_budget_ms,
        "headroom": headroom,
        "per_replica": best,
        "usable_per_replica": usable,
        "replicas": replicas,
        "min_replicas": replicas,
        "max_replicas": MAX_REPLICAS_FACTOR * replicas,
        "resources": res,
        "measured_on": facts,
        "records": measured_on,
        "target": TARGET_ENGINE,
        "assumed": assumed,
        "kserve": {mode: kserve_fields(mode, replicas, usable, headroom) for mode in ("knative", "standard")},
    }


def applied_tuning(repository: Path, triton_name: str) -> dict | None:
    """The tuning `tune --apply` recorded in the repository's manifest for the model: its settings, the engine it was
    tuned on and how that differs from the repository's target; None when the model was not tuned there."""
    from zeroserve import engine

    manifest = Manifest.of(RepositoryLayout(repository).manifest)
    entry = manifest.models.get(triton_name)
    tuning = entry.tuning if entry is not None else None
    if tuning is None:
        return None
    facts = tuning.tuned_on.to_json() if tuning.tuned_on is not None else {}
    return {
        "settings": tuning.settings.to_json() if tuning.settings is not None else None,
        "tuned_on": engine.describe(facts) if facts else "an engine the manifest does not name",
        "target": engine.line(tuning.target_engine) if tuning.target_engine else "its target release",
        "engine_differs": list(tuning.engine_differs or []),
    }


def tuned_assumption(triton_name: str, tuned: dict) -> str:
    """The line a plan adds for a config tuned on another engine than the repository is written for."""
    differs = tuned["engine_differs"]
    where = f"; it is written for {tuned['target']} ({'; '.join(differs)})" if differs else ""
    return f"the repository's {triton_name} config was tuned on {tuned['tuned_on']}{where}"


def kserve_fields(mode: str, replicas: int | None, usable_rps: float | None, headroom: float) -> dict:
    """The predictor's autoscaling fields: Knative scales on requests per second per replica, Standard (HPA) on cpu."""
    fields: dict = {"minReplicas": replicas or 1}
    if replicas:
        fields["maxReplicas"] = MAX_REPLICAS_FACTOR * replicas
    if mode == "knative" and usable_rps:
        fields.update(scaleMetric="rps", scaleTarget=max(1, math.floor(usable_rps)))
    elif mode == "standard":
        fields.update(scaleMetric="cpu", scaleTarget=round(100 * (1 - headroom)))  # % of the CPU request
    return fields


def resource_requests(res: dict | None) -> tuple[dict, str]:
    """(requests, where from): the measured CPU and memory, or the runtime's defaults (1 CPU, 2Gi) when none."""
    if not res:
        return {"cpu": "1", "memory": "2Gi"}, "the kserve-tritonserver runtime's defaults (no measured figures)"
    millicores = max(100, math.ceil(res["cpu_cores"] * 10) * 100)
    mib = max(256, math.ceil(res["rss_mb"] * MEMORY_MARGIN / 64) * 64)
    return {"cpu": f"{millicores}m", "memory": f"{mib}Mi"}, "measured under the planned load"

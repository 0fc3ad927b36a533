"""The tuning record: a perf search summarised as one candidate's measurement, the record, and its outcome."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from zeroserve import records
from zeroserve.client.perf.levels import level_count
from zeroserve.records.base import Block
from zeroserve.records.perf import PerfRecord
from zeroserve.spec import ModelSpec
from zeroserve.tune import search as S
from zeroserve.tune.options import Options
from zeroserve.tune.settings import tuned_on


def summary(rec: PerfRecord) -> dict:
    """A perf record of the latency-budget search as a tuning measurement (see tune/search.py)."""
    key = rec.latency_metric
    levels = rec.levels
    best = next((lv for lv in levels if lv.concurrency == rec.best), None) if rec.best else None
    failed = sum(level_count(lv) for lv in levels)
    seen = [lv.figure(key) for lv in levels if lv.ok]
    shown = best or (min(levels, key=lambda lv: lv.figure(key)) if levels else None)
    return {
        "meets_budget": best is not None,
        "concurrency": rec.best,
        "throughput": best.throughput if best else 0.0,
        "latency_ms": best.figure(key) if best else (min(seen) if seen else None),
        "p50_ms": shown.p50_ms if shown else None,
        "p99_ms": shown.p99_ms if shown else None,
        "stable": bool(best and best.stable),
        "failed": failed,
        "server": _json(shown.server) if shown else None,
        # the latency breakdown of the level shown (tune's report draws it as perf's): average, client side
        "mean_ms": shown.mean_ms if shown else None,
        "client": _json(shown.client) if shown else None,
        "server_resources": _json(best.server_resources) if best else None,
        "unstable_levels": [lv.concurrency for lv in levels if not lv.stable],
        "levels": [
            {
                "concurrency": lv.concurrency,
                "throughput": lv.throughput,
                "p50_ms": lv.p50_ms,
                "p99_ms": lv.p99_ms,
                "mean_ms": lv.mean_ms,
                key: lv.figure(key),
                "stable": lv.stable,
                "failed": level_count(lv),
                "server_resources": _json(lv.server_resources),
            }
            for lv in levels
        ],
    }


def _json(block: Block | None) -> dict | None:
    return block.to_json() if block is not None else None


def metric_name(percentile: float) -> str:
    return f"p{percentile:g}"


def entry(cm: tuple[S.Candidate, dict] | None) -> dict | None:
    if cm is None:
        return None
    c, m = cm
    return {"candidate": c.as_json(), "label": c.label(), **m}


def outcome(rec: dict) -> dict:
    """0 a best config; 1 no candidate met the budget (the closest named) or time ran out (best so far)."""
    metric = metric_name(rec["percentile"])
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


def tune_record(
    spec: ModelSpec,
    repository: Path,
    opts: Options,
    tuner: Any,
    space: S.Space,
    result: S.SearchResult,
    found: dict[str, Any],
    run: dict[str, Any],
    notes: list[str],
) -> dict:
    """The tuning record: every candidate measured, the deployed config, the best, the chosen, the outcome.

    `found`: floor, deployed (candidate, measurement), best, chosen, side (the side-by-side or None);
    `run`: seconds, started, server (its pid and ports), triton (the server's version).
    """
    dep_c, dep_m = found["deployed"]
    best, chosen, side = found["best"], found["chosen"], found["side"]
    measured = [{"candidate": c.as_json(), "label": c.label(), "deployed": c == dep_c, **m} for c, m in result.measured]
    if dep_c not in space:
        measured.insert(0, {"candidate": dep_c.as_json(), "label": dep_c.label(), "deployed": True, **dep_m})
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
        "floor": found["floor"],
        "deployed": {"candidate": dep_c.as_json(), "label": dep_c.label(), **dep_m},
        "candidates": measured,
        "best": entry(best),
        "closest": entry(result.closest) if best is None else None,
        "side_by_side": side,
        "chosen": entry(chosen),
        "chosen_is_deployed": chosen is not None and chosen[0] == dep_c,
        "gain": (1.0 if chosen is not None and chosen[0] == dep_c else side["ratio"] if side else None),
        "timed_out": result.timed_out,
        "seconds": run["seconds"],
        "started": run["started"],
        "server": run["server"],
        "tuned_on": tuned_on((chosen[0] if chosen else dep_c).fmt, run["triton"]),
        "notes": notes,
        "versions": records.versions("tritonclient", "onnxruntime"),
    }
    record["outcome"] = outcome(record)
    return record

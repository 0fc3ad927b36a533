"""`zeroserve client check`: the model as served, compared with eager PyTorch from its checkpoint.

The held-out set is rebuilt from the registry's data source and must match what training recorded
in train.json (split rule and sizes); every served output is compared with eager by the parity rule
(`zeroserve.parity`), the same rule export's gate applies; a served variant (int8, ...) by the
variant rule its export recorded (`parity.judge_variant`).
"""

from __future__ import annotations

import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from zeroserve import formats as F
from zeroserve import parity
from zeroserve.artifacts import eager_outputs, load_trained
from zeroserve.client.connection import Client, batches
from zeroserve.client.endpoints import Endpoint
from zeroserve.client.model import Target
from zeroserve.deploy.release import TARGET
from zeroserve.errors import InputError
from zeroserve.parity import Tolerance
from zeroserve.records.check import CheckRow, CheckSkip, ModelCheck
from zeroserve.records.export import ExportRecord
from zeroserve.records.layout import ModelFolder
from zeroserve.records.train import TrainData, TrainRecord
from zeroserve.spec import ModelSpec, Split
from zeroserve.triton import machine
from zeroserve.triton.errors import RequestFailed


def tolerances(spec: ModelSpec, artifacts: Path, atol: float | None, rtol: float | None) -> Tolerance:
    """The options if given, else the tolerances export's gate recorded, else the spec's own."""
    rec = _export_record(spec, artifacts)
    recorded = spec.tolerance.with_overrides(rec.atol, rec.rtol) if rec is not None else spec.tolerance
    return recorded.with_overrides(atol, rtol)


def _export_record(spec: ModelSpec, artifacts: Path) -> ExportRecord | None:
    """The model's export record, None when it was never exported (InputError when it is unreadable)."""
    path = ModelFolder.of(artifacts, spec.name).export_record
    return ExportRecord.load(path, remedy=f"run `zeroserve export {spec.name}` again") if path.is_file() else None


SEEDED_ROWS = 256
SEED = 0


def recorded_split_version(recorded: TrainData | None) -> int | None:
    """The seeded split rule a train record's data block was made by: a record without `split_version`
    predates versions (rule 1); None (no record, or a source without a seeded split) means the current one."""
    return recorded.seeded_rule() if recorded is not None else None


def held_out(spec: ModelSpec, artifacts: Path, data_dir: Path) -> Split:
    """The held-out set, refused when it differs from the one train.json recorded.

    A model with its own checkpoint has no train.json to agree with; one without a data source is
    checked on `SEEDED_ROWS` seeded inputs from its example-input function (or its inputs' domains).
    """
    path = ModelFolder.of(artifacts, spec.name).train_record
    if spec.data is None:
        rng = np.random.default_rng(SEED)
        inputs = spec.random_inputs(SEEDED_ROWS, rng)
        made_by = "its example_inputs" if spec.example_inputs else "its inputs' domains"
        return Split.held_out(
            inputs,
            None,
            source=f"{SEEDED_ROWS} seeded inputs from {made_by} (seed {SEED})",
            rule="no held-out data in the spec",
        )
    if not path.is_file() and spec.checkpoint is None:
        raise InputError(f"{spec.name}: no train.json at {path}; run `zeroserve train {spec.name}` first")
    remedy = f"run `zeroserve train {spec.name}` again"
    recorded = TrainRecord.load(path, remedy=remedy).data if path.is_file() else None
    split = spec.load_data(Path(data_dir), recorded_split_version(recorded))
    rule, source, sizes = (recorded.split_rule, recorded.source, recorded.sizes) if recorded else (None, None, None)
    differs = []
    if rule not in (None, split.rule):
        differs.append(f"rule {split.rule!r} vs recorded {rule!r}")
    if source not in (None, split.source):
        differs.append(f"source {split.source!r} vs recorded {source!r}")
    if sizes not in (None, split.sizes):
        differs.append(f"sizes {split.sizes} vs recorded {sizes}")
    if differs:
        raise InputError(
            f"{spec.name}: the held-out set rebuilt from {data_dir} is not the one training held out "
            f"({'; '.join(differs)}); point --data-dir at the data it was trained on"
        )
    return split


def compare(
    spec: ModelSpec, served: list[np.ndarray], eager: list[np.ndarray], target: np.ndarray | None, tol: Tolerance
) -> dict:
    """Every output of served vs eager by the parity rule, and the primary output's task metric both ways."""
    result = parity.compare(spec, served, eager, tol)
    result.update(
        {
            "samples": int(len(eager[0])),
            "metric": spec.metric,
            "metric_served": None if "error" in result else spec.score(served, target),
            "metric_eager": spec.score(eager, target),
        }
    )
    return result


def variant_rule(spec: ModelSpec, artifacts: Path, fmt: str) -> parity.VariantRule:
    """The variant gate's rule as export recorded it for `fmt` (else the defaults)."""
    rec = _export_record(spec, artifacts)
    entry = rec.formats.get(fmt) if rec is not None else None
    return parity.VariantRule.from_json(entry.rule.to_json() if entry is not None and entry.rule else None)


def compare_variant(
    spec: ModelSpec,
    served: list[np.ndarray],
    eager: list[np.ndarray],
    target: np.ndarray | None,
    tol: Tolerance,
    rule: parity.VariantRule,
) -> dict:
    """A served variant against eager by the variant rule (metric within its margin, top-1 agreement)."""
    result = parity.judge_variant(spec, served, eager, target, rule, tol)
    result.update(
        {
            "samples": int(len(eager[0])),
            "metric": spec.metric,
            "metric_served": None if "error" in result else spec.score(served, target),
            "metric_eager": spec.score(eager, target),
            "variant_metric": result.pop("metric"),
        }
    )
    return result


def serve_outputs(
    client: Client, spec: ModelSpec, triton_name: str, inputs: list[np.ndarray]
) -> tuple[list[np.ndarray] | None, int, str]:
    """All held-out inputs through the server in batches: (every output or None, failed requests, first error)."""
    limit = min(spec.max_batch_size, client.max_batch_size(triton_name) or spec.max_batch_size)
    split = F.split_triton_name(triton_name)
    sent = Target.of_spec(spec, split[1].key) if split and split[0] == spec.name else spec  # served tensor names
    chunks, failed, first_error = [], 0, ""
    for s in batches(len(inputs[0]), limit):
        try:
            chunks.append(client.infer(sent, triton_name, [a[s] for a in inputs]))
        except RequestFailed as exc:  # counted, the rest go on; an unreachable server (ServerError) ends the check
            failed += 1
            first_error = first_error or str(exc)
    if failed:
        return None, failed, first_error
    return [np.concatenate([c[i] for c in chunks]) for i in range(len(spec.outputs))], 0, ""


def check_model(
    spec: ModelSpec,
    endpoint: Endpoint,
    artifacts: Path,
    data_dir: Path,
    *,
    protocols: tuple[str, ...] = ("grpc", "http"),
    formats: tuple[str, ...] | None = None,
    atol: float | None = None,
    rtol: float | None = None,
    timeout: float = 10.0,
    skip_unserved: bool = False,
) -> ModelCheck:
    """Check every (protocol, format) of one model against eager PyTorch.

    Args:
        skip_unserved: under `all`, a format the server does not serve is a skip, not a failure (a
            GPU-only format the server does not serve is always a skip: it cannot be checked there).

    Returns:
        the model's check (records/check.py): its rows, the formats skipped, PASS|FAIL|SKIPPED.
    """
    tol = tolerances(spec, artifacts, atol, rtol)
    model = load_trained(spec, artifacts)
    split = held_out(spec, artifacts, data_dir)
    eager = eager_outputs(model, split.test_inputs)
    rows: list[dict[str, Any]] = []
    skipped: list[dict[str, Any]] = []
    engine: dict | None = None  # the engine the first served format runs on, as the server describes it
    for protocol in protocols:
        with Client(endpoint, protocol, timeout) as client:
            client.live()
            served_names = set(client.served_models())
            recovering = client.recovering()
            # default: the primary formats, and the variants and opt-in formats (pt2) this server serves
            extra = (*F.opt_in(), *F.variants())
            wanted = formats or tuple(
                k for k in F.FORMATS if k in F.primary() or (k in extra and spec.triton_name(k) in served_names)
            )
            for fmt in wanted:
                triton_name = spec.triton_name(fmt)
                row: dict[str, Any] = {
                    "model": spec.name,
                    "triton_model": triton_name,
                    "protocol": protocol,
                    "format": fmt,
                }
                if triton_name in recovering:  # Triton still says READY; its requests fail until the reload
                    rows.append(
                        {
                            **row,
                            "status": "FAIL",
                            "state": "recovering",
                            "failed_requests": 0,
                            "error": f"{triton_name} is recovering: its stub died and the supervisor is "
                            "reloading it; check again in a few seconds",
                        }
                    )
                    continue
                if triton_name not in served_names:
                    reason = f"{triton_name} is not served by the server at {client.url}"
                    if F.get(fmt).gpu_only:  # deployed for GPU instances; a server without a GPU skips it
                        reason += "; it runs on GPU instances only: check it where a GPU serves it"
                    if skip_unserved or F.get(fmt).gpu_only:
                        skipped.append({**row, "reason": reason})
                        continue
                    rows.append({**row, "status": "FAIL", "failed_requests": 0, "error": reason})
                    continue
                engine = engine or machine.engine_of(client, triton_name, asdict(TARGET))
                start = time.perf_counter()
                served, failed, error = serve_outputs(client, spec, triton_name, split.test_inputs)
                row["seconds"] = round(time.perf_counter() - start, 3)
                row["failed_requests"] = failed
                if served is None:
                    rows.append({**row, "status": "FAIL", "error": error})
                    continue
                if F.get(fmt).variant:
                    row.update(
                        compare_variant(spec, served, eager, split.test_target, tol, variant_rule(spec, artifacts, fmt))
                    )
                else:
                    row.update(compare(spec, served, eager, split.test_target, tol))
                row["status"] = "PASS" if row["passed"] else "FAIL"
                rows.append(row)
    checked = [CheckRow.model_validate(r) for r in rows]
    status = "PASS" if checked and all(r.status == "PASS" for r in checked) else ("SKIPPED" if not checked else "FAIL")
    return ModelCheck(
        model=spec.name,
        atol=tol.atol,
        rtol=tol.rtol,
        samples=int(len(split.test_inputs[0])),
        data=split.source,
        split_rule=split.rule,
        rows=checked,
        skipped=[CheckSkip.model_validate(s) for s in skipped],
        status=status,
        measured_on=machine.measured_on(engine),
    )

"""Export a trained model to TorchScript and ONNX, gate it, and record the result.

The export is all-or-nothing: files are written into a temporary folder, gated, and only
then renamed into place with a new export.json. A failed gate leaves the previous good
artifacts and record untouched and writes its numbers to export-failed.json.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from zeroserve import formats as F
from zeroserve import records
from zeroserve.artifacts import checkpoint_path, eager_outputs, load_trained
from zeroserve.errors import CheckFailed, InputError, MissingDataError
from zeroserve.export import gate, runners, variant_gate
from zeroserve.export import variants as variants_mod
from zeroserve.export.failures import gate_failure_line
from zeroserve.export.latency import LATENCY_THREADS, measure_latency
from zeroserve.records.export import ExportFailures, ExportRecord, FormatEntry, Latency, SkippedVariant
from zeroserve.records.layout import ModelFolder
from zeroserve.spec import ModelSpec, Split
from zeroserve.triton import machine

DEFAULT_OPSET = 18
# dynamo (torch.export-based) passes the gate for every course model and the examples, at a cost called
# acceptable (docs/formats.md, measured side by side): served c=1 p50 within the serving path's noise,
# in-process ONNX Runtime within 10% of legacy or 0.1 ms (a fifth of the serving floor), export under 30 s
# a model. The legacy (TorchScript-based) exporter is deprecated upstream; it stays selectable.
DEFAULT_EXPORTER = "dynamo"
OPSETS = {
    "legacy": (9, torch.onnx._constants.ONNX_TORCHSCRIPT_EXPORTER_MAX_OPSET),
    "dynamo": (18, torch.onnx._constants.ONNX_MAX_OPSET),
}
SAMPLE_ROWS = 8
EXPORT_SCRATCH = ".export-"  # export's scratch folders in artifacts/<model>/ (records.scratch_dir)


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def check_opset(opset: int, exporter: str) -> None:
    if exporter not in OPSETS:
        raise InputError(f"unknown exporter {exporter!r}; use legacy or dynamo")
    low, high = OPSETS[exporter]
    if not low <= opset <= high:
        raise InputError(f"opset {opset} is not supported by the {exporter} exporter (supported: {low}..{high})")


def read_export(spec: ModelSpec, artifacts: Path) -> ExportRecord:
    """The model's export record, or InputError saying to run export first (or what is wrong with it)."""
    path = ModelFolder.of(artifacts, spec.name).export_record
    if not path.is_file():
        raise InputError(f"{spec.name}: no export record at {path}; run `zeroserve export {spec.name}` first")
    return ExportRecord.load(path, remedy=f"run `zeroserve export {spec.name}` again")


def _exportable(spec: ModelSpec, model: torch.nn.Module) -> torch.nn.Module:
    return (spec.export_module(model) if spec.export_module else model).eval()


# How each format of the table (zeroserve.formats) is made, by format key: a format made from the
# checkpoint by its runtime object (`Format.handler.build`), a variant by its builder. A builder writes
# the artifact to `path` and returns what the record keeps about it; `work` is the folder holding the
# other artifacts of this export (a variant reads its base's file there).
BUILDERS: dict[str, Callable[..., dict]] = {
    **{k: f.handler.build for k, f in F.FORMATS.items() if f.base is None},
    **variants_mod.BUILDERS,
}


def runner_of(key: str, path: Path, spec: ModelSpec, threads: int | None = None) -> Callable:
    """Format `key`'s artifact at `path` run in-process (its runtime's runner), for the gate and latency."""
    return F.get(key).handler.runner(path, spec, threads)


def _real_samples(spec: ModelSpec, data_dir: Path | None) -> list[np.ndarray] | None:
    if data_dir is None or spec.data is None:
        return None
    try:
        split = spec.load_data(Path(data_dir))
    except MissingDataError:
        return None
    return split.test_inputs


def _held_out(spec: ModelSpec, data_dir: Path | None) -> Split:
    """The model's data with its held-out targets: what a variant's gate is measured on."""
    if spec.data is None:
        raise InputError(f"{spec.name}: a variant is gated on held-out data and its spec gives no data=")
    split = spec.load_data(Path(data_dir) if data_dir is not None else Path("data"))
    if split.test_target is None:
        raise InputError(f"{spec.name}: its held-out data has no targets to measure a variant's metric on")
    return split


def _recorded_base(spec: ModelSpec, out_dir: Path, base: str, variant: str) -> tuple[FormatEntry, Path]:
    """The previous export's PASS entry for `base` and its file, or InputError saying to export it first."""
    path = ModelFolder(out_dir).export_record
    hint = f"run `zeroserve export {spec.name} --format {base}` first"
    if not path.is_file():
        raise InputError(
            f"{spec.name}: the {variant} variant is made from the gated {base} export, and "
            f"{spec.name} was never exported; {hint}"
        )
    entry = ExportRecord.load(path).formats.get(base)
    if entry is None or entry.status != "PASS":
        raise InputError(
            f"{spec.name}: the {variant} variant is made from a gated {base} export, and the export "
            f"record has none that passed; {hint}"
        )
    file = ModelFolder(out_dir).file(entry.file)
    if not file.is_file() or sha256(file) != entry.sha256:
        raise InputError(f"{spec.name}: {file} is missing or differs from its export record; {hint}")
    return entry, file


@dataclass
class _Run:
    """What every format of one export run shares."""

    spec: ModelSpec
    module: torch.nn.Module
    tmp: Path
    opset: int
    exporter: str
    options: variants_mod.VariantOptions
    split: Split | None
    cpu: str
    skip_unfit: bool
    held_eager: list | None
    tol: Any
    latency: bool
    eager: Callable
    points: list
    entries: dict[str, FormatEntry] = field(default_factory=dict)
    unfit: list[SkippedVariant] = field(default_factory=list)


def _export_one(run: _Run, key: str) -> FormatEntry | None:
    """Build, load and gate one format into the run's scratch folder; its export.json entry (None: unfit, skipped)."""
    fmt = F.get(key)
    path = run.tmp / fmt.file
    if fmt.base is not None and fmt.base in run.entries and run.entries[fmt.base].status != "PASS":
        return _export_failed(fmt.file, f"its base {fmt.base} failed the gate", f"base {fmt.base} failed")
    started = time.perf_counter()
    try:
        info = BUILDERS[key](
            run.spec,
            run.module,
            path,
            opset=run.opset,
            exporter=run.exporter,
            work=run.tmp,
            variant=run.options,
            split=run.split,
            cpu=run.cpu,
        )
        info = {**fmt.handler.info(path), **info}  # e.g. every ONNX file's IR version and opset
        if fmt.variant and fmt.gpu_only and not variant_gate.gpu_present():
            runner = None
        elif fmt.variant:
            runner = variant_gate.variant_runner(path, run.spec, fmt)
        else:
            runner = runner_of(key, path, run.spec)
    except Exception as exc:  # the exporter's own failure is this model's gate failure, with the reason
        # a variant, or a format (pt2) the model cannot take: one line, exit 2, nothing written
        if fmt.variant or isinstance(exc, InputError):
            err = (
                exc
                if isinstance(exc, InputError)
                else InputError(
                    f"{run.spec.name}: the {fmt.variant} variant cannot be made or loaded: "
                    f"{type(exc).__name__}: {_first_line(exc)}"
                )
            )
            if not run.skip_unfit:
                raise err from None
            run.unfit.append(SkippedVariant(format=key, variant=fmt.variant or key, reason=str(err)))
            path.unlink(missing_ok=True)
            return None
        msg = _first_line(exc)
        return _export_failed(fmt.file, f"{type(exc).__name__}: {msg}", msg)
    seconds = time.perf_counter() - started
    if fmt.variant:
        result = variant_gate.run_variant_gate(
            run.spec, fmt, runner, run.split, run.held_eager, run.options.rule, run.tol
        )
        base = str(fmt.base)  # a variant always names its base format
        base_file = run.tmp / F.get(base).file
        result = {"variant": fmt.variant, "base": fmt.base, "base_sha256": sha256(base_file), **result}
        if run.latency and runner is not None:
            timed = {
                base: runner_of(base, base_file, run.spec, threads=LATENCY_THREADS),
                key: variant_gate.variant_runner(path, run.spec, fmt, threads=LATENCY_THREADS),
            }
            result["latency_ms"] = measure_latency(run.spec, timed, (1, run.spec.max_batch_size))
    else:
        result = gate.run_gate(run.spec, run.eager, runner, run.points, run.tol)
    made = {"file": fmt.file, "sha256": sha256(path), "bytes": path.stat().st_size, **info}
    return FormatEntry.model_validate({**made, "export_seconds": round(seconds, 3), **result})


def _export_failed(file: str, error: str, worst: str) -> FormatEntry:
    """The entry of a format that could not be made (FAIL, no gate run)."""
    return FormatEntry.model_validate(
        {"file": file, "status": "FAIL", "error": error, "worst": {"point": "export", "error": worst}, "grid": []}
    )


def export_model(
    spec: ModelSpec,
    artifacts: Path,
    *,
    formats=None,
    variants=None,
    opset: int = DEFAULT_OPSET,
    exporter: str = DEFAULT_EXPORTER,
    atol: float | None = None,
    rtol: float | None = None,
    data_dir: Path | None = None,
    latency: bool = True,
    variant_options: variants_mod.VariantOptions | None = None,
    skip_unfit: bool = False,
) -> ExportRecord:
    """Export `spec`'s trained checkpoint, gate every format, and record it.

    Args:
        formats: format keys of `zeroserve.formats` (default: the primary formats, or none when
            `variants` are given).
        variants: variants (`int8`, `int8-dynamic`, `optimized`, `fp16`, or their format keys), made from
            this export's base or, when the base is not re-exported, the recorded gated one.
        atol / rtol: the gate's tolerances; None takes the spec's (its own or the parity defaults).
        variant_options: calibration and the variant gate's rule (`export.variants.VariantOptions`).
        skip_unfit: a variant this model cannot take (InputError) is left out and named in the returned
            record's `skipped_variants` (not written), and the others go on; `export all` does this.
            Without it, it ends the export (nothing written); so does every variant being unfit.

    Raises:
        InputError: no or unusable checkpoint, bad format/opset, unwritable folder, a variant of a model
            never exported, a variant the model cannot take (nothing is written).
        CheckFailed: a primary format failed the gate (export-failed.json holds the numbers). A variant
            that fails its own gate is recorded FAIL in export.json instead.

    Returns:
        The export record (with `skipped_variants` when some were unfit: not written to the file).
    """
    wanted_variants = F.parse_variants(variants)
    primary = F.parse(formats) if formats or not wanted_variants else ()
    keys = tuple(k for k in F.FORMATS if k in set(primary) | set(wanted_variants))
    missing = [f for f in keys if f not in BUILDERS]
    if missing:
        raise InputError(f"no exporter is defined for format {', '.join(missing)}")
    check_opset(opset, exporter)
    for key in keys:
        F.get(key).handler.preflight()  # what the machine needs for it (pt2: a C++ compiler), before any work
    options = variant_options or variants_mod.VariantOptions()
    tol = spec.tolerance.with_overrides(atol, rtol)
    folder = ModelFolder.of(artifacts, spec.name)
    out_dir = folder.root
    model = load_trained(spec, artifacts)
    judged = [k for k in keys if F.get(k).variant]
    split = _held_out(spec, data_dir) if judged else None
    bases = {}  # a variant's base not exported in this run: its recorded, gated artifact
    for key in keys:
        base = F.get(key).base
        if base is not None and base not in keys and base not in bases:
            bases[base] = _recorded_base(spec, out_dir, base, F.get(key).variant or key)
    records.ensure_writable_dir(out_dir)
    real = split.test_inputs if split is not None else _real_samples(spec, data_dir)
    points = gate.grid(spec, real)
    eager = runners.eager_runner(model)
    module = _exportable(spec, model)
    held_eager = eager_outputs(model, split.test_inputs) if split is not None else None
    cpu = machine.cpu_model()  # what a package compiled for this machine records (pt2)
    records.prune_scratch(out_dir, EXPORT_SCRATCH)  # left by an export that was killed
    tmp = records.scratch_dir(out_dir, EXPORT_SCRATCH)
    try:
        for base, (_, file) in bases.items():
            shutil.copyfile(file, tmp / F.get(base).file)
        run = _Run(
            spec, module, tmp, opset, exporter, options, split, cpu, skip_unfit, held_eager, tol, latency, eager, points
        )
        for key in keys:
            entry = _export_one(run, key)
            if entry is not None:
                run.entries[key] = entry
        entries, unfit = run.entries, run.unfit
        if not entries:  # every variant asked for was unfit
            raise InputError(f"{spec.name}: " + "; ".join(u.reason.removeprefix(f"{spec.name}: ") for u in unfit))
        keys = tuple(k for k in keys if k in entries)
        firsts = {k: e for k, e in entries.items() if not F.get(k).variant}
        old = ExportRecord.load_if_valid(folder.export_record)
        record = _new_record(spec, artifacts, tol, real, entries, firsts, old)
        if record.status != "PASS":
            ExportFailures.model_validate(record.to_json()).save(folder.export_failures)
            raise CheckFailed(gate_failure_line(spec, firsts, folder.export_failures))

        if latency and firsts:
            timed = {"eager": eager}
            timed.update({key: runner_of(key, tmp / F.get(key).file, spec, threads=LATENCY_THREADS) for key in firsts})
            record.latency_ms = Latency.model_validate(measure_latency(spec, timed, (1, spec.max_batch_size)))

        _keep_previous(record, old, entries, out_dir)
        for key in keys:
            fmt = F.get(key)
            if fmt.variant and entries[key].status == "FAIL":
                (out_dir / fmt.file).unlink(missing_ok=True)  # never deployed: no file that looks deployable
            else:
                os.replace(tmp / fmt.file, out_dir / fmt.file)
        if firsts and real is not None:
            with records.atomic_path(folder.sample) as sample_tmp, open(sample_tmp, "wb") as fh:
                np.savez(fh, **{t.name: a[:SAMPLE_ROWS] for t, a in zip(spec.inputs, real)})
            record.sample = folder.sample.name
        record.save(folder.export_record)
        if firsts:
            folder.export_failures.unlink(missing_ok=True)
        if unfit:
            record.skipped_variants = unfit
        return record
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _first_line(exc: Exception) -> str:
    """The first line of an exception's message, without terminal colour codes, at most 300 chars."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(exc)).strip()
    return text.splitlines()[0][:300] if text else type(exc).__name__


def _new_record(spec: ModelSpec, artifacts: Path, tol, real, entries: dict, firsts: dict, old) -> ExportRecord:
    """The export record: a new one when a primary format was exported, else the recorded one plus these variants."""
    versions = records.versions("onnx", "onnxruntime-gpu", "onnxscript")
    if firsts or old is None:  # (a variants-only export has loaded the recorded one already)
        return ExportRecord(
            model=spec.name,
            status="PASS" if all(e.status == "PASS" for e in firsts.values()) else "FAIL",
            max_batch_size=spec.max_batch_size,
            atol=tol.atol,
            rtol=tol.rtol,
            inputs=[t.as_json() for t in spec.inputs],
            outputs=[t.as_json() for t in spec.outputs],
            checkpoint_sha256=sha256(checkpoint_path(spec, artifacts)),
            real_samples=real is not None,
            formats=entries,
            versions=versions,
        )
    # variants only: the recorded export stays as it was, with these variants added
    return old.updated(formats={**old.formats, **entries}, versions=versions)


def _keep_previous(record: ExportRecord, old: ExportRecord | None, entries: dict, out_dir: Path) -> None:
    """Keep the formats not re-exported this time while their files are still the recorded ones; a variant
    only while its base is the one it was made from."""
    shas = {k: e.sha256 for k, e in record.formats.items()}
    for key, entry in (old.formats if old is not None else {}).items():
        if key in entries or key not in F.FORMATS:
            continue
        fmt = F.get(key)
        f = out_dir / entry.file
        same_file = f.is_file() and sha256(f) == entry.sha256
        if fmt.variant:
            if entry.base_sha256 == shas.get(str(fmt.base)) and (same_file or entry.status == "FAIL"):
                record.formats[key] = entry
            else:
                record.formats.pop(key, None)
        elif entry.status == "PASS" and same_file:
            record.formats[key] = entry

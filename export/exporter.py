"""Export a trained model to TorchScript and ONNX, gate it, and record the result.

The export is all-or-nothing: files are written into a temporary folder, gated, and only
then renamed into place with a new export.json. A failed gate leaves the previous good
artifacts and record untouched and writes its numbers to export-failed.json.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import re
import shutil
import time
import warnings
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from zeroserve import formats as F
from zeroserve import records
from zeroserve.artifacts import checkpoint_path, eager_outputs, load_trained, model_dir, output_arrays
from zeroserve.errors import CheckFailed, InputError, MissingDataError
from zeroserve.export import gate
from zeroserve.spec import ModelSpec

DEFAULT_OPSET = 18
DEFAULT_EXPORTER = "legacy"  # passes the gate for all ten models, and in a tenth of dynamo's time
OPSETS = {"legacy": (9, torch.onnx._constants.ONNX_TORCHSCRIPT_EXPORTER_MAX_OPSET),
          "dynamo": (18, torch.onnx._constants.ONNX_MAX_OPSET)}
SAMPLE_ROWS = 8
EXPORT_SCRATCH = ".export-"  # export's scratch folders in artifacts/<model>/ (records.scratch_dir)
LATENCY_THREADS = 1


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


def read_export(spec: ModelSpec, artifacts: Path) -> dict:
    """The model's export.json, or InputError saying to run export first."""
    path = model_dir(artifacts, spec) / "export.json"
    if not path.is_file():
        raise InputError(f"{spec.name}: no export record at {path}; run `zeroserve export {spec.name}` first")
    return records.read_json(path, "export record")


def _exportable(spec: ModelSpec, model: torch.nn.Module) -> torch.nn.Module:
    return (spec.export_module(model) if spec.export_module else model).eval()


def _example(spec: ModelSpec) -> tuple[torch.Tensor, ...]:
    time = 5 if spec.seq_lengths else None
    return tuple(torch.from_numpy(a) for a in spec.random_inputs(2, np.random.default_rng(0), time=time))


def _export_onnx(spec: ModelSpec, module: torch.nn.Module, path: Path, opset: int, exporter: str) -> None:
    names_in = [t.name for t in spec.inputs]
    names_out = [t.name for t in spec.outputs]
    example = _example(spec)
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        if exporter == "legacy":
            axes = {t.name: t.dynamic_axes for t in (*spec.inputs, *spec.outputs)}
            torch.onnx.export(module, example, str(path), dynamo=False, opset_version=opset, input_names=names_in,
                              output_names=names_out, dynamic_axes=axes, do_constant_folding=True)
        else:
            dims = {}
            for t in spec.inputs:
                dims[t.name] = {i: torch.export.Dim.DYNAMIC for i in t.dynamic_axes}
            program = torch.onnx.export(module, example, dynamo=True, opset_version=opset, input_names=names_in,
                                        output_names=names_out, dynamic_shapes=tuple(dims.values()),
                                        external_data=False)
            program.save(str(path), external_data=False)


def _export_torchscript(spec: ModelSpec, module: torch.nn.Module, path: Path) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if spec.torchscript == "script":
            scripted = torch.jit.script(module)
        else:
            scripted = torch.jit.trace(module, _example(spec), check_trace=False)
        torch.jit.save(scripted, str(path))


def _onnx_runner(path: Path, spec: ModelSpec, threads: int | None = None) -> Callable:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    if threads:
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    names = [t.name for t in spec.inputs]
    return lambda inputs: session.run(None, dict(zip(names, inputs)))


def _torchscript_runner(path: Path, spec: ModelSpec, threads: int | None = None) -> Callable:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch.jit is deprecated upstream; Triton's pytorch backend still loads it
        module = torch.jit.load(str(path), map_location="cpu").eval()

    def run(inputs):
        with torch.no_grad():
            return output_arrays(module(*[torch.from_numpy(np.ascontiguousarray(a)) for a in inputs]))

    return run


def _eager_runner(model: torch.nn.Module) -> Callable:
    return lambda inputs: eager_outputs(model, inputs, batch_size=len(inputs[0]))


def _onnx_info(path: Path) -> dict:
    """Check an ONNX file fully and read what deploy checks against the target release."""
    import onnx

    proto = onnx.load(str(path))
    onnx.checker.check_model(proto, full_check=True)
    opset = max((int(o.version) for o in proto.opset_import if o.domain in ("", "ai.onnx")), default=0)
    return {"opset": opset, "ir_version": int(proto.ir_version)}


def _build_onnx(spec: ModelSpec, module: torch.nn.Module, path: Path, *, opset: int, exporter: str, **_) -> dict:
    _export_onnx(spec, module, path, opset, exporter)
    return {"exporter": exporter, "dynamic_axes": {t.name: t.dynamic_axes for t in (*spec.inputs, *spec.outputs)}}


def _build_torchscript(spec: ModelSpec, module: torch.nn.Module, path: Path, **_) -> dict:
    _export_torchscript(spec, module, path)
    return {"method": spec.torchscript}


# How each format of the table (zeroserve.formats) is made, by format key. A builder writes the
# artifact to `path` and returns what the record keeps about it; `work` is the folder holding the
# other artifacts of this export (a variant reads its base's file there).
BUILDERS: dict[str, Callable[..., dict]] = {"onnx": _build_onnx, "torchscript": _build_torchscript}
# How an artifact is run in-process for the gate and the latency figures, by runtime.
RUNNERS: dict[str, Callable[..., Callable]] = {"onnx": _onnx_runner, "torchscript": _torchscript_runner}


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


def measure_latency(spec: ModelSpec, runners: dict[str, Callable], batches: tuple[int, ...],
                    budget_s: float = 0.4) -> dict:
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


def _real_samples(spec: ModelSpec, data_dir: Path | None) -> list[np.ndarray] | None:
    if data_dir is None or spec.data is None:
        return None
    try:
        split = spec.load_data(Path(data_dir))
    except MissingDataError:
        return None
    return split.test_inputs


def export_model(spec: ModelSpec, artifacts: Path, *, formats=None, opset: int = DEFAULT_OPSET,
                 exporter: str = DEFAULT_EXPORTER, atol: float | None = None, rtol: float | None = None,
                 data_dir: Path | None = None, latency: bool = True) -> dict:
    """Export `spec`'s trained checkpoint, gate every format, and record it.

    Args:
        formats: format keys of `zeroserve.formats` (default: the primary formats).
        atol / rtol: the gate's tolerances; None takes the spec's (its own or the parity defaults).

    Raises:
        InputError: no or unusable checkpoint, bad format/opset, unwritable folder.
        CheckFailed: a format failed the gate (export-failed.json holds the numbers).

    Returns:
        The export.json record.
    """
    formats = F.parse(formats)
    missing = [f for f in formats if f not in BUILDERS]
    if missing:
        raise InputError(f"no exporter is defined for format {', '.join(missing)}")
    check_opset(opset, exporter)
    tol = spec.tolerance.with_overrides(atol, rtol)
    out_dir = model_dir(artifacts, spec)
    model = load_trained(spec, artifacts)
    records.ensure_writable_dir(out_dir)
    real = _real_samples(spec, data_dir)
    points = gate.grid(spec, real)
    eager = _eager_runner(model)
    module = _exportable(spec, model)

    records.prune_scratch(out_dir, EXPORT_SCRATCH)  # left by an export that was killed
    tmp = records.scratch_dir(out_dir, EXPORT_SCRATCH)
    try:
        entries: dict[str, dict] = {}
        runners: dict[str, Callable] = {}
        for key in formats:
            fmt = F.get(key)
            path = tmp / fmt.file
            started = time.perf_counter()
            try:
                info = BUILDERS[key](spec, module, path, opset=opset, exporter=exporter, work=tmp)
                if fmt.runtime == "onnx":  # every ONNX artifact records what deploy checks for the target
                    info = {**_onnx_info(path), **info}
                runner = RUNNERS[fmt.runtime](path, spec)
            except Exception as exc:  # the exporter's own failure is this model's gate failure, with the reason
                msg = _first_line(exc)
                entries[key] = {"file": fmt.file, "status": "FAIL", "error": f"{type(exc).__name__}: {msg}",
                                "worst": {"point": "export", "error": msg}, "grid": []}
                continue
            seconds = time.perf_counter() - started
            result = gate.run_gate(spec, eager, runner, points, tol)
            runners[key] = runner
            entries[key] = {"file": fmt.file, "sha256": sha256(path), "bytes": path.stat().st_size, **info,
                            "export_seconds": round(seconds, 3), **result}

        record = {
            "schema": records.SCHEMA, "model": spec.name,
            "status": "PASS" if all(e["status"] == "PASS" for e in entries.values()) else "FAIL",
            "max_batch_size": spec.max_batch_size, "atol": tol.atol, "rtol": tol.rtol,
            "inputs": [t.as_json() for t in spec.inputs], "outputs": [t.as_json() for t in spec.outputs],
            "checkpoint_sha256": sha256(checkpoint_path(spec, artifacts)),
            "real_samples": real is not None,
            "formats": entries,
            "versions": records.versions("onnx", "onnxruntime-gpu", "onnxscript"),
        }
        if record["status"] != "PASS":
            records.write_json(out_dir / "export-failed.json", record)
            raise CheckFailed(_failure_line(spec, entries, out_dir))

        if latency:
            timed = {"eager": eager}
            timed.update({key: RUNNERS[F.get(key).runtime](tmp / F.get(key).file, spec, threads=LATENCY_THREADS)
                          for key in entries})
            record["latency_ms"] = measure_latency(spec, timed, (1, spec.max_batch_size))

        # keep the formats not re-exported this time, if their files are still the recorded ones
        previous = out_dir / "export.json"
        if previous.is_file():
            with contextlib.suppress(InputError):
                old = records.read_json(previous)
                for key, entry in old.get("formats", {}).items():
                    f = out_dir / entry.get("file", "")
                    if key not in entries and key in F.FORMATS and entry.get("status") == "PASS" and f.is_file() \
                            and sha256(f) == entry.get("sha256"):
                        record["formats"][key] = entry
        for key in formats:
            os.replace(tmp / F.get(key).file, out_dir / F.get(key).file)
        if real is not None:
            with records.atomic_path(out_dir / "sample.npz") as sample_tmp:
                with open(sample_tmp, "wb") as fh:
                    np.savez(fh, **{t.name: a[:SAMPLE_ROWS] for t, a in zip(spec.inputs, real)})
            record["sample"] = "sample.npz"
        records.write_json(out_dir / "export.json", record)
        (out_dir / "export-failed.json").unlink(missing_ok=True)
        return record
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _failure_line(spec: ModelSpec, entries: dict, out_dir: Path) -> str:
    fmt, entry = next((f, e) for f, e in entries.items() if e["status"] != "PASS")
    w = entry["worst"]
    kept = f"previous artifacts kept, numbers in {out_dir / 'export-failed.json'}"
    if w.get("point") == "export":
        return f"{spec.name} {fmt} export failed: {w['error']}; {kept}"
    if "error" in w:
        detail = f"at {w['point']}: {w['error']}"
    else:
        detail = (f"at {w['point']} (shapes {w['shapes']}): max abs error {w['max_abs']:.3g}, "
                  f"max rel error {w['max_rel']:.3g}, top-1 agreement {w['top1_agreement']}")
    return f"{spec.name} {fmt} failed the parity gate {detail} (atol {entry['atol']}, rtol {entry['rtol']}); {kept}"


def _first_line(exc: Exception) -> str:
    """The first line of an exception's message, without terminal colour codes, at most 300 chars."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(exc)).strip()
    return text.splitlines()[0][:300] if text else type(exc).__name__

"""Faster variants of the gated fp32 ONNX: int8 (static QDQ), int8-dynamic, optimized and fp16.

Each builder reads the base artifact (`model.onnx`, in this export's work folder) and writes its
variant with ONNX Runtime's own tools (`onnxruntime.quantization`, the session's offline
optimiser, `onnxruntime.transformers.float16`). A variant the tools cannot make for a model (the
quantizer fails, or quantizes none of its ops) is an InputError: nothing is written.

Each variant is then judged by `zeroserve.parity.judge_variant` on the whole held-out set (its task
metric against fp32's and its top-1 agreement with eager), not by the fp32 allclose gate, and timed
in-process beside its base. fp16 needs a GPU: without one it is written, linted and recorded
UNVERIFIED.
"""

from __future__ import annotations

import contextlib
import io
import logging
import tempfile
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from zeroserve import formats as F
from zeroserve import parity
from zeroserve.errors import InputError
from zeroserve.spec import ModelSpec, Split

CALIBRATION_METHODS = ("minmax", "entropy", "percentile")
# Fewest calibration samples per method: minmax reads ranges; entropy and percentile build
# histograms of every activation, which need enough samples to have tails at all.
MIN_CALIBRATION = {"minmax": 16, "entropy": 128, "percentile": 128}
DEFAULT_CALIBRATION_SAMPLES = 512
CALIBRATION_BATCH = 64
CALIBRATION_SEED = 0
# ORT_ENABLE_BASIC: only semantics-preserving rewrites that ONNX Runtime applies for every execution
# provider (constant folding, redundant-node removal, standard-op fusions) and that stay in the
# default ONNX domain. EXTENDED adds fusions into com.microsoft contrib ops placed for the CPU/CUDA
# provider of the machine that saved the file; ALL adds layout (NCHWc) rewrites for this CPU.
OPTIMIZATION_LEVEL = "basic"
# What ONNX Runtime's dynamic quantizer covers (its registry of dynamic ops): GRU and RNN stay float.
DYNAMIC_OPS_NOTE = "ONNX Runtime's dynamic quantizer covers MatMul, Gather, Conv, LSTM and attention, not GRU or RNN"


@dataclass(frozen=True)
class VariantOptions:
    """How variants are made and gated.

    Args:
        calibration_samples: training-split samples int8 is calibrated on.
        calibration_method: minmax, entropy or percentile (ONNX Runtime's CalibrationMethod).
        rule: the variant gate.
        calibration_inputs: library/test hook: calibrate on these arrays (graph shapes, one per input)
            instead of training samples (zeros, to make a variant that must fail the gate).
    """

    calibration_samples: int = DEFAULT_CALIBRATION_SAMPLES
    calibration_method: str = "minmax"
    rule: parity.VariantRule = field(default_factory=parity.VariantRule)
    calibration_inputs: list[np.ndarray] | None = None

    def __post_init__(self) -> None:
        if self.calibration_method not in CALIBRATION_METHODS:
            raise InputError(
                f"unknown calibration method {self.calibration_method!r}; use {', '.join(CALIBRATION_METHODS)}"
            )
        least = MIN_CALIBRATION[self.calibration_method]
        if self.calibration_samples < least:
            raise InputError(
                f"--calibration-samples {self.calibration_samples} is too few for "
                f"{self.calibration_method} calibration (at least {least})"
            )


@contextlib.contextmanager
def _quiet():
    """The quantizer logs and warns per op; its outcome is read from the file it writes."""
    logger = logging.getLogger()
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        logger.setLevel(level)


def _tool_failed(spec: ModelSpec, variant: str, what: str, exc: Exception) -> InputError:
    text = str(exc).strip().splitlines()[0][:240] if str(exc).strip() else type(exc).__name__
    return InputError(
        f"{spec.name}: the {variant} variant cannot be made: {what} failed ({type(exc).__name__}: {text})"
    )


def weights_summary(path: Path, base: Path) -> dict:
    """Which weight-carrying ops were quantized and which were left in float (read from the files)."""
    import onnx

    def float_weight_ops(model) -> set[str]:
        inits = {i.name: i for i in model.graph.initializer}
        ops = set()
        for node in model.graph.node:
            if node.op_type in ("DequantizeLinear", "QuantizeLinear"):
                continue
            for name in node.input:
                t = inits.get(name)
                if t is not None and t.data_type == onnx.TensorProto.FLOAT and len(t.dims) >= 2:
                    ops.add(node.op_type)
        return ops

    model = onnx.load(str(path))
    int8 = [
        i
        for i in model.graph.initializer
        if i.data_type in (onnx.TensorProto.INT8, onnx.TensorProto.UINT8) and "zero_point" not in i.name
    ]  # a quantized weight, not a quantization parameter
    before = float_weight_ops(onnx.load(str(base)))
    left = float_weight_ops(model)
    return {"int8_weights": len(int8), "weight_ops": sorted(before), "left_float": sorted(left & before)}


def _require_quantized(spec: ModelSpec, variant: str, summary: dict, extra: str = "") -> None:
    if summary["int8_weights"] == 0:
        ops = ", ".join(summary["weight_ops"]) or "none"
        raise InputError(
            f"{spec.name}: the {variant} variant quantizes none of this model's weights "
            f"(ops with weights: {ops}){extra}; nothing written"
        )


def _calibration(spec: ModelSpec, split: Split | None, opts: VariantOptions) -> list[np.ndarray]:
    """`calibration_samples` rows drawn (seeded) from the training split, in graph shapes."""
    if opts.calibration_inputs is not None:
        return [np.asarray(a) for a in opts.calibration_inputs]
    if split is None or not split.trainable:
        raise InputError(f"{spec.name}: int8 calibration needs training samples and this model's data has none")
    available = len(split.train_inputs[0])
    least = MIN_CALIBRATION[opts.calibration_method]
    if available < least:
        raise InputError(
            f"{spec.name}: the training split has {available} samples, too few for "
            f"{opts.calibration_method} calibration (at least {least}); use int8-dynamic instead"
        )
    n = min(opts.calibration_samples, available)
    rows = np.sort(np.random.default_rng(CALIBRATION_SEED).choice(available, n, replace=False))
    return [a[rows] for a in split.train_inputs]


def _quantize(
    spec: ModelSpec, variant: str, path: Path, work: Path, tool: str, run: Callable[[Path], None], extra: str = ""
) -> dict:
    """The gated ONNX through ONNX Runtime's pre-processing, then `run(pre_processed)` (a quantizer writing
    `path`); a tool's failure or a file with no int8 weight is InputError (nothing left behind).

    Returns:
        The weights summary of `path` (`weights_summary`).
    """
    from onnxruntime.quantization.shape_inference import quant_pre_process

    base = work / F.FORMATS["onnx"].file
    with tempfile.TemporaryDirectory(prefix="zs-quant-", dir=work) as scratch:
        pre = Path(scratch) / "pre.onnx"
        try:
            with _quiet():
                quant_pre_process(str(base), str(pre))
        except Exception as exc:
            raise _tool_failed(spec, variant, "ONNX Runtime's quantization pre-processing", exc) from None
        try:
            with _quiet():
                run(pre)
        except Exception as exc:
            path.unlink(missing_ok=True)
            raise _tool_failed(spec, variant, tool, exc) from None
    summary = weights_summary(path, base)
    if summary["int8_weights"] == 0:
        path.unlink(missing_ok=True)
    _require_quantized(spec, variant, summary, extra)
    return summary


def _build_int8(
    spec: ModelSpec, module, path: Path, *, work: Path, variant: VariantOptions, split: Split | None, **_
) -> dict:
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    arrays = _calibration(spec, split, variant)
    names = [t.name for t in spec.inputs]

    class Reader(CalibrationDataReader):
        def __init__(self):
            n = len(arrays[0])
            self._batches = iter(
                [
                    {k: np.ascontiguousarray(a[s : s + CALIBRATION_BATCH]) for k, a in zip(names, arrays)}
                    for s in range(0, n, CALIBRATION_BATCH)
                ]
            )

        def get_next(self):
            return next(self._batches, None)

    method = {
        "minmax": CalibrationMethod.MinMax,
        "entropy": CalibrationMethod.Entropy,
        "percentile": CalibrationMethod.Percentile,
    }[variant.calibration_method]
    summary = _quantize(
        spec,
        "int8",
        path,
        work,
        "ONNX Runtime's static quantizer",
        lambda pre: quantize_static(
            str(pre),
            str(path),
            Reader(),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            activation_type=QuantType.QInt8,
            weight_type=QuantType.QInt8,
            calibrate_method=method,
            calibration_providers=["CPUExecutionProvider"],
        ),
    )
    info = {
        "method": "quantize_static",
        "quant_format": "QDQ",
        "per_channel": True,
        "weight_type": "int8",
        "activation_type": "int8",
        "calibration": {
            "method": variant.calibration_method,
            "samples": int(len(arrays[0])),
            "source": "given arrays"
            if variant.calibration_inputs is not None
            else f"training split, seeded draw (seed {CALIBRATION_SEED})",
        },
        "quantized": summary,
    }
    if summary["left_float"]:
        info["note"] = f"left in float32: {', '.join(summary['left_float'])} (the static quantizer has no int8 form)"
    return info


def _build_int8_dynamic(spec: ModelSpec, module, path: Path, *, work: Path, **_) -> dict:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    summary = _quantize(
        spec,
        "int8-dynamic",
        path,
        work,
        "ONNX Runtime's dynamic quantizer",
        lambda pre: quantize_dynamic(str(pre), str(path), weight_type=QuantType.QInt8, per_channel=False),
        f"; {DYNAMIC_OPS_NOTE}",
    )
    info = {"method": "quantize_dynamic", "weight_type": "int8", "quantized": summary}
    if summary["left_float"]:
        info["note"] = (
            f"left in float32: {', '.join(summary['left_float'])}; {DYNAMIC_OPS_NOTE}, so only the "
            f"other weights are int8"
        )
    return info


def _used_domains_only(path: Path) -> None:
    """Drop the opset imports no node uses (ONNX Runtime's saver declares every domain it knows)."""
    import onnx

    model = onnx.load(str(path))
    used = {n.domain for n in model.graph.node} | {""}
    keep = [o for o in model.opset_import if o.domain in used or o.domain == "ai.onnx"]
    del model.opset_import[:]
    model.opset_import.extend(keep)
    onnx.save(model, str(path))


def _build_optimized(spec: ModelSpec, module, path: Path, *, work: Path, **_) -> dict:
    import onnx
    import onnxruntime as ort

    base = work / F.FORMATS["onnx"].file
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    opts.optimized_model_filepath = str(path)
    try:
        ort.InferenceSession(str(base), opts, providers=["CPUExecutionProvider"])
        _used_domains_only(path)
    except Exception as exc:
        path.unlink(missing_ok=True)
        raise _tool_failed(spec, "optimized", "ONNX Runtime's offline optimiser", exc) from None
    model = onnx.load(str(path))
    foreign = sorted({f"{n.domain}.{n.op_type}" for n in model.graph.node if n.domain not in ("", "ai.onnx")})
    if foreign:
        path.unlink(missing_ok=True)
        raise InputError(
            f"{spec.name}: the optimized graph uses ops outside the ONNX domain ({', '.join(foreign)}), "
            "which would tie it to this machine's ONNX Runtime; nothing written"
        )
    before = len(onnx.load(str(base)).graph.node)
    return {
        "method": "onnxruntime offline optimisation",
        "level": OPTIMIZATION_LEVEL,
        "level_reason": "basic rewrites are provider-independent and stay in the ONNX domain; extended and "
        "all emit com.microsoft contrib ops and CPU-specific layouts",
        "nodes": {"before": before, "after": len(model.graph.node)},
    }


def _topological(model) -> None:
    """Reorder the graph's nodes so every input is produced before it is read (the float16 helper
    appends its input Casts at the end, which onnx's checker refuses)."""
    graph = model.graph
    known = {i.name for i in graph.input} | {i.name for i in graph.initializer} | {""}
    pending, ordered = list(graph.node), []
    while pending:
        ready = [n for n in pending if all(i in known for i in n.input)]
        if not ready:
            raise ValueError("the float16 graph has a node whose inputs are never produced")
        for n in ready:
            ordered.append(n)
            known.update(n.output)
        pending = [n for n in pending if all(n is not r for r in ready)]
    del graph.node[:]
    graph.node.extend(ordered)


def _build_fp16(spec: ModelSpec, module, path: Path, *, work: Path, **_) -> dict:
    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16

    base = work / F.FORMATS["onnx"].file
    try:
        with _quiet():
            model = convert_float_to_float16(onnx.load(str(base)), keep_io_types=True)
        _topological(model)
        onnx.save(model, str(path))
    except Exception as exc:
        path.unlink(missing_ok=True)
        raise _tool_failed(spec, "fp16", "onnxruntime.transformers.float16", exc) from None
    graph = onnx.load(str(path)).graph
    io_types = {
        v.name: onnx.helper.tensor_dtype_to_np_dtype(v.type.tensor_type.elem_type).name
        for v in (*graph.input, *graph.output)
    }
    wrong = {t.name: io_types.get(t.name) for t in (*spec.inputs, *spec.outputs) if io_types.get(t.name) != t.dtype}
    if wrong:
        path.unlink(missing_ok=True)
        raise InputError(f"{spec.name}: the fp16 graph's inputs/outputs changed type ({wrong}); nothing written")
    halves = sum(1 for i in graph.initializer if i.data_type == onnx.TensorProto.FLOAT16)
    return {
        "method": "onnxruntime.transformers.float16.convert_float_to_float16",
        "keep_io_types": True,
        "float16_initializers": halves,
    }


# By format key: how each variant of the format table is made.
BUILDERS: dict[str, Callable[..., dict]] = {
    "onnx_int8": _build_int8,
    "onnx_int8dyn": _build_int8_dynamic,
    "onnx_optimized": _build_optimized,
    "onnx_fp16": _build_fp16,
}

"""The ONNX runtime: torch.onnx export (dynamo or legacy), ONNX Runtime in-process, the target's
IR/opset check, and deploy's lint (graph tensors against the config, then the warmup request)."""

from __future__ import annotations

import contextlib
import io
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from zeroserve.errors import CheckFailed, InputError
from zeroserve.records.export import FormatEntry
from zeroserve.runtimes import Runtime, torch_export

GraphIO = tuple[list[tuple[str, str, list[int]]], list[tuple[str, str, list[int]]]]  # (inputs, outputs)


def export_onnx(spec, module, path: Path, opset: int, exporter: str) -> None:
    """`module` to an ONNX file with the spec's tensor names and dynamic axes, by the legacy or dynamo exporter."""
    import torch

    names_in = [t.name for t in spec.inputs]
    names_out = [t.name for t in spec.outputs]
    example = torch_export.example(spec)
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        if exporter == "legacy":
            axes = {t.name: t.dynamic_axes for t in (*spec.inputs, *spec.outputs)}
            torch.onnx.export(
                module,
                example,
                str(path),
                dynamo=False,
                opset_version=opset,
                input_names=names_in,
                output_names=names_out,
                dynamic_axes=axes,
                do_constant_folding=True,
            )
            return
        with torch_export.rnn_loops():  # recurrent layers keep a dynamic time axis (hello_rnn's nn.RNN)
            program = torch.onnx.export(
                module,
                example,
                dynamo=True,
                opset_version=opset,
                input_names=names_in,
                output_names=names_out,
                dynamic_shapes=torch_export.dynamic_shapes(spec),
                external_data=False,
            )
        if program is None:
            raise RuntimeError("torch.onnx.export (dynamo) returned no program")
        program.save(str(path), external_data=False)


def session_runner(
    path: Path, spec, threads: int | None = None, providers: tuple[str, ...] = ("CPUExecutionProvider",)
) -> Callable:
    """An ONNX Runtime session over the file, fed by the spec's input names."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    if threads:
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    session = ort.InferenceSession(str(path), opts, providers=list(providers))
    names = [t.name for t in spec.inputs]
    return lambda inputs: session.run(None, dict(zip(names, inputs)))


def graph_io(path: Path) -> GraphIO:
    """(name, numpy dtype name, dims with -1 where not fixed) of an ONNX graph's inputs (initializers left out,
    as Triton's backend sees them) and outputs; InputError when the file is not ONNX."""
    import onnx

    try:
        graph = onnx.load(str(path), load_external_data=False).graph
    except Exception as exc:  # noqa: BLE001 - protobuf raises several types for a file that is not ONNX
        raise InputError(f"{path} does not load as ONNX ({type(exc).__name__}: {str(exc)[:200]})") from None
    init = {i.name for i in graph.initializer}

    def info(v) -> tuple[str, str, list[int]]:
        tt = v.type.tensor_type
        try:
            dtype = str(onnx.helper.tensor_dtype_to_np_dtype(tt.elem_type))
        except (KeyError, ValueError, TypeError):
            raise InputError(
                f"{path}: tensor {v.name} has an element type Triton cannot name ({tt.elem_type})"
            ) from None
        dims = [d.dim_value if d.HasField("dim_value") else -1 for d in tt.shape.dim]
        return v.name, dtype, dims

    return [info(v) for v in graph.input if v.name not in init], [info(v) for v in graph.output]


def _lint_graph(model, path: Path) -> None:
    """The config's input/output names, dtypes and ranks (batch axis included, after reshape) against the graph."""
    try:
        inputs, outputs = graph_io(path)
    except InputError as exc:
        raise CheckFailed(f"{model.name}: {exc}") from None
    for kind, declared, actual in (("input", model.inputs, inputs), ("output", model.outputs, outputs)):
        if [t.name for t in declared] != [name for name, _, _ in actual]:
            raise CheckFailed(
                f"{model.name}: config {kind}s {[t.name for t in declared]} do not match the ONNX "
                f"graph's {[name for name, _, _ in actual]}"
            )
        for t, (_, dtype, graph_dims) in zip(declared, actual):
            if dtype != t.dtype:
                raise CheckFailed(f"{model.name}: {kind} {t.name} is {t.dtype} in the config, {dtype} in the graph")
            config_dims = [-1, *t.graph_dims]  # the batch axis, then what the model sees after reshape
            if len(graph_dims) != len(config_dims):
                raise CheckFailed(
                    f"{model.name}: {kind} {t.name} has rank {len(config_dims)} in the config "
                    f"(batch + {list(t.graph_dims)}) but {len(graph_dims)} in the graph"
                )
            for c, g in zip(config_dims, graph_dims):
                if c != -1 and g != -1 and c != g:
                    raise CheckFailed(
                        f"{model.name}: {kind} {t.name} dims {config_dims} do not fit the graph's {graph_dims}"
                    )


class Onnx(Runtime):
    key = "onnx"
    label = "ONNX Runtime"

    def build(self, spec, module, path: Path, **options: Any) -> dict:
        exporter = options["exporter"]
        export_onnx(spec, module, path, options["opset"], exporter)
        return {"exporter": exporter, "dynamic_axes": {t.name: t.dynamic_axes for t in (*spec.inputs, *spec.outputs)}}

    def info(self, path: Path) -> dict:
        """Check the file fully and read what deploy checks against the target release."""
        import onnx

        proto = onnx.load(str(path))
        onnx.checker.check_model(proto, full_check=True)
        opset = max((int(o.version) for o in proto.opset_import if o.domain in ("", "ai.onnx")), default=0)
        return {"opset": opset, "ir_version": int(proto.ir_version)}

    def runner(self, path: Path, spec, threads: int | None = None) -> Callable:
        return session_runner(path, spec, threads)

    def check_target(self, name: str, path: Path, entry: FormatEntry | None, release: Any) -> dict:
        """The file's IR version and opset against its record and the target's ONNX Runtime."""
        import onnx

        try:
            proto = onnx.load(str(path), load_external_data=False)
        except Exception as exc:  # a truncated or foreign file: say so in one line
            raise InputError(f"{name}: {path} is not a loadable ONNX model ({type(exc).__name__})") from None
        ir = int(proto.ir_version)
        opset = max((int(o.version) for o in proto.opset_import if o.domain in ("", "ai.onnx")), default=0)
        recorded = (entry.ir_version, entry.opset) if entry is not None else (None, None)
        if recorded != (ir, opset):
            raise InputError(
                f"{name}: {path} has IR version {ir} and opset {opset}, but its export record says "
                f"IR {recorded[0]} and opset {recorded[1]}; run export again"
            )
        if ir > release.max_onnx_ir_version or opset > release.max_onnx_opset:
            raise InputError(
                f"{name}: ONNX IR version {ir} / opset {opset} is newer than the target "
                f"{release.image} (ONNX Runtime {release.onnxruntime}) accepts here "
                f"(IR <= {release.max_onnx_ir_version}, opset <= {release.max_onnx_opset}); "
                f"export with a lower opset or pin ir_version"
            )
        return {"ir_version": ir, "opset": opset}

    def lint(self, model, path: Path, warmup: list[np.ndarray] | None) -> list[np.ndarray] | None:
        """The graph's tensors against the config, then the warmup request through ONNX Runtime (CPU)."""
        _lint_graph(model, path)
        if warmup is None:
            return None
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.log_severity_level = 3
        opts.intra_op_num_threads = 1
        try:
            session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
            return session.run([t.name for t in model.outputs], dict(zip((t.name for t in model.inputs), warmup)))
        except Exception as exc:
            first = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
            raise CheckFailed(f"{model.name}: ONNX Runtime on the warmup sample failed: {first}") from None


RUNTIME = Onnx()

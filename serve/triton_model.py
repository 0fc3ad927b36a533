"""zeroserve's Python-backend model: runs one exported artifact (ONNX Runtime, TorchScript, PT2) in Triton.

The embedded engine copies this file into every runtime model as `1/model.py`. It runs
inside Triton's Python-backend stub, so it imports only numpy, onnxruntime or torch and
Triton's `triton_python_backend_utils`, never zeroserve. What it serves is read from the
model config's `parameters`: ZS_FORMAT (a runtime's key, `zeroserve.runtimes`: onnx, torchscript,
pt2; or noop), ZS_ARTIFACT (file name in the version folder), ZS_THREADS (intra-op threads).
ZS_FORMAT=noop answers zeros without running anything: the benchmark's floor for the serving path.
"""

from __future__ import annotations

import json
import os

import numpy as np
import triton_python_backend_utils as pb_utils


def _param(config: dict, key: str, default: str = "") -> str:
    return config.get("parameters", {}).get(key, {}).get("string_value", default)


def _invalid_argument(message: str):
    """A client's mistake: INVALID_ARGUMENT (HTTP 400) where this Python backend knows the code."""
    code = getattr(pb_utils.TritonError, "INVALID_ARG", None)
    return pb_utils.TritonError(message) if code is None else pb_utils.TritonError(message, code)


class TritonPythonModel:
    """One model instance: a loaded artifact and the config's tensor names and dtypes."""

    def initialize(self, args: dict) -> None:
        """Load the artifact on the instance's device with the configured thread counts."""
        config = json.loads(args["model_config"])
        self.name = config["name"]
        self.inputs = [(t["name"], pb_utils.triton_string_to_numpy(t["data_type"])) for t in config["input"]]
        self.outputs = [(t["name"], pb_utils.triton_string_to_numpy(t["data_type"])) for t in config["output"]]
        self.max_batch_size = int(config.get("max_batch_size", 0))
        fmt = _param(config, "ZS_FORMAT")
        threads = int(_param(config, "ZS_THREADS", "1"))
        path = os.path.join(args["model_repository"], args["model_version"], _param(config, "ZS_ARTIFACT"))
        gpu = args.get("model_instance_kind") == "GPU"
        device_id = int(args.get("model_instance_device_id", 0))
        self._strings = fmt == "onnx"  # ONNX Runtime's string tensors take str, not bytes
        loaders = {"onnx": self._load_onnx, "torchscript": self._load_torchscript, "pt2": self._load_pt2}
        if fmt == "noop":
            self._run = self._noop(config)
        elif fmt in loaders:
            self._run = loaders[fmt](path, threads, gpu, device_id)
        else:
            raise pb_utils.TritonModelException(f"{self.name}: unknown ZS_FORMAT {fmt!r} in the runtime config")

    def _load_onnx(self, path: str, threads: int, gpu: bool, device_id: int):
        import onnxruntime as ort

        opts = ort.SessionOptions()
        # Triton already runs one execute() per instance at a time: extra ORT parallelism only
        # competes for the cores, and spinning threads burn CPU between requests.
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        providers = (
            [("CUDAExecutionProvider", {"device_id": device_id}), "CPUExecutionProvider"]
            if gpu
            else ["CPUExecutionProvider"]
        )
        session = ort.InferenceSession(path, sess_options=opts, providers=providers)
        graph_inputs = {i.name for i in session.get_inputs()}
        missing = [n for n, _ in self.inputs if n not in graph_inputs]
        if missing:
            raise pb_utils.TritonModelException(
                f"{self.name}: config inputs {missing} are not inputs of {path} (graph has {sorted(graph_inputs)})"
            )
        names = [n for n, _ in self.outputs]
        graph_outputs = {o.name for o in session.get_outputs()}
        unknown = [n for n in names if n not in graph_outputs]
        if unknown:
            raise pb_utils.TritonModelException(
                f"{self.name}: config outputs {unknown} are not outputs of {path} (graph has {sorted(graph_outputs)})"
            )

        def run(arrays: list[np.ndarray]) -> list[np.ndarray]:
            return session.run(names, {n: a for (n, _), a in zip(self.inputs, arrays)})

        return run

    def _load_torchscript(self, path: str, threads: int, gpu: bool, device_id: int):
        import torch

        torch.set_num_threads(threads)
        try:
            torch.set_num_interop_threads(1)
        except RuntimeError:
            pass  # already set in this process
        device = torch.device(f"cuda:{device_id}" if gpu and torch.cuda.is_available() else "cpu")
        module = torch.jit.load(path, map_location=device).eval()

        def run(arrays: list[np.ndarray]) -> list[np.ndarray]:
            # The pytorch backend's convention: config inputs are the forward's arguments in order.
            with torch.inference_mode():
                out = module(*(torch.from_numpy(a).to(device) for a in arrays))
            out = out if isinstance(out, (tuple, list)) else (out,)
            return [o.detach().cpu().numpy() for o in out]

        return run

    def _load_pt2(self, path: str, threads: int, gpu: bool, device_id: int):
        """An AOTInductor package (`model.pt2`) on the device it was compiled for; inputs in config order."""
        import torch

        torch.set_num_threads(threads)
        device = torch.device(f"cuda:{device_id}" if gpu and torch.cuda.is_available() else "cpu")
        package = torch._inductor.aoti_load_package(path, device_index=device.index if gpu else -1)

        def run(arrays: list[np.ndarray]) -> list[np.ndarray]:
            with torch.inference_mode():
                out = package(*(torch.from_numpy(np.ascontiguousarray(a)).to(device) for a in arrays))
            out = out if isinstance(out, (tuple, list)) else (out,)
            return [o.detach().cpu().numpy() for o in out]

        return run

    def _noop(self, config: dict):
        """Zeros of the output shapes: the serving path's own floor, for the benchmark."""
        dims = [[max(int(d), 1) for d in t["dims"]] for t in config["output"]]

        def run(arrays: list[np.ndarray]) -> list[np.ndarray]:
            return [np.zeros((len(arrays[0]), *d), dtype=dt) for d, (_, dt) in zip(dims, self.outputs)]

        return run

    def execute(self, requests: list) -> list:
        """Run the requests of one call together, batch by batch of equal shapes, and split the rows back."""
        responses: list = [None] * len(requests)
        groups: dict[tuple, list[tuple[int, list[np.ndarray]]]] = {}
        for i, request in enumerate(requests):
            try:
                arrays = self._request_arrays(request)
            except ValueError as exc:
                responses[i] = pb_utils.InferenceResponse(error=_invalid_argument(str(exc)))
                continue
            # Requests only stack along the batch axis when their other dims agree (and the model batches).
            key = tuple(a.shape[1:] for a in arrays) if self.max_batch_size > 0 else (i,)
            groups.setdefault(key, []).append((i, arrays))
        for members in groups.values():
            try:
                self._run_group(members, responses)
            except Exception as exc:  # noqa: BLE001 - one bad batch must not take the instance down
                for i, _ in members:
                    responses[i] = pb_utils.InferenceResponse(
                        error=pb_utils.TritonError(f"{self.name}: inference failed: {exc}")
                    )
        return responses

    def _request_arrays(self, request) -> list[np.ndarray]:
        arrays = []
        for name, dtype in self.inputs:
            tensor = pb_utils.get_input_tensor_by_name(request, name)
            if tensor is None:
                raise ValueError(f"{self.name}: request is missing input '{name}'")
            a = tensor.as_numpy()
            # A zero-length axis must not reach the runtime: ONNX Runtime's GRU crashes the stub on one.
            if self.max_batch_size > 0 and (a.ndim == 0 or a.shape[0] == 0):
                raise ValueError(
                    f"{self.name}: input '{name}' has an empty batch (shape {list(a.shape)}); send at least one row"
                )
            if a.size == 0:
                raise ValueError(
                    f"{self.name}: input '{name}' is empty (shape {list(a.shape)}); "
                    "every axis needs at least one element"
                )
            if a.dtype == object and self._strings:  # BYTES: ONNX Runtime's string tensors take str
                a = np.vectorize(
                    lambda v: v.decode("utf-8", "replace") if isinstance(v, bytes) else v, otypes=[object]
                )(a)
            arrays.append(a if a.dtype == dtype else a.astype(dtype))
        return arrays

    def _run_group(self, members: list[tuple[int, list[np.ndarray]]], responses: list) -> None:
        if len(members) == 1:
            stacked = members[0][1]
        else:
            stacked = [np.concatenate([m[1][k] for m in members]) for k in range(len(self.inputs))]
        outputs = self._run(stacked)
        if self.max_batch_size == 0:  # no batch axis: the outputs are the one request's, whatever their shape
            ((i, _),) = members
            responses[i] = pb_utils.InferenceResponse(
                output_tensors=[
                    pb_utils.Tensor(name, np.ascontiguousarray(out, dtype=dtype))
                    for (name, dtype), out in zip(self.outputs, outputs)
                ]
            )
            return
        start = 0
        for i, arrays in members:
            rows = arrays[0].shape[0]
            tensors = [
                pb_utils.Tensor(name, np.ascontiguousarray(out[start : start + rows], dtype=dtype))
                for (name, dtype), out in zip(self.outputs, outputs)
            ]
            responses[i] = pb_utils.InferenceResponse(output_tensors=tensors)
            start += rows

    def finalize(self) -> None:
        self._run = None

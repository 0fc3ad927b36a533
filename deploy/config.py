"""A deployed Triton model as a small dataclass, and its `config.pbtxt` through Triton's own schema.

`render` builds a `tritonclient.grpc.model_config_pb2.ModelConfig` from a `DeployedModel` and
prints it with protobuf's text format; `parse` reads one back. The two round-trip:
`parse(render(m)) == m` for every model this module can describe.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from google.protobuf import text_format
from google.protobuf.message import DecodeError
from tritonclient.grpc import model_config_pb2 as pb

from zeroserve.errors import InputError
from zeroserve.spec import TensorSpec

InstanceKind = Literal["KIND_GPU", "KIND_CPU"]
Precision = Literal["FP16", "FP32"]

DEFAULT_MAX_QUEUE_DELAY_US = 0  # dynamic batching's wait: measured by bench/serve.py (see deploy)
VERSION = "1"  # a model folder's one version (`<model>/1/model.*`); a redeploy replaces it
WARMUP_DIR = "warmup"  # Triton reads a model_warmup input_data_file from `<model>/warmup/`


def triton_type(dtype: str) -> str:
    """numpy dtype name -> the config's `TYPE_*` name, through tritonclient's own table (BYTES is TYPE_STRING)."""
    import numpy as np
    from tritonclient.utils import np_to_triton_dtype

    try:
        name = np_to_triton_dtype(np.dtype(dtype))
    except TypeError:
        name = None
    if name is None:
        raise InputError(f"dtype {dtype!r} has no Triton data type")
    return "TYPE_STRING" if name == "BYTES" else f"TYPE_{name}"


def numpy_dtype(type_name: str) -> str:
    """The config's `TYPE_*` name -> numpy dtype name, through tritonclient's own table."""
    import numpy as np
    from tritonclient.utils import triton_to_np_dtype

    wire = "BYTES" if type_name == "TYPE_STRING" else type_name.removeprefix("TYPE_")
    np_type = triton_to_np_dtype(wire)
    if np_type is None:
        raise InputError(f"unsupported data type {type_name}")
    return np.dtype(np_type).name


@dataclass(frozen=True)
class TensorConfig:
    """One input or output as the config declares it (batch axis excluded).

    Args:
        dims: wire dims, -1 where dynamic (`TensorSpec.triton_dims`).
        reshape: the graph's per-sample shape when it differs from the wire's
            (`()` for a per-sample scalar sent as `[batch, 1]`); None when equal.
        allow_ragged_batch: requests whose dims differ may share one execution (the
            embedded engine's `model.py` groups them; the native backends cannot).
    """

    name: str
    dtype: str
    dims: tuple[int, ...]
    reshape: tuple[int, ...] | None = None
    allow_ragged_batch: bool = False

    @classmethod
    def from_spec(cls, spec: TensorSpec) -> TensorConfig:
        return cls(spec.name, spec.dtype, tuple(spec.triton_dims), () if spec.reshaped else None)

    @property
    def graph_dims(self) -> tuple[int, ...]:
        """Per-sample dims the model itself sees, after Triton's reshape."""
        return self.dims if self.reshape is None else self.reshape


@dataclass(frozen=True)
class WarmupInput:
    """One warmup input: a raw little-endian file under `warmup/`, else zeros (or random data if `random`)."""

    dtype: str
    dims: tuple[int, ...]
    file: str | None = None
    random: bool = False


@dataclass(frozen=True)
class Warmup:
    """A `model_warmup` entry: one request of `batch_size` built from `inputs` (by input name)."""

    name: str
    inputs: dict[str, WarmupInput]
    batch_size: int = 1
    count: int = 1


@dataclass(frozen=True)
class DeployedModel:
    """Everything `config.pbtxt` says about one deployed model.

    Args:
        name: Triton model name, `<model>_<format>`.
        backend: `onnxruntime`, `pytorch` (or `python` for the embedded engine's runtime copy).
        max_batch_size: the largest batch Triton forms or accepts.
        max_queue_delay_us: dynamic batching's wait for more requests; None disables batching.
        preferred_batch_sizes: batch sizes dynamic batching prefers to form (empty: any size).
        instance_kind / instance_count: the `instance_group`.
        warmup: one warmup request run at load time, or None.
        tensorrt: ONNX Runtime's TensorRT execution accelerator precision, or None.
        parameters: free-form string `parameters` (used by the embedded engine's runtime copy).
        default_model_filename: the artifact's file name in the version folder when it is not the
            backend's default (`model.onnx`, `model.pt`); a hand-written config may set it.
        platform: the config's `platform` beside `backend` (`torch_aoti`: the pytorch backend's PT2 mode).
    """

    name: str
    backend: str
    max_batch_size: int
    inputs: tuple[TensorConfig, ...]
    outputs: tuple[TensorConfig, ...]
    max_queue_delay_us: int | None = DEFAULT_MAX_QUEUE_DELAY_US
    instance_kind: InstanceKind = "KIND_GPU"
    instance_count: int = 1
    warmup: Warmup | None = None
    tensorrt: Precision | None = None
    parameters: dict[str, str] = field(default_factory=dict)
    preferred_batch_sizes: tuple[int, ...] = ()
    default_model_filename: str | None = None
    platform: str | None = None


# TensorRT engines need a workspace; 1 GiB is ample for the course models and common on small GPUs.
TENSORRT_WORKSPACE_BYTES = str(1 << 30)


def _tensor_pb(t: TensorConfig, message) -> None:
    message.name = t.name
    message.data_type = pb.DataType.Value(triton_type(t.dtype))
    message.dims.extend(t.dims)
    if t.reshape is not None:
        message.reshape.shape.extend(t.reshape)
        message.reshape.SetInParent()  # an empty shape ([]) must still be written: it means "scalar"
    if t.allow_ragged_batch:
        message.allow_ragged_batch = True


def _tensor_from_pb(message) -> TensorConfig:
    try:
        dtype = numpy_dtype(pb.DataType.Name(message.data_type))
    except InputError as exc:
        raise InputError(f"tensor {message.name}: {exc}") from None
    reshape = tuple(message.reshape.shape) if message.HasField("reshape") else None
    return TensorConfig(
        message.name, dtype, tuple(message.dims), reshape, getattr(message, "allow_ragged_batch", False)
    )


def to_proto(model: DeployedModel) -> pb.ModelConfig:
    """The `ModelConfig` protobuf message for `model`."""
    config = pb.ModelConfig(name=model.name, backend=model.backend, max_batch_size=model.max_batch_size)
    if model.platform:
        config.platform = model.platform
    for t in model.inputs:
        _tensor_pb(t, config.input.add())
    for t in model.outputs:
        _tensor_pb(t, config.output.add())
    if model.max_queue_delay_us is not None:
        config.dynamic_batching.max_queue_delay_microseconds = model.max_queue_delay_us
        config.dynamic_batching.preferred_batch_size.extend(model.preferred_batch_sizes)
        config.dynamic_batching.SetInParent()
    group = config.instance_group.add()
    group.kind = pb.ModelInstanceGroup.Kind.Value(model.instance_kind)
    group.count = model.instance_count
    if model.warmup is not None:
        w = config.model_warmup.add(
            name=model.warmup.name, batch_size=model.warmup.batch_size, count=model.warmup.count
        )
        for name, inp in model.warmup.inputs.items():
            entry = w.inputs[name]
            entry.data_type = pb.DataType.Value(triton_type(inp.dtype))
            entry.dims.extend(inp.dims)
            if inp.file is not None:
                entry.input_data_file = inp.file
            elif inp.random:
                entry.random_data = True
            else:
                entry.zero_data = True
    if model.tensorrt is not None:
        acc = config.optimization.execution_accelerators.gpu_execution_accelerator.add(name="tensorrt")
        acc.parameters["precision_mode"] = model.tensorrt
        acc.parameters["max_workspace_size_bytes"] = TENSORRT_WORKSPACE_BYTES
    for key, value in model.parameters.items():
        config.parameters[key].string_value = value
    if model.default_model_filename:
        config.default_model_filename = model.default_model_filename
    return config


def render(model: DeployedModel) -> str:
    """`config.pbtxt` text for `model`, printed from Triton's `ModelConfig` schema."""
    return text_format.MessageToString(to_proto(model))


def parse(text: str) -> DeployedModel:
    """Read `config.pbtxt` text back into a `DeployedModel`, or raise InputError saying why not."""
    config = pb.ModelConfig()
    try:
        text_format.Parse(text, config)
    except (text_format.ParseError, DecodeError) as exc:
        raise InputError(f"config.pbtxt does not parse as a Triton ModelConfig: {exc}") from None
    # A hand-written config may hold several instance groups: the embedded engine runs their instances
    # as one group of the first group's kind (the canonical config is served unchanged elsewhere).
    group = config.instance_group[0] if config.instance_group else None
    count = sum(max(g.count, 1) for g in config.instance_group) if config.instance_group else 1
    warmup = None
    if config.model_warmup:  # the first entry: one warmup request is what the embedded engine runs
        w = config.model_warmup[0]
        inputs = {}
        for name, inp in w.inputs.items():
            kind = inp.WhichOneof("input_data_type")
            try:
                dtype = numpy_dtype(pb.DataType.Name(inp.data_type))
            except InputError as exc:
                raise InputError(f"{config.name}: warmup input {name}: {exc}") from None
            inputs[name] = WarmupInput(
                dtype,
                tuple(inp.dims),
                inp.input_data_file if kind == "input_data_file" else None,
                random=kind == "random_data",
            )
        warmup = Warmup(w.name, inputs, w.batch_size, w.count)
    tensorrt = None
    for acc in config.optimization.execution_accelerators.gpu_execution_accelerator:
        if acc.name == "tensorrt":
            tensorrt = acc.parameters.get("precision_mode", "FP32")
    return DeployedModel(
        name=config.name,
        backend=config.backend or config.platform,
        max_batch_size=config.max_batch_size,
        inputs=tuple(_tensor_from_pb(t) for t in config.input),
        outputs=tuple(_tensor_from_pb(t) for t in config.output),
        max_queue_delay_us=(
            config.dynamic_batching.max_queue_delay_microseconds if config.HasField("dynamic_batching") else None
        ),
        instance_kind=pb.ModelInstanceGroup.Kind.Name(group.kind) if group else "KIND_GPU",
        instance_count=count,
        warmup=warmup,
        tensorrt=tensorrt,
        parameters={k: v.string_value for k, v in config.parameters.items()},
        preferred_batch_sizes=(
            tuple(config.dynamic_batching.preferred_batch_size) if config.HasField("dynamic_batching") else ()
        ),
        default_model_filename=config.default_model_filename or None,
        platform=config.platform if config.backend and config.platform else None,
    )

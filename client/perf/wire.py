"""The load generator's hot path: requests encoded once into wire bytes, re-sent, answers checked cheaply.

HTTP: the KServe v2 JSON header plus the binary tensor extension (the body tritonclient's own
`generate_request_body` builds) behind a fixed HTTP/1.1 head, over persistent keep-alive
connections with TCP_NODELAY, one request in flight per connection. gRPC: a serialized
`ModelInferRequest` through grpcio's generic calls: unary `ModelInfer`, or with `streaming` one
`ModelStreamInfer` stream per request in flight (as perf_analyzer's `--streaming`).

Every answer is checked for status and byte size; the first answer to each encoded request, and
one in SAMPLE_EVERY after it, is decoded with tritonclient and validated against the expected
output names, datatypes and shapes. A valid first answer fixes the byte size the others must have
(Triton's answer to a fixed request is the same bytes long every time).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

SAMPLE_EVERY = 100  # one answer in this many is fully decoded and validated
MAX_HEAD_BYTES = 64 * 1024  # an HTTP response head longer than this is not Triton's
INFER_METHOD = "/inference.GRPCInferenceService/ModelInfer"
STREAM_METHOD = "/inference.GRPCInferenceService/ModelStreamInfer"
GRPC_MAX_MESSAGE = 2**31 - 1  # as tritonclient: a large batch must not hit grpcio's 4 MB default
GRPC_OPTIONS = [
    ("grpc.max_send_message_length", GRPC_MAX_MESSAGE),
    ("grpc.max_receive_message_length", GRPC_MAX_MESSAGE),
]

# Failure kinds, as counted in a perf record's `failures`.
KIND_CONNECTION = "connection"  # refused, reset or closed: no answer
KIND_TIMEOUT = "timeout"  # no answer within --timeout
KIND_WRONG_SIZE = "wrong_size"  # a success status but not the byte size a valid answer has
KIND_BAD_OUTPUT = "bad_output"  # a sampled answer whose outputs are missing or have the wrong shape or type
KIND_PROTOCOL = "protocol"  # an HTTP answer this client cannot read (no Content-Length, oversized head)


class WireFailure(Exception):
    """One request that did not get a valid answer; `kind` is what the record counts it under."""

    def __init__(self, kind: str, message: str):
        super().__init__(message)
        self.kind = kind


# ---------------------------------------------------------------- what a valid answer holds


@dataclass(frozen=True)
class OutputSpec:
    """One output a valid answer carries: name, Triton datatype, wire shape (batch included)."""

    name: str
    datatype: str
    shape: tuple[int, ...]


def expected_outputs(names: list[str], reference: list[np.ndarray]) -> tuple[OutputSpec, ...]:
    """The outputs every answer must match, from a reference answer to the same request."""
    from tritonclient.utils import np_to_triton_dtype

    return tuple(OutputSpec(n, np_to_triton_dtype(a.dtype), tuple(a.shape)) for n, a in zip(names, reference))


def _validate(get_output, as_numpy, expected: tuple[OutputSpec, ...], in_shm: bool) -> None:
    """Raise WireFailure(bad_output) unless every expected output is there with its datatype and shape."""
    for out in expected:
        meta = get_output(out.name)
        if meta is None:
            raise WireFailure(KIND_BAD_OUTPUT, f"the answer has no output {out.name}")
        datatype, shape = meta
        if datatype != out.datatype or tuple(shape) != out.shape:
            raise WireFailure(
                KIND_BAD_OUTPUT,
                f"output {out.name} is {datatype} {list(shape)}, expected {out.datatype} {list(out.shape)}",
            )
        if not in_shm:
            arr = as_numpy(out.name)
            if arr is None or arr.shape != out.shape:
                raise WireFailure(
                    KIND_BAD_OUTPUT,
                    f"output {out.name} holds {0 if arr is None else arr.size} "
                    f"values, expected shape {list(out.shape)}",
                )


def validate_http(body: bytes, header_length: int | None, expected: tuple[OutputSpec, ...], in_shm: bool) -> None:
    """Decode an HTTP answer with tritonclient and validate it (WireFailure when it is not valid)."""
    from tritonclient.http import InferResult

    try:
        result = InferResult.from_response_body(body, header_length=header_length)
    except Exception as exc:  # noqa: BLE001 - any decoding failure is a bad answer
        raise WireFailure(KIND_BAD_OUTPUT, f"the answer does not decode: {exc}") from None

    def get_output(name):
        o = result.get_output(name)
        return None if o is None else (o.get("datatype"), o.get("shape", ()))

    try:
        _validate(get_output, result.as_numpy, expected, in_shm)
    except (ValueError, TypeError) as exc:  # a binary part of the wrong length
        raise WireFailure(KIND_BAD_OUTPUT, f"the answer's tensors do not decode: {exc}") from None


def validate_grpc(response, expected: tuple[OutputSpec, ...], in_shm: bool) -> None:
    """Validate a ModelInferResponse (message or serialized bytes) through tritonclient's InferResult."""
    from tritonclient.grpc import InferResult, service_pb2

    if isinstance(response, bytes):
        try:
            response = service_pb2.ModelInferResponse.FromString(response)
        except Exception as exc:  # noqa: BLE001 - protobuf raises several types: all mean a bad answer
            raise WireFailure(KIND_BAD_OUTPUT, f"the answer does not decode: {exc}") from None
    result = InferResult(response)

    def get_output(name):
        o = result.get_output(name)
        return None if o is None else (o.datatype, tuple(o.shape))

    try:
        _validate(get_output, result.as_numpy, expected, in_shm)
    except (ValueError, TypeError) as exc:
        raise WireFailure(KIND_BAD_OUTPUT, f"the answer's tensors do not decode: {exc}") from None


@dataclass
class Template:
    """One pre-encoded request, re-sent as is, and what its answers must look like.

    `size` is the byte size of a valid answer, fixed by the first answer that decodes and validates.
    """

    payload: bytes
    expected: tuple[OutputSpec, ...]
    in_shm: bool = False
    size: int | None = None
    answers: int = 0

    def needs_decode(self) -> bool:
        self.answers += 1
        return self.size is None or self.answers % SAMPLE_EVERY == 0


# ---------------------------------------------------------------- encoding


def encode_http(triton_name: str, host: str, inputs: list, outputs: list) -> bytes:
    """A complete HTTP/1.1 infer request (head + KServe v2 JSON header + binary tensors).

    `inputs`/`outputs` are tritonclient.http InferInput/InferRequestedOutput objects (with shared
    memory set on them where used); tritonclient builds the body exactly as it sends it.
    """
    from tritonclient.http import InferenceServerClient

    body, json_size = InferenceServerClient.generate_request_body(inputs, outputs=outputs)
    head = [
        f"POST /v2/models/{triton_name}/infer HTTP/1.1",
        f"Host: {host}",
        "Connection: keep-alive",
        f"Content-Length: {len(body)}",
    ]
    if json_size is not None:
        head += ["Content-Type: application/octet-stream", f"Inference-Header-Content-Length: {json_size}"]
    else:
        head.append("Content-Type: application/json")
    return ("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body


def encode_grpc(triton_name: str, inputs: list, outputs: list) -> bytes:
    """A serialized ModelInferRequest: tensors in `raw_input_contents`, or shared-memory parameters.

    `inputs`/`outputs` are tritonclient.grpc InferInput/InferRequestedOutput objects.
    """
    from tritonclient.grpc import service_pb2

    request = service_pb2.ModelInferRequest(model_name=triton_name)
    for inp in inputs:
        request.inputs.append(inp._get_tensor())  # tritonclient's own tensor message (shape, datatype, shm)
        content = inp._get_content()
        if content is not None:
            request.raw_input_contents.append(content)
    for out in outputs:
        request.outputs.append(out._get_tensor())
    return request.SerializeToString()


# ---------------------------------------------------------------- checking answers


def check_http(template: Template, answer: tuple[int, int | None, bytes]) -> None:
    """Raise WireFailure unless the answer is a success of the right size (decoded when sampled)."""
    status, header_length, body = answer
    if status != 200:
        raise WireFailure(f"http_{status}", _http_error_text(body))
    if template.needs_decode():
        validate_http(body, header_length, template.expected, template.in_shm)
        if template.size is None:
            template.size = len(body)
    if len(body) != template.size:
        raise WireFailure(KIND_WRONG_SIZE, f"the answer is {len(body)} bytes, a valid one {template.size}")


def _http_error_text(body: bytes) -> str:
    import json

    try:
        return str(json.loads(body).get("error", ""))[:300] or body[:300].decode("utf-8", "replace")
    except (ValueError, AttributeError):
        return body[:300].decode("utf-8", "replace")


def check_grpc(template: Template, body: bytes) -> None:
    """Raise WireFailure unless a ModelInfer answer has the right size (decoded when sampled)."""
    if template.needs_decode():
        validate_grpc(body, template.expected, template.in_shm)
        if template.size is None:
            template.size = len(body)
    if len(body) != template.size:
        raise WireFailure(KIND_WRONG_SIZE, f"the answer is {len(body)} bytes, a valid one {template.size}")


def check_stream(template: Template, body: bytes) -> None:
    """The same for a ModelStreamInferResponse; an in-band `error_message` is a failure of kind grpc_stream."""
    decode = template.needs_decode()
    if not decode and len(body) == template.size:
        return
    from tritonclient.grpc import service_pb2

    try:
        msg = service_pb2.ModelStreamInferResponse.FromString(body)
    except Exception as exc:  # noqa: BLE001 - protobuf raises several types: all mean a bad answer
        raise WireFailure(KIND_BAD_OUTPUT, f"the stream answer does not decode: {exc}") from None
    if msg.error_message:
        raise WireFailure("grpc_stream", msg.error_message[:300])
    if decode:
        validate_grpc(msg.infer_response, template.expected, template.in_shm)
        if template.size is None:
            template.size = len(body)
    if len(body) != template.size:
        raise WireFailure(KIND_WRONG_SIZE, f"the answer is {len(body)} bytes, a valid one {template.size}")

"""The wire-level generator's bytes and checks: what is sent decodes to exactly the intended tensors,
and every kind of bad answer is caught (no server needed; the real server's side is tests/e2e)."""

from __future__ import annotations

import asyncio
import json

import numpy as np
import pytest

from zeroserve import registry
from zeroserve.client.perf import generator as G
from zeroserve.client.perf import wire
from zeroserve.client.perf.transport import HttpConnection, HttpSender
from zeroserve.client.perf.wire import WireFailure
from zeroserve.client.values import to_wire

NAME_GRU = registry.get("name_gru")
CNN = registry.get("cnn_mnist")


def _plan(spec, protocol, arrays, **kw) -> G.LoadPlan:
    return G.LoadPlan(
        G.Tensors(spec.inputs, spec.outputs),
        spec.triton_name("onnx"),
        protocol,
        ["127.0.0.1:9"],
        arrays,
        1.0,
        concurrency=1,
        **kw,
    )


def _split_http(payload: bytes) -> tuple[list[str], dict, bytes]:
    head, _, body = payload.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    headers = {k.lower(): v.strip() for k, v in (line.split(":", 1) for line in lines[1:])}
    assert int(headers["content-length"]) == len(body)
    n = int(headers["inference-header-content-length"])
    return lines, json.loads(body[:n]), body[n:]


@pytest.mark.parametrize("spec", [CNN, NAME_GRU], ids=lambda s: s.name)
def test_http_bytes_decode_to_exactly_the_intended_tensors(spec):
    arrays = spec.random_inputs(3, np.random.default_rng(1))
    ((template,),) = G.build_templates(_plan(spec, "http", arrays))
    lines, header, binary = _split_http(template.payload)
    assert lines[0] == f"POST /v2/models/{spec.triton_name('onnx')}/infer HTTP/1.1"
    offset = 0
    for t, want, entry in zip(spec.inputs, to_wire(spec, arrays), header["inputs"]):
        assert entry["name"] == t.name and entry["shape"] == list(want.shape)
        size = entry["parameters"]["binary_data_size"]
        got = np.frombuffer(binary[offset : offset + size], dtype=want.dtype).reshape(entry["shape"])
        offset += size
        assert np.array_equal(got, want)  # bit for bit, lengths__1 in its wire shape [batch, 1]
    assert offset == len(binary)
    assert [o["name"] for o in header["outputs"]] == [t.name for t in spec.outputs]
    assert all(o["parameters"]["binary_data"] for o in header["outputs"])


@pytest.mark.parametrize("spec", [CNN, NAME_GRU], ids=lambda s: s.name)
def test_grpc_bytes_decode_to_exactly_the_intended_tensors(spec):
    from tritonclient.grpc import service_pb2
    from tritonclient.utils import triton_to_np_dtype

    arrays = spec.random_inputs(2, np.random.default_rng(2))
    ((template,),) = G.build_templates(_plan(spec, "grpc", arrays))
    request = service_pb2.ModelInferRequest.FromString(template.payload)
    assert request.model_name == spec.triton_name("onnx")
    for t, want, tensor, raw in zip(spec.inputs, to_wire(spec, arrays), request.inputs, request.raw_input_contents):
        assert tensor.name == t.name and list(tensor.shape) == list(want.shape)
        got = np.frombuffer(raw, dtype=triton_to_np_dtype(tensor.datatype)).reshape(tensor.shape)
        assert np.array_equal(got, want)
    assert [o.name for o in request.outputs] == [t.name for t in spec.outputs]


def test_shared_memory_requests_name_their_regions_and_carry_no_tensor_bytes():
    from tritonclient.grpc import service_pb2

    arrays = CNN.random_inputs(1, np.random.default_rng(0))
    regions = [("out0", [(0, 40)]), ("out1", [(0, 40)])]
    plan = _plan(CNN, "grpc", arrays, input_region=("in", [(0, 3136)]), output_regions=regions)
    ((a, b),) = G.build_templates(plan)
    for template, region in ((a, "out0"), (b, "out1")):
        request = service_pb2.ModelInferRequest.FromString(template.payload)
        assert not request.raw_input_contents and template.in_shm
        assert request.inputs[0].parameters["shared_memory_region"].string_param == "in"
        assert request.outputs[0].parameters["shared_memory_region"].string_param == region
    from dataclasses import replace

    ((h, _),) = G.build_templates(replace(plan, protocol="http"))
    head, _, body = h.payload.partition(b"\r\n\r\n")
    assert b"Inference-Header-Content-Length" not in head  # an all-JSON body: no tensor bytes at all
    header = json.loads(body)
    assert header["inputs"][0]["parameters"]["shared_memory_region"] == "in"
    assert header["outputs"][0]["parameters"]["shared_memory_region"] == "out0"


# ---------------------------------------------------------------- checking answers


EXPECTED = (wire.OutputSpec("log_probs__0", "FP32", (1, 10)),)


def _http_answer(values: np.ndarray, shape=None, status=200) -> tuple[int, int, bytes]:
    header = json.dumps(
        {
            "model_name": "m",
            "model_version": "1",
            "outputs": [
                {
                    "name": "log_probs__0",
                    "datatype": "FP32",
                    "shape": list(shape or values.shape),
                    "parameters": {"binary_data_size": values.nbytes},
                }
            ],
        }
    ).encode()
    return status, len(header), header + values.tobytes()


def test_a_valid_answer_fixes_the_size_and_later_answers_are_checked_against_it():
    template = wire.Template(b"", EXPECTED)
    good = _http_answer(np.zeros((1, 10), np.float32))
    wire.check_http(template, good)
    assert template.size == len(good[2])
    for _ in range(3 * wire.SAMPLE_EVERY):
        wire.check_http(template, good)
    short = _http_answer(np.zeros((1, 9), np.float32), shape=(1, 10))
    with pytest.raises(WireFailure) as info:
        wire.check_http(template, short)
    assert info.value.kind == wire.KIND_WRONG_SIZE


def test_an_error_status_is_counted_under_its_code_with_the_servers_message():
    template = wire.Template(b"", EXPECTED)
    with pytest.raises(WireFailure) as info:
        wire.check_http(template, (500, None, b'{"error":"failed to parse the request JSON buffer"}'))
    assert info.value.kind == "http_500" and "failed to parse" in str(info.value)
    assert template.size is None  # an error never becomes the reference


@pytest.mark.parametrize(
    "shape,values",
    [
        ((1, 11), np.zeros((1, 11), np.float32)),  # wrong shape
        ((1, 10), np.zeros((1, 5), np.float32)),
    ],
)  # too few bytes for the shape
def test_a_first_answer_with_the_wrong_outputs_is_a_bad_output(shape, values):
    with pytest.raises(WireFailure) as info:
        wire.check_http(wire.Template(b"", EXPECTED), _http_answer(values, shape=shape))
    assert info.value.kind == wire.KIND_BAD_OUTPUT


def test_grpc_answers_are_validated_through_tritonclient():
    from tritonclient.grpc import service_pb2

    def answer(n):
        out = service_pb2.ModelInferResponse.InferOutputTensor(name="log_probs__0", datatype="FP32", shape=[1, n])
        return service_pb2.ModelInferResponse(
            model_name="m", outputs=[out], raw_output_contents=[np.zeros(n, np.float32).tobytes()]
        )

    template = wire.Template(b"", EXPECTED)
    wire.check_grpc(template, answer(10).SerializeToString())
    with pytest.raises(WireFailure, match="bytes, a valid one") as info:
        wire.check_grpc(template, answer(12).SerializeToString())
    assert info.value.kind == wire.KIND_WRONG_SIZE
    stream = wire.Template(b"", EXPECTED)
    wire.check_stream(stream, service_pb2.ModelStreamInferResponse(infer_response=answer(10)).SerializeToString())
    with pytest.raises(WireFailure) as info:
        wire.check_stream(stream, service_pb2.ModelStreamInferResponse(error_message="boom").SerializeToString())
    assert info.value.kind == "grpc_stream" and str(info.value) == "boom"


# ---------------------------------------------------------------- the HTTP connection against a scripted peer


async def _scripted_server(chunks_per_request: list[list[bytes]], close_after: int | None = None):
    """A loopback server answering each request with the given chunks (sent separately)."""
    served = {"n": 0}

    async def handle(reader, writer):
        while served["n"] < len(chunks_per_request):
            head = await reader.readuntil(b"\r\n\r\n")
            length = int([h for h in head.split(b"\r\n") if h.lower().startswith(b"content-length")][0].split(b":")[1])
            await reader.readexactly(length)
            if close_after is not None and served["n"] == close_after:
                writer.close()
                return
            for chunk in chunks_per_request[served["n"]]:
                writer.write(chunk)
                await writer.drain()
                await asyncio.sleep(0.01)
            served["n"] += 1
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1]


def _response(status: int, body: bytes, header_length: int | None = None) -> bytes:
    head = f"HTTP/1.1 {status} OK\r\nContent-Type: application/octet-stream\r\nContent-Length: {len(body)}\r\n"
    if header_length is not None:
        head += f"Inference-Header-Content-Length: {header_length}\r\n"
    return head.encode() + b"\r\n" + body


def test_http_connection_reads_answers_split_anywhere_and_counts_by_kind():
    from zeroserve.client.perf import load

    status, hl, body = _http_answer(np.arange(10, dtype=np.float32).reshape(1, 10))
    whole = _response(200, body, hl)
    wrong = _response(200, body + b"xx", hl)
    error = _response(400, b'{"error":"unexpected shape for input image__0"}')

    async def main():
        server, port = await _scripted_server([[whole[:7], whole[7:40], whole[40:]], [whole], [wrong], [error]])
        recorder = load.Recorder()
        sender = HttpSender([f"127.0.0.1:{port}"], 2.0, recorder)
        await sender.start()
        template = wire.Template(b"POST /x HTTP/1.1\r\nContent-Length: 0\r\n\r\n", EXPECTED)
        kinds = []
        for _ in range(5):
            try:
                await sender.send(0, template, owner=0)
                kinds.append("ok")
            except WireFailure as exc:
                kinds.append(exc.kind)
        await sender.close()
        server.close()
        return kinds

    kinds = asyncio.run(main())
    # the 5th request finds the connection closed by the server after its 4 answers
    assert kinds == ["ok", "ok", wire.KIND_WRONG_SIZE, "http_400", wire.KIND_CONNECTION]


def test_a_request_without_an_answer_times_out_and_its_connection_is_dropped():
    async def main():
        server = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)  # accepts, never answers
        port = server.sockets[0].getsockname()[1]
        loop = asyncio.get_running_loop()
        _, conn = await loop.create_connection(HttpConnection, "127.0.0.1", port)
        sender = HttpSender([f"127.0.0.1:{port}"], 0.2, None)
        sender.live.add(conn)
        fut = conn.request(b"GET / HTTP/1.1\r\n\r\n")
        sender.expire(conn.sent_at + 1e-6)  # as the watchdog does once `timeout` has passed
        with pytest.raises(WireFailure) as info:
            await fut
        server.close()
        return info.value.kind, conn.closed

    assert asyncio.run(main()) == (wire.KIND_TIMEOUT, True)

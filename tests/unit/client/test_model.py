"""Models known only from a server's config: generated data for every Triton datatype, --shape,
perf_analyzer's JSON input data, the wire encoding (no server needed; through one:
tests/integration/serve/test_any_model.py)."""

from __future__ import annotations

import base64
import json

import numpy as np
import pytest

from zeroserve.client import input_files
from zeroserve.client import model as T
from zeroserve.client.connection import build_request, tritonclient_module
from zeroserve.client.perf.wire import encode_grpc, encode_http
from zeroserve.errors import InputError

DATATYPES = (
    "BOOL",
    "UINT8",
    "UINT16",
    "UINT32",
    "UINT64",
    "INT8",
    "INT16",
    "INT32",
    "INT64",
    "FP16",
    "FP32",
    "FP64",
    "BF16",
    "BYTES",
)


def _target(*inputs, max_batch: int = 4) -> T.Target:
    return T.Target("m", "m", tuple(inputs), (T.ServedTensor("out", "FP32", (1,)),), max_batch, resolved="server")


def test_served_tensors_read_http_and_grpc_configs():
    http = {
        "name": "m",
        "max_batch_size": 8,
        "input": [
            {"name": "x", "data_type": "TYPE_FP32", "dims": [-1, 3]},
            {"name": "s", "data_type": "TYPE_STRING", "dims": [1]},
        ],
        "output": [{"name": "y", "data_type": "TYPE_INT64", "dims": [2]}],
    }
    grpc = {
        "config": {
            **http,
            "max_batch_size": "8",
            "input": [{**t, "dims": [str(d) for d in t["dims"]]} for t in http["input"]],
        }
    }
    for config in (http, grpc):
        ins, outs, max_batch = T.served_tensors(config)
        assert [(t.name, t.datatype, t.dims) for t in ins] == [("x", "FP32", (-1, 3)), ("s", "BYTES", (1,))]
        assert outs[0].datatype == "INT64" and max_batch == 8
    assert T.served_tensors({"input": [], "output": []})[2] == 0  # max_batch_size missing: 0


@pytest.mark.parametrize("mode", ["random", "zero"])
@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_every_datatype_generates_and_encodes(mode, protocol):
    """random and zero data of every Triton datatype, BYTES and BF16 included, encode into a request."""
    inputs = [T.ServedTensor(f"in_{d.lower()}", d, (-1, 2)) for d in DATATYPES]
    tgt = _target(*inputs)
    arrays = T.generated_inputs(tgt, 3, mode, {t.name: (5, 2) for t in inputs})
    for t, a in zip(inputs, arrays):
        assert a.shape == (3, 5, 2) and a.dtype == t.dtype
        if mode == "zero" and t.datatype != "BYTES":
            assert not np.any(a.astype(np.float64))
    assert np.all([len(v) == T.STRING_LENGTH for v in arrays[-1].reshape(-1)]) or mode == "zero"
    arrays = T.validate(tgt, arrays)
    ins, outs = build_request(tritonclient_module(protocol), tgt, arrays)
    payload = encode_http("m", "h:1", ins, outs) if protocol == "http" else encode_grpc("m", ins, outs)
    for d in DATATYPES:
        assert f"in_{d.lower()}".encode() in payload


def test_unbatched_model_has_no_batch_axis():
    tgt = _target(T.ServedTensor("v", "FP32", (2, 3)), max_batch=0)
    (v,) = T.generated_inputs(tgt, 1, "random", {})
    assert v.shape == (2, 3)
    with pytest.raises(InputError, match=r"must have shape \(2, 3\)"):
        T.validate(tgt, [np.zeros((1, 2, 3), np.float32)])


def test_shape_flag_is_parsed_and_checked():
    assert T.parse_shapes(["x:1,4", "y:7"]) == {"x": (1, 4), "y": (7,)}
    for bad in ("x", "x:", "x:0", "x:a,b", ":3"):
        with pytest.raises(InputError, match="NAME:D1,D2"):
            T.parse_shapes([bad])
    tgt = _target(T.ServedTensor("x", "FP32", (-1, 4)))
    with pytest.raises(
        InputError, match=r"input x of m has a dynamic dim \[-1, 4\]: give its shape with --shape x:1,4"
    ):
        T.generated_inputs(tgt, 1, "random", {})
    with pytest.raises(InputError, match="does not fit"):
        T.generated_inputs(tgt, 1, "random", {"x": (3, 5)})
    with pytest.raises(InputError, match="not an input of m"):
        T.generated_inputs(tgt, 1, "random", {"z": (3, 4)})


def test_perf_analyzer_json_content_flat_and_b64(tmp_path):
    tgt = _target(
        T.ServedTensor("x", "FP32", (-1,)), T.ServedTensor("k", "INT64", (3,)), T.ServedTensor("s", "BYTES", (2,))
    )
    from tritonclient.utils import serialize_byte_tensor

    b64_bytes = base64.b64encode(serialize_byte_tensor(np.array([b"c", b"d"], dtype=object)).item()).decode()
    data = {
        "data": [
            {"x": {"content": [1, 2], "shape": [2]}, "k": [1, 2, 3], "s": ["a", "b"]},
            {
                "x": {
                    "content": {"b64": base64.b64encode(np.array([3, 4], np.float32).tobytes()).decode()},
                    "shape": [2],
                },
                "k": {"content": [4, 5, 6]},
                "s": {"b64": b64_bytes},
            },
        ]
    }
    path = tmp_path / "in.json"
    path.write_text(json.dumps(data))
    x, k, s = T.validate(tgt, input_files.read_input_file(tgt, path))
    assert x.tolist() == [[1, 2], [3, 4]] and x.dtype == np.float32
    assert k.tolist() == [[1, 2, 3], [4, 5, 6]] and k.dtype == np.int64
    assert s.tolist() == [[b"a", b"b"], [b"c", b"d"]]
    # --shape stands in for a missing "shape"; without either a dynamic input is an error naming it
    path.write_text(json.dumps({"data": [{"x": [1, 2, 3], "k": [1, 2, 3], "s": ["a", "b"]}]}))
    assert input_files.read_input_file(tgt, path, {"x": (3,)})[0].shape == (1, 3)
    with pytest.raises(InputError, match=r"data\[0\]\.x: input x has a dynamic dim.*--shape x:"):
        input_files.read_input_file(tgt, path)
    path.write_text(json.dumps({"data": [{"x": [1.5], "k": [1.5, 2, 3], "s": ["a", "b"]}]}))
    with pytest.raises(InputError, match="would change.*--cast"):  # the registry's rule: exact, or --cast
        T.validate(tgt, input_files.read_input_file(tgt, path, {"x": (1,)}))
    assert T.validate(tgt, input_files.read_input_file(tgt, path, {"x": (1,)}), cast=True)[1].tolist() == [[1, 2, 3]]
    path.write_text(json.dumps({"data": [{"x": [float("nan")], "k": [1, 2, 3], "s": ["a", "b"]}]}))
    with pytest.raises(InputError, match="non-finite.*--allow-nonfinite"):
        T.validate(tgt, input_files.read_input_file(tgt, path, {"x": (1,)}))
    path.write_text(json.dumps({"data": [{"x": [1.0], "k": [1, 2], "s": ["a", "b"]}]}))
    with pytest.raises(InputError, match=r"2 values do not fill shape \[3\]"):
        input_files.read_input_file(tgt, path, {"x": (1,)})


def test_npz_keyed_by_input_name(tmp_path):
    tgt = _target(T.ServedTensor("x", "FP32", (-1,)), T.ServedTensor("k", "INT64", (3,)))
    np.savez(tmp_path / "in.npz", x=np.ones((2, 5), np.float32), k=np.ones((2, 3), np.int64))
    x, k = T.validate(tgt, input_files.read_input_file(tgt, tmp_path / "in.npz"))
    assert x.shape == (2, 5) and k.dtype == np.int64
    assert T.validate(tgt, [np.ones((2, 5), np.float32), np.ones((2, 3), np.float32)])[1].dtype == np.int64  # exact
    with pytest.raises(InputError, match="k is float32 but m takes int64.*--cast"):
        T.validate(tgt, [np.ones((2, 5), np.float32), np.full((2, 3), 1.5, np.float32)])


def test_perf_takes_the_first_entries_as_its_rows(tmp_path):
    """perf_analyzer's documented example: entries of different shapes; perf sends the first batch_size."""
    tgt = _target(T.ServedTensor("INPUT", "INT32", (-1, -1)))
    path = tmp_path / "var.json"
    path.write_text(
        json.dumps(
            {
                "data": [
                    {"INPUT": {"content": [1] * 16, "shape": [2, 8]}},
                    {"INPUT": {"content": [1] * 16, "shape": [8, 2]}},
                ]
            }
        )
    )
    assert input_files.read_input_file(tgt, path, rows=1)[0].shape == (1, 2, 8)
    for rows in (None, 2):  # every entry (infer), or a batch reaching the second entry's shape
        with pytest.raises(InputError, match="different shapes"):
            input_files.read_input_file(tgt, path, rows=rows)
    assert (
        input_files.perf_analyzer_entries(path) == 2
        and input_files.perf_analyzer_entries(tmp_path / "none.json") is None
    )

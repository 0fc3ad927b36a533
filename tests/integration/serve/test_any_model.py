"""Models no registry entry describes, through the real embedded Triton server and `zeroserve client`.

The repository is written by hand here, as a user of another tool would: `blend` (ONNX, two inputs
of different dtypes, one of them with a dynamic dim, two outputs, batching, no optional fields),
`flat` (max_batch_size 0, an `onnxruntime_onnx` platform and a `default_model_filename`), and two
folders the engine cannot serve (another backend; a missing artifact; a file that is not ONNX),
reported by name while the others serve. infer and perf reach them by their Triton names over HTTP and gRPC.
One server for the module.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from typer.testing import CliRunner

pytestmark = pytest.mark.slow

BLEND_CONFIG = """
name: "blend"
backend: "onnxruntime"
max_batch_size: 8
input [
  { name: "x" data_type: TYPE_FP32 dims: [ -1 ] },
  { name: "k" data_type: TYPE_INT64 dims: [ 3 ] }
]
output [
  { name: "y" data_type: TYPE_FP32 dims: [ -1 ] },
  { name: "s" data_type: TYPE_INT64 dims: [ 1 ] }
]
"""

FLAT_CONFIG = """
platform: "onnxruntime_onnx"
default_model_filename: "net.onnx"
max_batch_size: 0
input { name: "v" data_type: TYPE_FP32 dims: [ 2, 3 ] }
output { name: "w" data_type: TYPE_FP32 dims: [ 3 ] }
instance_group [ { kind: KIND_CPU count: 1 }, { kind: KIND_CPU count: 1 } ]
"""


def _blend_onnx() -> bytes:
    """y = 2 * x (float32 [batch, time]); s = sum of k over its row (int64 [batch, 1])."""
    from onnx import TensorProto, helper

    two = helper.make_tensor("two", TensorProto.FLOAT, [], [2.0])
    axes = helper.make_tensor("axes", TensorProto.INT64, [1], [1])
    graph = helper.make_graph(
        [helper.make_node("Mul", ["x", "two"], ["y"]), helper.make_node("ReduceSum", ["k", "axes"], ["s"], keepdims=1)],
        "blend",
        [
            helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", "time"]),
            helper.make_tensor_value_info("k", TensorProto.INT64, ["batch", 3]),
        ],
        [
            helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", "time"]),
            helper.make_tensor_value_info("s", TensorProto.INT64, ["batch", 1]),
        ],
        initializer=[two, axes],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=9).SerializeToString()


def _flat_onnx() -> bytes:
    """w = column sums of v (float32 [2, 3] -> [3]): an output whose first dim is not the input's."""
    from onnx import TensorProto, helper

    axes = helper.make_tensor("axes", TensorProto.INT64, [1], [0])
    graph = helper.make_graph(
        [helper.make_node("ReduceSum", ["v", "axes"], ["w"], keepdims=0)],
        "flat",
        [helper.make_tensor_value_info("v", TensorProto.FLOAT, [2, 3])],
        [helper.make_tensor_value_info("w", TensorProto.FLOAT, [3])],
        initializer=[axes],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=9).SerializeToString()


TAG_CONFIG = """
backend: "onnxruntime"
max_batch_size: 4
input { name: "s" data_type: TYPE_STRING dims: [ 2 ] }
output { name: "t" data_type: TYPE_STRING dims: [ 2 ] }
"""


def _tag_onnx() -> bytes:
    """t = s: strings in, the same strings out (BYTES on the wire)."""
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Identity", ["s"], ["t"])],
        "tag",
        [helper.make_tensor_value_info("s", TensorProto.STRING, ["batch", 2])],
        [helper.make_tensor_value_info("t", TensorProto.STRING, ["batch", 2])],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=9).SerializeToString()


def _double_onnx(batch="batch") -> bytes:
    """y = 2 * x (float32 [batch, 3]); with a fixed first dim it cannot batch."""
    from onnx import TensorProto, helper

    two = helper.make_tensor("two", TensorProto.FLOAT, [], [2.0])
    graph = helper.make_graph(
        [helper.make_node("Mul", ["x", "two"], ["y"])],
        "double",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch, 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [batch, 3])],
        initializer=[two],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=9).SerializeToString()


def _folder(repo: Path, name: str, config: str | None, files: dict[str, bytes]) -> None:
    (repo / name / "1").mkdir(parents=True)
    if config is not None:  # None: no config.pbtxt at all (Triton auto-completes an ONNX model)
        (repo / name / "config.pbtxt").write_text(config)
    for file, data in files.items():
        (repo / name / "1" / file).write_bytes(data)


@pytest.fixture(scope="module")
def any_server(tmp_path_factory, serve_cache, free_ports):
    repo = tmp_path_factory.mktemp("hand_written_repository")
    _folder(repo, "blend", BLEND_CONFIG, {"model.onnx": _blend_onnx()})
    _folder(repo, "flat", FLAT_CONFIG, {"net.onnx": _flat_onnx()})
    _folder(repo, "tag", TAG_CONFIG, {"model.onnx": _tag_onnx()})
    _folder(
        repo,
        "saved_tf",
        'name: "saved_tf"\nplatform: "tensorflow_savedmodel"\nmax_batch_size: 4\n'
        'input { name: "a" data_type: TYPE_FP32 dims: [ 1 ] }\noutput { name: "b" data_type: TYPE_FP32 dims: [ 1 ] }\n',
        {"model.savedmodel": b""},
    )
    _folder(repo, "no_file", BLEND_CONFIG.replace('"blend"', '"no_file"'), {})
    _folder(repo, "junk", BLEND_CONFIG.replace('"blend"', '"junk"'), {"model.onnx": b"\x08junk, not a graph"})
    _folder(repo, "auto", None, {"model.onnx": _double_onnx()})  # Triton's auto-complete, as a user relies on
    _folder(repo, "auto_mbs", 'backend: "onnxruntime"\nmax_batch_size: 2\n', {"model.onnx": _double_onnx()})
    _folder(repo, "auto_fixed", None, {"model.onnx": _double_onnx(batch=2)})
    _folder(repo, "auto_bad", 'backend: "onnxruntime"\nmax_batch_size: 8\n', {"model.onnx": _double_onnx(batch=2)})
    _folder(repo, "auto_pt", 'backend: "pytorch"\nmax_batch_size: 8\n', {"model.pt": b"PK\x05\x06" + b"\0" * 18})
    from zeroserve.serve.server import start_server

    http, grpc, metrics = free_ports()
    server = start_server(
        repo, http_port=http, grpc_port=grpc, metrics_port=metrics, allow_client_shm=True
    )  # the BYTES-in-shared-memory perf test
    yield SimpleNamespace(
        host="127.0.0.1", http_port=http, grpc_port=grpc, models=list(server.state.models), handle=server
    )
    server.stop()


def cli(*args: str):
    from zeroserve.app.cli import app

    return CliRunner().invoke(app, ["client", *args])


def ports(s) -> list[str]:
    return ["--host", s.host, "--http-port", str(s.http_port), "--grpc-port", str(s.grpc_port)]


AUTO = ["auto", "auto_fixed", "auto_mbs"]
UNSERVABLE = {"saved_tf", "no_file", "junk", "auto_bad", "auto_pt"}


def test_unservable_folders_are_reported_and_the_others_serve(any_server, tmp_path):
    assert sorted(any_server.models) == sorted(["blend", "flat", "tag", *AUTO])
    unservable = any_server.handle.state.unservable
    assert set(unservable) == UNSERVABLE
    assert "does not batch" in unservable["auto_bad"] and "max_batch_size 8" in unservable["auto_bad"]
    assert "pytorch backend does not complete them" in unservable["auto_pt"]
    assert "model.onnx" in unservable["junk"]
    from zeroserve.serve.status import collect_status

    status = collect_status(tmp_path / "artifacts", tmp_path / "repository", any_server.handle.state)["server"]
    assert status["other_models"] == {m: "READY" for m in ["blend", "flat", "tag", *AUTO]}
    assert set(status["unservable"]) == UNSERVABLE
    assert "tensorflow_savedmodel" in unservable["saved_tf"] and "not one zeroserve serves" in unservable["saved_tf"]
    assert "model.onnx is missing" in unservable["no_file"]


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_configs_without_tensors_are_completed_from_the_onnx_graph_as_triton_does(any_server, protocol):
    """No config.pbtxt: batching graph -> max_batch_size 4 with dynamic batching; a fixed first dim -> 0;
    a config with only max_batch_size keeps it; the server reports the completed config to clients."""
    from zeroserve.client.connection import Client
    from zeroserve.client.endpoints import Endpoint

    endpoint = Endpoint(any_server.host, any_server.http_port, any_server.grpc_port, "test")
    with Client(endpoint, protocol) as client:
        configs = {m: client.model_config(m) for m in AUTO}
    configs = {m: c.get("config", c) for m, c in configs.items()}  # gRPC's JSON wraps it
    want = {"auto": (4, [3]), "auto_mbs": (2, [3]), "auto_fixed": (0, [2, 3])}
    for name, (mbs, dims) in want.items():
        c = configs[name]
        assert int(c.get("max_batch_size", 0)) == mbs, (name, c)
        (x,) = c["input"]
        assert x["name"] == "x" and x["data_type"] == "TYPE_FP32" and [int(d) for d in x["dims"]] == dims
        assert [o["name"] for o in c["output"]] == ["y"]
    assert "dynamic_batching" in configs["auto"] and "dynamic_batching" in configs["auto_mbs"]
    assert "dynamic_batching" not in configs["auto_fixed"]
    for name, batch in (("auto", 3), ("auto_fixed", None)):
        r = cli(
            "infer",
            name,
            "--generate",
            "zero",
            *(["--batch-size", str(batch)] if batch else []),
            "--protocol",
            protocol,
            *ports(any_server),
            "--json",
        )
        assert r.exit_code == 0, r.output
        assert np.array(json.loads(r.stdout)["outputs"]["y"]).shape == ((3, 3) if batch else (2, 3))


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_infer_by_triton_name_with_shape(any_server, protocol):
    r = cli(
        "infer",
        "blend",
        "--generate",
        "random",
        "--shape",
        "x:5",
        "--batch-size",
        "3",
        "--protocol",
        protocol,
        *ports(any_server),
        "--json",
    )
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    assert out["resolved"] == "server" and out["inputs"] == {"x": [3, 5], "k": [3, 3]}
    y, s = np.array(out["outputs"]["y"]), np.array(out["outputs"]["s"])
    assert y.shape == (3, 5) and s.shape == (3, 1)
    assert np.all((y >= 0) & (y < 2)) and np.all((s >= 0) & (s < 30))  # random floats in [0,1) doubled; ints in [0,10)


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_infer_reads_perf_analyzer_json(any_server, tmp_path, protocol):
    k = np.array([4, 5, 6], np.int64)
    data = {
        "data": [
            {"x": {"content": [1.0, 2.0, 3.0, 4.0], "shape": [4]}, "k": [1, 2, 3]},
            {
                "x": {
                    "b64": base64.b64encode(np.array([0.5, 1.5, 2.5, 3.5], np.float32).tobytes()).decode(),
                    "shape": [4],
                },
                "k": {"b64": base64.b64encode(k.tobytes()).decode()},
            },
        ]
    }
    path = tmp_path / "data.json"
    path.write_text(json.dumps(data))
    r = cli("infer", "blend", "--input", str(path), "--protocol", protocol, *ports(any_server), "--json")
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)["outputs"]
    assert out["y"] == [[2.0, 4.0, 6.0, 8.0], [1.0, 3.0, 5.0, 7.0]]
    assert out["s"] == [[6], [15]]
    # perf_analyzer's validation_data is checked against the answer: exit 1 naming the output that differs
    data["validation_data"] = [{"s": [6]}, {"s": [15], "y": [1.0, 3.0, 5.0, 7.0]}]
    path.write_text(json.dumps(data))
    r = cli("infer", "blend", "--input", str(path), "--protocol", protocol, *ports(any_server), "--json")
    assert r.exit_code == 0 and json.loads(r.stdout)["validated"] == 6, r.output
    data["validation_data"][1]["s"] = [16]
    path.write_text(json.dumps(data))
    r = cli("perf", "blend", "--input-data", str(path), "--batch-size", "2", "--protocol", protocol, *ports(any_server))
    assert r.exit_code == 1 and "output s of row 1 differs" in r.output


def test_infer_unbatched_model_with_npy(any_server, tmp_path):
    v = np.arange(6, dtype=np.float32).reshape(2, 3)
    np.save(tmp_path / "v.npy", v)
    r = cli("infer", "flat", "--input", str(tmp_path / "v.npy"), *ports(any_server), "--json")
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["outputs"]["w"] == v.sum(axis=0).tolist()  # [3]: not cut to the input's 2 rows


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_bytes_model_random_infer_and_perf(any_server, protocol):
    r = cli(
        "infer",
        "tag",
        "--generate",
        "random",
        "--batch-size",
        "2",
        "--protocol",
        protocol,
        *ports(any_server),
        "--json",
    )
    assert r.exit_code == 0, r.output
    t = json.loads(r.stdout)["outputs"]["t"]
    assert len(t) == 2 and all(len(v) == 16 and v.isalpha() for row in t for v in row)
    # BYTES in registered shared memory too (Triton's length-prefixed serialization sizes the regions)
    r = cli(
        "perf",
        "tag",
        "--input",
        "zero",
        "--protocol",
        protocol,
        "--shared-memory",
        "system",
        "--window",
        "0.2",
        "--warmup",
        "0.1",
        "--max-trials",
        "3",
        "--allow-unstable",
        *ports(any_server),
        "--json",
    )
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["levels"][0]["failed"] == 0


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_perf_by_triton_name_count_windows(any_server, protocol, tmp_path):
    path = tmp_path / "data.json"
    path.write_text(json.dumps({"data": [{"x": [1.0, 2.0, 3.0], "k": [1, 2, 3]}]}))
    r = cli(
        "perf",
        "blend",
        "--protocol",
        protocol,
        "--input-data",
        str(path),
        "--shape",
        "x:3",
        "--batch-size",
        "2",
        "--measurement-mode",
        "count_windows",
        "--measurement-request-count",
        "20",
        "--window",
        "0.1",
        "--warmup",
        "0.1",
        "--max-trials",
        "4",
        "--allow-unstable",
        *ports(any_server),
        "--json",
    )
    assert r.exit_code == 0, r.output
    rec = json.loads(r.stdout)
    assert rec["triton_model"] == "blend" and rec["resolved"] == "server"
    assert rec["measurement_mode"] == "count_windows" and rec["measurement_request_count"] == 20
    (level,) = rec["levels"]
    assert level["failed"] == 0 and level["trials"] >= 3
    assert all(w["requests"] >= 20 for w in level["windows"])


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_perf_sends_perf_analyzer_entries_round_robin(any_server, tmp_path, protocol):
    """Entries of different shapes are different requests, each checked against its own reference answer:
    a request checked against another's answer would fail (its outputs differ in shape and size)."""
    path = tmp_path / "var.json"
    path.write_text(
        json.dumps(
            {
                "data": [
                    {"x": {"content": [1.0, 2.0], "shape": [2]}, "k": [1, 2, 3]},
                    {"x": {"content": [1.0] * 6, "shape": [6]}, "k": [4, 5, 6]},
                    {"x": {"content": [3.0] * 5, "shape": [5]}, "k": [0, 0, 0]},
                ],
                "validation_data": [{"s": [6]}, {"s": [15]}, {"y": [6.0] * 5}],
            }
        )
    )
    for concurrency in ("1", "3"):  # gRPC at 1: the blocking-call loop; at 3: asyncio
        r = cli(
            "perf",
            "blend",
            "--input-data",
            str(path),
            "--protocol",
            protocol,
            "--concurrency",
            concurrency,
            "--window",
            "0.2",
            "--warmup",
            "0.1",
            "--max-trials",
            "3",
            "--allow-unstable",
            *ports(any_server),
            "--json",
        )
        assert r.exit_code == 0, r.output
        rec = json.loads(r.stdout)
        assert rec["input_requests"] == 3 and any("round-robin as 3 distinct" in n for n in rec["notes"])
        assert rec["levels"][0]["ok"] >= 3 and rec["levels"][0]["failed"] == 0
    r = cli(
        "perf",
        "blend",
        "--input-data",
        str(path),
        "--protocol",
        protocol,
        "--request-rate",
        "200",
        "--window",
        "0.2",
        "--warmup",
        "0.1",
        "--max-trials",
        "3",
        "--allow-unstable",
        *ports(any_server),
        "--json",
    )
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["levels"][0]["failed"] == 0


def test_perf_random_with_shape_time_windows(any_server):
    r = cli(
        "perf",
        "blend",
        "--input",
        "zero",
        "--shape",
        "x:7",
        "--window",
        "0.2",
        "--warmup",
        "0.1",
        "--max-trials",
        "3",
        "--allow-unstable",
        *ports(any_server),
        "--json",
    )
    assert r.exit_code == 0, r.output
    rec = json.loads(r.stdout)
    assert rec["shapes"] == {"x": [7]} and rec["levels"][0]["ok"] > 0 and rec["levels"][0]["failed"] == 0


def test_errors_are_one_line_with_exit_2(any_server, tmp_path):
    r = cli("perf", "blend", *ports(any_server))
    assert r.exit_code == 2 and "input x of blend has a dynamic dim" in r.output and "--shape x:1" in r.output
    r = cli("infer", "blend", "--generate", "random", *ports(any_server))
    assert r.exit_code == 2 and "--shape x:" in r.output
    r = cli("infer", "blend", "--generate", "random", "--shape", "x:2,2", *ports(any_server))
    assert r.exit_code == 2 and "does not fit" in r.output
    r = cli("infer", "blend", "--generate", "random", "--shape", "nope:2", *ports(any_server))
    assert r.exit_code == 2 and "not an input of blend" in r.output
    r = cli("perf", "blend", "--input", "sample", "--shape", "x:2", *ports(any_server))
    assert r.exit_code == 2 and "known only from the server" in r.output
    r = cli("perf", "flat", "--batch-size", "2", *ports(any_server))
    assert r.exit_code == 2 and "max_batch_size 0" in r.output
    r = cli("infer", "saved_tf", "--generate", "zero", *ports(any_server))
    assert r.exit_code == 2 and "does not serve 'saved_tf'" in r.output
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"data": [{"x": [1.0, 2.0]}]}))
    r = cli("infer", "blend", "--input", str(bad), "--shape", "x:2", *ports(any_server))
    assert r.exit_code == 2 and "has no k" in r.output

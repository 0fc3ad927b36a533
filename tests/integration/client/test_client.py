"""`zeroserve client` through the real embedded Triton server: check, infer, perf, a server going away.

Timing is never asserted (2 noisy cores); the logic is: values match eager, a wrong artifact is
caught, figures are well formed, a missing server is a clear exit 3 within the timeout.
"""

from __future__ import annotations

import json
import time

import numpy as np
import pytest
from client_helpers import cli, need, ports, well_formed  # tests/ is on sys.path (its conftest)

from zeroserve import registry
from zeroserve.artifacts import eager_outputs, load_trained
from zeroserve.client.check import check_model
from zeroserve.client.connection import Client
from zeroserve.client.endpoints import Endpoint
from zeroserve.client.perf.run import run_perf
from zeroserve.errors import ServerError
from zeroserve.triton.errors import RequestRejected

pytestmark = pytest.mark.slow


def endpoint(endpoints) -> Endpoint:
    return Endpoint(endpoints.host, endpoints.http_port, endpoints.grpc_port, "test")


def served_specs(endpoints) -> list:
    names = {m.rsplit("_", 1)[0] for m in endpoints.models}
    return [s for s in registry.REGISTRY.values() if s.name in names]


# ---------------------------------------------------------------- check


def test_check_passes_on_every_served_model(server, data_dir):
    result = cli(
        "check", "all", *ports(server), "--artifacts", str(server.artifacts), "--data-dir", str(data_dir), "--json"
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    rows = [r for m in report["models"] for r in m["rows"]]
    checked = {r["triton_model"] for r in rows}
    assert checked == set(server.models)
    assert {(r["protocol"]) for r in rows} == {"grpc", "http"}
    for r in rows:
        assert r["status"] == "PASS" and r["failed_requests"] == 0 and r["outside_tolerance"] == 0, r
        assert r["samples"] > 0 and r["metric_served"] == pytest.approx(r["metric_eager"])
    # every model's result names the engine its served formats ran on, as the server described it
    for m in report["models"]:
        engine = m["measured_on"]["engine_detail"]
        assert (engine["kind"], engine["backend"], engine["triton"]) == ("embedded", "python", "2.51.0"), m["model"]
        assert engine["runtime"] in ("onnxruntime", "torch") and m["measured_on"]["cores"] >= 1


@pytest.fixture
def other_seed_server(start_server, tmp_path, data_dir):
    """hello_rnn trained with seed 1, exported and served: not the checkpoint the session trained (seed 0)."""
    from zeroserve.deploy.repository import deploy_model
    from zeroserve.export import export_model
    from zeroserve.train import train_model

    spec = registry.get("hello_rnn")
    artifacts, repository = tmp_path / "artifacts-seed1", tmp_path / "repository-seed1"
    train_model(spec, data_dir, artifacts, seed=1, epochs=30)  # short: only the weights' origin matters
    export_model(spec, artifacts, data_dir=data_dir, latency=False)
    deploy_model(spec, artifacts, repository)
    return start_server(repository)


def test_check_fails_on_a_server_serving_another_seeds_weights(other_seed_server, server, data_dir):
    res = check_model(registry.get("hello_rnn"), endpoint(other_seed_server), server.artifacts, data_dir)
    assert res.status == "FAIL"
    assert len(res.rows) == 4 and all(r.status == "FAIL" for r in res.rows)
    assert all(r.outside_tolerance and r.max_abs and r.max_abs > 1e-5 for r in res.rows)
    result = cli(
        "check",
        "hello_rnn",
        *ports(other_seed_server),
        "--artifacts",
        str(server.artifacts),
        "--data-dir",
        str(data_dir),
    )
    assert result.exit_code == 1
    assert "4 of 4 served model checks failed" in result.output


# ---------------------------------------------------------------- infer


def test_infer_text_decodes_names_and_hello(server):
    need(server, "name_gru", "hello_rnn")
    result = cli("infer", "name_gru", "--text", "Nakamura,Dostoevsky", *ports(server), "--json")
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    logits = np.array(out["outputs"]["logits__0"])
    model = load_trained(registry.get("name_gru"), server.artifacts)
    eager = eager_outputs(model, registry.get("name_gru").encode("Nakamura,Dostoevsky", "text"))[0]
    assert np.allclose(logits, eager, atol=1e-4, rtol=1e-4)
    assert [m["label"] for m in out["meaning"]] == [registry.get("name_gru").labels[k] for k in eager.argmax(1)]
    result = cli("infer", "hello_rnn", "--text", "hihell", *ports(server), "--protocol", "http", "--json")
    assert result.exit_code == 0, result.output
    hello = load_trained(registry.get("hello_rnn"), server.artifacts)
    hello_spec = registry.get("hello_rnn")
    expected = "".join(
        hello_spec.labels[i] for i in eager_outputs(hello, hello_spec.encode("hihell", "text"))[0][0].argmax(-1)
    )
    assert json.loads(result.stdout)["meaning"] == [{"text": expected}]


def test_infer_image_png_is_classified_like_eager(server, data_dir, tmp_path):
    from PIL import Image

    need(server, "cnn_mnist")
    spec = registry.get("cnn_mnist")
    digit = spec.data.load(data_dir).test_inputs[0][0, 0]
    path = tmp_path / "digit.png"
    Image.fromarray(np.round(digit * 255).astype(np.uint8)).save(path)
    result = cli("infer", "cnn_mnist", "--image", str(path), *ports(server), "--json")
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert out["inputs"] == {"image__0": [1, 1, 28, 28]}
    pixels = np.asarray(Image.open(path), dtype=np.float32)[None, None] / 255.0
    eager = eager_outputs(load_trained(spec, server.artifacts), [pixels])[0]
    assert out["meaning"][0]["class"] == int(eager.argmax())
    assert np.allclose(out["outputs"]["log_probs__0"], eager, atol=1e-4)


def test_a_triton_name_with_a_format_suffix_is_the_registry_model(server, tmp_path):
    """`name_gru_torchscript` resolves to the registry entry (decoding, its spec's checks) in that format;
    --shape fixes its dynamic time axis, and perf_analyzer's JSON input data reads in the spec's tensors."""
    need(server, "name_gru")
    result = cli(
        "infer",
        "name_gru_torchscript",
        "--generate",
        "zero",
        "--shape",
        "tokens__0:6",
        "--batch-size",
        "2",
        *ports(server),
        "--json",
    )
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert out["resolved"] == "triton name" and out["triton_model"] == "name_gru_torchscript"
    assert out["inputs"]["tokens__0"] == [2, 6] and len(out["meaning"]) == 2
    path = tmp_path / "pa.json"
    path.write_text(json.dumps({"data": [{"tokens__0": {"content": [3, 4, 5], "shape": [3]}, "lengths__1": [3]}]}))
    result = cli("infer", "name_gru_onnx", "--input", str(path), *ports(server), "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["inputs"] == {"tokens__0": [1, 3], "lengths__1": [1]}
    result = cli("infer", "name_gru_onnx", "--format", "torchscript", "--generate", "zero", *ports(server))
    assert result.exit_code == 2 and "drop --format" in result.output


def test_infer_refuses_a_wrong_shape_before_sending(server, tmp_path):
    np.save(tmp_path / "x.npy", np.zeros((1, 28, 28), np.float32))
    result = cli("infer", "cnn_mnist", "--input", str(tmp_path / "x.npy"), *ports(server))
    assert result.exit_code == 2
    assert "must have shape (batch, 1, 28, 28)" in result.output


# ---------------------------------------------------------------- perf


def test_perf_short_closed_loop_run_iswell_formed(server, tmp_path):
    need(server, "cnn_mnist")
    result = cli(
        "perf",
        "cnn_mnist",
        "--concurrency",
        "1,4",
        "--window",
        "0.5",
        "--warmup",
        "0.2",
        "--max-trials",
        "3",
        "--allow-unstable",
        *ports(server),
        "--json",
        "--report",
        str(tmp_path / "rep"),
        "--csv",
        str(tmp_path / "levels.csv"),
    )
    assert result.exit_code == 0, result.output
    rec = json.loads(result.stdout)
    assert [lv["concurrency"] for lv in rec["levels"]] == [1, 4]
    for lv in rec["levels"]:
        well_formed(lv, lv["concurrency"])
        assert lv["trials"] <= 3
    assert any("cores shared" in n for n in rec["notes"])
    for name in ("perf.html", "perf.png", "perf.json", "perf.csv"):
        assert (tmp_path / "rep" / name).stat().st_size > 0
    assert len((tmp_path / "levels.csv").read_text().splitlines()) == 3


def test_perf_open_loop_shared_memory_and_two_urls(server):
    need(server, "name_gru")
    spec = registry.get("name_gru")
    rec = run_perf(
        spec,
        endpoint(server),
        request_rate=[150.0],
        distribution="poisson",
        batch_size=4,
        input_mode="random",
        shared_memory="system",
        window_s=0.5,
        warmup_s=0.2,
        max_trials=3,
        allow_unstable=True,
        urls=[server.grpc_url, server.grpc_url],
    ).to_json()
    (lv,) = rec["levels"]
    well_formed(lv)
    assert lv["request_rate"] == 150.0 and lv["achieved_rate"] > 0 and "rate_kept" in lv
    assert rec["shared_memory"] == "system" and len(rec["urls"]) == 2
    assert lv["throughput"] == pytest.approx(lv["requests_per_s"] * 4)


def test_perf_spreads_load_over_two_servers(server, start_server, deployed_repository):
    from zeroserve.client.connection import Client

    need(server, "linear")
    second = start_server(deployed_repository, ["linear"])
    before = [Client(endpoint(s), "grpc").statistics("linear_onnx")["success_count"] for s in (server, second)]
    rec = run_perf(
        registry.get("linear"),
        endpoint(server),
        concurrency=[4],
        window_s=0.3,
        warmup_s=0.1,
        max_trials=3,
        allow_unstable=True,
        urls=[server.grpc_url, second.grpc_url],
    ).to_json()
    after = [Client(endpoint(s), "grpc").statistics("linear_onnx")["success_count"] for s in (server, second)]
    lv = rec["levels"][0]
    well_formed(lv, 4)
    served = [a - b for a, b in zip(after, before)]
    assert all(n > 0 for n in served)  # both servers answered
    assert lv["server"]["requests"] <= sum(served)  # the split sums both servers' counters


def test_perf_from_two_worker_processes(server):
    import multiprocessing

    need(server, "cnn_mnist")
    rec = run_perf(
        registry.get("cnn_mnist"),
        endpoint(server),
        concurrency=[3],
        workers=2,
        window_s=0.4,
        warmup_s=0.2,
        max_trials=3,
        allow_unstable=True,
    ).to_json()
    well_formed(rec["levels"][0], 3)
    assert rec["workers"] == 2 and any("2 worker processes" in n for n in rec["notes"])
    assert not [p for p in multiprocessing.active_children() if p.name == "zeroserve-load"]


def test_perf_over_http_with_sample_input(server, data_dir):
    need(server, "wide_deep")
    rec = run_perf(
        registry.get("wide_deep"),
        endpoint(server),
        protocol="http",
        concurrency=[2],
        input_mode="sample",
        data_dir=data_dir,
        batch_size=8,
        window_s=0.4,
        warmup_s=0.2,
        max_trials=3,
        allow_unstable=True,
        fmt="torchscript",
    ).to_json()
    well_formed(rec["levels"][0], 2)


# ---------------------------------------------------------------- server down


def test_server_down_is_exit_3_without_hanging(free_ports):
    http, grpc, _ = free_ports()  # nothing listens there
    args = ["--host", "127.0.0.1", "--http-port", str(http), "--grpc-port", str(grpc), "--timeout", "3"]
    for command in (["infer", "hello_rnn", "--text", "hi"], ["check", "linear"], ["perf", "linear"]):
        start = time.monotonic()
        result = cli(*command, *args)
        assert result.exit_code == 3, (command, result.output)
        assert "no Triton server answered" in result.output and "Traceback" not in result.output
        assert time.monotonic() - start < 15


@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_a_request_the_server_refuses_is_rejected_not_unreachable(server, protocol):
    need(server, "cnn_mnist")
    spec = registry.get("cnn_mnist")
    with Client(endpoint(server), protocol, timeout=10.0) as client:
        with pytest.raises(RequestRejected, match="no_such_model_onnx") as info:
            client.statistics("no_such_model_onnx")
        assert info.value.exit_code == 2 and not isinstance(info.value, ServerError)
        wrong = [np.zeros((1, 1, 27, 28), np.float32)]  # past the client's own validation, to the server
        with pytest.raises(RequestRejected, match="image__0"):
            client.infer(spec, "cnn_mnist_onnx", wrong)
        client.live()  # and the server is still there


def test_perf_level_that_never_stabilises_exits_4_with_its_last_windows(server):
    need(server, "linear")
    # three windows never agree to within a millionth: the level cannot stabilise in 3 trials
    result = cli(
        "perf",
        "linear",
        "--concurrency",
        "1",
        "--window",
        "0.2",
        "--warmup",
        "0.1",
        "--max-trials",
        "3",
        "--stability",
        "0.000001",
        *ports(server),
    )
    assert result.exit_code == 4, result.output
    assert "concurrency 1 did not stabilise" in result.output and "last throughput" in result.output
    assert "Traceback" not in result.output

"""The example of your own model (examples/ticket_router.py) through the whole pipeline.

Its tiny checkpoint is written into a temporary folder by the example itself; then the CLI exports
it through the gate, deploys it, the embedded Triton server serves it on free ports, and `client
check`, `client infer` and `client perf` run against it over real HTTP and gRPC. It needs none of
the course fixtures.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from zeroserve.app.cli import app

pytestmark = pytest.mark.slow
runner = CliRunner()
EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "ticket_router.py"


def invoke(*args: str):
    result = runner.invoke(app, list(args), terminal_width=200)
    return result


def test_example_through_export_deploy_serve_check_infer_perf(tmp_path, start_server):
    model_file = tmp_path / "ticket_router.py"
    shutil.copy(EXAMPLE, model_file)
    subprocess.run([sys.executable, str(model_file)], check=True, timeout=120)
    artifacts, repository = tmp_path / "artifacts", tmp_path / "model_repository"
    own = ("--model-file", str(model_file))

    result = invoke("export", "ticket_router", *own, "--artifacts", str(artifacts), "--json")
    assert result.exit_code == 0, result.output
    rec = json.loads(result.stdout)["exported"][0]
    assert {f: e["status"] for f, e in rec["formats"].items()} == {"onnx": "PASS", "torchscript": "PASS"}
    times = {p["shapes"][0][1] for p in rec["formats"]["onnx"]["grid"]}
    assert times == {1, 7, 40}  # the gate walked the dynamic length
    assert all(len(p["outputs"]) == 2 for p in rec["formats"]["onnx"]["grid"])  # every output compared

    result = invoke(
        "deploy", "ticket_router", *own, "--artifacts", str(artifacts), "--repository", str(repository), "--json"
    )
    assert result.exit_code == 0, result.output
    assert sorted(e["name"] for e in json.loads(result.stdout)["deployed"]) == [
        "ticket_router_onnx",
        "ticket_router_torchscript",
    ]

    server = start_server(repository, ["ticket_router"])
    assert sorted(server.models) == ["ticket_router_onnx", "ticket_router_torchscript"]
    ports = ("--host", server.host, "--http-port", str(server.http_port), "--grpc-port", str(server.grpc_port))

    result = invoke("client", "check", "ticket_router", *own, *ports, "--artifacts", str(artifacts))
    assert result.exit_code == 0, result.output
    assert result.output.count("PASS") == 4  # two formats over two protocols
    assert "ticket_router: compared on 256 seeded inputs from its example_inputs (seed 0)" in result.output

    request = tmp_path / "request.json"
    request.write_text(
        json.dumps({"tokens__0": [[5, 17, 42, 0], [9, 0, 0, 0]], "features__1": [[0.1, 0.2, 0.3, 0.4, 0.5, 0.6]] * 2})
    )
    result = invoke("client", "infer", "ticket_router", *own, *ports, "--input", str(request), "--json")
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert [len(out["outputs"]["queue__0"][0]), len(out["outputs"]["hours__1"][0])] == [4, 1]
    assert out["meaning"][0]["label"] in ("billing", "bug", "account", "other")

    result = invoke(
        "client",
        "perf",
        "ticket_router",
        *own,
        *ports,
        "--concurrency",
        "1,2",
        "--window",
        "0.5",
        "--max-trials",
        "3",
        "--allow-unstable",
        "--json",
    )
    assert result.exit_code == 0, result.output
    perf = json.loads(result.stdout)
    assert [lv["failed"] for lv in perf["levels"]] == [0, 0] and all(lv["throughput"] > 0 for lv in perf["levels"])

    result = invoke(
        "status",
        *own,
        "--artifacts",
        str(artifacts),
        "--repository",
        str(repository),
        "--http-port",
        str(server.http_port),
        "--json",
    )
    assert result.exit_code == 1, result.output  # every model READY, but this test's server runs unsupervised
    assert json.loads(result.stdout)["verdict"] == "no supervisor runs for this server"
    rows = {r["triton_name"]: r for r in json.loads(result.stdout)["models"]}
    assert rows["ticket_router_onnx"]["served"]["state"] == "READY"
    assert rows["ticket_router_onnx"]["trained"]["state"] == "own checkpoint"

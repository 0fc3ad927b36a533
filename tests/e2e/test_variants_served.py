"""Each variant kind deployed as its own Triton model, served by the embedded engine and checked
through the real server by the variant rule its export recorded; fp16 deployed KIND_GPU and skipped
by the embedded engine without a GPU."""

from __future__ import annotations

import json
import warnings

import pytest

from zeroserve import formats as F
from zeroserve import registry
from zeroserve.client.check import check_model
from zeroserve.client.connection import Client
from zeroserve.client.endpoints import Endpoint
from zeroserve.deploy.contents import read_deployed
from zeroserve.deploy.lint import lint_model
from zeroserve.deploy.repository import deploy_model
from zeroserve.export.variant_gate import gpu_present
from zeroserve.serve.status import collect_status
from zeroserve.triton.errors import ModelNotServed

MADE = ("onnx_int8", "onnx_int8dyn", "onnx_optimized")


def test_each_variant_kind_is_served_and_checked_by_its_rule(variant_artifacts, start_server, data_dir, tmp_path):
    artifacts, rec = variant_artifacts
    spec = registry.get("softmax_mnist")
    repo = tmp_path / "repo"
    written = deploy_model(spec, artifacts, repo, formats=(*MADE, "onnx_fp16"), device="gpu")
    assert [e.name for e in written] == [F.get(k).triton_name("softmax_mnist") for k in (*MADE, "onnx_fp16")]
    fp16 = repo / "softmax_mnist_onnx_fp16"
    assert read_deployed(fp16).instance_kind == "KIND_GPU" and lint_model(fp16).backend == "onnxruntime"

    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        server = start_server(repo)
    served = set(server.models)
    assert served == {F.get(k).triton_name("softmax_mnist") for k in MADE} | (
        {"softmax_mnist_onnx_fp16"} if gpu_present() else set()
    )
    if not gpu_present():
        assert any("softmax_mnist_onnx_fp16" in str(w.message) and "GPU" in str(w.message) for w in seen)

    endpoint = Endpoint(server.host, server.http_port, server.grpc_port, "test")
    res = check_model(spec, endpoint, artifacts, data_dir, skip_unserved=True)  # default: primary + served variants
    rows = {(r.format, r.protocol): r for r in res.rows}
    assert set(rows) == {(k, p) for k in MADE for p in ("grpc", "http")}
    for (key, _), row in rows.items():
        assert row.status == "PASS" and row.failed_rules == [], row
        assert row.samples == rec.formats[key].held_out.samples
        assert row.top1_agreement is not None and row.top1_agreement >= 0.99
        assert row.rule and "agreement with eager at least 99%" in row.rule
    assert {s.format for s in res.skipped} == set(F.primary())

    status = {
        r["format"]: r
        for r in collect_status(artifacts, repo, server.handle.state)["models"]
        if r["model"] == "softmax_mnist"
    }
    for key in MADE:
        assert status[key]["exported"]["state"] == "PASS" and status[key]["served"]["state"] == "READY"
    if not gpu_present():
        assert status["onnx_fp16"]["exported"]["state"] == "UNVERIFIED"
        assert status["onnx_fp16"]["served"]["note"] == "runs on GPU instances only"
        with Client(endpoint, "grpc") as client:  # asking for it says why it is not there, not "deploy it"
            with pytest.raises(ModelNotServed, match="runs on GPU instances only.*on a GPU host"):
                client.require_model("softmax_mnist_onnx_fp16")

    # the CLI takes a served name for one variant, and skips an fp16 that a server without a GPU does not load
    from typer.testing import CliRunner

    from zeroserve.app.cli import app

    where = [
        "--artifacts",
        str(artifacts),
        "--data-dir",
        str(data_dir),
        "--host",
        server.host,
        "--http-port",
        str(server.http_port),
        "--grpc-port",
        str(server.grpc_port),
        "--protocol",
        "http",
    ]
    res = CliRunner().invoke(app, ["client", "check", "softmax_mnist_onnx_int8", *where, "--json"])
    assert res.exit_code == 0, res.output
    (checked,) = json.loads(res.stdout)["models"]
    assert [(r["triton_model"], r["status"]) for r in checked["rows"]] == [("softmax_mnist_onnx_int8", "PASS")]
    if not gpu_present():
        res = CliRunner().invoke(app, ["client", "check", "softmax_mnist_onnx_fp16", *where])
        assert res.exit_code == 1 and "runs on GPU instances only" in res.stderr

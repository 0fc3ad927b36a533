"""`zeroserve deploy`: config.pbtxt through Triton's schema, the canonical repository, its manifest.

Real artifacts come from the session's `exported` fixture (all ten models trained and gated);
tests that damage an artifact work on a copy of one model's folder.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import time
import zipfile
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
import yaml
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2 as pb
from typer.testing import CliRunner

from zeroserve import registry
from zeroserve.app.cli import app
from zeroserve.deploy import config as C
from zeroserve.deploy.config import WARMUP_DIR
from zeroserve.deploy.kserve import write_kserve_manifest
from zeroserve.deploy.lint import lint_model
from zeroserve.deploy.release import TARGET, check_torchscript_target
from zeroserve.deploy.repository import deploy_model, read_manifest, sha256
from zeroserve.errors import CheckFailed, InputError
from zeroserve.records.layout import RepositoryLayout

runner = CliRunner()
ALL = list(registry.REGISTRY)


def _pbtxt(path: Path) -> pb.ModelConfig:
    """Parse a written config.pbtxt with Triton's own schema, independent of our `parse`."""
    return text_format.Parse(Path(path).read_text(), pb.ModelConfig())


def _model(name: str, fmt: str = "onnx", **kw) -> C.DeployedModel:
    spec = registry.get(name)
    warm = C.Warmup(
        "sample",
        {
            t.name: C.WarmupInput(t.dtype, tuple(1 if d == -1 else d for d in t.triton_dims), t.name)
            for t in spec.inputs
        },
    )
    return C.DeployedModel(
        name=spec.triton_name(fmt),
        backend={"onnx": "onnxruntime"}.get(fmt, "pytorch"),
        max_batch_size=spec.max_batch_size,
        inputs=tuple(C.TensorConfig.from_spec(t) for t in spec.inputs),
        outputs=tuple(C.TensorConfig.from_spec(t) for t in spec.outputs),
        warmup=warm,
        **kw,
    )


def _copy(artifacts: Path, dest: Path, *names: str) -> Path:
    for name in names:
        shutil.copytree(artifacts / name, dest / name)
    return dest


def _rewrite_record(artifacts: Path, name: str, **formats) -> None:
    """Patch fields of export.json's per-format entries (and refresh each file's sha256)."""
    path = artifacts / name / "export.json"
    record = json.loads(path.read_text())
    for fmt, fields in formats.items():
        record["formats"][fmt].update(fields)
        record["formats"][fmt]["sha256"] = sha256(artifacts / name / record["formats"][fmt]["file"])
    path.write_text(json.dumps(record))


def _leftovers(repository: Path) -> list[str]:
    parent = repository.resolve().parent
    return [p.name for d in (parent, repository) for p in d.iterdir() if p.name.startswith(".zs-")]


# ---------------------------------------------------------------- config.pbtxt


@pytest.mark.parametrize("name", ALL)
@pytest.mark.parametrize("fmt", ["onnx", "torchscript"])
def test_render_parse_round_trip_for_every_model(name, fmt):
    model = _model(name, fmt, tensorrt="FP16" if fmt == "onnx" else None)
    text = C.render(model)
    assert C.parse(text) == model
    proto = text_format.Parse(text, pb.ModelConfig())
    spec = registry.get(name)
    assert proto.name == f"{name}_{fmt}" and proto.max_batch_size == spec.max_batch_size
    assert [i.name for i in proto.input] == [t.name for t in spec.inputs]
    assert [o.name for o in proto.output] == [t.name for t in spec.outputs]


def test_config_fields_follow_the_registry_specs():
    gru = text_format.Parse(C.render(_model("name_gru")), pb.ModelConfig())
    tokens, lengths = gru.input
    assert list(tokens.dims) == [-1] and tokens.data_type == pb.TYPE_INT64 and not tokens.HasField("reshape")
    # a per-sample scalar travels as [batch, 1] and reaches the graph as [batch]
    assert list(lengths.dims) == [1] and lengths.HasField("reshape") and list(lengths.reshape.shape) == []
    rnn = text_format.Parse(C.render(_model("hello_rnn")), pb.ModelConfig())
    assert list(rnn.input[0].dims) == [-1, 5] and list(rnn.output[0].dims) == [-1, 5]
    cnn = text_format.Parse(C.render(_model("cnn_mnist", tensorrt="FP32")), pb.ModelConfig())
    assert list(cnn.input[0].dims) == [1, 28, 28] and cnn.input[0].data_type == pb.TYPE_FP32
    assert cnn.backend == "onnxruntime" and cnn.max_batch_size == 64
    assert (
        cnn.HasField("dynamic_batching")
        and cnn.dynamic_batching.max_queue_delay_microseconds == C.DEFAULT_MAX_QUEUE_DELAY_US
    )
    assert cnn.instance_group[0].kind == pb.ModelInstanceGroup.KIND_GPU and cnn.instance_group[0].count == 1
    (acc,) = cnn.optimization.execution_accelerators.gpu_execution_accelerator
    assert acc.name == "tensorrt" and acc.parameters["precision_mode"] == "FP32"
    (warm,) = cnn.model_warmup
    assert warm.batch_size == 1 and warm.inputs["image__0"].input_data_file == "image__0"


def test_cpu_instances_zero_delay_and_zero_warmup_round_trip():
    model = dataclasses.replace(
        _model("linear", "torchscript"),
        instance_kind="KIND_CPU",
        instance_count=3,
        max_queue_delay_us=0,
        warmup=C.Warmup("zeros", {"x__0": C.WarmupInput("float32", (1,), None)}),
        parameters={"ZS_FORMAT": "onnx"},
    )
    text = C.render(model)
    proto = text_format.Parse(text, pb.ModelConfig())
    assert proto.instance_group[0].kind == pb.ModelInstanceGroup.KIND_CPU and proto.instance_group[0].count == 3
    assert proto.HasField("dynamic_batching") and proto.dynamic_batching.max_queue_delay_microseconds == 0
    assert proto.model_warmup[0].inputs["x__0"].zero_data
    assert proto.backend == "pytorch" and proto.parameters["ZS_FORMAT"].string_value == "onnx"
    assert C.parse(text) == model
    assert C.parse(C.render(dataclasses.replace(model, max_queue_delay_us=None))).max_queue_delay_us is None
    rand = dataclasses.replace(model, warmup=C.Warmup("random", {"x__0": C.WarmupInput("float32", (1,), random=True)}))
    assert text_format.Parse(C.render(rand), pb.ModelConfig()).model_warmup[0].inputs["x__0"].random_data
    assert C.parse(C.render(rand)) == rand


def test_a_config_that_is_not_a_model_config_is_an_input_error():
    with pytest.raises(InputError, match="does not parse"):
        C.parse("name: 'x'\nmax_batch_size: lots\n")


# ---------------------------------------------------------------- the canonical repository


@pytest.fixture(scope="module")
def deployed_all(exported, tmp_path_factory):
    """All ten models deployed (both formats) from the session's exports: (repository, entries)."""
    artifacts, _ = exported
    repository = tmp_path_factory.mktemp("deployed") / "model_repository"
    entries = [e for spec in registry.REGISTRY.values() for e in deploy_model(spec, artifacts, repository)]
    return repository, entries


def test_deploy_all_writes_twenty_linted_models_and_the_manifest(deployed_all, exported):
    repository, entries = deployed_all
    artifacts, recs = exported
    assert len(entries) == 20
    manifest = json.loads(RepositoryLayout(repository).manifest.read_text())  # the JSON a user reads
    assert manifest["schema_version"] == 1 and "schema" not in manifest
    assert manifest["target"]["image"] == TARGET.image and manifest["target"]["onnxruntime"] == TARGET.onnxruntime
    assert sorted(manifest["models"]) == sorted(f"{n}_{f}" for n in ALL for f in ("onnx", "torchscript"))
    for name in ALL:
        spec = registry.get(name)
        record_sha = hashlib.sha256((artifacts / name / "export.json").read_bytes()).hexdigest()
        for fmt, file in (("onnx", "model.onnx"), ("torchscript", "model.pt")):
            folder = repository / spec.triton_name(fmt)
            proto = _pbtxt(folder / "config.pbtxt")
            assert proto.backend == {"onnx": "onnxruntime", "torchscript": "pytorch"}[fmt]
            assert proto.max_batch_size == recs[name].max_batch_size
            entry = manifest["models"][spec.triton_name(fmt)]
            assert entry["artifact_sha256"] == recs[name].formats[fmt].sha256 == sha256(folder / "1" / file)
            assert entry["export_record"]["sha256"] == record_sha
            assert entry["config_sha256"] == hashlib.sha256((folder / "config.pbtxt").read_bytes()).hexdigest()
            if fmt == "onnx":
                assert (entry["ir_version"], entry["opset"]) == (
                    recs[name].formats["onnx"].ir_version,
                    recs[name].formats["onnx"].opset,
                )
            else:
                assert entry["file_format_version"] <= TARGET.max_torchscript_file_version
            lint_model(folder)  # linting again from disk gives the same verdict


def test_warmup_files_are_row_0_of_the_real_sample_as_raw_little_endian(deployed_all, exported):
    repository, _ = deployed_all
    artifacts, _ = exported
    for name in ("cnn_mnist", "name_gru"):
        spec = registry.get(name)
        with np.load(artifacts / name / "sample.npz") as sample:
            for fmt in ("onnx", "torchscript"):
                folder = repository / spec.triton_name(fmt)
                warm = _pbtxt(folder / "config.pbtxt").model_warmup[0]
                for t in spec.inputs:
                    row = np.asarray(sample[t.name][0], dtype=np.dtype(t.dtype).newbyteorder("<"))
                    assert (folder / WARMUP_DIR / t.name).read_bytes() == row.tobytes()
                    assert warm.inputs[t.name].input_data_file == t.name
                    assert list(warm.inputs[t.name].dims) == (list(row.shape) or [1])


@pytest.fixture()
def one(exported, tmp_path):
    """A private copy of cnn_mnist's and linear's artifacts, and an empty repository path."""
    artifacts, _ = exported
    return _copy(artifacts, tmp_path / "art", "cnn_mnist", "linear"), tmp_path / "repo" / "model_repository"


def test_a_format_whose_export_did_not_pass_is_refused_with_the_reason(one):
    artifacts, repository = one
    _rewrite_record(artifacts, "cnn_mnist", onnx={"status": "FAIL", "error": "RuntimeError: boom"})
    with pytest.raises(InputError, match="export status is FAIL, not PASS.*boom"):
        deploy_model(registry.get("cnn_mnist"), artifacts, repository)
    assert not (repository / "cnn_mnist_torchscript").exists()  # nothing written when any format is refused
    deploy_model(registry.get("cnn_mnist"), artifacts, repository, formats="torchscript")
    assert (repository / "cnn_mnist_torchscript").is_dir() and not (repository / "cnn_mnist_onnx").exists()


def test_an_artifact_changed_since_export_is_refused(one):
    artifacts, repository = one
    record = json.loads((artifacts / "linear" / "export.json").read_text())
    (artifacts / "linear" / "export.json").write_text(json.dumps({**record, "inputs": [{"name": "old__0"}]}))
    with pytest.raises(InputError, match="tensors differ from the registry"):
        deploy_model(registry.get("linear"), artifacts, repository)
    with open(artifacts / "cnn_mnist" / "model.onnx", "ab") as fh:
        fh.write(b"\0")
    with pytest.raises(InputError, match="does not match the sha256"):
        deploy_model(registry.get("cnn_mnist"), artifacts, repository)


def test_an_onnx_ir_version_or_opset_beyond_the_target_release_is_refused(one):
    artifacts, repository = one
    spec = registry.get("cnn_mnist")
    path = artifacts / "cnn_mnist" / "model.onnx"
    opset = onnx.load(str(path)).opset_import[0].version
    with pytest.raises(InputError, match=f"opset {opset} is newer than the target"):
        deploy_model(spec, artifacts, repository, release=dataclasses.replace(TARGET, max_onnx_opset=opset - 1))
    proto = onnx.load(str(path))
    proto.ir_version = TARGET.max_onnx_ir_version + 1
    onnx.save(proto, str(path))
    _rewrite_record(artifacts, "cnn_mnist", onnx={"ir_version": TARGET.max_onnx_ir_version + 1})
    with pytest.raises(InputError, match=f"IR version {TARGET.max_onnx_ir_version + 1} .* newer than the target"):
        deploy_model(spec, artifacts, repository)
    _rewrite_record(artifacts, "cnn_mnist", onnx={"ir_version": 7})  # a record that disagrees with its file
    with pytest.raises(InputError, match="its export record says IR 7"):
        deploy_model(spec, artifacts, repository)
    assert not repository.exists() or not any(repository.iterdir())


def test_a_torchscript_archive_newer_than_the_target_libtorch_is_refused(one):
    artifacts, repository = one
    path = artifacts / "cnn_mnist" / "model.pt"
    assert check_torchscript_target("cnn_mnist_torchscript", path) == {"file_format_version": 3}
    with zipfile.ZipFile(path) as src, zipfile.ZipFile(path.with_suffix(".new"), "w") as dst:
        for item in src.infolist():
            data = src.read(item)
            dst.writestr(
                item,
                f"{TARGET.max_torchscript_file_version + 1}\n".encode()
                if item.filename.endswith("/version") and item.filename.count("/") == 1
                else data,
            )
    path.with_suffix(".new").replace(path)
    _rewrite_record(artifacts, "cnn_mnist", torchscript={})
    with pytest.raises(InputError, match=f"file format {TARGET.max_torchscript_file_version + 1} is newer"):
        deploy_model(registry.get("cnn_mnist"), artifacts, repository, formats="torchscript")
    path.write_bytes(b"not a zip")
    _rewrite_record(artifacts, "cnn_mnist", torchscript={})
    with pytest.raises(InputError, match="not a TorchScript archive"):
        deploy_model(registry.get("cnn_mnist"), artifacts, repository, formats="torchscript")


def test_options_lower_the_batch_set_instances_and_tensorrt(one):
    artifacts, repository = one
    spec = registry.get("cnn_mnist")
    deploy_model(spec, artifacts, repository, max_batch_size=16, device="cpu", instances=2, max_queue_delay_us=0)
    for fmt in ("onnx", "torchscript"):
        proto = _pbtxt(repository / f"cnn_mnist_{fmt}" / "config.pbtxt")
        assert proto.max_batch_size == 16 and proto.dynamic_batching.max_queue_delay_microseconds == 0
        assert proto.instance_group[0].kind == pb.ModelInstanceGroup.KIND_CPU and proto.instance_group[0].count == 2
    deploy_model(spec, artifacts, repository, tensorrt="fp16")
    onnx_cfg = _pbtxt(repository / "cnn_mnist_onnx" / "config.pbtxt")
    ts_cfg = _pbtxt(repository / "cnn_mnist_torchscript" / "config.pbtxt")
    (acc,) = onnx_cfg.optimization.execution_accelerators.gpu_execution_accelerator
    assert acc.parameters["precision_mode"] == "FP16"
    assert onnx_cfg.instance_group[0].kind == pb.ModelInstanceGroup.KIND_GPU
    assert not ts_cfg.HasField("optimization")
    for kwargs, message in (
        ({"max_batch_size": 65}, "between 1 and 64"),
        ({"tensorrt": "int8"}, "fp16 or fp32"),
        ({"tensorrt": "fp16", "device": "cpu"}, "needs --device gpu"),
        ({"device": "tpu"}, "unknown device"),
        ({"instances": 0}, "at least 1"),
        ({"formats": "tflite"}, "unknown format tflite"),
    ):
        with pytest.raises(InputError, match=message):
            deploy_model(spec, artifacts, repository, **kwargs)


def _wrong_torchscript(path: Path) -> None:
    """A real TorchScript module with the right input but a wrong output shape ([batch, 3])."""
    module = torch.jit.trace(
        torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(784, 3)).eval(), torch.zeros(2, 1, 28, 28)
    )
    torch.jit.save(module, str(path))


def test_a_failing_lint_keeps_the_previous_model_and_leaves_no_staging_folder(one):
    artifacts, repository = one
    spec = registry.get("cnn_mnist")
    deploy_model(spec, artifacts, repository)
    before = {p.relative_to(repository): p.read_bytes() for p in repository.rglob("*") if p.is_file()}
    _wrong_torchscript(artifacts / "cnn_mnist" / "model.pt")
    _rewrite_record(artifacts, "cnn_mnist", torchscript={})
    with pytest.raises(CheckFailed, match=r"output log_probs__0 is float32\[1, 3\].*declares float32\[1, 10\]"):
        deploy_model(spec, artifacts, repository, formats="torchscript", max_batch_size=8)
    # an ONNX graph whose output name differs from the registry's fails the name check
    proto = onnx.load(str(artifacts / "cnn_mnist" / "model.onnx"))
    old = proto.graph.output[0].name
    for node in proto.graph.node:
        node.output[:] = ["renamed__0" if o == old else o for o in node.output]
    proto.graph.output[0].name = "renamed__0"
    onnx.save(proto, str(artifacts / "cnn_mnist" / "model.onnx"))
    _rewrite_record(artifacts, "cnn_mnist", onnx={})
    with pytest.raises(CheckFailed, match="do not match the ONNX graph"):
        deploy_model(spec, artifacts, repository, formats="onnx", max_batch_size=8)
    # right names and dtypes, wrong output width: the graph's dims do not fit the config's
    wrong = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(784, 3)).eval()
    onnx_path = artifacts / "cnn_mnist" / "model.onnx"
    axes = {"image__0": {0: "batch"}, "log_probs__0": {0: "batch"}}
    torch.onnx.export(
        wrong,
        (torch.zeros(2, 1, 28, 28),),
        str(onnx_path),
        dynamo=False,
        dynamic_axes=axes,
        opset_version=proto.opset_import[0].version,
        input_names=["image__0"],
        output_names=["log_probs__0"],
    )
    _rewrite_record(artifacts, "cnn_mnist", onnx={"ir_version": onnx.load(str(onnx_path)).ir_version})
    with pytest.raises(CheckFailed, match=r"output log_probs__0 dims \[-1, 10\] do not fit the graph's \[-1, 3\]"):
        deploy_model(spec, artifacts, repository, formats="onnx", max_batch_size=8)
    after = {p.relative_to(repository): p.read_bytes() for p in repository.rglob("*") if p.is_file()}
    assert after == before
    assert _leftovers(repository) == []


def test_deploying_one_model_leaves_the_others_untouched(one):
    artifacts, repository = one
    stale = repository.parent / ".zs-deploy-linear_onnx-killed"  # left by a deploy killed mid-way
    (stale / "1").mkdir(parents=True)
    os.utime(stale, (time.time() - 3600, time.time() - 3600))
    deploy_model(registry.get("linear"), artifacts, repository)
    assert not stale.exists()
    deploy_model(registry.get("cnn_mnist"), artifacts, repository)
    linear = {
        p: (p.stat().st_mtime_ns, p.stat().st_ino, p.read_bytes())
        for p in repository.glob("linear_*/**/*")
        if p.is_file()
    }
    deploy_model(registry.get("cnn_mnist"), artifacts, repository, max_batch_size=4)
    assert {
        p: (p.stat().st_mtime_ns, p.stat().st_ino, p.read_bytes())
        for p in repository.glob("linear_*/**/*")
        if p.is_file()
    } == linear
    manifest = read_manifest(repository).models
    assert set(manifest) == {"linear_onnx", "linear_torchscript", "cnn_mnist_onnx", "cnn_mnist_torchscript"}
    assert manifest["cnn_mnist_onnx"].max_batch_size == 4 and manifest["linear_onnx"].max_batch_size == 64
    assert _pbtxt(repository / "cnn_mnist_onnx" / "config.pbtxt").max_batch_size == 4
    assert _leftovers(repository) == []
    shutil.rmtree(repository / "linear_onnx")  # a removed folder drops out of the manifest on the next write
    deploy_model(registry.get("cnn_mnist"), artifacts, repository, formats="onnx")
    assert "linear_onnx" not in read_manifest(repository).models


def test_without_sample_npz_the_warmup_falls_back_to_zeros_and_still_lints(exported, tmp_path):
    artifacts = _copy(exported[0], tmp_path / "art", "cnn_mnist", "name_gru")
    repository = tmp_path / "model_repository"
    for name in ("cnn_mnist", "name_gru"):
        (artifacts / name / "sample.npz").unlink()
        entries = deploy_model(registry.get(name), artifacts, repository)
        assert {e.warmup for e in entries} == {"safe values (no sample.npz)"}
    cnn = _pbtxt(repository / "cnn_mnist_onnx" / "config.pbtxt").model_warmup[0]
    assert cnn.inputs["image__0"].zero_data and list(cnn.inputs["image__0"].dims) == [1, 28, 28]
    gru = _pbtxt(repository / "name_gru_torchscript" / "config.pbtxt").model_warmup[0]
    assert gru.inputs["tokens__0"].zero_data and list(gru.inputs["tokens__0"].dims) == [1]
    # a zero length is not a request the GRU accepts: lengths warm up as 1
    assert gru.inputs["lengths__1"].input_data_file == "lengths__1"
    raw = (repository / "name_gru_torchscript" / WARMUP_DIR / "lengths__1").read_bytes()
    assert np.frombuffer(raw, "<i8").tolist() == [1]


def test_kserve_target_writes_a_valid_inference_service(one):
    artifacts, repository = one
    deploy_model(registry.get("linear"), artifacts, repository, target="kserve", storage_uri="gs://bucket/repo")
    doc = yaml.safe_load((repository / "inferenceservice.yaml").read_text())
    assert doc["apiVersion"] == "serving.kserve.io/v1beta1" and doc["kind"] == "InferenceService"
    assert doc["metadata"]["name"] == "zeroserve"
    model = doc["spec"]["predictor"]["model"]
    assert model["modelFormat"]["name"] == "triton" and model["runtime"] == "kserve-tritonserver"
    assert model["storageUri"] == "gs://bucket/repo" and model["runtimeVersion"] == TARGET.tag
    assert model["resources"]["limits"]["nvidia.com/gpu"] == "1"  # linear's config is KIND_GPU
    assert model["protocolVersion"] == "v2"  # KServe would assume v1, which the Triton runtime refuses
    deploy_model(registry.get("linear"), artifacts, repository, device="cpu")
    cpu = write_kserve_manifest(repository)  # the GPU limit follows the configs' instance kind
    assert "nvidia.com/gpu" not in yaml.safe_load(cpu.read_text())["spec"]["predictor"]["model"]["resources"]["limits"]
    with pytest.raises(InputError, match="needs a scheme"):
        write_kserve_manifest(repository, storage_uri="bucket/repo")


# ---------------------------------------------------------------- the CLI


def test_cli_deploys_and_prints_json(one):
    artifacts, repository = one
    result = runner.invoke(
        app,
        [
            "deploy",
            "linear",
            "--artifacts",
            str(artifacts),
            "--repository",
            str(repository),
            "--device",
            "cpu",
            "--instances",
            "2",
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert [e["name"] for e in out["deployed"]] == ["linear_onnx", "linear_torchscript"]
    assert out["target"]["image"] == TARGET.image
    assert all(e["instance_group"] == {"kind": "KIND_CPU", "count": 2} for e in out["deployed"])


def test_cli_all_skips_models_without_a_pass_export_and_deploys_the_rest(one):
    artifacts, repository = one
    result = runner.invoke(app, ["deploy", "all", "--artifacts", str(artifacts), "--repository", str(repository)])
    assert result.exit_code == 0, result.output
    assert "skipped" in result.output and "run `zeroserve export wide_deep` first" in result.output
    assert sorted(p.name for p in repository.iterdir() if p.is_dir()) == [
        "cnn_mnist_onnx",
        "cnn_mnist_torchscript",
        "linear_onnx",
        "linear_torchscript",
    ]


def test_cli_all_reports_a_lint_failure_and_deploys_the_rest(one):
    artifacts, repository = one
    _wrong_torchscript(artifacts / "cnn_mnist" / "model.pt")
    _rewrite_record(artifacts, "cnn_mnist", torchscript={})
    result = runner.invoke(
        app,
        ["deploy", "all", "--artifacts", str(artifacts), "--repository", str(repository), "--format", "torchscript"],
    )
    assert result.exit_code == 1, result.output
    assert "failed cnn_mnist" in result.output and "float32[1, 3]" in result.output  # brackets are not markup
    assert (repository / "linear_torchscript").is_dir() and not (repository / "cnn_mnist_torchscript").exists()


def test_cli_errors_are_one_clear_line(one, tmp_path):
    artifacts, repository = one
    base = ["--artifacts", str(artifacts), "--repository", str(repository)]
    cases = [
        (["deploy", "wide_deep", *base], 2, "no export record"),
        (["deploy", "nope", *base], 2, "unknown model 'nope'"),
        (["deploy", "linear", *base, "--format", "tflite"], 2, "unknown format tflite"),
        (["deploy", "linear", *base, "--max-batch-size", "100"], 2, "between 1 and 64"),
        (["deploy", "linear", *base, "--tensorrt", "fp16", "--device", "cpu"], 2, "needs --device gpu"),
        (["deploy", "linear", *base, "--target", "kserve", "--storage-uri", "nowhere"], 2, "needs a scheme"),
        (
            ["deploy", "all", "--artifacts", str(tmp_path / "empty"), "--repository", str(repository)],
            2,
            "nothing deployed",
        ),
    ]
    for args, code, message in cases:
        result = runner.invoke(app, args)
        assert result.exit_code == code, (args, result.output)
        assert message in result.output and "Traceback" not in result.output
    _wrong_torchscript(artifacts / "linear" / "model.pt")
    result = runner.invoke(app, ["deploy", "linear", *base, "--format", "torchscript"])
    assert result.exit_code == 2 and "does not match the sha256" in result.output
    _rewrite_record(artifacts, "linear", torchscript={})
    result = runner.invoke(app, ["deploy", "linear", *base, "--format", "torchscript"])
    assert result.exit_code == 1 and "TorchScript forward" in result.output and "Traceback" not in result.output

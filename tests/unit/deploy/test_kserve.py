"""KServe hand-off: manifests KServe accepts, the offline check, capacity from a tune record, docker's binding.

Unit tier: no server. KServe's own files are read from ../shared/kserve beside the repository
(missing: fails under CI=true, skipped elsewhere).
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import pytest
import yaml
from perf_fakes import perf_record  # tests/ is on sys.path (its conftest)
from typer.testing import CliRunner

from zeroserve.app.cli import app
from zeroserve.deploy import kserve as KS
from zeroserve.deploy import kserve_check as K
from zeroserve.deploy import plan as P
from zeroserve.errors import CheckFailed, InputError
from zeroserve.records.tune import TuneRecord
from zeroserve.serve.docker import docker_command
from zeroserve.tune import record as tune_record_mod
from zeroserve.tune.settings import tuned_on

SHARED = Path(__file__).resolve().parents[3].parent / "shared" / "kserve"
CRD = SHARED / "serving.kserve.io_inferenceservices.yaml"
RUNTIME = SHARED / "kserve-tritonserver.yaml"
runner = CliRunner()

CONFIG = """name: "{name}"
backend: "onnxruntime"
max_batch_size: 64
input [ {{ name: "image__0" data_type: TYPE_FP32 dims: [ 1, 28, 28 ] }} ]
output [ {{ name: "log_probs__0" data_type: TYPE_FP32 dims: [ 10 ] }} ]
instance_group [ {{ count: 1 kind: {kind} }} ]
"""


def _shared_or_skip() -> None:
    if not (CRD.is_file() and RUNTIME.is_file()):
        reason = f"KServe's reference files are missing from {SHARED}"
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(reason)
        pytest.skip(reason)


@pytest.fixture(scope="module")
def shared_rules():
    """The CRD's spec schema and the runtime's rules derived from ../shared/kserve (not the shipped copy)."""
    _shared_or_skip()
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    return (
        K.spec_schema_from_crd(yaml.load(CRD.read_text(), Loader=loader)),
        K.runtime_rules_from_yaml(yaml.safe_load(RUNTIME.read_text())),
    )


@pytest.fixture()
def against_shared(shared_rules, monkeypatch):
    """Validate against ../shared/kserve's files themselves."""
    monkeypatch.setattr(K, "spec_schema", lambda: shared_rules[0])
    monkeypatch.setattr(K, "runtime_rules", lambda: shared_rules[1])


@pytest.fixture()
def repository(tmp_path):
    repo = tmp_path / "model_repository"
    for name, kind in (("cnn_mnist_onnx", "KIND_CPU"), ("cnn_mnist_onnx_fp16", "KIND_GPU")):
        (repo / name / "1").mkdir(parents=True)
        (repo / name / "config.pbtxt").write_text(CONFIG.format(name=name, kind=kind))
    return repo


def test_the_shipped_rules_are_kserves_files(shared_rules):
    assert json.loads(K.SCHEMA_FILE.read_text()) == shared_rules[0]
    assert json.loads(K.RUNTIME_FILE.read_text()) == shared_rules[1]
    assert shared_rules[1]["protocolVersions"] == ["v2", "grpc-v2"]


@pytest.mark.parametrize("protocol", ["http", "grpc"])
@pytest.mark.parametrize("mode", ["knative", "standard"])
@pytest.mark.parametrize("per_model", [False, True])
def test_written_manifests_are_accepted(against_shared, repository, protocol, mode, per_model):
    options = KS.KServeOptions(
        name="course_models",
        namespace="ml",
        protocol=protocol,
        deployment_mode=mode,
        per_model=per_model,
        storage_uri="gs://bucket/repo/",
    )
    rows = KS.write_kserve_manifests(repository, options)
    assert len(rows) == (2 if per_model else 1)
    for row in rows:
        doc = yaml.safe_load(Path(row["path"]).read_text())
        assert K.violations(doc) == []
        model = doc["spec"]["predictor"]["model"]
        assert model["protocolVersion"] == {"http": "v2", "grpc": "grpc-v2"}[protocol]
        assert doc["metadata"]["namespace"] == "ml"
        assert "cpu" not in model["resources"]["limits"]  # no CPU limit by default
        gpu = "nvidia.com/gpu" in model["resources"]["limits"]
        annotations = doc["metadata"]["annotations"]
        assert annotations[K.DEPLOYMENT_MODE] == {"knative": "Knative", "standard": "Standard"}[mode]
        assert (annotations.get(K.AUTOSCALER_CLASS) == "hpa") == (mode == "standard")
        if mode == "standard":
            assert doc["spec"]["predictor"]["scaleMetric"] == "cpu"
        if per_model:
            (folder,) = row["models"]
            assert model["storageUri"] == f"gs://bucket/repo/{folder}"
            assert doc["metadata"]["name"] == "course-models-" + folder.replace("_", "-")
            assert gpu == (folder == "cnn_mnist_onnx_fp16")  # exactly the KIND_GPU config
        else:
            assert model["storageUri"] == "gs://bucket/repo"
            assert doc["metadata"]["name"] == "course-models"
            assert gpu  # one of the configs is KIND_GPU
        assert K.check_file(Path(row["path"])) == []


def _refused(tmp_path: Path, edit) -> list[str]:
    doc = KS.kserve_manifest("cnn-mnist")
    edit(doc)
    path = tmp_path / "isvc.yaml"
    path.write_text(yaml.safe_dump(doc))
    return K.check_file(path)


@pytest.mark.parametrize(
    "edit, line",
    [
        (
            lambda d: d["spec"]["predictor"]["model"].pop("protocolVersion"),
            "spec.predictor.model.protocolVersion: missing; KServe then assumes v1, which kserve-tritonserver does not "
            "support (it lists v2, grpc-v2)",
        ),
        (
            lambda d: d["spec"]["predictor"]["model"].update(protocolversion="v2"),
            "spec.predictor.model.protocolversion: unknown field (did you mean protocolVersion?)",
        ),
        (
            lambda d: d["metadata"].update(name="cnn_mnist_onnx"),
            "metadata.name: 'cnn_mnist_onnx' breaks KServe's name rule",
        ),
        (
            lambda d: d["spec"]["predictor"]["model"].update(modelFormat={"name": "caffe"}),
            "spec.predictor.model.modelFormat.name: 'caffe' is not a format kserve-tritonserver supports",
        ),
        (
            lambda d: (
                d["spec"]["predictor"].update(scaleMetric="rps")
                or d["metadata"]["annotations"].update({K.DEPLOYMENT_MODE: "Standard"})
            ),
            "spec.predictor.scaleMetric: 'rps' does not autoscale in Standard mode",
        ),
    ],
)
def test_a_manifest_kserve_would_refuse_gets_its_line(against_shared, tmp_path, edit, line):
    problems = _refused(tmp_path, edit)
    assert len(problems) == 1 and problems[0].startswith(line), problems


def test_check_cli_exit_codes(tmp_path):
    good = tmp_path / "good.yaml"
    good.write_text(yaml.safe_dump(KS.kserve_manifest("cnn-mnist")))
    assert runner.invoke(app, ["deploy", "--target", "kserve", "--check", str(good)]).exit_code == 0
    bad = tmp_path / "bad.yaml"
    doc = KS.kserve_manifest("cnn-mnist")
    del doc["spec"]["predictor"]["model"]["protocolVersion"]
    bad.write_text(yaml.safe_dump(doc))
    result = runner.invoke(app, ["deploy", "--target", "kserve", "--check", str(bad)])
    assert result.exit_code == 1 and "protocolVersion: missing" in result.output
    broken = tmp_path / "broken.yaml"
    broken.write_text("spec: [unclosed\n")
    result = runner.invoke(app, ["deploy", "--target", "kserve", "--check", str(broken)])
    assert result.exit_code == 2 and "error:" in result.output and "Traceback" not in result.output
    result = runner.invoke(app, ["deploy", "--target", "kserve", "--check", str(tmp_path / "absent.yaml")])
    assert result.exit_code == 2


def test_names_map_to_kserves_rule():
    assert KS.kserve_name("cnn_mnist_onnx") == "cnn-mnist-onnx"
    assert KS.kserve_name("2nd_model") == "m-2nd-model"
    with pytest.raises(InputError, match="KServe InferenceService name"):
        KS.kserve_name("CNN")


# ---------------------------------------------------------------- plan, from a tune record


def _level(concurrency: int, throughput: float, p99: float, cpu: float, rss: float) -> dict:
    counted = {"requests": 100, "ok": 100, "failed": 0}
    return {
        "concurrency": concurrency,
        "throughput": throughput,
        "p50_ms": p99 / 2,
        "p99_ms": p99,
        "stable": True,
        "ok": 100,
        "failed": 0,
        "totals": counted,
        "warmup": dict(counted),
        "latency_metric": "p99_ms",
        "drain": {**counted, "requests": 0, "ok": 0},
        "server_resources": {"cpu_cores": cpu, "rss_mb": rss, "peak_rss_mb": rss, "processes": 2, "seconds": 3.0},
    }


def _perf_record(**over):
    levels = [
        _level(1, 900.0, 1.2, 0.9, 410.0),
        _level(2, 1500.0, 2.0, 1.4, 415.0),
        _level(4, 2100.0, 4.6, 1.9, 420.0),
        _level(8, 2300.0, 9.5, 2.0, 425.0),
    ]
    return perf_record(latency_metric="p99_ms", best=4, levels=levels, **over)


def test_plan_from_a_perf_record_read_through_its_type(tmp_path):
    path = tmp_path / "perf.json"
    _perf_record(model="cnn_mnist", triton_model="cnn_mnist_onnx", measured_on=tuned_on("onnx")).save(path)
    plan = P.plan("cnn_mnist", 5000, 5, record_paths=[path], assume_same=True)
    assert plan["per_replica"]["throughput"] == 2100.0 and plan["per_replica"]["concurrency"] == 4
    path.write_text(path.read_text()[:-40])  # a perf record cut short is one line saying so
    with pytest.raises(InputError, match=r"perf\.json is truncated .*; give a record"):
        P.plan("cnn_mnist", 5000, 5, record_paths=[path], assume_same=True)


def _tune_record(tmp_path: Path, facts: dict | None) -> Path:
    """A tune record as run_tune writes it: the search's perf levels summarised by tune's own `summary`."""
    measured = tune_record_mod.summary(_perf_record())
    settings = {"fmt": "onnx", "instances": 1, "max_batch_size": 8, "prefer_max": False, "queue_delay_us": 0}
    entry = {
        "candidate": {**settings, "threads": 1, "preferred_batch_sizes": []},
        "label": "1 instance",
        **measured.to_json(),
    }
    rec = {
        "kind": "tune",
        "model": "cnn_mnist",
        "triton_model": "cnn_mnist_onnx",
        "formats": {"onnx": "cnn_mnist_onnx"},
        "search": "quick",
        "latency_budget_ms": 5.0,
        "percentile": 99.0,
        "latency_metric": "p99_ms",
        "protocol": "grpc",
        "space": {"instances": [1]},
        "deployed": entry,
        "candidates": [{**entry, "deployed": True}],
        "chosen": entry,
        "chosen_is_deployed": True,
        "timed_out": False,
        "seconds": 60.0,
        "notes": [],
        "outcome": {"exit_code": 0, "reason": ""},
        "applied": None,
    }
    if facts is not None:
        rec["tuned_on"] = facts
    path = tmp_path / "tune.json"
    TuneRecord.model_validate(rec).save(path)
    return path


def test_plan_from_a_tune_record(tmp_path):
    path = _tune_record(tmp_path, tuned_on("onnx"))
    with pytest.raises(InputError, match="another engine .*--assume-same"):
        P.plan("cnn_mnist", 5000, 5, record_paths=[path])
    plan = P.plan("cnn_mnist", 5000, 5, record_paths=[path], assume_same=True)
    assert plan["per_replica"]["throughput"] == 2100.0 and plan["per_replica"]["concurrency"] == 4
    assert plan["replicas"] == math.ceil(5000 / (2100.0 * (1 - P.DEFAULT_HEADROOM)))
    assert plan["kserve"]["knative"] == {
        "minReplicas": plan["replicas"],
        "maxReplicas": 2 * plan["replicas"],
        "scaleMetric": "rps",
        "scaleTarget": 1470,
    }
    assert any("sustains what" in line for line in plan["assumed"])
    assert P.resource_requests(plan["resources"])[0] == {"cpu": "1900m", "memory": "576Mi"}
    with pytest.raises(CheckFailed, match="no recorded level .* met the 1 ms budget; the lowest: p99 1.20 ms"):
        P.plan("cnn_mnist", 5000, 1, record_paths=[path], assume_same=True)


def test_a_record_without_machine_facts_is_an_unknown_machine(tmp_path):
    path = _tune_record(tmp_path, None)
    with pytest.raises(InputError, match="unknown machine"):
        P.plan("cnn_mnist", 100, 5, record_paths=[path])


def test_a_plan_sizes_the_manifest(against_shared, repository, tmp_path):
    plan = P.plan("cnn_mnist", 5000, 5, record_paths=[_tune_record(tmp_path, tuned_on("onnx"))], assume_same=True)
    rows = KS.write_kserve_manifests(repository, KS.KServeOptions(per_model=True), plans={"cnn_mnist_onnx": plan})
    doc = yaml.safe_load(Path(next(r for r in rows if r["models"] == ["cnn_mnist_onnx"])["path"]).read_text())
    predictor = doc["spec"]["predictor"]
    assert predictor["minReplicas"] == plan["replicas"] and predictor["scaleMetric"] == "rps"
    assert predictor["model"]["resources"]["requests"] == {"cpu": "1900m", "memory": "576Mi"}
    assert K.violations(doc) == []


def test_plan_cli_says_what_it_assumed(tmp_path):
    path = _tune_record(tmp_path, tuned_on("onnx"))
    refused = runner.invoke(
        app, ["plan", "cnn_mnist", "--target-rps", "5000", "--latency-budget-ms", "5", "--record", str(path)]
    )
    assert refused.exit_code == 2 and "--assume-same" in refused.output
    result = runner.invoke(
        app,
        [
            "plan",
            "cnn_mnist",
            "--target-rps",
            "5000",
            "--latency-budget-ms",
            "5",
            "--record",
            str(path),
            "--assume-same",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "assumed:" in result.output and "native" in result.output


# ---------------------------------------------------------------- docker --print


def test_docker_print_binds_loopback_unless_allow_remote(tmp_path):
    cmd = docker_command(tmp_path, "img")
    assert [cmd[i + 1] for i, a in enumerate(cmd) if a == "-p"] == [
        "127.0.0.1:8000:8000",
        "127.0.0.1:8001:8001",
        "127.0.0.1:8002:8002",
    ]
    printed = runner.invoke(app, ["serve", "--engine", "docker", "--print", "--repository", str(tmp_path)])
    assert printed.exit_code == 0 and "-p 127.0.0.1:8000:8000" in printed.output
    remote = runner.invoke(
        app, ["serve", "--engine", "docker", "--print", "--allow-remote", "--repository", str(tmp_path)]
    )
    assert remote.exit_code == 0 and "-p 8000:8000" in remote.output and "127.0.0.1:" not in remote.output


def test_plan_reads_a_tune_record_written_by_53e25ec():
    """tune.json as 53e25ec left it after --apply: the applied config's levels size the plan."""
    path = Path(__file__).resolve().parents[2] / "fixtures" / "records_53e25ec" / "tune_applied.json"
    plan = P.plan("softmax_mnist", 100, 200, record_paths=[path], assume_same=True)
    assert plan["per_replica"]["config"].startswith("tuned config onnx inst 1")
    assert plan["per_replica"]["kind"] == "tune" and plan["per_replica"]["throughput"] > 0
    assert "embedded tritonserver" in plan["assumed"][0]

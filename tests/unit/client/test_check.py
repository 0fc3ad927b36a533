"""check's comparison and its refusal of a held-out set that is not the recorded one (no server needed)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from zeroserve import registry
from zeroserve.client import check
from zeroserve.errors import InputError
from zeroserve.parity import Tolerance
from zeroserve.records.export import ExportRecord
from zeroserve.records.train import TrainData, TrainMetric, TrainRecord

CNN, LINEAR, LOGISTIC = (registry.get(n) for n in ("cnn_mnist", "linear", "logistic"))


TOL = Tolerance(1e-5, 1e-4)


def test_identical_outputs_pass():
    rng = np.random.default_rng(0)
    eager = np.log(rng.dirichlet(np.ones(10), 50)).astype(np.float32)
    row = check.compare(CNN, [eager.copy()], [eager], eager.argmax(1), TOL)
    assert row["max_abs"] == 0 and row["outside_tolerance"] == 0 and row["top1_agreement"] == 1.0
    assert row["passed"] and row["metric_served"] == row["metric_eager"] == 1.0


def test_rule_is_atol_plus_rtol_times_eager():
    eager = np.array([[100.0], [0.0]], np.float32)
    within = np.array([[100.0 + 1e-5 + 1e-4 * 100 - 1e-6], [9e-6]], np.float32)
    assert check.compare(LINEAR, [within], [eager], eager, TOL)["outside_tolerance"] == 0
    outside = np.array([[100.02], [0.0]], np.float32)
    assert check.compare(LINEAR, [outside], [eager], eager, TOL)["outside_tolerance"] == 1


def test_relative_error_stays_finite_at_zero():
    row = check.compare(LINEAR, [np.array([[1e-3]])], [np.array([[0.0]])], np.array([[0.0]]), TOL)
    assert np.isfinite(row["max_rel"])


def test_top1_disagreement_and_binary_flip_are_reported():
    eager = np.array([[0.49], [0.9]], np.float32)
    served = np.array([[0.51], [0.9]], np.float32)
    row = check.compare(LOGISTIC, [served], [eager], np.array([[0.0], [1.0]]), TOL)
    assert row["top1_agreement"] == 0.5 and row["metric_served"] == 0.5 and row["metric_eager"] == 1.0
    assert row["disagreements"] == 1 and not row["passed"]


def test_a_served_array_of_another_shape_fails_instead_of_being_reshaped():
    eager = np.zeros((4, 10), np.float32)
    row = check.compare(CNN, [eager.reshape(4, 10, 1)], [eager], np.zeros(4, np.int64), TOL)
    assert not row["passed"] and "shape [4, 10, 1]" in row["error"] and row["metric_served"] is None


def test_tolerances_come_from_the_options_then_export_then_the_spec(tmp_path):
    spec = dataclasses.replace(LINEAR, tolerance=Tolerance(1e-3, 0.0))
    assert check.tolerances(spec, tmp_path, None, None) == Tolerance(1e-3, 0.0)
    (tmp_path / "linear").mkdir()
    ExportRecord(model="linear", status="PASS", formats={}, atol=2e-3, rtol=1e-2).save(
        tmp_path / "linear" / "export.json"
    )
    assert check.tolerances(spec, tmp_path, None, None) == Tolerance(2e-3, 1e-2)
    assert check.tolerances(spec, tmp_path, 5e-3, None) == Tolerance(5e-3, 1e-2)


def _train_record(folder, data: dict) -> None:
    metric = TrainMetric(name="mse", value=0.1)
    TrainRecord(model="linear", status="PASS", data=TrainData(**data), metric=metric).save(folder / "train.json")


def test_held_out_set_must_match_train_record(tmp_path):
    folder = tmp_path / "linear"
    folder.mkdir()
    split = LINEAR.data.load(tmp_path)
    _train_record(folder, {"source": split.source, "split_rule": split.rule, "sizes": split.sizes})
    assert check.held_out(LINEAR, tmp_path, tmp_path).sizes == split.sizes
    _train_record(folder, {"source": split.source, "split_rule": "another rule", "sizes": {"train": 2, "test": 2}})
    with pytest.raises(InputError, match="not the one training held out"):
        check.held_out(LINEAR, tmp_path, tmp_path)


def test_held_out_needs_a_train_record(tmp_path):
    with pytest.raises(InputError, match="no train.json"):
        check.held_out(LINEAR, tmp_path, tmp_path)


def test_a_check_record_of_53e25ec_reads_by_attribute_and_draws_its_table(capsys):
    """`client check --json` as 53e25ec printed it: its rows and skips typed, the table check prints drawn from them."""
    from pathlib import Path

    from zeroserve.client.cli_views import check_table
    from zeroserve.records.check import CheckRecord

    path = Path(__file__).resolve().parents[2] / "fixtures" / "records_53e25ec" / "check.json"
    rec = CheckRecord.load(path)
    (model,) = rec.models
    assert rec.status == "PASS" and model.model == "softmax_mnist" and model.measured_on is None  # not yet then
    assert {(r.format, r.protocol) for r in rec.rows} == {
        (f, p) for f in ("onnx", "torchscript", "onnx_int8") for p in ("grpc", "http")
    }
    variant = next(r for r in rec.rows if r.format == "onnx_int8")
    assert variant.failed_rules == [] and variant.rule and variant.variant_metric
    plain = next(r for r in rec.rows if r.format == "onnx")
    assert plain.failed_rules is None and plain.outputs and all(o.passed for o in plain.outputs.values())
    check_table(rec.rows, rec.skipped)
    shown = capsys.readouterr().out
    assert shown.count("PASS") == 6 and "variant rule" in shown


def test_a_check_record_is_written_back_in_the_order_check_wrote_it():
    import json
    from pathlib import Path

    from zeroserve.records.check import CheckRecord

    path = Path(__file__).resolve().parents[2] / "fixtures" / "records_53e25ec" / "check.json"
    written, again = json.loads(path.read_text()), CheckRecord.load(path).to_json()
    for old, new in zip(written["models"][0]["rows"], again["models"][0]["rows"]):
        assert list(old) == list(new)  # a plain row and a variant row, the verdict last

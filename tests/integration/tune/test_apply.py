"""`tune --apply` writes a tuned config atomically and reversibly; deploy keeps it unless told otherwise."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from zeroserve import registry
from zeroserve.deploy import repository as R
from zeroserve.deploy.config import parse
from zeroserve.deploy.lint import lint_model
from zeroserve.errors import CheckFailed
from zeroserve.records.manifest import Tuning
from zeroserve.tune import apply as ap
from zeroserve.tune.search import Candidate
from zeroserve.tune.settings import tuned_on

NAME = "logistic_onnx"
TUNED = Candidate("onnx", 2, 32, True, 500, 2)
TUNED_ON = {"engine": "test", "cpu_model": "test cpu", "cores": 2}


def leftovers(repository: Path) -> list[str]:
    return [p.name for d in (repository.resolve().parent, repository) for p in d.iterdir() if p.name.startswith(".zs-")]


def manifest(repository: Path) -> dict:
    return json.loads((repository / "manifest.json").read_text())["models"][NAME]


def test_apply_writes_the_settings_keeps_the_previous_config_and_records_the_measurement(repo):
    _, repository = repo
    before = (repository / NAME / "config.pbtxt").read_text()
    ap.apply_tuning(repository, NAME, TUNED, {"throughput": 1234.0}, TUNED_ON, {"latency_budget_ms": 5.0})
    model = parse((repository / NAME / "config.pbtxt").read_text())
    assert (model.instance_count, model.max_batch_size, model.preferred_batch_sizes, model.max_queue_delay_us) == (
        2,
        32,
        (32,),
        500,
    )
    assert model.parameters["intra_op_thread_count"] == "2"
    assert (repository / NAME / ap.PREVIOUS).read_text() == before
    entry = manifest(repository)
    assert entry["tuning"]["settings"]["instances"] == 2 and entry["tuning"]["tuned_on"] == TUNED_ON
    assert entry["tuning"]["measurement"]["throughput"] == 1234.0 and entry["tuning"]["latency_budget_ms"] == 5.0
    assert entry["instance_group"]["count"] == 2
    # the engine it was tuned on against the one the repository is written for (deploy's target release)
    assert entry["tuning"]["target_engine"]["backend"] == "onnxruntime"
    assert entry["tuning"]["engine_differs"] == ["the engine measured on is not known"]
    lint_model(repository / NAME)  # deploy's own lint passes on the tuned folder
    assert leftovers(repository) == []


def test_apply_records_the_engine_tuned_on_and_how_it_differs_from_the_repositorys_target(repo):
    _, repository = repo
    facts = tuned_on("onnx", "2.51.0")
    ap.apply_tuning(repository, NAME, TUNED, {"throughput": 1234.0}, facts, {"latency_budget_ms": 5.0})
    tuning = manifest(repository)["tuning"]
    assert tuning["engine"]["backend"] == "python" and tuning["engine"]["runtime"] == "onnxruntime"
    target = json.loads((repository / "manifest.json").read_text())["target"]
    assert tuning["target_engine"]["triton"] == target["triton"] and tuning["target_engine"]["image"] == target["image"]
    differs = tuning["engine_differs"]
    assert f"Triton version 2.51.0 measured, {target['triton']} targeted" in differs
    assert "backend python measured, onnxruntime targeted" in differs
    note = ap.engine_note(Tuning.model_validate(tuning))
    assert "embedded Triton 2.51.0" in note and target["image"] in note and "measure them again" in note
    # plan reads it from the repository
    from zeroserve.deploy.plan import applied_tuning

    tuned = applied_tuning(repository, NAME)
    assert tuned["engine_differs"] == differs and "embedded Triton 2.51.0" in tuned["tuned_on"]


def test_a_failing_apply_changes_nothing_and_revert_restores_the_deployed_config(repo, monkeypatch):
    _, repository = repo
    before = (repository / NAME / "config.pbtxt").read_text()
    manifest_before = (repository / "manifest.json").read_text()

    def broken(folder):
        raise CheckFailed("lint failed on purpose")

    monkeypatch.setattr(ap, "lint_model", broken)
    with pytest.raises(CheckFailed):
        ap.apply_tuning(repository, NAME, TUNED, {}, TUNED_ON, {})
    assert (repository / NAME / "config.pbtxt").read_text() == before
    assert (repository / "manifest.json").read_text() == manifest_before
    assert not (repository / NAME / ap.PREVIOUS).exists() and leftovers(repository) == []
    monkeypatch.undo()

    ap.apply_tuning(repository, NAME, TUNED, {}, TUNED_ON, {})
    ap.apply_tuning(repository, NAME, Candidate("onnx", 1, 16, False, 100, 1), {}, TUNED_ON, {})  # a second tuning
    ap.revert_tuning(repository, NAME)  # back to the config from before the first
    assert (repository / NAME / "config.pbtxt").read_text() == before
    assert not (repository / NAME / ap.PREVIOUS).exists()
    assert "tuning" not in manifest(repository)
    assert manifest(repository)["config_sha256"] == json.loads(manifest_before)["models"][NAME]["config_sha256"]


def test_deploy_keeps_tuned_settings_an_explicit_option_beats_them_and_reset_forgets_them(repo):
    art, repository = repo
    spec = registry.get("logistic")
    ap.apply_tuning(repository, NAME, TUNED, {}, TUNED_ON, {})
    R.deploy_model(spec, art, repository, formats=("onnx",))
    model = parse((repository / NAME / "config.pbtxt").read_text())
    assert (model.instance_count, model.max_batch_size, model.max_queue_delay_us) == (2, 32, 500)
    assert model.parameters["intra_op_thread_count"] == "2" and "tuning" in manifest(repository)

    R.deploy_model(spec, art, repository, formats=("onnx",), instances=1, max_queue_delay_us=0)
    model = parse((repository / NAME / "config.pbtxt").read_text())
    assert (model.instance_count, model.max_queue_delay_us, model.max_batch_size) == (1, 0, 32)
    assert sorted(manifest(repository)["tuning"]["overridden"]) == ["instances", "max_queue_delay_us"]

    R.deploy_model(spec, art, repository, formats=("onnx",), reset_tuning=True)
    model = parse((repository / NAME / "config.pbtxt").read_text())
    assert (model.instance_count, model.max_batch_size, model.max_queue_delay_us, model.preferred_batch_sizes) == (
        1,
        64,
        0,
        (),
    )
    assert "intra_op_thread_count" not in model.parameters and "tuning" not in manifest(repository)

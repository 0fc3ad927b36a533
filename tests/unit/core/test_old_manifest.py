"""A repository manifest written by zeroserve 53e25ec (`"schema": 1`, a tuning without the engine fields) is read
by the stage code that reads manifests: serve's artifact check, plan's applied tuning, deploy's merge."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from zeroserve.deploy.plan import applied_tuning
from zeroserve.deploy.repository import read_manifest, write_manifest
from zeroserve.errors import InputError
from zeroserve.records.layout import RepositoryLayout
from zeroserve.serve.runtime import manifest_sha256

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "records_53e25ec"


def _repository(tmp_path: Path, fixture: str) -> tuple[Path, dict]:
    repo = tmp_path / "model_repository"
    repo.mkdir()
    shutil.copy(FIXTURES / fixture, RepositoryLayout(repo).manifest)
    old = json.loads((FIXTURES / fixture).read_text())
    for name in old["models"]:  # the folders deploy placed beside it (write_manifest keeps entries with one)
        (repo / name).mkdir()
        (repo / name / "config.pbtxt").write_text(f'name: "{name}"\n')
    return repo, old


def test_serve_plan_and_deploy_read_a_53e25ec_manifest(tmp_path):
    repo, old = _repository(tmp_path, "manifest_tuned.json")
    entry = old["models"]["softmax_mnist_onnx"]
    assert manifest_sha256(repo, "softmax_mnist_onnx") == entry["artifact_sha256"]
    assert manifest_sha256(repo, "no_such_model") is None
    tuned = applied_tuning(repo, "softmax_mnist_onnx")
    assert tuned is not None and tuned["settings"] == entry["tuning"]["settings"]
    assert tuned["engine_differs"] == [] and tuned["target"] == "its target release"  # 53e25ec recorded neither
    assert applied_tuning(repo, "wide_deep_onnx") is None  # deployed, never tuned
    manifest = read_manifest(repo)
    assert manifest.models["softmax_mnist_onnx"].tuning.tuned_on.cores == entry["tuning"]["tuned_on"]["cores"]
    # merged and written again: every field of every entry kept, `schema` become `schema_version`
    write_manifest(repo, [manifest.models["wide_deep_onnx"]])
    again = json.loads(RepositoryLayout(repo).manifest.read_text())
    assert again["schema_version"] == 1 and "schema" not in again
    assert again["models"] == old["models"]


def test_a_torn_manifest_is_named_by_deploy_and_plan_and_ignored_by_serve(tmp_path):
    repo, _ = _repository(tmp_path, "manifest.json")
    path = RepositoryLayout(repo).manifest
    text = path.read_text()
    path.write_text(text[: text.index(",", 200) + 1])  # a write that stopped after a field
    with pytest.raises(InputError, match=r"repository manifest .*manifest.json is truncated .*zeroserve deploy"):
        read_manifest(repo)
    with pytest.raises(InputError, match="is truncated"):
        applied_tuning(repo, "softmax_mnist_onnx")
    assert manifest_sha256(repo, "softmax_mnist_onnx") is None  # serve copies unverified rather than failing

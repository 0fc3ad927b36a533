"""Fixtures of the tune tests: a repository with one small model deployed."""

from __future__ import annotations

import shutil

import pytest

from zeroserve import registry
from zeroserve.deploy import repository as R


@pytest.fixture()
def repo(models, tmp_path):
    models.export("logistic")  # the one model these tests deploy
    artifacts = models.folder
    art = tmp_path / "art"
    shutil.copytree(artifacts / "logistic", art / "logistic")
    repository = tmp_path / "model_repository"
    R.deploy_model(registry.get("logistic"), art, repository, formats=("onnx",))
    return art, repository

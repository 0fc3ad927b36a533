"""Shared fixtures: the course data folder, and one session's trained models.

Course data: ZEROSERVE_DATA_DIR if set, else ../shared/data/course beside the
repository. A test that needs a missing course file fails under CI=true and is
skipped, with the reason, elsewhere.

ZEROSERVE_TEST_TRAINED (local development only, ignored under CI=true): a folder left by
`zeroserve train all` with the registry defaults, copied into the session instead of
training the ten models again (saves minutes when several checkouts test at once).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from zeroserve import registry

REPO = Path(__file__).resolve().parents[1]


def course_data_dir() -> Path:
    env = os.environ.get("ZEROSERVE_DATA_DIR")
    return Path(env) if env else REPO.parent / "shared" / "data" / "course"


def require_course_files(*specs) -> None:
    """Fail (CI) or skip (elsewhere) when a course file the models need is missing."""
    missing = [f for s in specs for f in s.data.files if not (course_data_dir() / f).is_file()]
    if missing:
        reason = (
            f"course file(s) {', '.join(sorted(set(missing)))} missing from {course_data_dir()} "
            "(set ZEROSERVE_DATA_DIR or put ../shared/data/course beside the repository)"
        )
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(reason)
        pytest.skip(reason)


@pytest.fixture(scope="session")
def require_course():
    """`require_course_files`, for tests that need one model's course files."""
    return require_course_files


@pytest.fixture(scope="session")
def data_dir() -> Path:
    return course_data_dir()


@pytest.fixture(scope="session")
def trained(tmp_path_factory, data_dir) -> tuple[Path, dict]:
    """All ten models trained once with the registry defaults: (artifacts folder, records by name)."""
    from zeroserve.train import train_model

    require_course_files(*registry.REGISTRY.values())
    artifacts = tmp_path_factory.mktemp("artifacts")
    reuse = os.environ.get("ZEROSERVE_TEST_TRAINED")
    if reuse and os.environ.get("CI", "").lower() not in ("1", "true", "yes"):
        import json
        import shutil

        recs = {}
        for name in registry.REGISTRY:
            shutil.copytree(Path(reuse) / name, artifacts / name)
            recs[name] = json.loads((artifacts / name / "train.json").read_text())
        return artifacts, recs
    recs = {name: train_model(spec, data_dir, artifacts) for name, spec in registry.REGISTRY.items()}
    return artifacts, recs


@pytest.fixture(scope="session")
def exported(trained, data_dir) -> tuple[Path, dict]:
    """The trained models exported once to both formats through the gate: (artifacts, export records)."""
    from zeroserve.export import export_model

    artifacts, _ = trained
    recs = {name: export_model(spec, artifacts, data_dir=data_dir) for name, spec in registry.REGISTRY.items()}
    return artifacts, recs


VARIANT_MODEL = "softmax_mnist"  # small, and every variant kind applies to it


@pytest.fixture(scope="session")
def variant_artifacts(exported, tmp_path_factory, data_dir) -> tuple[Path, dict]:
    """softmax_mnist's export (copied, so the shared artifacts keep two formats) plus every variant
    kind made once through `export_model`: (artifacts, export record)."""
    import shutil

    from zeroserve.export import export_model

    artifacts = tmp_path_factory.mktemp("variant-artifacts")
    shutil.copytree(exported[0] / VARIANT_MODEL, artifacts / VARIANT_MODEL)
    rec = export_model(
        registry.get(VARIANT_MODEL),
        artifacts,
        data_dir=data_dir,
        variants=("int8", "int8-dynamic", "optimized", "fp16"),
    )
    return artifacts, rec

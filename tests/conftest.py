"""Shared fixtures: the course data folder, the session's trained models, and real servers.

Tiers by folder: tests/unit (no server, no real training; `make test-unit`), tests/integration (one
stage against real files or the real server), tests/e2e (the whole pipeline). Models are trained and
exported per model, only when a test asks (`models.export("cnn_mnist")`); `trained`/`exported` ask for
all ten. Server fixtures: `serve_cache` (a private ZEROSERVE_CACHE for the session),
`deployed_repository`, `server` (every deployed model, session-wide), `start_server` (a factory whose
servers stop with the test) and `free_ports`.

Course data: ZEROSERVE_DATA_DIR if set, else ../shared/data/course beside the
repository. A test that needs a missing course file fails under CI=true and is
skipped, with the reason, elsewhere.

ZEROSERVE_TEST_TRAINED (local development only, ignored under CI=true): a folder left by
`zeroserve train all` with the registry defaults, copied into the session instead of
training the ten models again (saves minutes when several checkouts test at once).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from zeroserve import registry
from zeroserve.records.export import ExportRecord
from zeroserve.records.layout import ModelFolder
from zeroserve.records.train import TrainRecord

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


class ModelStore:
    """The session's trained and exported course models, each made once, only when a test asks for it.

    Tests ask for the models they need (`models.export("cnn_mnist", "linear")`); `trained` and
    `exported` ask for all ten. Everything lands in one session folder, so a model trained for one
    test is reused by the next.
    """

    def __init__(self, folder: Path, data_dir: Path):
        self.folder, self.data_dir = folder, data_dir
        self.train_records: dict[str, TrainRecord] = {}
        self.export_records: dict[str, ExportRecord] = {}

    def train(self, *names: str) -> dict[str, TrainRecord]:
        """Train `names` (registry defaults) unless already trained; their train records by name."""
        from zeroserve.train import train_model

        names = names or tuple(registry.REGISTRY)
        todo = [n for n in names if n not in self.train_records]
        require_course_files(*(registry.get(n) for n in todo))
        reuse = os.environ.get("ZEROSERVE_TEST_TRAINED")
        for name in todo:
            if reuse and os.environ.get("CI", "").lower() not in ("1", "true", "yes"):
                import shutil

                shutil.copytree(Path(reuse) / name, self.folder / name, dirs_exist_ok=True)
                self.train_records[name] = TrainRecord.load(ModelFolder.of(self.folder, name).train_record)
            else:
                self.train_records[name] = train_model(registry.get(name), self.data_dir, self.folder)
        return {n: self.train_records[n] for n in names}

    def export(self, *names: str) -> dict[str, ExportRecord]:
        """Train, then export `names` to both formats through the gate, unless already done; export records."""
        from zeroserve.export import export_model

        names = names or tuple(registry.REGISTRY)
        self.train(*names)
        for name in names:
            if name not in self.export_records:
                self.export_records[name] = export_model(registry.get(name), self.folder, data_dir=self.data_dir)
        return {n: self.export_records[n] for n in names}


@pytest.fixture(scope="session")
def models(tmp_path_factory, data_dir) -> ModelStore:
    """Per-model fixtures: `models.train(*names)`, `models.export(*names)`; the folder is `models.folder`."""
    return ModelStore(tmp_path_factory.mktemp("artifacts"), data_dir)


@pytest.fixture(scope="session")
def trained(models) -> tuple[Path, dict]:
    """All ten models trained once with the registry defaults: (artifacts folder, records by name)."""
    return models.folder, models.train()


@pytest.fixture(scope="session")
def exported(models) -> tuple[Path, dict]:
    """The trained models exported once to both formats through the gate: (artifacts, export records)."""
    return models.folder, models.export()


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


# ---------------------------------------------------------------- servers (integration and e2e tiers)


@dataclass
class Endpoints:
    """Where a test server listens, and what it serves."""

    host: str
    http_port: int
    grpc_port: int
    metrics_port: int
    models: list[str]
    pid: int
    artifacts: Path | None = None
    repository: Path | None = None
    handle: object = field(default=None, repr=False)  # the engine's Server, for stop tests

    @property
    def http_url(self) -> str:
        return f"{self.host}:{self.http_port}"

    @property
    def grpc_url(self) -> str:
        return f"{self.host}:{self.grpc_port}"


def pick_free_ports(n: int = 3, host: str = "127.0.0.1") -> list[int]:
    """`n` distinct free ports, from zeroserve's one picker (each held until all are chosen)."""
    from zeroserve.triton.ports import resolve_free_ports

    return list(resolve_free_ports(host, {str(i): 0 for i in range(n)}).values())


def launch(repository: Path, models: list[str] | None = None, artifacts: Path | None = None, **options) -> Endpoints:
    """Start the embedded engine on free ports (zeroserve's private start) and describe it."""
    from zeroserve.serve.private import start_private

    server = start_private(repository, models, purpose="zeroserve tests", **options)
    s = server.state
    return Endpoints(
        "127.0.0.1",
        s.http_port,
        s.grpc_port,
        s.metrics_port,
        list(s.models),
        server.pid,
        artifacts,
        Path(repository),
        server,
    )


@pytest.fixture(scope="session")
def free_ports() -> Callable[[], list[int]]:
    """Three distinct free ports (http, grpc, metrics) each time it is called."""
    return pick_free_ports


@pytest.fixture(scope="session")
def serve_cache(tmp_path_factory) -> Iterator[Path]:
    """A private cache folder for the session (state files, runtime repositories, logs)."""
    cache = tmp_path_factory.mktemp("zeroserve-cache")
    before = os.environ.get("ZEROSERVE_CACHE")
    os.environ["ZEROSERVE_CACHE"] = str(cache)
    yield cache
    if before is None:
        os.environ.pop("ZEROSERVE_CACHE", None)
    else:
        os.environ["ZEROSERVE_CACHE"] = before


@pytest.fixture(scope="session")
def deployed_repository(exported, tmp_path_factory) -> Path:
    """A canonical repository with every model whose export passed, in both formats."""
    from zeroserve.deploy.repository import deploy_model

    artifacts, recs = exported
    repository = tmp_path_factory.mktemp("model_repository")
    for name, spec in registry.REGISTRY.items():
        rec = recs.get(name)
        formats = tuple(f for f, entry in (rec.formats if rec else {}).items() if entry.status == "PASS")
        if formats:
            deploy_model(spec, artifacts, repository, formats=formats)
    return repository


@pytest.fixture(scope="session")
def server(deployed_repository, exported, serve_cache) -> Iterator[Endpoints]:
    """The embedded Triton server with every deployed model READY, for the whole session.

    Started as `serve --allow-client-shm` is, so the client's shared-memory tests run on it; tests of the
    default (closed) start their own (test_closed.py).
    """
    endpoints = launch(deployed_repository, None, artifacts=exported[0], allow_client_shm=True)
    yield endpoints
    endpoints.handle.stop()


@pytest.fixture
def start_server(serve_cache) -> Iterator[Callable[..., Endpoints]]:
    """Factory: start an extra server (free ports); every one is stopped when the test ends."""
    started: list[Endpoints] = []

    def start(repository: Path, models: list[str] | None = None, **options) -> Endpoints:
        endpoints = launch(repository, models, **options)
        started.append(endpoints)
        return endpoints

    yield start
    for endpoints in started:
        endpoints.handle.stop()

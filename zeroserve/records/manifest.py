"""The repository manifest (docs/contracts.md, "Canonical repository"): its typed shape, loaded and saved only
through this type.

`<repository>/manifest.json` records what `deploy` placed in each model folder (from which export record,
with which settings and artifact sha256) and, after `zeroserve tune --apply`, the entry's `tuning`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar, Self

from zeroserve.records.base import Block, Record
from zeroserve.records.measured import MeasuredOn


class TunedSettings(Block):
    """The serving settings a tuning chose (a later deploy reads them back)."""

    instances: int | None = None
    max_batch_size: int | None = None
    preferred_batch_sizes: list[int] | None = None
    max_queue_delay_us: int | None = None
    threads: int | None = None


class Tuning(Block):
    """What `zeroserve tune --apply` wrote into a model folder, and on which engine it was measured."""

    settings: TunedSettings | None = None
    measurement: dict[str, Any] | None = None
    """The perf level that chose the settings (throughput within the budget, latencies, the side-by-side ratio)."""
    tuned_on: MeasuredOn | None = None
    engine: dict[str, Any] | None = None
    """The engine it was tuned on (`tuned_on.engine_detail`)."""
    target_engine: dict[str, Any] | None = None
    """The engine this repository is written for (the manifest's target release running the backend natively)."""
    engine_differs: list[str] | None = None
    """How the two engines differ, one line each (`tune --apply` prints them; `plan --repository` assumes them)."""
    latency_budget_ms: float | None = None
    latency_metric: str | None = None
    protocol: str | None = None
    search: str | None = None
    applied: str | None = None
    previous_config: str | None = None
    """The file beside config.pbtxt holding the config from before the first tuning."""
    previous_config_sha256: str | None = None
    overridden: list[str] | None = None
    """The tuned settings a later deploy option replaced."""


class FileRef(Block):
    """A file and its sha256."""

    path: str | None = None
    sha256: str | None = None


class InstanceGroup(Block):
    kind: str | None = None
    """"KIND_CPU" or "KIND_GPU"."""
    count: int | None = None


class ManifestEntry(Block):
    """One deployed model folder (a format of a model)."""

    name: str
    """The Triton name (`<model>_<format>`), the folder's name."""
    model: str | None = None
    format: str | None = None
    version: int | None = None
    backend: str | None = None
    platform: str | None = None
    artifact: str | None = None
    """The artifact under the folder, e.g. "1/model.onnx"."""
    artifact_sha256: str | None = None
    export_record: FileRef | None = None
    config_sha256: str | None = None
    max_batch_size: int | None = None
    max_queue_delay_us: int | None = None
    instance_group: InstanceGroup | None = None
    tensorrt: Any = None
    gated_max_batch_size: int | None = None
    """The export gate's maximum batch size."""
    preferred_batch_sizes: list[int] | None = None
    tuning: Tuning | None = None
    warmup: str | None = None
    warnings: list[str] | None = None
    deployed: str | None = None
    reverted: str | None = None


class Manifest(Record):
    """The repository manifest: the target release and one entry per deployed model folder."""

    KIND: ClassVar[str] = "repository manifest"
    VERSION: ClassVar[int] = 1
    REMEDY: ClassVar[str] = "run `zeroserve deploy` again"

    target: dict[str, Any] | None = None
    """The Triton release the repository is written for (deploy/release.py's TargetRelease)."""
    models: dict[str, ManifestEntry] = {}
    """{triton name: entry}."""
    versions: dict[str, str] | None = None
    """The libraries that wrote it."""

    @classmethod
    def of(cls, path: Path) -> Self:
        """The manifest at `path`, or an empty one when none was written yet (a bad one raises InputError)."""
        return cls.load(path) if Path(path).is_file() else cls(models={})

    @classmethod
    def entry_if_valid(cls, path: Path, name: str) -> ManifestEntry | None:
        """The model's entry, or None (no manifest, no entry, unreadable: a reader that must not fail)."""
        manifest = cls.load_if_valid(path)
        return None if manifest is None else manifest.models.get(name)

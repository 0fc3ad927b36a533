"""The train record (docs/contracts.md): its typed shape, loaded and saved only through this type."""

from __future__ import annotations

from typing import Any, ClassVar

from zeroserve.records.base import Block, Record


class TrainData(Block):
    """What the model was trained and held out on (what `client check` rebuilds its held-out set from)."""

    source: str | None = None
    """The data source in words (a file, the course's inline data, or a fallback)."""
    split_rule: str | None = None
    """The held-out split rule in words."""
    split_version: int | None = None
    """The seeded split rule's version (`zeroserve.data.readers.SPLIT_VERSIONS`); null or absent: version 1."""
    sizes: dict[str, int] | None = None
    """Rows per split ("train", "test")."""
    note: str | None = None
    """Why the data fell back (with the fetch command), else ""."""
    data_dir: str | None = None
    """The data folder train read."""

    def seeded_rule(self) -> int | None:
        """The seeded split rule the data was held out by: `split_version`, or 1 when the record predates
        split versions (it lacks the field; a null one is a source without a seeded split: the current rule)."""
        return self.split_version if "split_version" in self.model_fields_set else 1


class Hyperparameters(Block):
    """How the model was trained."""

    epochs: int | None = None
    batch_size: int | None = None
    lr: float | None = None
    seed: int | None = None
    optimizer: str | None = None
    """"sgd" or "adam"."""
    loss: str | None = None
    """The loss function's name."""
    device: str | None = None
    """The torch device trained on."""


class TrainMetric(Block):
    """The held-out metric the model ended with, and its bar."""

    name: str
    """The metric ("accuracy", "mse", ...)."""
    value: float
    """Its value on the held-out set (NaN when the model has no score)."""
    bar: float | None = None
    """The registry's bar (null: none)."""
    split: str | None = None
    """The split it was measured on ("held-out")."""
    described: Any = None
    """The first held-out predictions in words (the spec's `describe`)."""


class TrainRecord(Record):
    """The train record: what `zeroserve train` trained, on what data, with which result."""

    KIND: ClassVar[str] = "train record"
    VERSION: ClassVar[int] = 1
    REMEDY: ClassVar[str] = "run `zeroserve train` again"

    model: str
    """The model's registry name."""
    status: str
    """"PASS" (the held-out metric meets the bar) or "BELOW_BAR"."""
    data: TrainData
    hyperparameters: Hyperparameters | None = None
    loss_per_epoch: list[float] | None = None
    """The mean training loss of each epoch."""
    metric_per_epoch: list[float] | None = None
    """The held-out metric after each epoch."""
    metric: TrainMetric
    seconds: float | None = None
    """Training time."""
    versions: dict[str, str] | None = None
    """zeroserve, Python and library versions that trained it."""

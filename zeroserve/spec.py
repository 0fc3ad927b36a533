"""The types a registry entry is made of: tensor specs, data splits, model specs."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Literal

import numpy as np

Task = Literal["regression", "binary", "multiclass", "sequence"]
Dim = int | str  # an int is fixed; a str names a dynamic axis ("time")


@dataclass(frozen=True)
class TensorSpec:
    """One input or output tensor, batch axis excluded.

    Args:
        name: `<name>__<index>`, Triton's pytorch-backend convention, used in both formats.
        dtype: numpy dtype name ("float32", "int64").
        dims: per-sample dims; a str is a named dynamic axis. `()` is a per-sample
            scalar, which travels as `[batch, 1]` on the wire (config `dims: [1]`,
            `reshape { shape: [] }`) while the exported graph takes `[batch]`.
    """

    name: str
    dtype: str
    dims: tuple[Dim, ...]
    domain: str = "normal"  # what a valid value looks like: unit, normal, onehot, tokens, lengths

    @property
    def triton_dims(self) -> list[int]:
        """Config `dims`: -1 where dynamic, `[1]` for a per-sample scalar."""
        return [-1 if isinstance(d, str) else d for d in self.dims] or [1]

    @property
    def reshaped(self) -> bool:
        """True when the wire shape `[batch, 1]` is reshaped to the graph's `[batch]`."""
        return self.dims == ()

    @property
    def dynamic_axes(self) -> dict[int, str]:
        """Axis index -> name for export, batch axis included."""
        axes = {0: "batch"}
        axes.update({i + 1: d for i, d in enumerate(self.dims) if isinstance(d, str)})
        return axes

    def shape(self, batch: int, **axes: int) -> tuple[int, ...]:
        """Concrete graph shape for a batch size and the named dynamic axes."""
        return (batch, *(axes[d] if isinstance(d, str) else d for d in self.dims))

    def as_json(self) -> dict:
        return {
            "name": self.name,
            "dtype": self.dtype,
            "shape": ["batch", *self.dims],
            "wire_shape": ["batch", *(self.dims or (1,))],
        }


@dataclass
class Split:
    """A data set split into train and held-out parts, with where it came from.

    Inputs are lists of arrays, one per input spec, batch axis first.
    """

    train_inputs: list[np.ndarray]
    train_target: np.ndarray
    test_inputs: list[np.ndarray]
    test_target: np.ndarray
    source: str
    rule: str
    note: str = ""

    @property
    def sizes(self) -> dict[str, int]:
        return {"train": int(len(self.train_target)), "test": int(len(self.test_target))}


@dataclass(frozen=True)
class DataSource:
    """Where a model's data comes from and how it is split.

    Args:
        description: human summary for `zeroserve models`.
        files: course files (by course name) that must be in the data folder.
        load: `load(data_dir, seed)` -> Split; raises MissingDataError.
    """

    description: str
    files: tuple[str, ...]
    load: Callable[[Path], Split]


@dataclass(frozen=True)
class TrainDefaults:
    epochs: int
    lr: float
    batch_size: int
    optimizer: Literal["sgd", "adam"] = "adam"


@dataclass(frozen=True)
class ModelSpec:
    """One course model: everything every stage needs to know about it.

    Args:
        build: returns the course's `nn.Module`, freshly initialised.
        export_module: optional; wraps a trained module into an export-friendly
            one with the same weights and the same outputs (name_gru's packing).
        labels: class names (multiclass/binary) or the vocabulary (sequence).
        bar: the held-out metric a default training run must reach.
        seq_lengths: the sequence lengths the export gate checks (RNNs only).
        torchscript: "trace" where the graph has no data-dependent control flow.
    """

    name: str
    lesson: str
    summary: str
    build: Callable[[], "object"]
    data: DataSource
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    task: Task
    train: TrainDefaults
    bar: float
    labels: tuple[str, ...] = ()
    max_batch_size: int = 64
    export_module: Callable | None = None
    seq_lengths: tuple[int, ...] = ()
    torchscript: Literal["trace", "script"] = "trace"
    sample_input: Callable | None = field(default=None)

    @property
    def metric(self) -> str:
        """The held-out metric's name."""
        return "max_abs_error" if self.task == "regression" else "accuracy"

    @property
    def higher_is_better(self) -> bool:
        return self.task != "regression"

    def passes_bar(self, value: float) -> bool:
        return value >= self.bar if self.higher_is_better else value <= self.bar

    @property
    def output_kind(self) -> str:
        """"log_probs", "logits", "prob" or "value", read from the output name."""
        return self.outputs[0].name.split("__")[0]

    def triton_name(self, fmt: str) -> str:
        return f"{self.name}_{fmt}"

    def random_inputs(self, batch: int, rng: np.random.Generator, time: int | None = None) -> list[np.ndarray]:
        """Random valid inputs, one array per input spec, in graph shapes.

        A `lengths` input gets mixed lengths in [1, time] (one row at `time`) and the
        `tokens` beyond each row's length are zero padding, as a real batch has them.
        """
        time = time or (max(self.seq_lengths) if self.seq_lengths else 1)
        arrays: list[np.ndarray] = []
        lengths = None
        for t in self.inputs:
            shape = t.shape(batch, time=time)
            if t.domain == "unit":
                a = rng.random(shape, dtype=np.float32)
            elif t.domain == "onehot":
                a = np.eye(shape[-1], dtype=np.float32)[rng.integers(0, shape[-1], shape[:-1])]
            elif t.domain == "tokens":
                a = rng.integers(1, 128, shape, dtype=np.int64)
            elif t.domain == "lengths":
                lengths = rng.integers(1, time + 1, shape, dtype=np.int64)
                lengths[rng.integers(0, batch)] = time
                a = lengths
            else:
                a = rng.standard_normal(shape, dtype=np.float32)
            arrays.append(a.astype(t.dtype))
        if lengths is not None:
            tokens = arrays[0]
            tokens[np.arange(tokens.shape[1])[None, :] >= lengths[:, None]] = 0
        return arrays

    def describe(self, outputs: np.ndarray) -> list[dict]:
        """What each row of the first output means: value, class and probability, or text."""
        out = np.asarray(outputs, dtype=np.float64)
        rows = []
        for row in out:
            if self.task == "regression":
                rows.append({"value": float(row.reshape(-1)[0])})
            elif self.task == "binary":
                p = float(row.reshape(-1)[0])
                rows.append({"label": self.labels[int(p >= 0.5)], "probability": p if p >= 0.5 else 1 - p})
            elif self.task == "multiclass":
                probs = np.exp(row - row.max()) if self.output_kind == "logits" else np.exp(row)
                probs = probs / probs.sum()
                k = int(np.argmax(row))
                rows.append({"label": self.labels[k] if self.labels else str(k), "class": k,
                             "probability": float(probs[k])})
            else:
                rows.append({"text": "".join(self.labels[int(i)] for i in row.argmax(-1))})
        return rows

    def as_json(self) -> dict:
        return {
            "name": self.name,
            "lesson": self.lesson,
            "summary": self.summary,
            "task": self.task,
            "data": {"description": self.data.description, "files": list(self.data.files)},
            "inputs": [t.as_json() for t in self.inputs],
            "outputs": [t.as_json() for t in self.outputs],
            "max_batch_size": self.max_batch_size,
            "labels": list(self.labels),
            "train_defaults": {
                "epochs": self.train.epochs,
                "lr": self.train.lr,
                "batch_size": self.train.batch_size,
                "optimizer": self.train.optimizer,
            },
            "metric": self.metric,
            "bar": self.bar,
        }

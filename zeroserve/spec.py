"""The types a registry entry is made of: tensor specs, data splits, model specs.

Behaviour that depends on what a tensor is lives on its domain (inputs) or its task and
declared kind (outputs): see `zeroserve.domains` and `zeroserve.tasks`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Literal

import numpy as np

from zeroserve import formats
from zeroserve.domains import NORMAL, Domain, Lengths
from zeroserve.errors import InputError
from zeroserve.parity import Tolerance
from zeroserve.tasks import OutputKind, Task

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
        domain: an input's valid values (random, safe, human input); see `zeroserve.domains`.
        kind: an output's declared kind (value, probs, logits, ...); see `zeroserve.tasks`.
    """

    name: str
    dtype: str
    dims: tuple[Dim, ...]
    domain: Domain = NORMAL
    kind: OutputKind | None = None

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
        out = {
            "name": self.name,
            "dtype": self.dtype,
            "shape": ["batch", *self.dims],
            "wire_shape": ["batch", *(self.dims or (1,))],
        }
        if self.kind is not None:
            out["kind"] = self.kind.name
        else:
            out["domain"] = self.domain.as_json()
        return out


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
    """One model: everything every stage needs to know about it.

    Args:
        build: returns the course's `nn.Module`, freshly initialised.
        tasks: one task per output (a single Task for a one-output model); see `zeroserve.tasks`.
        primary: the output that training's loss and metric, top-1 and `describe` read
            (default: the first output).
        export_module: optional; wraps a trained module into an export-friendly
            one with the same weights and the same outputs (name_gru's packing).
        labels: class names of the primary output, or its per-step vocabulary.
        bar: the held-out metric a default training run must reach.
        seq_lengths: the sequence lengths the export gate checks (RNNs only).
        torchscript: "trace" where the graph has no data-dependent control flow.
        tolerance: the parity rule's atol/rtol for this model (export's gate and `client check`).
    """

    name: str
    lesson: str
    summary: str
    build: Callable[[], "object"]
    data: DataSource
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    tasks: Task | tuple[Task, ...]
    train: TrainDefaults
    bar: float
    primary: str | None = None
    labels: tuple[str, ...] = ()
    max_batch_size: int = 64
    export_module: Callable | None = None
    seq_lengths: tuple[int, ...] = ()
    torchscript: Literal["trace", "script"] = "trace"
    tolerance: Tolerance = field(default_factory=Tolerance)

    def __post_init__(self) -> None:
        tasks = (self.tasks,) if isinstance(self.tasks, Task) else tuple(self.tasks)
        object.__setattr__(self, "tasks", tasks)
        if len(tasks) != len(self.outputs):
            raise InputError(f"{self.name}: {len(self.outputs)} output(s) but {len(tasks)} task(s); give one per output")
        for t, task in zip(self.outputs, tasks):
            if t.kind is None:
                raise InputError(f"{self.name}: output {t.name} declares no kind")
            task.check_kind(t.kind, t.name)
        names = [t.name for t in self.outputs]
        if self.primary is None:
            object.__setattr__(self, "primary", names[0])
        elif self.primary not in names:
            raise InputError(f"{self.name}: primary output {self.primary!r} is not one of {', '.join(names)}")
        for t in self.inputs:
            of = getattr(t.domain, "of", None)
            if of is not None and of not in [i.name for i in self.inputs]:
                raise InputError(f"{self.name}: input {t.name} gives the lengths of {of!r}, which is not an input")

    # ---------------------------------------------------------------- the primary output

    @property
    def primary_index(self) -> int:
        return [t.name for t in self.outputs].index(self.primary)

    @property
    def task(self) -> Task:
        """The primary output's task."""
        return self.tasks[self.primary_index]

    @property
    def primary_output(self) -> TensorSpec:
        return self.outputs[self.primary_index]

    @property
    def metric(self) -> str:
        """The held-out metric's name."""
        return self.task.metric

    def passes_bar(self, value: float) -> bool:
        return self.task.passes(value, self.bar)

    def loss(self):
        """The training loss of the primary output: its task's loss for its declared kind."""
        return self.task.loss(self.primary_output.kind)

    def score(self, outputs: list[np.ndarray], target: np.ndarray) -> float:
        """The held-out metric of the primary output (`outputs` in the spec's order)."""
        return self.task.score(self.primary_output.kind, outputs[self.primary_index], target)

    def describe(self, primary: np.ndarray) -> list[dict]:
        """What each row of the primary output means: a value, a label and its probability, or text."""
        return [self.task.describe(self.primary_output.kind, row, self.labels) for row in np.asarray(primary)]

    def describe_target(self, target: np.ndarray) -> str:
        return self.task.describe_target(target, self.labels)

    def triton_name(self, fmt: str) -> str:
        """The Triton model name of this model in format `fmt` (`<name>_<fmt>`, from the format table)."""
        return formats.get(fmt).triton_name(self.name)

    # ---------------------------------------------------------------- inputs from their domains

    def random_inputs(self, batch: int, rng: np.random.Generator, time: int | None = None) -> list[np.ndarray]:
        """Random valid inputs, one array per input spec, in graph shapes.

        A lengths input gets mixed lengths in [1, time] (one row at `time`) and the input it
        measures is zero padding beyond each row's length, as a real batch has it.
        """
        time = time or (max(self.seq_lengths) if self.seq_lengths else 1)
        arrays = {}
        for t in self.inputs:
            shape = t.shape(batch, time=time)
            if isinstance(t.domain, Lengths):
                arrays[t.name] = t.domain.random(shape, t.dtype, rng, time=time)
            else:
                arrays[t.name] = t.domain.random(shape, t.dtype, rng)
        for t in self.inputs:
            if isinstance(t.domain, Lengths):
                t.domain.pad(arrays[t.domain.of], arrays[t.name])
        return [arrays[t.name] for t in self.inputs]

    def safe_inputs(self, batch: int, time: int = 1) -> list[np.ndarray]:
        """The plainest valid inputs (zeros, one-hot firsts, lengths of 1): `--input zero`, warm-up."""
        return [t.domain.safe(t.shape(batch, time=time), t.dtype) for t in self.inputs]

    def encode(self, value, reads: str) -> list[np.ndarray]:
        """A person's input (`reads`: "text" or "image") as the model's tensors, through the inputs' domains.

        Inputs whose domain reads it are encoded; lengths inputs are derived from what they measure.
        """
        arrays: dict[str, np.ndarray] = {}
        for t in self.inputs:
            if t.domain.reads == reads:
                arrays[t.name] = t.domain.encode(value, t.name)
        for t in self.inputs:
            if isinstance(t.domain, Lengths) and t.domain.of in arrays:
                arrays[t.name] = t.domain.derive(arrays[t.domain.of])
        missing = [t.name for t in self.inputs if t.name not in arrays]
        if missing:
            readers = ", ".join(sorted({t.domain.reads for t in self.inputs if t.domain.reads})) or "no human input"
            raise InputError(f"{self.name} does not read {reads} input (its inputs read: {readers})")
        return [arrays[t.name] for t in self.inputs]

    def as_json(self) -> dict:
        return {
            "name": self.name,
            "lesson": self.lesson,
            "summary": self.summary,
            "task": self.task.name,
            "primary_output": self.primary,
            "tasks": {t.name: task.name for t, task in zip(self.outputs, self.tasks)},
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
            "tolerance": {"atol": self.tolerance.atol, "rtol": self.tolerance.rtol},
        }

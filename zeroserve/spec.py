"""The types a registry entry is made of: tensor specs, data splits, model specs.

`Split` and `DataSource` live in `zeroserve.splits` and are imported from here as before.

Behaviour that depends on what a tensor is lives on its domain (inputs) or its task and
declared kind (outputs): see `zeroserve.domains` and `zeroserve.tasks`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, cast

import numpy as np

from zeroserve import formats
from zeroserve.domains import NORMAL, Domain, Lengths
from zeroserve.errors import InputError, ZeroserveError
from zeroserve.parity import Tolerance
from zeroserve.splits import DataSource, Split
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


@dataclass(frozen=True)
class TrainDefaults:
    epochs: int
    lr: float
    batch_size: int
    optimizer: Literal["sgd", "adam"] = "adam"


@dataclass(frozen=True, kw_only=True)
class ModelSpec:
    """One model: everything every stage needs to know about it (a course entry or a user's own).

    Args:
        name: the model's name; its Triton names are `<name>_<format>`.
        build: returns the `nn.Module`, freshly initialised (a module instance is also accepted: it is copied).
        inputs / outputs: tensor specs in `forward`'s argument and return order.
        tasks: one task per output (a single Task for a one-output model); see `zeroserve.tasks`.
        primary: the output that training's loss and metric, top-1 and `describe` read
            (default: the first output).
        checkpoint: a state dict file holding the weights (a user model trained elsewhere); without it
            the weights are `artifacts/<name>/checkpoint.pt`, written by `zeroserve train`.
        example_inputs: `example_inputs(batch, rng, time) -> list (or dict by input name) of arrays` in
            graph shapes; when given, export's gate grid, `client check` without held-out data and
            perf's random inputs draw from it instead of the inputs' domains.
        data: where the samples come from (`load(data_dir) -> Split`): held-out rows for export's gate,
            `client check` and `--sample`, and the training rows `zeroserve train` needs.
        train: training defaults; with `data`, `zeroserve train` can train the model.
        bar: the held-out metric a default training run must reach (None: no bar).
        export_module: optional; wraps a trained module into an export-friendly
            one with the same weights and the same outputs (name_gru's packing).
        labels: class names of the primary output, or its per-step vocabulary.
        seq_lengths: the lengths the export gate checks along dynamic axes (default (1, 2, 5) where
            an input has one).
        torchscript: "trace" where the graph has no data-dependent control flow.
        tolerance: the parity rule's atol/rtol for this model (export's gate and `client check`).
        origin: where the spec came from: "course", a model file's path or an entry point.
    """

    name: str
    build: Callable[[], object]
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    tasks: Task | tuple[Task, ...]
    lesson: str = ""
    summary: str = ""
    data: DataSource | None = None
    train: TrainDefaults | None = None
    bar: float | None = None
    primary: str | None = None
    labels: tuple[str, ...] = ()
    max_batch_size: int = 64
    export_module: Callable | None = None
    seq_lengths: tuple[int, ...] = ()
    torchscript: Literal["trace", "script"] = "trace"
    tolerance: Tolerance = field(default_factory=Tolerance)
    checkpoint: Path | None = None
    example_inputs: Callable[..., Sequence[np.ndarray] | Mapping[str, np.ndarray]] | None = None
    origin: str = "course"

    def __post_init__(self) -> None:
        import torch

        if isinstance(self.build, torch.nn.Module):  # an instance: each build gets its own copy
            import copy

            instance = self.build
            object.__setattr__(self, "build", lambda: copy.deepcopy(instance))
        if not callable(self.build):
            raise InputError(f"{self.name}: build= must be an nn.Module or a function returning one")
        if not isinstance(self.name, str) or not self.name or not all(c.isalnum() or c in "_-" for c in self.name):
            raise InputError(f"model name {self.name!r}: use letters, digits, '_' and '-' only")
        clash = formats.split_triton_name(self.name)
        if clash is not None:
            raise InputError(
                f"model name {self.name!r} ends in the format suffix _{clash[1].key}, which would make "
                f"its Triton names ambiguous; choose another name"
            )
        object.__setattr__(self, "inputs", tuple(self.inputs))
        object.__setattr__(self, "outputs", tuple(self.outputs))
        if not self.inputs or not self.outputs:
            raise InputError(f"{self.name}: give at least one input and one output TensorSpec")
        if self.checkpoint is not None:
            object.__setattr__(self, "checkpoint", Path(self.checkpoint))
        if self.max_batch_size < 1:
            raise InputError(f"{self.name}: max_batch_size must be at least 1, got {self.max_batch_size}")
        if not self.seq_lengths and self.dynamic_axes:
            object.__setattr__(self, "seq_lengths", (1, 2, 5))
        tasks = (self.tasks,) if isinstance(self.tasks, Task) else tuple(self.tasks)
        object.__setattr__(self, "tasks", tasks)
        if len(tasks) != len(self.outputs):
            raise InputError(
                f"{self.name}: {len(self.outputs)} output(s) but {len(tasks)} task(s); give one per output"
            )
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

    @property
    def dynamic_axes(self) -> tuple[str, ...]:
        """The named dynamic axes of the inputs (batch excluded), in order."""
        return tuple(dict.fromkeys(d for t in self.inputs for d in t.dims if isinstance(d, str)))

    def load_data(self, data_dir: Path, split_version: int | None = None) -> Split:
        """The model's data (held-out and training rows), or InputError when it has no data source.

        Args:
            split_version: the seeded split rule a train.json recorded (None: the current one).
        """
        if self.data is None:
            raise InputError(f"{self.name} has no data source (its spec gives no data=)")
        if self.origin == "course":
            return self.data.read(Path(data_dir), split_version)
        try:  # a user's loader: its failure is one line, and its arrays must match the specs
            split = self.data.read(Path(data_dir), split_version)
        except ZeroserveError:
            raise
        except Exception as exc:
            raise InputError(f"{self.name}: its data source failed: {type(exc).__name__}: {exc}") from None
        if not isinstance(split, Split):
            raise InputError(f"{self.name}: its data source returned {type(split).__name__}, not a Split")
        split.test_inputs = self.given_inputs(split.test_inputs, "its data source (held-out rows)")
        if split.trainable:
            split.train_inputs = self.given_inputs(split.train_inputs, "its data source (training rows)")
        return split

    # ---------------------------------------------------------------- the primary output

    @property
    def primary_index(self) -> int:
        return [t.name for t in self.outputs].index(str(self.primary))  # set in __post_init__

    @property
    def output_tasks(self) -> tuple[Task, ...]:
        """One task per output (`tasks` as given may be a single Task; __post_init__ makes it a tuple)."""
        return cast("tuple[Task, ...]", self.tasks)

    @property
    def primary_kind(self) -> OutputKind:
        """The primary output's declared kind (every output declares one; checked in __post_init__)."""
        return cast("OutputKind", self.primary_output.kind)

    @property
    def task(self) -> Task:
        """The primary output's task."""
        return self.output_tasks[self.primary_index]

    @property
    def primary_output(self) -> TensorSpec:
        return self.outputs[self.primary_index]

    @property
    def metric(self) -> str:
        """The held-out metric's name."""
        return self.task.metric

    def passes_bar(self, value: float) -> bool:
        return self.bar is None or self.task.passes(value, self.bar)

    @property
    def bar_text(self) -> str:
        """The bar as a table shows it: `≥ 0.95`, `≤ 0.1` (the metric's direction), or `none`."""
        if self.bar is None:
            return "none"
        return f"{'≥' if self.task.higher_is_better else '≤'} {self.bar}"

    def loss(self):
        """The training loss of the primary output: its task's loss for its declared kind."""
        return self.task.loss(self.primary_output.kind)

    def score(self, outputs: list[np.ndarray], target: np.ndarray | None) -> float | None:
        """The held-out metric of the primary output (`outputs` in the spec's order); None without targets."""
        if target is None:
            return None
        return self.task.score(self.primary_kind, outputs[self.primary_index], target)

    def describe(self, primary: np.ndarray) -> list[dict]:
        """What each row of the primary output means: a value, a label and its probability, or text."""
        return [self.task.describe(self.primary_kind, row, self.labels) for row in np.asarray(primary)]

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
        if self.example_inputs is not None:
            return self.given_inputs(self.example_inputs(batch, rng, time), "example_inputs", batch)
        axes = dict.fromkeys(self.dynamic_axes, time)
        arrays = {}
        for t in self.inputs:
            shape = t.shape(batch, **axes)
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
        axes = dict.fromkeys(self.dynamic_axes, time)
        return [t.domain.safe(t.shape(batch, **axes), t.dtype) for t in self.inputs]

    def given_inputs(self, arrays, what: str, batch: int | None = None) -> list[np.ndarray]:
        """Arrays a user function gave (a list in input order, or a dict by input name), checked against the specs.

        Raises:
            InputError: naming the input whose count, dtype or shape does not match its spec.
        """
        if isinstance(arrays, Mapping):
            missing = [t.name for t in self.inputs if t.name not in arrays]
            if missing:
                raise InputError(f"{self.name}: {what} gave no {', '.join(missing)}")
            arrays = [arrays[t.name] for t in self.inputs]
        arrays = [np.asarray(a) for a in (arrays if isinstance(arrays, (list, tuple)) else [arrays])]
        if len(arrays) != len(self.inputs):
            raise InputError(
                f"{self.name}: {what} gave {len(arrays)} array(s) for {len(self.inputs)} input(s) "
                f"({', '.join(t.name for t in self.inputs)})"
            )
        for t, a in zip(self.inputs, arrays):
            want = ["batch" if batch is None else batch, *t.dims]
            ok = a.ndim == len(want) and all(isinstance(w, str) or w == n for w, n in zip(want, a.shape))
            if str(a.dtype) != t.dtype or not ok:
                raise InputError(
                    f"{self.name}: {what} gave {t.name} as {a.dtype}{list(a.shape)}; its spec is {t.dtype}{want}"
                )
        return arrays

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
            "tasks": {t.name: task.name for t, task in zip(self.outputs, self.output_tasks)},
            "origin": self.origin,
            "checkpoint": None if self.checkpoint is None else str(self.checkpoint),
            "data": None
            if self.data is None
            else {"description": self.data.description, "files": list(self.data.files)},
            "inputs": [t.as_json() for t in self.inputs],
            "outputs": [t.as_json() for t in self.outputs],
            "max_batch_size": self.max_batch_size,
            "labels": list(self.labels),
            "train_defaults": None
            if self.train is None
            else {
                "epochs": self.train.epochs,
                "lr": self.train.lr,
                "batch_size": self.train.batch_size,
                "optimizer": self.train.optimizer,
            },
            "metric": self.metric,
            "bar": self.bar,
            "tolerance": {"atol": self.tolerance.atol, "rtol": self.tolerance.rtol},
        }

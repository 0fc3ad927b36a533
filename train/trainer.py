"""Train one registry model and leave checkpoint.pt, train.json and loss.png."""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, TensorDataset

from zeroserve import plots, records
from zeroserve.artifacts import eager_outputs, model_dir
from zeroserve.errors import InputError
from zeroserve.records.layout import ModelFolder
from zeroserve.records.train import Hyperparameters, TrainData, TrainMetric, TrainRecord
from zeroserve.spec import ModelSpec, TrainDefaults

SHOWN_ROWS = 8  # held-out predictions described in train.json


def pick_device(device: str) -> torch.device:
    """`auto` picks CUDA when there is a GPU; `cuda` without one degrades to CPU with a warning."""
    if device not in ("auto", "cpu", "cuda"):
        from zeroserve.errors import InputError

        raise InputError(f"unknown device {device!r}; use auto, cpu or cuda")
    if device == "cuda" and not torch.cuda.is_available():
        warnings.warn("--device cuda asked for, but no GPU is visible: training on the CPU", stacklevel=2)
        return torch.device("cpu")
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def _primary(spec: ModelSpec, result):
    """The primary output of a forward pass (a module may return one tensor or a tuple)."""
    return result[spec.primary_index] if isinstance(result, (tuple, list)) else result


def loss_figure(losses: list[float], metrics: list[float], metric: str, title: str):
    """The training loss and the held-out metric per epoch, on integer epoch ticks."""
    from matplotlib.ticker import MaxNLocator

    fig, ax = plots.subplots((7, 3.8))
    epochs = range(1, len(losses) + 1)
    marker = "." if len(losses) < 50 else None
    ax.plot(epochs, losses, marker=marker, color="tab:blue", label="training loss")
    ax.set_xlabel("epoch")
    ax.set_ylabel("training loss", color="tab:blue")
    ax.set_yscale("log" if min(losses) > 0 else "linear")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    held = ax.twinx()
    held.plot(epochs, metrics, marker=marker, color="tab:orange", label=f"held-out {metric}")
    held.set_ylabel(f"held-out {metric}", color="tab:orange")
    lines = ax.get_lines() + held.get_lines()
    ax.legend(lines, [line.get_label() for line in lines], loc="center right", fontsize="small")
    ax.set_title(title, fontsize="medium")
    ax.grid(alpha=0.3)
    return fig


def _held_out_metric(spec: ModelSpec, model: torch.nn.Module, split, dev: torch.device) -> float:
    """The held-out metric of the model as it stands (the model is left in eval mode)."""
    model.eval()
    score = spec.score(eager_outputs(model, split.test_inputs, device=dev), split.test_target)
    return float("nan") if score is None else float(score)


def _hyperparameters(
    spec: ModelSpec, epochs: int | None, batch_size: int | None, lr: float | None
) -> tuple[int, int, float, TrainDefaults]:
    """The run's epochs, batch size and learning rate (the spec's where not given), and the spec's defaults.

    InputError when the spec cannot be trained here or a figure is out of range.
    """
    if spec.checkpoint is not None:
        raise InputError(
            f"{spec.name} takes its weights from its checkpoint {spec.checkpoint} ({spec.origin}); "
            "remove checkpoint= from its spec to train it with zeroserve"
        )
    if spec.data is None or spec.train is None:
        raise InputError(
            f"{spec.name} cannot be trained here: its spec needs data= (a DataSource with training "
            "rows) and train= (TrainDefaults)"
        )
    epochs = spec.train.epochs if epochs is None else epochs
    batch_size = spec.train.batch_size if batch_size is None else batch_size
    lr = spec.train.lr if lr is None else lr
    if epochs < 1 or batch_size < 1 or lr <= 0:
        raise InputError("--epochs and --batch-size must be at least 1 and --lr above 0")
    return epochs, batch_size, lr, spec.train


def _fit(
    spec: ModelSpec,
    model: torch.nn.Module,
    loader: DataLoader,
    split,
    dev: torch.device,
    epochs: int,
    optimizer: torch.optim.Optimizer,
    criterion,
    *,
    progress=None,
    on_epoch: Callable[[dict], None] | None = None,
) -> tuple[list[float], list[float], float]:
    """The epochs: per-epoch mean loss and held-out metric, and the seconds they took."""
    epoch_task = batch_task = None
    if progress is not None:
        epoch_task = progress.add_task(f"{spec.name} epochs", total=epochs, figures="")
        batch_task = progress.add_task(f"{spec.name} batches", total=len(loader), figures="")
    losses: list[float] = []
    held_out: list[float] = []
    started = time.perf_counter()
    for epoch in range(1, epochs + 1):
        model.train()
        total, count = 0.0, 0
        if progress is not None:
            progress.reset(batch_task, total=len(loader))
        for *xs, y in loader:
            xs, y = [x.to(dev) for x in xs], y.to(dev)
            optimizer.zero_grad()
            loss = criterion(_primary(spec, model(*xs)), y)
            loss.backward()
            optimizer.step()
            total += loss.item() * len(y)
            count += len(y)
            if progress is not None:
                progress.update(batch_task, advance=1, figures=f"loss {total / count:.4f}")
        losses.append(total / count)
        held_out.append(_held_out_metric(spec, model, split, dev))
        figures = f"loss {losses[-1]:.4f}, held-out {spec.metric} {held_out[-1]:.4f}"
        if progress is not None:
            progress.update(epoch_task, advance=1, figures=figures)
        if on_epoch is not None:
            on_epoch(
                {
                    "model": spec.name,
                    "epoch": epoch,
                    "epochs": epochs,
                    "loss": losses[-1],
                    "metric": spec.metric,
                    "metric_value": held_out[-1],
                    "seconds": round(time.perf_counter() - started, 3),
                }
            )
    seconds = time.perf_counter() - started
    if progress is not None:
        progress.remove_task(batch_task)
        progress.remove_task(epoch_task)

    return losses, held_out, seconds


def train_model(
    spec: ModelSpec,
    data_dir: Path,
    artifacts: Path,
    *,
    epochs: int | None = None,
    batch_size: int | None = None,
    lr: float | None = None,
    seed: int = 0,
    device: str = "auto",
    progress=None,
    on_epoch: Callable[[dict], None] | None = None,
) -> TrainRecord:
    """Train `spec` on its data and write its artifacts atomically.

    Args:
        progress: optional rich Progress; one epoch task and one batch task are added to it (their
            `figures` field is "" until there is a figure to show).
        on_epoch: called after each epoch with {"model", "epoch", "epochs", "loss", "metric",
            "metric_value", "seconds"} (the CLI prints it as a line when its output is not a terminal).

    Returns:
        The train record (what train.json holds).
    """
    epochs, batch_size, lr, defaults = _hyperparameters(spec, epochs, batch_size, lr)
    dev = pick_device(device)
    records.ensure_writable_dir(Path(artifacts))
    split = spec.load_data(Path(data_dir))  # raises MissingDataError before anything is written
    if not split.trainable or split.test_target is None:
        raise InputError(
            f"{spec.name}: its data source gives no training rows or no held-out targets; "
            "Split needs train_inputs, train_target and test_target to train"
        )
    out_dir = records.ensure_writable_dir(model_dir(artifacts, spec))

    torch.manual_seed(seed)
    np.random.seed(seed)
    model: torch.nn.Module = spec.build().to(dev)  # type: ignore[attr-defined]  # build() returns an nn.Module
    params = model.parameters()
    optimizer = torch.optim.SGD(params, lr=lr) if defaults.optimizer == "sgd" else torch.optim.Adam(params, lr=lr)
    criterion = spec.loss()
    tensors = [torch.from_numpy(a) for a in (*split.train_inputs, split.train_target)]
    loader = DataLoader(
        TensorDataset(*tensors), batch_size=batch_size, shuffle=True, generator=torch.Generator().manual_seed(seed)
    )

    losses, held_out, seconds = _fit(
        spec, model, loader, split, dev, epochs, optimizer, criterion, progress=progress, on_epoch=on_epoch
    )

    model.eval().cpu()
    outputs = eager_outputs(model, split.test_inputs)
    score = spec.score(outputs, split.test_target)  # training checked above that the split has test_target
    metric = float("nan") if score is None else score
    if not np.isfinite(losses[-1]):
        raise InputError(f"{spec.name}: training diverged (loss {losses[-1]}); try a smaller --lr")

    record = TrainRecord(
        model=spec.name,
        status="PASS" if spec.passes_bar(metric) else "BELOW_BAR",
        data=TrainData(
            source=split.source,
            split_rule=split.rule,
            split_version=split.version,
            sizes=split.sizes,
            note=split.note,
            data_dir=str(data_dir),
        ),
        hyperparameters=Hyperparameters(
            epochs=epochs,
            batch_size=batch_size,
            lr=lr,
            seed=seed,
            optimizer=defaults.optimizer,
            loss=getattr(criterion, "label", type(criterion).__name__),
            device=str(dev),
        ),
        loss_per_epoch=losses,
        metric_per_epoch=held_out,
        metric=TrainMetric(
            name=spec.metric,
            value=metric,
            bar=spec.bar,
            split="held-out",
            described=spec.describe(outputs[spec.primary_index][:SHOWN_ROWS]),
        ),
        seconds=round(seconds, 3),
        versions=records.versions(),
    )

    folder = ModelFolder(out_dir)
    with records.atomic_path(folder.checkpoint) as tmp:
        torch.save(model.state_dict(), tmp)
    title = (
        f"{spec.name}: held-out {spec.metric} {metric:.4f}, {record.status} (bar {spec.bar_text})\non {split.source}"
    )
    records.write_bytes(folder.loss_plot, plots.png(loss_figure(losses, held_out, spec.metric, title)))
    record.save(folder.train_record)
    return record

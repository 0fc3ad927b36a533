"""Train one registry model and leave checkpoint.pt, train.json and loss.png."""

from __future__ import annotations

import time
import warnings
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, TensorDataset

from zeroserve import plots, records
from zeroserve.artifacts import eager_outputs, model_dir
from zeroserve.spec import ModelSpec

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


def _loss_png(losses: list[float], title: str) -> bytes:
    fig, ax = plots.subplots((6, 3.5))
    ax.plot(range(1, len(losses) + 1), losses, marker="." if len(losses) < 50 else None)
    ax.set_xlabel("epoch")
    ax.set_ylabel("training loss")
    ax.set_yscale("log" if min(losses) > 0 else "linear")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    return plots.png(fig)


def train_model(spec: ModelSpec, data_dir: Path, artifacts: Path, *, epochs: int | None = None,
                batch_size: int | None = None, lr: float | None = None, seed: int = 0, device: str = "auto",
                progress=None) -> dict:
    """Train `spec` on its data and write its artifacts atomically.

    Args:
        progress: optional rich Progress; one epoch task and one batch task are added to it.

    Returns:
        The train.json record.
    """
    from zeroserve.errors import InputError

    if spec.checkpoint is not None:
        raise InputError(f"{spec.name} takes its weights from its checkpoint {spec.checkpoint} ({spec.origin}); "
                         "remove checkpoint= from its spec to train it with zeroserve")
    if spec.data is None or spec.train is None:
        raise InputError(f"{spec.name} cannot be trained here: its spec needs data= (a DataSource with training "
                         "rows) and train= (TrainDefaults)")
    epochs = spec.train.epochs if epochs is None else epochs
    batch_size = spec.train.batch_size if batch_size is None else batch_size
    lr = spec.train.lr if lr is None else lr
    if epochs < 1 or batch_size < 1 or lr <= 0:
        raise InputError("--epochs and --batch-size must be at least 1 and --lr above 0")
    dev = pick_device(device)
    records.ensure_writable_dir(Path(artifacts))
    split = spec.load_data(Path(data_dir))  # raises MissingDataError before anything is written
    if not split.trainable or split.test_target is None:
        raise InputError(f"{spec.name}: its data source gives no training rows or no held-out targets; "
                         "Split needs train_inputs, train_target and test_target to train")
    out_dir = records.ensure_writable_dir(model_dir(artifacts, spec))

    torch.manual_seed(seed)
    np.random.seed(seed)
    model = spec.build().to(dev)
    params = model.parameters()
    optimizer = (torch.optim.SGD(params, lr=lr) if spec.train.optimizer == "sgd"
                 else torch.optim.Adam(params, lr=lr))
    criterion = spec.loss()
    tensors = [torch.from_numpy(a) for a in (*split.train_inputs, split.train_target)]
    loader = DataLoader(TensorDataset(*tensors), batch_size=batch_size, shuffle=True,
                        generator=torch.Generator().manual_seed(seed))

    epoch_task = batch_task = None
    if progress is not None:
        epoch_task = progress.add_task(f"{spec.name} epochs", total=epochs, loss=float("nan"))
        batch_task = progress.add_task(f"{spec.name} batches", total=len(loader), loss=float("nan"))
    losses: list[float] = []
    started = time.perf_counter()
    model.train()
    for _ in range(epochs):
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
                progress.update(batch_task, advance=1, loss=total / count)
        losses.append(total / count)
        if progress is not None:
            progress.update(epoch_task, advance=1, loss=losses[-1])
    seconds = time.perf_counter() - started
    if progress is not None:
        progress.remove_task(batch_task)
        progress.remove_task(epoch_task)

    model.eval().cpu()
    outputs = eager_outputs(model, split.test_inputs)
    metric = spec.score(outputs, split.test_target)
    if not np.isfinite(losses[-1]):
        raise InputError(f"{spec.name}: training diverged (loss {losses[-1]}); try a smaller --lr")

    record = {
        "schema": records.SCHEMA,
        "model": spec.name,
        "status": "PASS" if spec.passes_bar(metric) else "BELOW_BAR",
        "data": {"source": split.source, "split_rule": split.rule, "split_version": split.version,
                 "sizes": split.sizes, "note": split.note, "data_dir": str(data_dir)},
        "hyperparameters": {"epochs": epochs, "batch_size": batch_size, "lr": lr, "seed": seed,
                            "optimizer": spec.train.optimizer, "loss": getattr(criterion, "label", type(criterion).__name__),
                            "device": str(dev)},
        "loss_per_epoch": losses,
        "metric": {"name": spec.metric, "value": metric, "bar": spec.bar, "split": "held-out"},
        "seconds": round(seconds, 3),
        "versions": records.versions(),
    }
    record["metric"]["described"] = spec.describe(outputs[spec.primary_index][:SHOWN_ROWS])

    with records.atomic_path(out_dir / "checkpoint.pt") as tmp:
        torch.save(model.state_dict(), tmp)
    records.write_bytes(out_dir / "loss.png", _loss_png(losses, f"{spec.name}: {spec.metric} {metric:.4f}"))
    records.write_json(out_dir / "train.json", record)
    return record

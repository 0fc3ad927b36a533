"""pt2 through the real things: AOTInductor packages of three course models gated on the export grid,
deployed as Triton's pytorch backend documents PT2 (linted against those rules), served by the embedded
engine and checked by `client check` on both protocols; and the refusals (a model torch.export cannot
trace, no C++ compiler, a batch above the target's limit), each one line, exit 2.

The three packages are compiled once for the module (~30 s each here): cnn_mnist (convolutions),
inception_mnist (branches and concatenation), name_gru (two GRU directions with a dynamic time axis,
as while_loops, and a per-sample lengths input).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from dataclasses import replace
from pathlib import Path

import pytest

from zeroserve import registry
from zeroserve.client.check import check_model
from zeroserve.client.endpoints import Endpoint
from zeroserve.deploy.config import parse, render
from zeroserve.deploy.lint import lint_model
from zeroserve.deploy.repository import deploy_model, read_manifest
from zeroserve.errors import CheckFailed, InputError
from zeroserve.export import export_model
from zeroserve.records.export import ExportRecord

# an image model and a sequence model (its time axis dynamic in one package): each compile takes ~20 s here,
# so inception_mnist (another image model) is left to `make bench`'s formats run
PT2_MODELS = ("cnn_mnist", "name_gru")
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def pt2(models, tmp_path_factory, data_dir) -> tuple[Path, dict[str, ExportRecord]]:
    """The models' trained checkpoints copied to their own folder and exported to pt2 once."""
    models.train(*PT2_MODELS)
    artifacts = tmp_path_factory.mktemp("pt2-artifacts")
    records = {}
    for name in PT2_MODELS:
        shutil.copytree(models.folder / name, artifacts / name)
        records[name] = export_model(registry.get(name), artifacts, formats="pt2", data_dir=data_dir)
    return artifacts, records


@pytest.fixture(scope="module")
def pt2_repository(pt2, tmp_path_factory) -> Path:
    repo = tmp_path_factory.mktemp("pt2-repo")
    for name in PT2_MODELS:
        deploy_model(registry.get(name), pt2[0], repo, formats="pt2", device="cpu")
    return repo


def test_pt2_passes_the_gate_on_the_full_grid(pt2):
    for name, rec in pt2[1].items():
        entry = rec.formats["pt2"].to_json()  # the JSON export.json holds
        assert entry["status"] == "PASS", (name, entry["worst"])
        spec = registry.get(name)
        points = {p["point"] for p in entry["grid"]}
        assert f"random batch={spec.max_batch_size}" in {p.split(" time=")[0] for p in points}
        if spec.seq_lengths:  # every sequence length of the registry, on one package: the time axis is dynamic
            assert {f"time={t}" for t in spec.seq_lengths} <= {p.split()[-1] for p in points}
        built = entry["compiled_for"]
        assert built["device"] == "cpu" and built["cpu_isa"] and built["compiler"]
        assert (pt2[0] / name / "model.pt2").stat().st_size == entry["bytes"]


def test_deploy_writes_what_the_pytorch_backend_documents_for_pt2(pt2_repository):
    manifest = {k: v.to_json() for k, v in read_manifest(pt2_repository).models.items()}
    for name in PT2_MODELS:
        folder = pt2_repository / f"{name}_pt2"
        model = lint_model(folder)
        spec = registry.get(name)
        assert (model.backend, model.platform, model.max_batch_size) == ("pytorch", "torch_aoti", 1)
        assert [t.name for t in model.inputs] == [f"INPUT__{i}" for i in range(len(spec.inputs))]
        assert [t.name for t in model.outputs] == [f"OUTPUT__{i}" for i in range(len(spec.outputs))]
        assert model.instance_kind == "KIND_CPU" and model.max_queue_delay_us is None
        assert (folder / "1" / "model.pt2").is_file()
        entry = manifest[f"{name}_pt2"]
        assert entry["target_status"] == "UNVERIFIED" and "max_batch_size 1" in entry["target_limits"][0]
        assert entry["compiled_for"]["cpu_isa"] and "instruction set" in entry["warnings"][0]


def _renamed_input(model, name: str):
    """The config with its input (and the warmup's) under zeroserve's name instead of the call spec's."""
    warmup = replace(model.warmup, inputs={name: model.warmup.inputs[model.inputs[0].name]})
    return replace(model, inputs=(replace(model.inputs[0], name=name),), warmup=warmup)


@pytest.mark.parametrize(
    "change, rule",
    [
        (lambda m: replace(m, max_batch_size=8), "max_batch_size at most 1"),
        (lambda m: _renamed_input(m, "image__0"), "INPUT__0"),
        (lambda m: replace(m, instance_kind="KIND_GPU"), "instance kind KIND_CPU"),
        # without the platform the pytorch backend reads a TorchScript model.pt, which is not there
        (lambda m: replace(m, platform=None), r"no artifact at .*1/model\.pt$"),
    ],
)
def test_a_pt2_config_off_the_backend_rules_fails_the_lint(pt2_repository, tmp_path, change, rule):
    folder = tmp_path / "cnn_mnist_pt2"
    shutil.copytree(pt2_repository / "cnn_mnist_pt2", folder)
    (folder / "config.pbtxt").write_text(render(change(parse((folder / "config.pbtxt").read_text()))))
    with pytest.raises(CheckFailed, match=rule):
        lint_model(folder)


def test_deploy_refuses_pt2_above_batch_1(pt2, tmp_path):
    with pytest.raises(InputError, match="--max-batch-size 4 is above 1"):
        deploy_model(registry.get("cnn_mnist"), pt2[0], tmp_path / "repo", formats="pt2", max_batch_size=4)
    assert not (tmp_path / "repo" / "cnn_mnist_pt2").exists()


def test_pt2_is_served_and_checked_through_the_embedded_engine(pt2, pt2_repository, start_server, data_dir):
    server = start_server(pt2_repository)
    assert set(server.models) == {f"{n}_pt2" for n in PT2_MODELS}
    endpoint = Endpoint(server.host, server.http_port, server.grpc_port, "test")
    for name in PT2_MODELS:
        # max_batch_size 1: one request per held-out sample (name_gru has thousands); HTTP once, for cnn_mnist
        protocols = ("grpc", "http") if name == "cnn_mnist" else ("grpc",)
        res = check_model(registry.get(name), endpoint, pt2[0], data_dir, formats=("pt2",), protocols=protocols)
        assert [(r.protocol, r.status) for r in res.rows] == [(p, "PASS") for p in protocols], res
        assert all(r.failed_requests == 0 and r.samples == res.samples for r in res.rows)


BRANCHY = textwrap.dedent(
    """
    import torch
    from torch import nn

    from zeroserve.spec import ModelSpec, TensorSpec
    from zeroserve.tasks import REGRESSION, VALUE


    class Branchy(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(4, 1)

        def forward(self, x):
            if x.sum() > 0:  # a branch on the data: torch.export cannot trace it
                return self.fc(x) * 2
            return self.fc(x)


    def zeroserve_models():
        return [
            ModelSpec(
                name="branchy",
                summary="a data-dependent branch",
                build=Branchy,
                checkpoint="branchy.pt",
                inputs=(TensorSpec("x__0", "float32", (4,)),),
                outputs=(TensorSpec("y__0", "float32", (1,), kind=VALUE),),
                tasks=(REGRESSION,),
            )
        ]


    if __name__ == "__main__":
        from pathlib import Path

        torch.save(Branchy().state_dict(), Path(__file__).with_name("branchy.pt"))
    """
)


def _zeroserve(*args: str, env: dict | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(Path(sys.executable).with_name("zeroserve")), *args],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, **(env or {})},
        cwd=cwd,
    )


def test_a_model_torch_export_cannot_trace_is_refused_named_and_skipped_under_all(tmp_path):
    model_file = tmp_path / "branchy.py"
    model_file.write_text(BRANCHY)
    subprocess.run([sys.executable, str(model_file)], check=True, timeout=120)
    own = ("--model-file", str(model_file), "--artifacts", str(tmp_path / "artifacts"))

    named = _zeroserve("export", "branchy", "--format", "pt2", *own)
    assert named.returncode == 2, named.stderr
    line = named.stderr.strip()
    assert len(line.splitlines()) == 1 and "branchy: pt2 cannot be made" in line
    assert "`if x.sum() > 0:`" in line and "data-dependent" in line  # the op (its source line) and why
    assert not (tmp_path / "artifacts" / "branchy" / "model.pt2").exists()

    everything = _zeroserve("export", "all", "--format", "pt2", *own)  # the course models: not trained here
    skipped = [ln for ln in everything.stdout.splitlines() + everything.stderr.splitlines() if "branchy" in ln]
    assert len(skipped) == 1 and "`if x.sum() > 0:`" in skipped[0], everything.stdout + everything.stderr


def test_no_cxx_compiler_is_one_line_naming_the_compiler(tmp_path):
    res = _zeroserve("export", "cnn_mnist", "--format", "pt2", "--artifacts", str(tmp_path), env={"CXX": "zs-no-cxx"})
    assert res.returncode == 2
    assert res.stderr.strip().count("\n") == 0 and "pt2 needs a C++ compiler" in res.stderr
    assert "zs-no-cxx" in res.stderr and "g++" in res.stderr

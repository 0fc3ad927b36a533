"""The format table drives export, deploy, serve's runtime copy and status: a new entry appears in all."""

from __future__ import annotations

import shutil

import pytest

from zeroserve import formats as F
from zeroserve import registry
from zeroserve.errors import InputError
from zeroserve.export import exporter


def test_the_table_answers_what_each_stage_asks():
    assert F.primary() == ("onnx", "torchscript")
    assert F.parse("torchscript,onnx") == ("onnx", "torchscript") and F.parse(None) == F.primary()
    with pytest.raises(InputError, match="unknown format onnx_int9"):
        F.parse("onnx,onnx_int9")
    assert F.for_backend("onnxruntime_onnx") is F.ONNXRUNTIME and F.for_backend("tensorflow") is None
    assert registry.get("cnn_mnist").triton_name("torchscript") == "cnn_mnist_torchscript"
    assert F.split_triton_name("cnn_mnist_torchscript") == ("cnn_mnist", F.FORMATS["torchscript"])
    assert F.split_triton_name("onnx") is None


def test_pt2_is_opt_in_and_its_backend_is_told_apart_by_platform():
    assert F.opt_in() == ("pt2",) and "pt2" not in F.parse(None) and F.parse("pt2") == ("pt2",)
    assert F.for_backend("pytorch", "torch_aoti") is F.PYTORCH_AOTI and F.for_backend("torch_aoti") is F.PYTORCH_AOTI
    assert F.for_backend("pytorch") is F.PYTORCH and F.for_backend("pytorch", "pytorch_libtorch") is F.PYTORCH
    assert F.get("pt2").handler.key == "pt2" and F.get("onnx_int8").handler is F.get("onnx").handler
    spec = registry.get("name_gru")
    assert F.get("pt2").handler.wire_names(spec) == (("INPUT__0", "INPUT__1"), ("OUTPUT__0",))
    assert F.get("onnx").handler.wire_names(spec) == (("tokens__0", "lengths__1"), ("logits__0",))


def test_a_torch_export_failure_is_named_by_its_source_line_or_op():
    from zeroserve.runtimes.pt2 import failing_op

    message = (
        "Could not guard on data-dependent expression Eq(u0, 1)\n\nThe following call raised this error:\n"
        '  File "/tmp/m/branchy.py", line 15, in forward\n    if x.sum() > 0:  # why\n\n'
        "The error above occurred when calling torch.export.export. If you would like ..."
    )
    assert failing_op(RuntimeError(message)) == "`if x.sum() > 0:` (branchy.py:15) (a data-dependent expression)"
    assert failing_op(RuntimeError("no kernel for aten.nonzero.default here")) == "aten.nonzero.default"
    assert failing_op(ValueError("something else")) == "ValueError"


@pytest.fixture
def copy_format(monkeypatch):
    """A variant of onnx that is a byte copy of it: one table entry plus the exporter's builder for it."""
    fmt = F.Format("onnx_copy", "model_copy.onnx", F.ONNXRUNTIME, base="onnx", summary="test: a copy of onnx")
    monkeypatch.setitem(F.FORMATS, fmt.key, fmt)

    def build(spec, module, path, *, work, **_):
        shutil.copyfile(work / F.FORMATS["onnx"].file, path)
        return {"copied_from": "onnx"}

    monkeypatch.setitem(exporter.BUILDERS, fmt.key, build)
    return fmt


def test_a_new_format_entry_is_exported_deployed_served_and_shown(copy_format, tmp_path):
    from zeroserve.deploy.repository import deploy_model
    from zeroserve.serve.runtime import build_runtime_repository
    from zeroserve.serve.status import collect_status
    from zeroserve.train import train_model

    spec = registry.get("linear")
    artifacts, repository = tmp_path / "artifacts", tmp_path / "repo"
    train_model(spec, tmp_path, artifacts, device="cpu")
    rec = exporter.export_model(spec, artifacts, formats="onnx,onnx_copy", latency=False)
    entry = rec.formats["onnx_copy"]
    assert entry.status == "PASS" and entry.file == "model_copy.onnx" and entry.to_json()["copied_from"] == "onnx"
    assert (artifacts / "linear" / "model_copy.onnx").is_file() and entry.grid

    (deployed,) = deploy_model(spec, artifacts, repository, formats="onnx_copy")
    assert deployed.name == "linear_onnx_copy" and deployed.backend == "onnxruntime"
    assert (repository / "linear_onnx_copy" / "1" / "model.onnx").is_file()

    (runtime,) = build_runtime_repository(repository, ["linear_onnx_copy"], tmp_path / "runtime", gpu=False)
    assert runtime.fmt == "onnx" and (tmp_path / "runtime" / "linear_onnx_copy" / "1" / "model.onnx").is_file()

    rows = {(r["model"], r["format"]): r for r in collect_status(artifacts, repository, None)["models"]}
    row = rows[("linear", "onnx_copy")]
    assert row["triton_name"] == "linear_onnx_copy"
    assert row["exported"]["state"] == "PASS" and row["deployed"]["state"] == "yes"
    assert ("logistic", "onnx_copy") not in rows  # a variant no stage has made gets no row


def test_a_format_without_a_builder_is_an_input_error(monkeypatch, tmp_path):
    monkeypatch.setitem(F.FORMATS, "onnx_nobuilder", F.Format("onnx_nobuilder", "x.onnx", F.ONNXRUNTIME, base="onnx"))
    with pytest.raises(InputError, match="no exporter is defined for format onnx_nobuilder"):
        exporter.export_model(registry.get("linear"), tmp_path, formats="onnx_nobuilder")

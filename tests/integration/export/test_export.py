import dataclasses
import json
import shutil

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from typer.testing import CliRunner

from zeroserve import course_modules, records, registry
from zeroserve.app.cli import app
from zeroserve.artifacts import load_trained
from zeroserve.data import course as C
from zeroserve.errors import CheckFailed, InputError
from zeroserve.export import export_model, gate, read_export
from zeroserve.export.exporter import sha256

runner = CliRunner()


@pytest.mark.parametrize("name", list(registry.REGISTRY))
def test_every_model_exports_both_formats_and_passes_the_full_grid(exported, name):
    artifacts, recs = exported
    spec = registry.get(name)
    rec = read_export(spec, artifacts).to_json()  # the JSON a user sees, as export returned it
    assert rec == records.restore(json.loads(records.dumps(recs[name].to_json())))
    assert rec["status"] == "PASS" and set(rec["formats"]) == {"onnx", "torchscript"}
    batches = {1, 2, 7, spec.max_batch_size}
    for _fmt, entry in rec["formats"].items():
        path = artifacts / name / entry["file"]
        assert entry["sha256"] == sha256(path) and entry["bytes"] == path.stat().st_size
        assert entry["status"] == "PASS" and all(p["passed"] for p in entry["grid"])
        random_points = [p for p in entry["grid"] if p["point"].startswith("random")]
        assert {p["shapes"][0][0] for p in random_points} == batches
        if spec.seq_lengths:  # every sequence length at every batch size
            assert {p["shapes"][0][1] for p in random_points} == set(spec.seq_lengths)
        assert any(p["point"].startswith("held-out") for p in entry["grid"])
        for p in entry["grid"]:
            assert p["max_abs"] <= rec["atol"] + rec["rtol"] * 100  # recorded numbers, not just a verdict
            assert p["top1_agreement"] in (None, 1.0)
    onnx_entry = rec["formats"]["onnx"]
    # the default exporter, dynamo: every course model passes its gate (hello_rnn's RNN as a loop over time)
    assert onnx_entry["opset"] == 18 and onnx_entry["exporter"] == "dynamo" and onnx_entry["ir_version"] >= 7
    for key in ("batch_1", f"batch_{spec.max_batch_size}"):
        assert set(rec["latency_ms"][key]) == {"eager", "torchscript", "onnx"}
    assert rec["latency_ms"]["threads"] == 1


@pytest.mark.parametrize("name", list(registry.REGISTRY))
def test_onnx_graph_has_registry_names_and_dynamic_axes(exported, name):
    artifacts, _ = exported
    spec = registry.get(name)
    model = onnx.load(str(artifacts / name / "model.onnx"))
    onnx.checker.check_model(model)
    assert not any(i.data_location == onnx.TensorProto.EXTERNAL for i in model.graph.initializer)
    graph_inputs = {i.name: i for i in model.graph.input}
    assert [o.name for o in model.graph.output] == [t.name for t in spec.outputs]
    for t in spec.inputs:
        dims = graph_inputs[t.name].type.tensor_type.shape.dim
        assert len(dims) == 1 + len(t.dims)
        assert dims[0].dim_param  # dynamic batch
        for d, want in zip(dims[1:], t.dims):
            assert bool(d.dim_param) == isinstance(want, str) and (d.dim_value == want or d.dim_param)
        elem = onnx.helper.tensor_dtype_to_np_dtype(graph_inputs[t.name].type.tensor_type.elem_type)
        assert elem == np.dtype(t.dtype)
    ts = torch.jit.load(str(artifacts / name / "model.pt"))
    assert len(list(ts.forward.schema.arguments)) == 1 + len(spec.inputs)


def test_name_gru_rows_of_a_mixed_batch_equal_each_name_alone(exported):
    artifacts, _ = exported
    spec = registry.get("name_gru")
    eager = load_trained(spec, artifacts)
    names = ["Li", "Nguyen", "Abandonato", "O'Neill", "Schwarzenegger", "Ng", "Zhu"]
    tokens = C.NAME_TOKENS.encode_items(names, 19)
    lengths = (tokens != 0).sum(1)
    session = ort.InferenceSession(str(artifacts / "name_gru" / "model.onnx"), providers=["CPUExecutionProvider"])
    batched = session.run(None, {"tokens__0": tokens, "lengths__1": lengths})[0]
    scripted = torch.jit.load(str(artifacts / "name_gru" / "model.pt"))
    batched_ts = scripted(torch.from_numpy(tokens), torch.from_numpy(lengths)).detach().numpy()
    for i, name in enumerate(names):
        alone_tokens, alone_len = spec.encode(name, "text")
        with torch.no_grad():
            want = eager(torch.from_numpy(alone_tokens), torch.from_numpy(alone_len)).numpy()[0]
        assert np.allclose(batched[i], want, atol=1e-5, rtol=1e-4)
        assert np.allclose(batched_ts[i], want, atol=1e-5, rtol=1e-4)


def _copy_model(artifacts, name, dest):
    shutil.copytree(artifacts / name, dest / name)
    return dest


def test_a_perturbed_onnx_artifact_fails_the_gate(exported, tmp_path):
    artifacts, _ = exported
    spec = registry.get("softmax_mnist")
    model = onnx.load(str(artifacts / spec.name / "model.onnx"))
    # every weight of one matrix moved (one element could multiply a pixel that is 0 in every sample, or a dead unit)
    weights = next(w for w in model.graph.initializer if len(w.dims) == 2)
    arr = onnx.numpy_helper.to_array(weights).copy()
    arr += 0.5
    weights.CopyFrom(onnx.numpy_helper.from_array(arr, weights.name))
    path = tmp_path / "perturbed.onnx"
    onnx.save(model, str(path))
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    eager = load_trained(spec, artifacts)
    result = gate.run_gate(
        spec,
        lambda xs: [eager(torch.from_numpy(xs[0])).detach().numpy()],
        lambda xs: session.run(None, {"image__0": xs[0]}),
        gate.grid(spec, None),
        spec.tolerance,
    )
    assert result["status"] == "FAIL" and result["worst"]["max_abs"] > 1e-4


def test_a_wrongly_exported_model_fails_and_keeps_the_previous_artifacts(exported, tmp_path):
    artifacts, _ = exported
    dest = _copy_model(artifacts, "name_gru", tmp_path)
    before = {f: sha256(dest / "name_gru" / f) for f in ("model.onnx", "model.pt", "export.json")}

    class ForwardOnly(torch.nn.Module):  # a plausible mistake: classify from the wrong direction
        def __init__(self, trained):
            super().__init__()
            self.inner = course_modules.NameGRUExport(trained)

        def forward(self, tokens, lengths):
            return self.inner(tokens, torch.full_like(lengths, tokens.shape[1]))

    wrong = dataclasses.replace(registry.get("name_gru"), export_module=ForwardOnly)
    with pytest.raises(CheckFailed, match=r"name_gru onnx failed the parity gate at .*max abs error"):
        export_model(wrong, dest, latency=False)
    assert before == {f: sha256(dest / "name_gru" / f) for f in before}
    failed = json.loads((dest / "name_gru" / "export-failed.json").read_text())
    assert failed["status"] == "FAIL" and failed["formats"]["onnx"]["worst"]["max_abs"] > 1e-3
    assert not list((dest / "name_gru").glob(".export-*"))


def test_export_cli_failure_exits_1_with_the_worst_case(exported, tmp_path, monkeypatch):
    artifacts, _ = exported
    dest = _copy_model(artifacts, "cnn_mnist", tmp_path)
    result = runner.invoke(
        app, ["export", "cnn_mnist", "--artifacts", str(dest), "--atol", "0", "--rtol", "0", "--format", "onnx"]
    )
    assert result.exit_code == 1, result.output
    assert "cnn_mnist onnx failed the parity gate" in result.output and "max abs error" in result.output
    assert json.loads((dest / "cnn_mnist" / "export.json").read_text())["status"] == "PASS"


def test_exporting_one_format_keeps_the_other(exported, tmp_path):
    artifacts, _ = exported
    dest = _copy_model(artifacts, "linear", tmp_path)
    rec = export_model(registry.get("linear"), dest, formats="onnx", latency=False)
    assert set(rec.formats) == {"onnx", "torchscript"}


def test_the_legacy_exporter_stays_selectable_and_keeps_the_rnn_op(exported, tmp_path):
    """hello_rnn: the legacy exporter writes ONNX's RNN op; the default (dynamo) its recurrence as a Loop
    over the time steps (torch.export's while_loop): both pass the gate, at any sequence length."""
    artifacts, _ = exported
    dest = _copy_model(artifacts, "hello_rnn", tmp_path)
    rec = export_model(registry.get("hello_rnn"), dest, formats="onnx", exporter="legacy", latency=False)
    assert rec.formats["onnx"].exporter == "legacy" and rec.formats["onnx"].status == "PASS"
    ops = {n.op_type for n in onnx.load(str(dest / "hello_rnn" / "model.onnx")).graph.node}
    assert "RNN" in ops and "Loop" not in ops
    ops = {n.op_type for n in onnx.load(str(artifacts / "hello_rnn" / "model.onnx")).graph.node}
    assert "Loop" in ops and "RNN" not in ops


def test_bad_input_is_one_clear_line(exported, tmp_path):
    artifacts, _ = exported
    cases = [
        (["export", "cnn_mnist", "--artifacts", str(tmp_path)], "run `zeroserve train cnn_mnist` first"),
        (["export", "cnn_mnist", "--artifacts", str(artifacts), "--format", "tflite"], "unknown format tflite"),
        (["export", "cnn_mnist", "--artifacts", str(artifacts), "--opset", "99"], "opset 99 is not supported"),
        (
            ["export", "cnn_mnist", "--artifacts", str(artifacts), "--exporter", "magic"],
            "Invalid value for '--exporter'",
        ),  # Typer's own refusal of a choice option
    ]
    for args, message in cases:
        result = runner.invoke(app, args)
        assert result.exit_code == 2, (args, result.output)
        assert message in result.output and "Traceback" not in result.output


def test_mismatched_checkpoint_is_refused_and_previous_export_kept(exported, tmp_path):
    artifacts, _ = exported
    dest = _copy_model(artifacts, "cnn_mnist", tmp_path)
    torch.save(registry.get("softmax_mnist").build().state_dict(), dest / "cnn_mnist" / "checkpoint.pt")
    before = sha256(dest / "cnn_mnist" / "model.onnx")
    with pytest.raises(InputError, match="does not fit the cnn_mnist architecture"):
        export_model(registry.get("cnn_mnist"), dest)
    assert sha256(dest / "cnn_mnist" / "model.onnx") == before

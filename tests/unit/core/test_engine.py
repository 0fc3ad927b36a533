"""The engine a figure was measured on, as a record and a title line: read from the served config, not assumed."""

from __future__ import annotations

from dataclasses import asdict

from zeroserve import engine
from zeroserve.deploy.release import TARGET
from zeroserve.triton import machine


def _python_config(fmt: str) -> dict:
    return {
        "name": "cnn_mnist_onnx",
        "backend": "python",
        "instance_group": [{"kind": "KIND_CPU", "count": 1}],
        "parameters": {"ZS_FORMAT": {"string_value": fmt}},
    }


def test_the_embedded_engine_is_read_from_zeroserves_python_backend_config():
    e = engine.from_config(_python_config("onnx"), "2.51.0", [])
    assert (e["kind"], e["triton"], e["backend"], e["runtime"], e["device"]) == (
        "embedded",
        "2.51.0",
        "python",
        "onnxruntime",
        "CPU",
    )
    assert e["runtime_version"] == engine.runtime_versions()["onnxruntime"] and e["runtime_version"]
    assert (
        engine.line(e) == f"embedded Triton 2.51.0, Python backend running onnxruntime {e['runtime_version']}, on CPU"
    )
    torch = engine.from_config({"config": _python_config("torchscript")}, "2.51.0")  # gRPC's wrapped form
    assert torch["runtime"] == "torch" and "running torch" in engine.line(torch)
    assert "no-op" in engine.line(engine.from_config(_python_config("noop"), "2.51.0"))


def test_a_native_backend_is_described_as_such_and_the_target_release_by_its_versions():
    config = {"backend": "onnxruntime", "instance_group": [{"kind": "KIND_GPU"}]}
    e = engine.from_config(config, TARGET.triton, ["NVIDIA L4"], asdict(TARGET))
    assert (e["kind"], e["backend"], e["runtime_version"], e["image"]) == (
        "native",
        "onnxruntime",
        TARGET.onnxruntime,
        TARGET.image,
    )
    assert engine.line(e) == (
        f"Triton {TARGET.triton} [{TARGET.image}], native onnxruntime backend (onnxruntime {TARGET.onnxruntime}), "
        "on GPU (NVIDIA L4)"
    )
    other = engine.from_config(config, "2.40.0", [], asdict(TARGET))
    assert other["runtime_version"] is None and other["device"] == "CPU" and "version not known" in engine.line(other)


def test_differs_names_each_difference_and_nothing_when_the_same():
    measured = engine.embedded("onnx", [], "2.51.0")
    target = engine.target_release(asdict(TARGET), "onnxruntime")
    lines = engine.differs(measured, target)
    assert f"Triton version 2.51.0 measured, {TARGET.triton} targeted" in lines
    assert "backend python measured, onnxruntime targeted" in lines
    assert any(line.startswith("measured on CPU") for line in lines)
    assert engine.differs(target, target) == []
    assert engine.differs(None, target) == ["the engine measured on is not known"]


def test_measured_on_carries_the_engine_line_and_the_machine():
    facts = machine.measured_on(engine.embedded("onnx", [], "2.51.0"))
    assert facts.engine and facts.engine.startswith("embedded Triton 2.51.0")
    assert facts.engine_detail and facts.engine_detail.backend == "python"
    assert facts.cores and facts.cores >= 1 and facts.cpu_model
    line = engine.describe(facts.to_json())
    assert line.startswith("embedded Triton 2.51.0") and f"x {facts.cores} cores" in line
    assert machine.measured_on(None).engine is None

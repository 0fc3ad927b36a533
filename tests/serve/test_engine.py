"""The embedded engine's own parts: the runtime copy, model selection, ports, the binary, state files.

A small canonical repository is built here from untrained registry models (export and
config rendering take a second, no training), with the deploy stage's own config renderer.
The paths through a whole running server are in tests/e2e/test_serving.py.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
from pathlib import Path

import numpy as np
import pytest
import torch
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2 as mc

from zeroserve import registry
from zeroserve.errors import InputError, ServerError
from zeroserve.serve import engine
from zeroserve.serve import state as st
from zeroserve.serve.config import DeployedModel, TensorConfig, render


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch) -> Path:
    cache = tmp_path / "cache"
    monkeypatch.setenv("ZEROSERVE_CACHE", str(cache))
    return cache


def _canonical(repository: Path, name: str, fmt: str, corrupt: bool = False) -> None:
    """One canonical model folder as deploy writes it (untrained weights; KIND_GPU; TensorRT for ONNX)."""
    spec = registry.get(name)
    torch.manual_seed(0)
    module = spec.build().eval()
    module = spec.export_module(module).eval() if spec.export_module else module
    example = tuple(torch.from_numpy(a) for a in spec.random_inputs(2, np.random.default_rng(0), time=3))
    folder = repository / spec.triton_name(fmt)
    (folder / "1").mkdir(parents=True)
    if fmt == "onnx":
        path = folder / "1" / "model.onnx"
        torch.onnx.export(module, example, path, dynamo=False, opset_version=17,
                          input_names=[t.name for t in spec.inputs], output_names=[t.name for t in spec.outputs],
                          dynamic_axes={t.name: t.dynamic_axes for t in (*spec.inputs, *spec.outputs)})
    else:
        path = folder / "1" / "model.pt"
        torch.jit.trace(module, example).save(str(path))
    if corrupt:
        path.write_bytes(b"not a model")
    model = DeployedModel(name=spec.triton_name(fmt), backend="onnxruntime" if fmt == "onnx" else "pytorch",
                          max_batch_size=spec.max_batch_size,
                          inputs=tuple(TensorConfig.from_spec(t) for t in spec.inputs),
                          outputs=tuple(TensorConfig.from_spec(t) for t in spec.outputs),
                          max_queue_delay_us=100, instance_kind="KIND_GPU", instance_count=2,
                          tensorrt="FP16" if fmt == "onnx" else None)
    (folder / "config.pbtxt").write_text(render(model))


@pytest.fixture(scope="module")
def canonical(tmp_path_factory) -> Path:
    repository = tmp_path_factory.mktemp("canonical")
    for name in ("linear", "name_gru"):
        for fmt in ("onnx", "torchscript"):
            _canonical(repository, name, fmt)
    return repository


def _tree_digest(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def test_runtime_copy_keeps_the_contract_and_switches_to_the_python_backend(canonical, tmp_path):
    before = _tree_digest(canonical)
    built = engine.build_runtime_repository(canonical, ["name_gru_onnx", "name_gru_torchscript"],
                                            tmp_path / "runtime", ort_threads=2, gpu=False)
    assert [m.name for m in built] == ["name_gru_onnx", "name_gru_torchscript"]
    for fmt, artifact in (("onnx", "model.onnx"), ("torchscript", "model.pt")):
        name = f"name_gru_{fmt}"
        src = text_format.Parse((canonical / name / "config.pbtxt").read_text(), mc.ModelConfig())
        cfg = text_format.Parse((tmp_path / "runtime" / name / "config.pbtxt").read_text(), mc.ModelConfig())
        assert cfg.name == name and cfg.backend == "python" and not cfg.platform
        assert list(cfg.input) == list(src.input) and list(cfg.output) == list(src.output)
        assert cfg.input[1].HasField("reshape") and list(cfg.input[1].reshape.shape) == []
        assert cfg.max_batch_size == src.max_batch_size == 64
        assert cfg.dynamic_batching == src.dynamic_batching
        assert [(g.kind, g.count) for g in cfg.instance_group] == [(mc.ModelInstanceGroup.KIND_CPU, 2)]
        assert not cfg.HasField("optimization")  # TensorRT belongs to the native onnxruntime backend
        assert {k: v.string_value for k, v in cfg.parameters.items()} == {
            "ZS_FORMAT": fmt, "ZS_ARTIFACT": artifact, "ZS_THREADS": "2"}
        version = tmp_path / "runtime" / name / "1"
        assert (version / "model.py").read_text() == engine.MODEL_PY.read_text()
        assert (version / artifact).read_bytes() == (canonical / name / "1" / artifact).read_bytes()
    assert _tree_digest(canonical) == before


def test_a_gpu_instance_is_kept_when_a_gpu_is_there_and_downgraded_with_a_warning_otherwise(canonical, tmp_path):
    engine.build_runtime_repository(canonical, ["linear_onnx"], tmp_path / "gpu", gpu=True)
    cfg = text_format.Parse((tmp_path / "gpu" / "linear_onnx" / "config.pbtxt").read_text(), mc.ModelConfig())
    assert cfg.instance_group[0].kind == mc.ModelInstanceGroup.KIND_GPU
    with pytest.warns(UserWarning, match="no GPU here"):
        engine.build_runtime_repository(canonical, ["linear_onnx"], tmp_path / "cpu", gpu=False)


def test_queue_delay_override_and_noop_twin(canonical, tmp_path):
    built = engine.build_runtime_repository(canonical, ["linear_onnx"], tmp_path / "rt", gpu=False,
                                            queue_delay_us=50_000, noop_of=["linear_onnx"])
    assert [(m.name, m.fmt) for m in built] == [("linear_onnx", "onnx"), ("linear_onnx_noop", "noop")]
    cfg = text_format.Parse((tmp_path / "rt" / "linear_onnx_noop" / "config.pbtxt").read_text(), mc.ModelConfig())
    assert cfg.name == "linear_onnx_noop" and cfg.dynamic_batching.max_queue_delay_microseconds == 50_000


def test_model_selection_by_registry_or_triton_name(canonical):
    assert engine.canonical_models(canonical) == ["linear_onnx", "linear_torchscript", "name_gru_onnx",
                                                  "name_gru_torchscript"]
    assert engine.canonical_models(canonical, ["linear,name_gru_onnx"]) == ["linear_onnx", "linear_torchscript",
                                                                           "name_gru_onnx"]
    with pytest.raises(InputError, match="cnn_mnist is not deployed"):
        engine.canonical_models(canonical, ["cnn_mnist"])
    with pytest.raises(InputError, match="unknown model 'nope'"):
        engine.canonical_models(canonical, ["nope"])


def test_missing_or_empty_repository_is_a_clear_input_error(tmp_path):
    with pytest.raises(InputError, match="does not exist; run `zeroserve deploy all` first"):
        engine.start_server(tmp_path / "absent")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="has no models"):
        engine.start_server(tmp_path / "empty")


def test_a_port_in_use_is_refused_before_starting(canonical):
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        free = engine.free_port()
        with pytest.raises(ServerError, match=rf"grpc port {port} on 127.0.0.1 is in use"):
            engine.start_server(canonical, ["linear_onnx"], http_port=free, grpc_port=port,
                                metrics_port=engine.free_port())
    assert st.list_servers() == []


def test_the_server_binary_is_found_and_a_missing_one_is_a_clear_error(tmp_path):
    install = engine.find_tritonserver()
    assert install.binary.is_file() and os.access(install.binary, os.X_OK)
    assert install.stub.is_file()
    backends = engine.backend_directory(install)
    assert (backends / "python" / engine.STUB_NAME).is_file()
    assert (backends / "python" / "libtriton_python.so").is_file()
    with pytest.raises(ServerError, match="tritonserver binary is missing"):
        engine.find_tritonserver(root=tmp_path)


def test_a_model_that_fails_to_load_is_named_with_the_servers_own_log_lines(tmp_path, private_cache):
    repository = tmp_path / "broken"
    _canonical(repository, "linear", "onnx", corrupt=True)
    _canonical(repository, "linear", "torchscript")
    with pytest.raises(ServerError) as info:
        engine.start_server(repository, http_port=engine.free_port(), grpc_port=engine.free_port(),
                            metrics_port=engine.free_port(), timeout=120)
    message = str(info.value)
    assert message.startswith("model linear_onnx failed to load")
    assert "server log:" in message and "\n" not in message
    assert st.list_servers() == []
    leftovers = [p for p in Path("/proc").iterdir() if p.name.isdigit()
                 and str(private_cache).encode() in _cmdline(p)]
    assert leftovers == []
    command = next((private_cache / "runs").glob("*/command.txt")).read_text()
    prefix = command.split("shm-region-prefix-name=")[1].split()[0]
    assert engine.shm_segments(prefix) == []


def _cmdline(proc: Path) -> bytes:
    try:
        return (proc / "cmdline").read_bytes()
    except OSError:
        return b""


def test_state_files_of_dead_servers_are_pruned_and_resolution_says_what_to_do(private_cache):
    dead = {"pid": 2 ** 22 + 7, "host": "127.0.0.1", "http_port": 1, "grpc_port": 2, "metrics_port": 3,
            "runtime_dir": "/nowhere", "log": "/nowhere/log", "models": [], "started": "2026-01-01T00:00:00"}
    st.write_state(dead)
    (st.servers_dir() / "torn.json").write_text("{")
    assert st.list_servers() == []
    assert not st.state_path(dead["pid"]).exists() and not (st.servers_dir() / "torn.json").exists()
    with pytest.raises(ServerError, match="no running zeroserve server"):
        st.resolve_server()
    assert json.loads(json.dumps(dead)) == dead  # the contract's fields are plain JSON


def test_docker_command_serves_the_canonical_repository_on_the_target_image(canonical):
    from zeroserve.serve.repository import TARGET

    cmd = engine.docker_command(canonical, TARGET.image)
    assert cmd[:4] == ["docker", "run", "--gpus", "all"]
    assert f"{canonical.resolve()}:/models" in cmd and TARGET.image in cmd
    assert cmd[-2:] == ["tritonserver", "--model-repository=/models"]

"""The embedded engine's rooms: the runtime copy, model selection, ports, the wheel, state files, start and stop.

A small canonical repository is built here from untrained registry models (export and
config rendering take a second, no training), with the deploy stage's own config renderer.
The paths through a whole running server with trained models are in tests/integration/serve/test_serving.py.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from google.protobuf import text_format
from serving_helpers import canonical_folder, three_ports  # tests/ is on sys.path (its conftest)
from tritonclient.grpc import model_config_pb2 as mc

from zeroserve.deploy import contents
from zeroserve.deploy.config import parse, render
from zeroserve.errors import InputError, ServerError
from zeroserve.records.state import ServerState
from zeroserve.serve import handle, runtime, server, stop
from zeroserve.serve import processes as ps
from zeroserve.serve import state as st
from zeroserve.serve.docker import docker_command
from zeroserve.triton import wheel
from zeroserve.triton.ports import resolve_free_ports


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch) -> Path:
    cache = tmp_path / "cache"
    monkeypatch.setenv("ZEROSERVE_CACHE", str(cache))
    return cache


@pytest.fixture(scope="module")
def canonical(tmp_path_factory) -> Path:
    repository = tmp_path_factory.mktemp("canonical")
    for name in ("linear", "name_gru"):
        for fmt in ("onnx", "torchscript"):
            canonical_folder(repository, name, fmt)
    return repository


def _tree_digest(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def test_runtime_copy_keeps_the_contract_and_switches_to_the_python_backend(canonical, tmp_path):
    before = _tree_digest(canonical)
    built = runtime.build_runtime_repository(
        canonical, ["name_gru_onnx", "name_gru_torchscript"], tmp_path / "runtime", ort_threads=2, gpu=False
    )
    assert [m.name for m in built] == ["name_gru_onnx", "name_gru_torchscript"]
    for fmt, artifact in (("onnx", "model.onnx"), ("torchscript", "model.pt")):
        name = f"name_gru_{fmt}"
        src = text_format.Parse((canonical / name / "config.pbtxt").read_text(), mc.ModelConfig())
        cfg = text_format.Parse((tmp_path / "runtime" / name / "config.pbtxt").read_text(), mc.ModelConfig())
        assert cfg.name == name and cfg.backend == "python" and not cfg.platform
        assert list(cfg.output) == list(src.output)
        # Same tensors; the variable-length tokens may be merged across lengths (model.py groups them).
        assert [(i.name, i.data_type, list(i.dims), i.allow_ragged_batch) for i in cfg.input] == [
            (i.name, i.data_type, list(i.dims), -1 in i.dims) for i in src.input
        ]
        assert cfg.input[1].HasField("reshape") and list(cfg.input[1].reshape.shape) == []
        assert cfg.max_batch_size == src.max_batch_size == 64
        assert cfg.dynamic_batching == src.dynamic_batching
        assert [(g.kind, g.count) for g in cfg.instance_group] == [(mc.ModelInstanceGroup.KIND_CPU, 2)]
        assert not cfg.HasField("optimization")  # TensorRT belongs to the native onnxruntime backend
        assert {k: v.string_value for k, v in cfg.parameters.items()} == {
            "ZS_FORMAT": fmt,
            "ZS_ARTIFACT": artifact,
            "ZS_THREADS": "2",
        }
        version = tmp_path / "runtime" / name / "1"
        assert (version / "model.py").read_text() == runtime.MODEL_PY.read_text()
        assert (version / artifact).read_bytes() == (canonical / name / "1" / artifact).read_bytes()
    assert _tree_digest(canonical) == before


def test_a_gpu_instance_is_kept_when_a_gpu_is_there_and_downgraded_with_a_warning_otherwise(canonical, tmp_path):
    runtime.build_runtime_repository(canonical, ["linear_onnx"], tmp_path / "gpu", gpu=True)
    cfg = text_format.Parse((tmp_path / "gpu" / "linear_onnx" / "config.pbtxt").read_text(), mc.ModelConfig())
    assert cfg.instance_group[0].kind == mc.ModelInstanceGroup.KIND_GPU
    with pytest.warns(UserWarning, match="no GPU here"):
        runtime.build_runtime_repository(canonical, ["linear_onnx"], tmp_path / "cpu", gpu=False)


def test_queue_delay_override_and_noop_twin(canonical, tmp_path):
    built = runtime.build_runtime_repository(
        canonical, ["linear_onnx"], tmp_path / "rt", gpu=False, queue_delay_us=50_000, noop_of=["linear_onnx"]
    )
    assert [(m.name, m.fmt) for m in built] == [("linear_onnx", "onnx"), ("linear_onnx_noop", "noop")]
    cfg = text_format.Parse((tmp_path / "rt" / "linear_onnx_noop" / "config.pbtxt").read_text(), mc.ModelConfig())
    assert cfg.name == "linear_onnx_noop" and cfg.dynamic_batching.max_queue_delay_microseconds == 50_000


def test_the_runtime_config_is_the_deployed_config_transformed_and_rendered_by_the_same_render(tmp_path):
    repository = tmp_path / "canonical"
    canonical_folder(repository, "linear", "onnx", parameters={"intra_op_thread_count": "3"})
    canonical_folder(repository, "linear", "torchscript", parameters={"INTRA_OP_THREAD_COUNT": "0"})
    runtime.build_runtime_repository(repository, ["linear_onnx", "linear_torchscript"], tmp_path / "rt", gpu=False)
    source = parse((repository / "linear_onnx" / "config.pbtxt").read_text())
    text = (tmp_path / "rt" / "linear_onnx" / "config.pbtxt").read_text()
    served = parse(text)
    assert text == render(served)
    # Everything the canonical config says, except what only the native backends understand.
    assert served == dataclasses.replace(
        source, backend="python", instance_kind="KIND_CPU", tensorrt=None, parameters=served.parameters
    )
    assert served.parameters == {"ZS_FORMAT": "onnx", "ZS_ARTIFACT": "model.onnx", "ZS_THREADS": "3"}
    # 0 is the native backend's "its own default": the runtime copy then uses 1.
    assert parse((tmp_path / "rt" / "linear_torchscript" / "config.pbtxt").read_text()).parameters["ZS_THREADS"] == "1"
    runtime.build_runtime_repository(repository, ["linear_onnx"], tmp_path / "rt2", ort_threads=2, gpu=False)
    assert parse((tmp_path / "rt2" / "linear_onnx" / "config.pbtxt").read_text()).parameters["ZS_THREADS"] == "2"


def test_model_selection_by_registry_or_triton_name(canonical):
    assert contents.canonical_models(canonical) == [
        "linear_onnx",
        "linear_torchscript",
        "name_gru_onnx",
        "name_gru_torchscript",
    ]
    assert contents.canonical_models(canonical, ["linear,name_gru_onnx"]) == [
        "linear_onnx",
        "linear_torchscript",
        "name_gru_onnx",
    ]
    with pytest.raises(InputError, match="cnn_mnist is not deployed"):
        contents.canonical_models(canonical, ["cnn_mnist"])
    with pytest.raises(InputError, match="unknown model 'nope'"):
        contents.canonical_models(canonical, ["nope"])


def test_missing_or_empty_repository_is_a_clear_input_error(tmp_path):
    with pytest.raises(InputError, match="does not exist; run `zeroserve deploy all` first"):
        server.start_server(tmp_path / "absent")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="has no models"):
        server.start_server(tmp_path / "empty")


def test_a_port_in_use_is_refused_before_starting(canonical):
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        free = resolve_free_ports("127.0.0.1", {"http": 0, "metrics": 0})
        with pytest.raises(ServerError, match=rf"grpc port {port} on 127.0.0.1 is in use"):
            server.start_server(
                canonical, ["linear_onnx"], http_port=free["http"], grpc_port=port, metrics_port=free["metrics"]
            )
    assert st.list_servers() == []


def test_the_server_binary_is_found_and_a_missing_one_is_a_clear_error(monkeypatch, tmp_path, private_cache):
    from pytriton.utils import distribution

    install = wheel.find_tritonserver()
    assert install.binary.is_file() and os.access(install.binary, os.X_OK)
    assert install.stub.is_file()
    backends = wheel.backend_directory(install, private_cache)
    assert (backends / "python" / wheel.STUB_NAME).is_file()
    assert (backends / "python" / "libtriton_python.so").is_file()
    monkeypatch.setattr(distribution, "get_root_module_path", lambda: tmp_path)
    with pytest.raises(ServerError, match="tritonserver binary is missing"):
        wheel.find_tritonserver()


def _http_code(url: str, path: str) -> int:
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(f"http://{url}{path}", timeout=5) as r:
            return r.status
    except urllib.error.HTTPError as exc:
        return exc.code


def test_a_model_that_fails_to_load_is_named_and_the_others_serve(tmp_path, private_cache):
    repository = tmp_path / "broken"
    canonical_folder(repository, "linear", "onnx", corrupt=True)
    canonical_folder(repository, "linear", "torchscript")
    events = []
    started = server.start_server(
        repository, timeout=120, **three_ports(), on_model=lambda n, s, _: events.append((n, s))
    )
    try:
        failed = started.state.failed
        assert list(failed) == ["linear_onnx"] and "\n" not in failed["linear_onnx"], failed
        assert ("linear_onnx", "FAILED") in events and ("linear_torchscript", "READY") in events
        index = started.index()
        # failed at start: Triton's poller tries it again every poll (LOADING, then UNAVAILABLE), never READY
        assert index["linear_torchscript"]["state"] == "READY" and index["linear_onnx"]["state"] != "READY"
        assert _http_code(started.http_url, "/v2/health/ready") == 400  # strict readiness: the run is not ready
        [running] = st.list_servers()
        assert running.failed == failed and running.status == st.RUNNING
    finally:
        started.stop()


def test_a_start_where_no_model_loads_fails_naming_one_and_keeps_the_run_dead_with_the_log(tmp_path, private_cache):
    repository = tmp_path / "broken"
    canonical_folder(repository, "linear", "onnx", corrupt=True)
    with pytest.raises(ServerError) as info:
        server.start_server(repository, timeout=120, **three_ports())
    message = str(info.value)
    assert message.startswith("no model could be loaded; model linear_onnx failed to load"), message
    assert "\n" not in message
    assert st.list_servers() == []
    [dead] = st.dead_servers()
    assert dead.status == st.DEAD and dead.reason.startswith("failed to start: no model could be loaded")
    assert Path(dead.log).is_file() and "linear_onnx" in Path(dead.log).read_text()
    assert not [p for p in Path("/proc").iterdir() if p.name.isdigit() and str(private_cache).encode() in _cmdline(p)]
    assert ps.shm_segments(dead.shm_prefix) == []


def test_one_deadline_covers_the_whole_start_so_a_slow_last_load_ends_it_on_time(tmp_path, private_cache, monkeypatch):
    repository = tmp_path / "slow"
    canonical_folder(repository, "linear", "onnx")
    canonical_folder(repository, "name_gru", "onnx", warmups=10_000_000)  # its load runs warmups for hours
    monkeypatch.setattr(handle, "LOAD_WORKERS", 1)  # name_gru_onnx starts loading once linear_onnx is READY
    events: dict[tuple[str, str], float] = {}
    timeout = 20.0
    started = time.monotonic()
    with pytest.raises(ServerError) as info:
        server.start_server(
            repository,
            timeout=timeout,
            **three_ports(),
            model_control="explicit",
            on_model=lambda n, s, _: events.setdefault((n, s), time.monotonic() - started),
        )
    message = str(info.value)
    assert "1 of 2 models were not READY within the start deadline (--timeout): name_gru_onnx" in message, message
    assert events[("linear_onnx", "READY")] < events[("name_gru_onnx", "loading")]
    # The last load got what was left of the one deadline, not a whole timeout of its own from when it began.
    assert timeout - 0.5 < events[("name_gru_onnx", "timed out")] < timeout + 1.0, events
    assert st.list_servers() == [] and st.dead_servers()[0].reason.startswith("failed to start")


def _cmdline(proc: Path) -> bytes:
    try:
        return (proc / "cmdline").read_bytes()
    except OSError:
        return b""


def _dead_state(**extra) -> ServerState:
    return ServerState.model_validate(
        {
            "run_id": st.new_run_id(),
            "pid": 2**22 + 7,
            "create_time": 1.0,
            "host": "127.0.0.1",
            "http_port": 1,
            "grpc_port": 2,
            "metrics_port": 3,
            "runtime_dir": "/nowhere",
            "log": "/nowhere/log",
            "models": [],
            "started": "2026-01-01T00:00:00",
            "status": st.RUNNING,
            "shm_prefix": "zsnone_",
            **extra,
        }
    )


def test_reading_state_never_changes_it_and_resolution_says_what_to_do(private_cache):
    dead = _dead_state()
    path = st.write_state(dead)
    (st.servers_dir() / "torn.json").write_text("{")
    before = path.read_text()
    assert st.list_servers() == [] and [s.run_id for s in st.dead_servers()] == [dead.run_id]
    with pytest.raises(ServerError, match="no running zeroserve server"):
        st.resolve_server()
    assert path.read_text() == before and (st.servers_dir() / "torn.json").exists()


def test_a_recycled_pid_is_not_the_server_and_is_never_signalled(private_cache, tmp_path):
    # A live process under the recorded pid, but not the one created at the recorded time.
    bystander = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        run = tmp_path / "run"
        run.mkdir()
        (run / "server.log").write_text("the log\n")
        state = _dead_state(
            pid=bystander.pid,
            create_time=st.create_time(bystander.pid) - 100,
            runtime_dir=str(run),
            log=str(run / "server.log"),
        )
        st.write_state(state)
        assert not st.is_running(state) and st.list_servers() == []
        report = stop.stop_servers()  # reaps: marks it dead, signals nothing
        assert bystander.poll() is None
        assert [r["run_id"] for r in report["reaped"]] == [state.run_id] and report["stopped"] == []
        assert [s["run_id"] for s in report["kept"]] == [state.run_id]
        assert st.read_states()[0].status == st.DEAD and (run / "server.log").is_file()
        report = stop.stop_servers(http_port=1)  # that server chosen: its run folder and log go
        assert [s["run_id"] for s in report["removed"]] == [state.run_id]
        assert not run.exists() and not st.state_path(state.run_id).exists()
        assert bystander.poll() is None
    finally:
        bystander.kill()
        bystander.wait()


def test_stop_exits_0_and_status_1_with_only_a_dead_run_and_say_so(private_cache, tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "server.log").write_text("the log\n")
    st.write_state(
        _dead_state(
            runtime_dir=str(run),
            log=str(run / "server.log"),
            status=st.DEAD,
            reason="the tritonserver process died without a stop",
        )
    )
    env = {**os.environ, "ZEROSERVE_CACHE": str(private_cache)}
    status = subprocess.run(
        [
            sys.executable,
            "-m",
            "zeroserve",
            "status",
            "--artifacts",
            str(tmp_path / "a"),
            "--repository",
            str(tmp_path / "r"),
        ],
        capture_output=True,
        text=True,
        env=env,
    )
    assert status.returncode == 1, status.stderr  # the run it means is dead: what a probe or script checks
    assert f"log: {run / 'server.log'}" in status.stdout.replace("\n", "")
    assert "dead: the tritonserver process died without a stop" in " ".join(status.stdout.split())
    stop = subprocess.run([sys.executable, "-m", "zeroserve", "stop"], capture_output=True, text=True, env=env)
    assert stop.returncode == 0, stop.stderr
    assert "nothing to stop" in stop.stdout and (run / "server.log").is_file()
    stop_all = subprocess.run(
        [sys.executable, "-m", "zeroserve", "stop", "--all"], capture_output=True, text=True, env=env
    )
    assert stop_all.returncode == 0 and not run.exists() and st.read_states() == []


def test_docker_command_serves_the_canonical_repository_on_the_target_image(canonical):
    from zeroserve.deploy.release import TARGET

    cmd = docker_command(canonical, TARGET.image)
    assert cmd[:4] == ["docker", "run", "--gpus", "all"]
    assert f"{canonical.resolve()}:/models" in cmd and TARGET.image in cmd
    assert cmd[-2:] == ["tritonserver", "--model-repository=/models"]


def test_hand_written_configs_parse_and_build(tmp_path):
    """Valid Triton configs zeroserve does not write itself: no name, -1 dims, max_batch_size 0, TYPE_INT64,
    several inputs and outputs, several instance groups, a platform and default_model_filename; folders the
    engine cannot serve are skipped by name while the others build."""
    repo = tmp_path / "repo"
    good = (
        'platform: "onnxruntime_onnx"\ndefault_model_filename: "net.onnx"\nmax_batch_size: 0\n'
        'input [ { name: "a" data_type: TYPE_INT64 dims: [ -1, 2 ] }, { name: "b" data_type: TYPE_FP32 '
        'dims: [ 1 ] } ]\noutput [ { name: "c" data_type: TYPE_FP32 dims: [ -1 ] }, '
        '{ name: "d" data_type: TYPE_BOOL dims: [ 1 ] } ]\n'
        "instance_group [ { kind: KIND_CPU count: 2 }, { kind: KIND_CPU } ]\n"
        "dynamic_batching { preferred_batch_size: [ 4 ] }\n"
    )
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [
            helper.make_node("Cast", ["a"], ["c"], to=TensorProto.FLOAT),
            helper.make_node("Cast", ["b"], ["d"], to=TensorProto.BOOL),
        ],
        "hand",
        [
            helper.make_tensor_value_info("a", TensorProto.INT64, ["n", 2]),
            helper.make_tensor_value_info("b", TensorProto.FLOAT, [1]),
        ],
        [
            helper.make_tensor_value_info("c", TensorProto.FLOAT, ["n", 2]),
            helper.make_tensor_value_info("d", TensorProto.BOOL, [1]),
        ],
    )
    onnx_bytes = helper.make_model(graph, ir_version=9).SerializeToString()
    for name, config, files in (
        ("hand", good, {"net.onnx": onnx_bytes}),
        ("tf", 'backend: "tensorflow"\n', {"model.graphdef": b"x"}),
        ("nofile", good, {}),
        ("broken", "max_batch_size: [", {}),
        ("garbage", good, {"net.onnx": b"\x00not a model"}),
        ("renamed", good.replace('"b"', '"bb"'), {"net.onnx": onnx_bytes}),
        (
            "ts_garbage",
            good.replace("onnxruntime_onnx", "pytorch_libtorch").replace("net.onnx", "model.pt"),
            {"model.pt": b"x"},
        ),
    ):
        (repo / name / "3").mkdir(parents=True)
        (repo / name / "config.pbtxt").write_text(config)
        for f, data in files.items():
            (repo / name / "3" / f).write_bytes(data)
    model = contents.read_deployed(repo / "hand")
    assert model.name == "hand" and model.backend == "onnxruntime_onnx" and model.max_batch_size == 0
    assert [(t.name, t.dtype, t.dims) for t in model.inputs] == [("a", "int64", (-1, 2)), ("b", "float32", (1,))]
    assert [t.dtype for t in model.outputs] == ["float32", "bool"] and model.instance_count == 3
    assert model.default_model_filename == "net.onnx"
    skipped = {}
    names = ["hand", "tf", "nofile", "broken", "garbage", "renamed", "ts_garbage"]
    built = runtime.build_runtime_repository(repo, names, tmp_path / "rt", gpu=False, on_skip=skipped.__setitem__)
    assert [b.name for b in built] == ["hand"]
    assert set(skipped) == set(names) - {"hand"}
    assert "does not load as ONNX" in skipped["garbage"] and "not a TorchScript archive" in skipped["ts_garbage"]
    assert "config inputs bb are not inputs of the graph (a, b)" in skipped["renamed"]
    assert "'tensorflow' is not one zeroserve serves" in skipped["tf"] and "net.onnx is missing" in skipped["nofile"]
    assert "does not parse" in skipped["broken"]
    rt = parse((tmp_path / "rt" / "hand" / "config.pbtxt").read_text())
    assert rt.backend == "python" and rt.parameters["ZS_ARTIFACT"] == "net.onnx" and rt.default_model_filename is None
    assert (tmp_path / "rt" / "hand" / "3" / "net.onnx").is_file()
    with pytest.raises(InputError, match="none of the 2 model"):
        runtime.build_runtime_repository(repo, ["tf", "nofile"], tmp_path / "rt2", gpu=False)


def test_a_server_is_chosen_by_host_however_the_host_is_written():
    where = [("::1", 1, 2), ("127.0.0.1", 3, 4)]
    states = [ServerState(run_id="r", pid=None, host=h, http_port=p, grpc_port=g) for h, p, g in where]
    assert [s.http_port for s in st.matching(states, host="[::1]")] == [1]
    assert [s.http_port for s in st.matching(states, host="::1")] == [1]
    assert [s.http_port for s in st.matching(states, host="localhost")] == [3]
    assert st.matching(states, host="10.0.0.1") == []

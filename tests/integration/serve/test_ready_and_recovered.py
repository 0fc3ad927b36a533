"""Ready means ready, recovered means answering, and a broken state file hurts nothing: through the real
CLI and a real tritonserver, on a detached run of this module's own (cnn_mnist_onnx and linear_onnx).

The steps share the run and go in order; each leaves it serving both models again.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from serving_helpers import run_state, wait_for, zeroserve  # tests/ is on sys.path (its conftest)

from zeroserve import registry
from zeroserve.serve import processes as ps
from zeroserve.serve import state as st

pytestmark = pytest.mark.slow

MODELS = ("cnn_mnist_onnx", "linear_onnx")


def _code(http_port: int, path: str) -> int | None:
    """The HTTP status of a GET, or None when nothing answers (connection refused)."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{http_port}{path}", timeout=1.0) as r:
            return r.status
    except urllib.error.HTTPError as exc:
        return exc.code
    except (OSError, urllib.error.URLError):
        return None


def _infer(http_port: int, model: str) -> np.ndarray | None:
    """The first output of one real request over HTTP/JSON, or None when it fails."""
    spec = registry.get(model.rsplit("_", 1)[0])
    inputs = []
    for t, a in zip(spec.inputs, spec.safe_inputs(1, None)):
        a = a.reshape(-1, 1) if t.reshaped else a
        inputs.append(
            {
                "name": t.name,
                "shape": list(a.shape),
                "datatype": "FP32" if a.dtype == np.float32 else "INT64",
                "data": a.ravel().tolist(),
            }
        )
    body = json.dumps({"inputs": inputs}).encode()
    try:
        req = urllib.request.Request(
            f"http://127.0.0.1:{http_port}/v2/models/{model}/infer", body, {"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(req, timeout=5.0) as r:
            return np.array(json.loads(r.read())["outputs"][0]["data"], dtype=np.float64)
    except (OSError, urllib.error.URLError, KeyError, ValueError):
        return None


def _kill_stub(prefix: str, model: str) -> None:
    [stub] = [p for p in ps.stubs(prefix) if f"/{model}/" in p.cmdline()[1]]
    stub.send_signal(signal.SIGKILL)


class Run:
    """The module's detached run and what was seen while it started."""

    def __init__(self, folder: Path, artifacts: Path, ports: list[int]):
        self.folder, self.artifacts = folder, artifacts
        self.repository = folder / "model_repository"
        self.http, self.grpc, self.metrics = ports
        self.observed: list[tuple[float, int | None, dict[str, int | None]]] = []
        self.state: dict = {}

    def status(self, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
        return zeroserve(
            "status",
            "--artifacts",
            str(self.artifacts),
            "--repository",
            str(self.repository),
            *args,
            cwd=cwd or self.folder,
        )


@pytest.fixture(scope="module")
def run(models, tmp_path_factory, serve_cache, free_ports):
    from zeroserve.deploy.repository import deploy_model

    models.export("cnn_mnist", "linear")  # only the two models this module serves
    folder = tmp_path_factory.mktemp("ready")
    r = Run(folder, models.folder, free_ports())
    for name in ("cnn_mnist", "linear"):
        deploy_model(registry.get(name), r.artifacts, r.repository, formats=("onnx",))
    env = {**os.environ, "ZEROSERVE_RESTART_BACKOFF": "0.5,1", "COLUMNS": "250"}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "zeroserve",
            "serve",
            "--repository",
            str(r.repository),
            "--detach",
            "--http-port",
            str(r.http),
            "--grpc-port",
            str(r.grpc),
            "--metrics-port",
            str(r.metrics),
        ],
        cwd=folder,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    t0 = time.monotonic()
    # A probe polling from the start, as Kubernetes' would: server-ready and each model's ready every 20 ms.
    while proc.poll() is None and time.monotonic() - t0 < 300:
        server = _code(r.http, "/v2/health/ready")
        models = {m: _code(r.http, f"/v2/models/{m}/ready") for m in MODELS} if server is not None else {}
        r.observed.append((time.monotonic() - t0, server, models))
        time.sleep(0.02)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    [r.state] = [s for s in st.list_servers() if s.http_port == r.http]
    yield r
    zeroserve("stop", "--http-port", str(r.http))


def test_ready_at_start_means_every_model_is_loaded(run):
    answered = [(t, server, models) for t, server, models in run.observed if server is not None]
    assert answered, "the probe never reached the server while `serve --detach` ran"
    for t, server, models in answered:
        if server == 200:  # never "server ready" while a model is still unknown (404) or loading
            assert all(code == 200 for code in models.values()), (t, models)
    # The endpoints answer only once the models have settled: the first answer is already READY for both.
    assert all(code == 200 for code in answered[0][2].values()), answered[0]
    progress = run.state.progress or {}
    assert all(progress.get(m, [None])[0] == "READY" for m in MODELS), progress
    report = run.status("--json")
    assert report.returncode == 0, (report.stdout[-2000:], report.stderr)
    assert json.loads(report.stdout)["exit_code"] == 0


def test_the_runtime_copy_is_a_copy_and_a_canonical_file_overwritten_in_place_does_not_reach_the_server(run):
    canonical = run.repository / "cnn_mnist_onnx" / "1" / "model.onnx"
    served = Path(run.state.runtime_dir) / "repository" / "cnn_mnist_onnx" / "1" / "model.onnx"
    assert canonical.stat().st_ino != served.stat().st_ino and served.stat().st_nlink == 1
    before = _infer(run.http, "cnn_mnist_onnx")
    assert before is not None
    original = canonical.read_bytes()
    try:
        with open(canonical, "r+b") as fh:  # in place: the same inode
            fh.write(b"\0garbage" * 64)
        run_id = run.state.run_id
        recovered = int(run_state(run_id).recovered or 0)
        _kill_stub(run.state.shm_prefix, "cnn_mnist_onnx")
        assert wait_for(lambda: int(run_state(run_id).recovered or 0) > recovered, 60), run_state(run_id)
        after = run_state(run_id)
        assert after.recoveries[-1].generation >= 1 and not after.reload_failures
        np.testing.assert_array_equal(_infer(run.http, "cnn_mnist_onnx"), before)
    finally:
        canonical.write_bytes(original)


def test_a_failed_reload_is_reported_and_followed_by_a_restart(run):
    run_id = run.state.run_id
    served = Path(run.state.runtime_dir) / "repository" / "linear_onnx" / "1" / "model.onnx"
    restarts = int(run_state(run_id).restarts or 0)
    served.write_bytes(b"not an onnx model")  # the runtime copy corrupted, then its stub killed
    _kill_stub(run.state.shm_prefix, "linear_onnx")
    assert wait_for(lambda: run_state(run_id).reload_failures, 30, step=0.05), run_state(run_id)
    failure = run_state(run_id).reload_failures[-1]
    assert failure.model == "linear_onnx" and "changed since it was copied" in failure.reason
    # Followed by a whole-server restart that writes the runtime copy afresh from the canonical repository.
    assert wait_for(
        lambda: int(run_state(run_id).restarts or 0) > restarts and run_state(run_id).status == st.RUNNING, 60
    ), run_state(run_id)
    after = run_state(run_id)
    assert after.crashes[-1].cause == "linear_onnx failed to reload"
    assert Path(after.reload_failures[-1].log).is_file()  # the kept log, not the renamed server.log
    assert not after.failed and _infer(run.http, "linear_onnx") is not None
    report = json.loads(run.status("--json").stdout)
    assert report["server"]["reload_failures"][-1]["model"] == "linear_onnx" and report["exit_code"] == 0
    run.state = after


def test_a_model_that_cannot_be_rebuilt_is_given_up_and_status_exits_1(run):
    run_id = run.state.run_id
    canonical = run.repository / "linear_onnx" / "1" / "model.onnx"
    served = Path(run.state.runtime_dir) / "repository" / "linear_onnx" / "1" / "model.onnx"
    original = canonical.read_bytes()
    restarts = int(run_state(run_id).restarts or 0)
    try:
        canonical.write_bytes(b"changed after deploy")  # no longer the manifest's sha256
        served.write_bytes(b"and the served copy too")
        _kill_stub(run.state.shm_prefix, "linear_onnx")
        assert wait_for(
            lambda: int(run_state(run_id).restarts or 0) > restarts and run_state(run_id).status == st.RUNNING,
            60,
        ), run_state(run_id)
        after = run_state(run_id)
        assert after.given_up == ["linear_onnx"] and "given up" in after.failed["linear_onnx"]
        assert "cannot be written again from the canonical repository" in after.failed["linear_onnx"]
        assert _infer(run.http, "cnn_mnist_onnx") is not None  # the other model serves on
        status = run.status()
        assert status.returncode == 1, status.stdout[-2000:]
        assert "linear_onnx failed" in " ".join(status.stdout.split())
        report = json.loads(run.status("--json").stdout)
        assert report["exit_code"] == 1 and report["server"]["models"]["linear_onnx"]["state"] == "failed"
    finally:
        canonical.write_bytes(original)
    # Stopped and started again, the run serves both models (the next tests need them).
    assert zeroserve("stop", "--http-port", str(run.http)).returncode == 0
    env = {"ZEROSERVE_RESTART_BACKOFF": "0.5,1"}
    proc = zeroserve(
        "serve",
        "--repository",
        str(run.repository),
        "--detach",
        "--http-port",
        str(run.http),
        "--grpc-port",
        str(run.grpc),
        "--metrics-port",
        str(run.metrics),
        cwd=run.folder,
        **env,
    )
    assert proc.returncode == 0, proc.stderr
    [run.state] = [s for s in st.list_servers() if s.http_port == run.http]


def test_a_truncated_state_file_and_a_stop_of_another_port_hurt_nothing(run, free_ports):
    run_id = run.state.run_id
    path = st.state_path(run_id)
    path.write_text('{"run_id": "' + run_id[:5])  # torn
    found = [s for s in st.from_processes(set()) if s.run_id == run_id]  # from the command line alone
    assert [(s.http_port, s.grpc_port, s.pid) for s in found] == [(run.http, run.grpc, run.state.pid)]
    os.utime(run.state.runtime_dir, (time.time() - 3600, time.time() - 3600))  # past the prune grace
    other = free_ports()[0]
    stop = zeroserve("stop", "--http-port", str(other), cwd=run.folder)
    assert stop.returncode == 0, stop.stderr
    assert Path(run.state.runtime_dir, "repository").is_dir()  # not pruned as orphaned
    assert _infer(run.http, "cnn_mnist_onnx") is not None
    status = run.status("--http-port", str(run.http))
    assert status.returncode in (0, 1), status.stderr  # the live server is found and answers
    if "unreadable" in status.stderr:  # before the supervisor wrote the file again
        assert f"state file unreadable: {path}" in " ".join(status.stderr.split())
    # The supervisor writes the file again from memory; the run goes on.
    assert wait_for(lambda: st.read_state_file(path) is not None, 10), path.read_text()
    assert st.process_of(run.state.pid, run.state.create_time) is not None
    assert run_state(run_id).http_port == run.http


def test_a_port_alone_names_the_protocol_and_never_falls_back(run, free_ports):
    out = zeroserve(
        "client", "infer", "linear", "--generate", "zero", "--http-port", str(run.http), "--json", cwd=run.folder
    )
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["url"] == f"127.0.0.1:{run.http}"  # HTTP, not gRPC's default 8001
    nobody = free_ports()[0]
    out = zeroserve("client", "infer", "linear", "--generate", "zero", "--http-port", str(nobody), "--protocol", "grpc")
    assert out.returncode == 2 and f"--http-port {nobody} names no running zeroserve server" in out.stderr


def test_which_server_a_command_means_with_two_runs(run, models, tmp_path, free_ports):
    from zeroserve.deploy.repository import deploy_model

    second = tmp_path / "model_repository"
    deploy_model(registry.get("linear"), models.folder, second, formats=("onnx",))
    http, grpc, metrics = free_ports()
    proc = zeroserve(
        "serve",
        "--repository",
        str(second),
        "--detach",
        "--http-port",
        str(http),
        "--grpc-port",
        str(grpc),
        "--metrics-port",
        str(metrics),
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    [second_run] = [s.run_id for s in st.list_servers() if s.http_port == http]
    try:
        # From each folder, the server serving its model_repository/ is the one meant.
        mine = json.loads(zeroserve("status", "--json", cwd=run.folder).stdout)["server"]
        theirs = json.loads(zeroserve("status", "--json", cwd=tmp_path).stdout)["server"]
        assert (mine["http_port"], theirs["http_port"]) == (run.http, http)
        # From a folder serving neither, the two are listed to choose from (exit 2).
        elsewhere = tmp_path / "elsewhere"
        elsewhere.mkdir()
        listed = zeroserve("status", cwd=elsewhere)  # (the session's own server may be a third)
        text = " ".join(listed.stderr.split())
        assert listed.returncode == 2 and "servers are running, choose one" in text, text
        assert f"http {run.http}," in text and f"http {http}," in text, text
        infer = zeroserve("client", "infer", "linear", "--generate", "zero", "--json", cwd=tmp_path)
        assert infer.returncode == 0 and json.loads(infer.stdout)["url"] == f"127.0.0.1:{grpc}", infer.stderr
        # `stop` without ports from the second folder stops the second server only.
        stopped = json.loads(zeroserve("stop", "--json", cwd=tmp_path).stdout)["stopped"]
        assert [s["run_id"] for s in stopped] == [second_run]
        assert _infer(run.http, "cnn_mnist_onnx") is not None
        assert not [s for s in st.list_servers() if s.http_port == http]
    finally:
        zeroserve("stop", "--http-port", str(http))


def test_status_exits_3_when_no_server_runs(tmp_path):
    empty = tmp_path / "cache"
    out = zeroserve("status", "--json", cwd=tmp_path, ZEROSERVE_CACHE=str(empty))
    assert out.returncode == 3 and json.loads(out.stdout)["exit_code"] == 3
    assert zeroserve("status", cwd=tmp_path, ZEROSERVE_CACHE=str(empty)).returncode == 3
    shutil.rmtree(empty, ignore_errors=True)

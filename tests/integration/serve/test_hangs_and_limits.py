"""Hangs, supervisor death, crash loops and a memory ceiling: through the real CLI and a real tritonserver, on a
detached run of this module's own (cnn_mnist_onnx and linear_onnx, `--hang-timeout 3 --memory-limit 3G`).

The steps share the run and go in order; the last one kills its supervisor.
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import stat
import threading
import time
from pathlib import Path

import psutil
import pytest
from serving_helpers import run_state, wait_for, zeroserve  # tests/ is on sys.path (its conftest)

from zeroserve.client.connection import Client
from zeroserve.client.endpoints import Endpoint
from zeroserve.serve import processes as ps
from zeroserve.serve import state as st
from zeroserve.triton.errors import ServerUnreachable

pytestmark = pytest.mark.slow

BACKOFF = "1,16"  # first restart after 1 s, doubled per crash within 10 min, up to 16 s
LIMIT = 3 << 30


def _post(port: int, body: bytes, timeout: float = 10.0) -> int | None:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("POST", "/v2/models/cnn_mnist_onnx/infer", body, {"Content-Type": "application/json"})
        return conn.getresponse().status
    except (OSError, http.client.HTTPException):
        return None  # the server died under it
    finally:
        conn.close()


GOOD = json.dumps(
    {"inputs": [{"name": "image__0", "shape": [1, 1, 28, 28], "datatype": "FP32", "data": [0.5] * 784}]}
).encode()
NESTED = (
    b'{"inputs":[{"name":"image__0","shape":[1,1,28,28],"datatype":"FP32","data":'
    + b"[" * 50_000
    + b"]" * 50_000
    + b"}]}"
)  # makes tritonserver 2.51 segfault while parsing it
HUGE = json.dumps(
    {"inputs": [{"name": "image__0", "shape": [1, 1_000_000_000], "datatype": "FP32", "data": [0.5] * 1000}]}
).encode()  # 5 KB declaring 4 GB


def _answers(port: int) -> bool:
    return _post(port, GOOD, 2.0) == 200


def _running_again(run_id: str, restarts: int) -> bool:
    s = run_state(run_id)
    return (s.restarts or 0) > restarts and s.status == st.RUNNING


def _orphans(prefix: str) -> list[int]:
    """Stubs of this run whose server is not the current tritonserver (left by a server that died)."""
    live = [p for p in ps.run_processes(prefix) if Path(p.cmdline()[0]).name == "tritonserver"]
    servers = {p.pid for p in live}
    return [
        p.pid
        for p in ps.stubs(prefix)
        if p.is_running() and p.status() != psutil.STATUS_ZOMBIE and p.ppid() not in servers
    ]


@pytest.fixture(scope="module")
def run(models, tmp_path_factory, serve_cache, free_ports):
    from zeroserve import registry
    from zeroserve.deploy.repository import deploy_model

    folder = tmp_path_factory.mktemp("hangs")
    repository = folder / "model_repository"
    models.export("cnn_mnist", "linear")  # only the two models this module serves
    for name in ("cnn_mnist", "linear"):
        deploy_model(registry.get(name), models.folder, repository, formats=("onnx",))
    http_port, grpc, metrics = free_ports()
    proc = zeroserve(
        "serve",
        "--repository",
        str(repository),
        "--detach",
        "--http-port",
        str(http_port),
        "--grpc-port",
        str(grpc),
        "--metrics-port",
        str(metrics),
        "--hang-timeout",
        "3",
        "--memory-limit",
        "3G",
        cwd=folder,
        ZEROSERVE_RESTART_BACKOFF=BACKOFF,
    )
    assert proc.returncode == 0, proc.stderr
    [state] = [s for s in st.list_servers() if s.http_port == http_port]
    yield {"folder": folder, "repository": repository, "http": http_port, "state": state, "artifacts": models.folder}
    zeroserve("stop", "--http-port", str(http_port))


def test_the_server_runs_under_the_ceiling_and_the_cache_is_private(run):
    state = run["state"]
    limits = Path(f"/proc/{state.pid}/limits").read_text()
    [line] = [ln for ln in limits.splitlines() if ln.startswith("Max data size")]
    assert line.split()[3:5] == [str(LIMIT), str(LIMIT)], line
    for stub in ps.stubs(state.shm_prefix):  # inherited: a ceiling per process, not a total
        assert psutil.Process(stub.pid).rlimit(psutil.RLIMIT_DATA) == (LIMIT, LIMIT)
    assert state.memory_limit["bytes"] == LIMIT
    for folder in (st.cache_dir(), st.runs_dir(), st.servers_dir()):
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700, folder


def test_a_stopped_server_is_seen_as_hung_killed_and_restarted(run):
    state, http_port = run["state"], run["http"]
    run_id = state.run_id
    restarts = int(run_state(run_id).restarts or 0)
    os.kill(run_state(run_id).pid, signal.SIGSTOP)
    waited = wait_for(lambda: _running_again(run_id, restarts), 60)
    assert waited is not None, run_state(run_id)
    crash = run_state(run_id).crashes[-1]
    assert crash.hung and "hung: no answer to /v2/health/live" in crash.exit, crash
    assert wait_for(lambda: _answers(http_port), 30) is not None
    assert _orphans(state.shm_prefix) == []
    status = zeroserve("status", "--http-port", str(http_port), cwd=run["folder"])
    assert status.returncode == 0, status.stdout[-2000:]
    assert "hung: no answer" in " ".join(status.stdout.split())


def test_one_huge_request_ends_the_server_under_its_ceiling_not_the_host(run):
    state, http_port = run["state"], run["http"]
    run_id = state.run_id
    restarts = int(run_state(run_id).restarts or 0)
    server = psutil.Process(run_state(run_id).pid)
    threads = [threading.Thread(target=_post, args=(http_port, HUGE, 30.0)) for _ in range(2)]
    peak = 0
    for t in threads:
        t.start()
    t0 = time.monotonic()
    while time.monotonic() - t0 < 30:
        try:
            if server.status() == psutil.STATUS_ZOMBIE:
                break
            peak = max(peak, server.memory_info().rss)
        except psutil.Error:
            break
        time.sleep(0.02)
    for t in threads:
        t.join(timeout=30)
    assert peak < LIMIT, peak  # the allocation was refused by the ceiling, not made
    assert wait_for(lambda: _running_again(run_id, restarts), 60), run_state(run_id)
    assert run_state(run_id).crashes[-1].signal in ("SIGABRT", "SIGSEGV", "SIGKILL")
    assert wait_for(lambda: _answers(http_port), 30) is not None
    assert _orphans(state.shm_prefix) == []  # no stub outlived its server


def test_a_crash_loop_backs_off_and_recovers_when_the_bad_requests_stop(run):
    state, http_port = run["state"], run["http"]
    run_id = state.run_id
    waits = []
    for _ in range(3):
        restarts = int(run_state(run_id).restarts or 0)
        assert wait_for(lambda: _answers(http_port), 60) is not None
        _post(http_port, NESTED)
        assert wait_for(lambda: run_state(run_id).status == st.STARTING and run_state(run_id).next_start, 15)
        s = run_state(run_id)
        waits.append(s.next_start - time.time())
        if len(waits) == 3:  # within the third backoff: status and the client say so
            status = zeroserve("status", "--http-port", str(http_port), cwd=run["folder"])
            text = " ".join(status.stdout.split())
            assert status.returncode == 1 and "crash loop:" in text and "next start in" in text, text
            with Client(Endpoint("127.0.0.1", http_port, state.grpc_port), "http", 2.0) as client:
                with pytest.raises(ServerUnreachable, match=r"is restarting \(attempt \d+, next start in"):
                    client.live()
        assert wait_for(lambda: _running_again(run_id, restarts), 60), run_state(run_id)
    assert waits[2] > waits[1] > waits[0] - 1.0, waits  # the backoff grows with each crash in the window
    assert run_state(run_id).status == st.RUNNING  # no cap by default: the service goes on
    assert wait_for(lambda: _answers(http_port), 30) is not None
    assert _orphans(state.shm_prefix) == []
    status = zeroserve("status", "--http-port", str(http_port), cwd=run["folder"])
    assert status.returncode == 0, status.stdout[-2000:]


def test_the_supervisor_killed_takes_its_server_and_stubs_with_it(run):
    state = run_state(run["state"].run_id)
    sup = psutil.Process(state.supervisor.pid)
    server = psutil.Process(state.pid)
    stubs = ps.stubs(state.shm_prefix)
    assert stubs
    sup.send_signal(signal.SIGKILL)

    def gone(p: psutil.Process) -> bool:
        try:
            return not p.is_running() or p.status() == psutil.STATUS_ZOMBIE
        except psutil.Error:
            return True

    assert wait_for(lambda: gone(server) and all(gone(p) for p in stubs), 15), [
        (p.pid, p.status()) for p in [server, *stubs] if not gone(p)
    ]
    status = zeroserve("status", cwd=run["folder"])
    text = " ".join(status.stdout.split())
    assert status.returncode == 1 and "its supervisor" in text and "is gone" in text, text
    report = json.loads(zeroserve("status", "--json", cwd=run["folder"]).stdout)
    assert report["exit_code"] == 1 and not [r for r in report["models"] if r["served"]["state"] == "READY"]

"""The supervisor's hard cap (--max-restarts) through a real tritonserver: past it the run is dead, its log kept."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest
from serving_helpers import canonical_folder, three_ports  # tests/ is on sys.path (its conftest)

from zeroserve.errors import ServerError
from zeroserve.serve import processes as ps
from zeroserve.serve import server
from zeroserve.serve import state as st
from zeroserve.serve.restarts import RestartPolicy
from zeroserve.serve.supervisor import Supervisor


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch) -> Path:
    cache = tmp_path / "cache"
    monkeypatch.setenv("ZEROSERVE_CACHE", str(cache))
    return cache


def test_past_the_cap_the_supervisor_gives_up_marks_the_run_dead_and_keeps_the_crash_log(tmp_path, private_cache):
    repository = tmp_path / "repo"
    canonical_folder(repository, "linear", "onnx")
    started = server.start_server(repository, timeout=120, **three_ports())
    prefix = started.state.shm_prefix
    try:
        os.kill(started.pid, signal.SIGKILL)
        started.process.wait(timeout=10)
        with pytest.raises(ServerError, match=r"crashed 1 times within 600 s \(cap 0, --max-restarts\); gave up"):
            Supervisor(started, RestartPolicy(first_s=0.1, cap=0)).run()
    finally:
        if started.alive():
            started.stop()
    [dead] = st.read_states()
    assert dead.status == st.DEAD and "gave up" in dead.reason
    assert dead.log == dead.crashes[-1].log  # the dead run's log is the kept crash log
    [crash] = dead.crashes
    assert crash.signal == "SIGKILL" and crash.gave_up and Path(crash.log).is_file()
    assert "linear_onnx" in Path(crash.log).read_text()
    assert not ps.run_processes(prefix) and not ps.shm_segments(prefix)
    assert st.list_servers() == []

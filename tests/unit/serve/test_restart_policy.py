"""The supervisor's restart policy and memory ceiling (pure), and which server a command means (state files)."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from zeroserve.errors import ServerError
from zeroserve.records.state import ServerState
from zeroserve.serve import state as st
from zeroserve.serve.restarts import RestartPolicy, describe_exit


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch) -> Path:
    cache = tmp_path / "cache"
    monkeypatch.setenv("ZEROSERVE_CACHE", str(cache))
    return cache


def test_backoff_doubles_within_the_window_up_to_its_maximum():
    policy = RestartPolicy(first_s=1.0, max_s=5.0, cap=10, window_s=60.0)
    crashes: list[float] = []
    delays = []
    for t in (0.0, 1.0, 2.0, 3.0, 4.0):
        crashes.append(t)
        delays.append(policy.delay(crashes, t))
    assert delays == [1.0, 2.0, 4.0, 5.0, 5.0]
    # A crash long after the others starts afresh: the old ones left the window.
    crashes.append(1000.0)
    assert policy.delay(crashes, 1000.0) == 1.0


def test_the_cap_counts_crashes_within_the_window_only():
    policy = RestartPolicy(first_s=0.1, cap=2, window_s=10.0)
    assert not policy.gives_up([0.0], 0.0)
    assert not policy.gives_up([0.0, 1.0], 1.0)
    assert policy.gives_up([0.0, 1.0, 2.0], 2.0)  # a third crash within 10 s: cap 2 exceeded
    assert not policy.gives_up([0.0, 1.0, 20.0], 20.0)  # the first two are older than the window


def test_by_default_a_crash_loop_backs_off_up_to_5_minutes_and_never_gives_up():
    policy = RestartPolicy()
    crashes = [float(t) for t in range(12)]  # twelve crashes within a minute
    assert not policy.gives_up(crashes, 11.0)
    delays = [policy.delay(crashes[: i + 1], crashes[i]) for i in range(12)]
    assert delays[:9] == [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0] and delays[9:] == [300.0] * 3
    assert RestartPolicy(cap=3).gives_up(crashes[:4], 3.0)  # --max-restarts keeps a hard cap


def test_memory_limit_sizes_and_defaults():
    from zeroserve.errors import InputError
    from zeroserve.serve.limits import MEMORY_FLOOR, memory_ceiling, parse_size

    assert parse_size("3G") == 3 << 30 and parse_size("512M") == 512 << 20 and parse_size("2GiB") == 2 << 30
    assert parse_size("1024") == 1024
    for bad in ("lots", "-1G", "0G"):
        with pytest.raises(InputError, match="--memory-limit"):
            parse_size(bad)
    size, note = memory_ceiling(None, gpu=False)
    assert size >= MEMORY_FLOOR and "per process" in note
    assert memory_ceiling("auto", gpu=True)[0] is None  # CUDA's reservations would count: not on a GPU host
    assert memory_ceiling("3G", gpu=True)[0] == 3 << 30  # unless asked
    assert memory_ceiling("off", gpu=False)[0] is None


def test_policy_from_the_environment_and_overrides(monkeypatch):
    monkeypatch.setenv("ZEROSERVE_RESTART_BACKOFF", "0.5,4")
    monkeypatch.setenv("ZEROSERVE_RESTART_CAP", "3,120")
    assert RestartPolicy.from_env() == RestartPolicy(first_s=0.5, max_s=4.0, cap=3, window_s=120.0)
    assert RestartPolicy.from_env(cap=1, first_s=None).cap == 1
    monkeypatch.setenv("ZEROSERVE_RESTART_CAP", "three")
    with pytest.raises(ServerError, match="ZEROSERVE_RESTART_CAP"):
        RestartPolicy.from_env()


def test_exit_descriptions():
    assert describe_exit(-signal.SIGSEGV) == "killed by SIGSEGV"
    assert describe_exit(1) == "exit code 1"


def test_a_private_server_is_chosen_only_by_its_ports_when_a_served_one_runs(private_cache):
    """`status`, `stop` and the client, given no ports, pick the served server, not tune's private one."""
    me = {"pid": os.getpid(), "create_time": st.create_time(os.getpid()), "host": "127.0.0.1", "status": st.RUNNING}
    served = {**me, "run_id": "20260101-000000-000001", "http_port": 18001, "grpc_port": 18002}
    private = {
        **me,
        "run_id": "20260101-000000-000002",
        "http_port": 18011,
        "grpc_port": 18012,
        "purpose": "zeroserve tune (private)",
    }
    served_state, private_state = ServerState.model_validate(served), ServerState.model_validate(private)
    for s in (served_state, private_state):
        st.write_state(s)
    assert st.resolve_server().run_id == served["run_id"]
    assert st.resolve_server(http_port=18011).run_id == private["run_id"]
    st.remove_state(served_state)
    assert st.resolve_server().run_id == private["run_id"]  # the only one running: chosen
    st.remove_state(private_state)

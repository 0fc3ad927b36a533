"""Triton's control plane (zeroserve/triton/control.py) and the private server (serve/private.py), for real.

Each failure is its own typed outcome: nothing listening is unreachable, a port that accepts and never
answers is a timeout, a key-less call to a restricted API is restricted, a bad load is the server's refusal
in Triton's own words. The private server lives in a temporary cache and is stopped however its block ends.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path

import psutil
import pytest
from serving_helpers import canonical_folder  # tests/ is on sys.path (its conftest)

from zeroserve.errors import ZeroserveError
from zeroserve.serve.private import private_server
from zeroserve.triton.control import Control
from zeroserve.triton.errors import ApiRestricted, RequestFailed, ServerTimeout, ServerUnreachable
from zeroserve.triton.ports import resolve_free_ports

pytestmark = pytest.mark.slow

MODEL = "linear_onnx"


@pytest.fixture(scope="module")
def repository(tmp_path_factory) -> Path:
    """A canonical repository with linear_onnx as deploy writes it (untrained weights: no training needed)."""
    repo = tmp_path_factory.mktemp("canonical")
    canonical_folder(repo, "linear", "onnx")
    return repo


def test_nothing_listening_is_unreachable_and_silence_is_a_timeout():
    port = resolve_free_ports("127.0.0.1", {"http": 0})["http"]  # free: nothing listens there
    with Control("127.0.0.1", port, timeout=0.5) as control:
        assert not control.live()
        with pytest.raises(ServerUnreachable) as unreachable:
            control.index()
    assert unreachable.value.exit_code == 3 and "no Triton server answered" in str(unreachable.value)

    with socket.socket() as silent:  # accepts connections (the kernel does) and never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        with Control("127.0.0.1", silent.getsockname()[1], timeout=0.5) as control:
            assert not control.live()
            with pytest.raises(ServerTimeout) as timeout:
                control.index()
    assert timeout.value.exit_code == 3 and "did not answer" in str(timeout.value)


def test_a_private_server_loads_and_unloads_through_the_control_plane_and_is_always_stopped(repository):
    cache_before = os.environ.get("ZEROSERVE_CACHE")
    with private_server(repository, [MODEL], purpose="test", model_control="explicit") as server:
        state = server.state
        cache = Path(os.environ["ZEROSERVE_CACHE"])
        assert cache.is_dir() and str(cache) != cache_before and state.purpose == "test"
        with Control.of(state, timeout=30.0) as control:  # with the run's key
            assert control.live() and control.ready()
            assert control.states() == {MODEL: "READY"}
            assert control.config(MODEL)["name"] == MODEL
            assert control.unload(MODEL, wait_s=20.0)
            assert control.states()[MODEL] != "READY"
            control.load(MODEL)
            assert control.states() == {MODEL: "READY"}
            with pytest.raises(RequestFailed) as bad_load:  # Triton's refusal, its own words kept
                control.load("no_such_model")
            assert "no_such_model" in bad_load.value.said
        with Control(state.host, state.http_port, timeout=5.0) as keyless:  # another caller: no key
            with pytest.raises(ApiRestricted) as refused:
                keyless.load(MODEL)
            assert refused.value.exit_code == 2 and "model-repository" in str(refused.value)
        pid = server.pid
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    assert not cache.exists() and os.environ.get("ZEROSERVE_CACHE") == cache_before


def test_a_private_server_is_stopped_when_its_block_fails(repository):
    pid = None
    with pytest.raises(ZeroserveError, match="the block failed"):
        with private_server(repository, [MODEL], purpose="test") as server:
            pid = server.pid
            raise ZeroserveError("the block failed")
    assert pid is not None and (not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE)

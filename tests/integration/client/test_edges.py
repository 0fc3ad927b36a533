"""The edges a new user hits, through the real CLI (and the real server where one is needed).

Each bad value is one `error:` line on stderr and exit 2, before anything starts or is sent:
ports outside 1-65535, a --timeout that is not > 0, a --data-dir given that does not exist, a
non-loopback --host without --allow-remote, a lossy input dtype without --cast, NaN/Inf without
--allow-nonfinite. Port 0 picks free ports; IPv6 loopback serves and is reached over HTTP and
gRPC; scratch folders of a killed export or deploy are pruned by the next run.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import psutil
import pytest
from typer.testing import CliRunner

from zeroserve.serve import state as st

pytestmark = pytest.mark.slow


def cli(*args: str):
    from zeroserve.app.cli import app

    return CliRunner().invoke(app, list(args))


def run(*args: str, timeout: float = 180) -> subprocess.CompletedProcess:
    """The installed entry point in its own process, as a user runs it."""
    return subprocess.run(
        [sys.executable, "-m", "zeroserve", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "COLUMNS": "200"},
    )


def one_error_line(stderr: str, *needles: str) -> str:
    lines = [ln for ln in stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), stderr
    assert "Traceback" not in stderr
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


# ---------------------------------------------------------------- values refused while parsing


@pytest.mark.parametrize(
    "args, says",
    [
        (["serve", "--http-port", "70000"], "--http-port 70000 is not a port: give 1-65535 (or 0 for a free port)"),
        (["serve", "--grpc-port", "-1"], "--grpc-port -1 is not a port"),
        (["serve", "--metrics-port", "65536"], "--metrics-port 65536 is not a port"),
        (["status", "--http-port", "0"], "--http-port 0 is not a port: give 1-65535"),
        (["stop", "--grpc-port", "70000"], "--grpc-port 70000 is not a port"),
        (["client", "infer", "linear", "--sample", "1", "--http-port", "70000"], "--http-port 70000 is not a port"),
        (["client", "check", "linear", "--grpc-port", "0"], "--grpc-port 0 is not a port"),
        (["client", "perf", "linear", "--url", "127.0.0.1:70000"], "port 70000 is not a port"),
        (["client", "perf", "linear", "--url", "::1:8001"], "an IPv6 address goes in brackets"),
        (["client", "perf", "linear", "--protocol", "http", "--url", "grpc://[::1]:8001"], "scheme grpc://"),
        (["serve", "--timeout", "0"], "--timeout 0 must be a number of seconds greater than 0"),
        (["client", "infer", "linear", "--sample", "1", "--timeout", "-1"], "--timeout -1 must be"),
        (["client", "check", "linear", "--timeout", "nan"], "--timeout nan must be"),
        (["client", "perf", "linear", "--timeout", "0"], "--timeout 0 must be"),
        (["data", "fetch", "linear", "--timeout", "0"], "--timeout 0 must be"),
        (["serve", "--host", "0.0.0.0"], "--host 0.0.0.0 is not a loopback address"),
        (["serve", "--host", "0.0.0.0"], "add --allow-remote"),
    ],
)
def test_a_bad_option_value_is_one_line_and_exit_2(args, says, serve_cache):
    res = cli(*args)
    assert res.exit_code == 2, res.output
    one_error_line(res.stderr, says)


@pytest.mark.parametrize(
    "command",
    [
        ["export", "linear"],
        ["train", "linear"],
        ["client", "check", "linear"],
        ["client", "infer", "linear", "--sample", "1"],
    ],
)
def test_a_data_dir_given_that_does_not_exist_is_an_error(command, tmp_path):
    missing = tmp_path / "no such folder"
    res = cli(*command, "--data-dir", str(missing))
    assert res.exit_code == 2
    one_error_line(res.stderr, f"--data-dir {missing} does not exist", "zeroserve data fetch all --data-dir")


def test_the_real_entry_point_prints_no_traceback():
    proc = run("serve", "--http-port", "70000")
    assert proc.returncode == 2
    one_error_line(proc.stderr, "--http-port 70000 is not a port")


def test_remote_host_needs_allow_remote_and_then_warns(serve_cache, tmp_path):
    # The repository is empty, so nothing is ever bound: the check and its warning come before the start.
    (tmp_path / "repo").mkdir()
    res = cli("serve", "--host", "0.0.0.0", "--allow-remote", "--repository", str(tmp_path / "repo"))
    assert "warning: serving on 0.0.0.0, reachable from other machines (--allow-remote)" in res.stderr
    assert res.exit_code == 2 and "has no models" in res.stderr


# ---------------------------------------------------------------- free ports, IPv6 loopback


def _serve_detached(repository: Path, *args: str) -> tuple[subprocess.CompletedProcess, dict]:
    proc = run(
        "serve",
        "--repository",
        str(repository),
        "--models",
        "linear_onnx",
        "--http-port",
        "0",
        "--grpc-port",
        "0",
        "--metrics-port",
        "0",
        "--detach",
        *args,
    )
    assert proc.returncode == 0, proc.stderr
    chosen = re.search(r"free port\(s\) chosen on \S+: http (\d+), grpc (\d+), metrics (\d+)", proc.stderr)
    assert chosen, proc.stderr
    http, grpc, metrics = map(int, chosen.groups())
    [state] = [s for s in st.list_servers() if s.http_port == http]
    assert (state.grpc_port, state.metrics_port) == (grpc, metrics) and 0 not in (http, grpc, metrics)
    return proc, state


def _infer_linear(*args: str) -> list:
    res = cli("client", "infer", "linear", "--input", *args, "--json")
    assert res.exit_code == 0, res.output
    return strict_json(res.stdout)["outputs"]["y__0"]


def strict_json(text: str):
    """JSON as jq or JavaScript reads it: bare NaN/Infinity is an error."""

    def refuse(constant):
        raise AssertionError(f"not JSON: {constant}")

    return json.loads(text, parse_constant=refuse)


def test_port_0_picks_free_ports_and_prints_them(deployed_repository, serve_cache, tmp_path):
    _, state = _serve_detached(deployed_repository)  # the printed ports are the state file's
    try:
        (tmp_path / "x.json").write_text("[[1.0], [2.0]]")
        for protocol in ("http", "grpc"):
            got = _infer_linear(
                str(tmp_path / "x.json"),
                "--protocol",
                protocol,
                "--http-port",
                str(state.http_port),
                "--grpc-port",
                str(state.grpc_port),
            )
            assert len(got) == 2
    finally:
        assert run("stop", "--http-port", str(state.http_port)).returncode == 0


def _ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


@pytest.mark.skipif(not _ipv6_loopback(), reason="this machine has no IPv6 loopback (::1)")
def test_ipv6_loopback_serves_and_is_reached_over_http_and_grpc(deployed_repository, serve_cache, tmp_path):
    proc, state = _serve_detached(deployed_repository, "--host", "::1")
    http, grpc = state.http_port, state.grpc_port
    try:
        assert f"http://[::1]:{http}" in proc.stdout and state.host == "::1"
        (tmp_path / "x.json").write_text("[[1.0], [2.0]]")
        for protocol in ("http", "grpc"):
            got = _infer_linear(
                str(tmp_path / "x.json"),
                "--protocol",
                protocol,
                "--host",
                "::1",
                "--http-port",
                str(http),
                "--grpc-port",
                str(grpc),
            )
            assert len(got) == 2
        short = [
            "--window",
            "0.2",
            "--warmup",
            "0.1",
            "--max-trials",
            "3",
            "--stability",
            "0.99",
            "--allow-unstable",
            "--json",
        ]
        for protocol, url in (("grpc", f"[::1]:{grpc}"), ("http", f"http://[::1]:{http}")):
            res = cli("client", "perf", "linear", "--protocol", protocol, "--url", url, *short)
            assert res.exit_code == 0, res.output
            rec = json.loads(res.stdout)
            assert rec["urls"] == [f"[::1]:{grpc if protocol == 'grpc' else http}"]
            assert rec["levels"][0]["totals"]["ok"] > 0
    finally:
        assert run("stop", "--http-port", str(http)).returncode == 0


# ---------------------------------------------------------------- input values against the model's dtypes


def test_infer_accepts_exact_inputs_and_refuses_lossy_or_nonfinite_ones(server, tmp_path):
    ports = ["--host", server.host, "--http-port", str(server.http_port), "--grpc-port", str(server.grpc_port)]
    exact = tmp_path / "exact.json"
    exact.write_text("[[0.1], [2], [16777216]]")  # JSON numbers and small integers: float32 holds them as written
    assert len(_infer_linear(str(exact), *ports)) == 3

    lossy = tmp_path / "lossy.npy"
    np.save(lossy, np.array([[0.123456789], [1.0]]))  # float64 precision that float32 loses
    res = cli("client", "infer", "linear", "--input", str(lossy), *ports)
    assert res.exit_code == 2
    one_error_line(res.stderr, "input x__0 is float64 but linear takes float32", "1 of 2 values", "--cast")
    assert len(_infer_linear(str(lossy), "--cast", *ports)) == 2

    tokens = tmp_path / "tokens.npz"  # a fraction for an int64 input, in a two-input model
    np.savez(tokens, tokens__0=np.array([[3.5, 4.0]]), lengths__1=np.array([2]))
    res = cli("client", "infer", "name_gru", "--input", str(tokens), *ports)
    assert res.exit_code == 2
    one_error_line(res.stderr, "input tokens__0 is float64 but name_gru takes int64", "--cast")

    nonfinite = tmp_path / "nan.json"
    nonfinite.write_text("[[NaN], [Infinity], [1.0]]")
    res = cli("client", "infer", "linear", "--input", str(nonfinite), *ports)
    assert res.exit_code == 2
    one_error_line(res.stderr, "input x__0 holds 2 non-finite value(s)", "--allow-nonfinite")
    got = _infer_linear(str(nonfinite), "--allow-nonfinite", *ports)  # --json stays JSON: NaN as "NaN"
    assert got[0] == ["NaN"] and got[1][0] in ("Infinity", "-Infinity") and isinstance(got[2][0], float)


# ---------------------------------------------------------------- data folder, scratch folders


def _scratch_name(prefix: str, proc: psutil.Process) -> str:
    return f"{prefix}{proc.pid}.{int(proc.create_time() * 1000)}-abcdefgh"


def test_a_killed_export_and_deploy_leave_nothing_the_next_run_keeps(trained, tmp_path, monkeypatch):
    artifacts = tmp_path / "artifacts"
    shutil.copytree(trained[0] / "linear", artifacts / "linear")
    monkeypatch.chdir(tmp_path)  # no data/ here: the defaulted data folder is missing
    monkeypatch.delenv("ZEROSERVE_DATA_DIR", raising=False)
    env = {k: v for k, v in os.environ.items() if k != "ZEROSERVE_DATA_DIR"}

    killed = subprocess.Popen(
        [sys.executable, "-m", "zeroserve", "export", "linear", "--artifacts", str(artifacts)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
    )
    deadline = time.monotonic() + 120
    while not list((artifacts / "linear").glob(".export-*")) and killed.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    killed.send_signal(signal.SIGKILL)
    killed.wait()
    left = list((artifacts / "linear").glob(".export-*"))
    assert left, "the export finished before it could be killed"

    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    try:
        alive = psutil.Process(sleeper.pid)
        concurrent = artifacts / "linear" / _scratch_name(".export-", alive)  # a run still going: kept
        concurrent.mkdir()
        res = cli("export", "linear", "--artifacts", str(artifacts))
        assert res.exit_code == 0, res.output
        assert "warning: data folder data (the default) does not exist" in res.stderr
        assert not any(p.exists() for p in left) and concurrent.is_dir()

        repository = tmp_path / "repo"
        stale = tmp_path / ".zs-deploy-linear_onnx-999999999.1-abcdefgh"  # no such pid: a killed deploy's
        live = tmp_path / _scratch_name(".zs-deploy-linear_onnx-", alive)
        stale.mkdir()
        live.mkdir()
        res = cli(
            "deploy",
            "linear",
            "--artifacts",
            str(artifacts),
            "--repository",
            str(repository),
            "--format",
            "onnx",
            "--device",
            "cpu",
        )
        assert res.exit_code == 0, res.output
        assert not stale.exists() and live.is_dir()
        assert sorted(p.name for p in tmp_path.glob(".zs-*")) == [live.name]
    finally:
        sleeper.kill()
        sleeper.wait()

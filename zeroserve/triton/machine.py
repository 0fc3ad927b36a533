"""Where a figure was measured: the machine kind (CPU model, cores, GPU) and the serving engine (zeroserve/engine.py).

Perf and tune records carry these facts (`measured_on`, `tuned_on`) so that `zeroserve plan` can
refuse figures from another kind of machine or engine than the one it sizes for.
"""

from __future__ import annotations

import os
import platform
import shutil
import subprocess

from zeroserve.records.measured import MeasuredOn


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def gpu_names() -> list[str]:
    """The visible NVIDIA GPUs' names (nvidia-smi), [] when none or no driver."""
    from zeroserve.triton.wheel import gpu_available

    if not gpu_available() or shutil.which("nvidia-smi") is None:
        return []
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return ["unknown NVIDIA GPU"]
    return [line.strip() for line in out.splitlines() if line.strip()]


def measured_on(engine: dict | None) -> MeasuredOn:
    """This machine's kind and the engine measured (zeroserve/engine.py's description; None: not known, e.g. a
    server that did not answer for its config). `engine` is the engine in one line (what `plan` compares and
    prints), `engine_detail` the description it was made from."""
    from zeroserve.engine import line

    return MeasuredOn.model_validate(
        {
            "engine": line(engine) if engine else None,
            "engine_detail": engine,
            "cpu_model": cpu_model(),
            "cores": os.cpu_count() or 1,
            "machine": platform.machine(),
            "gpu": gpu_names(),
        }
    )


def engine_of(client, triton_name: str, release: dict | None = None) -> dict | None:
    """The engine a served model runs on, asked of the server (its version and the model's config; `release`: the
    target release, deploy/release.py's, to name its runtime); None when the server does not answer those calls."""
    from zeroserve.engine import from_config
    from zeroserve.errors import ZeroserveError

    try:
        return from_config(client.model_config(triton_name), client.server_version(), gpu_names(), release)
    except ZeroserveError:
        return None

"""Where a figure was measured: the machine kind (CPU model, cores, GPU) and the serving engine.

Perf and tune records carry these facts (`measured_on`, `tuned_on`) so that `zeroserve plan` can
refuse figures from another kind of machine or engine than the one it sizes for.
"""

from __future__ import annotations

import os
import platform
import shutil
import subprocess

# The embedded engine measures the Python backend running ONNX Runtime or torch, not Triton's native backends.
EMBEDDED_ENGINE = "embedded tritonserver (nvidia-pytriton wheel), Python backend"


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


def measured_on(engine: str | None) -> dict:
    """This machine's kind and the engine measured (None: not known, e.g. another team's server)."""
    return {
        "engine": engine,
        "cpu_model": cpu_model(),
        "cores": os.cpu_count() or 1,
        "machine": platform.machine(),
        "gpu": gpu_names(),
    }

"""The nvidia-pytriton wheel: where it keeps tritonserver, its Python backend and stubs, and the environment they need.

The wheel's layout is asked of PyTriton's own `pytriton.utils.distribution`; this module adds
only what zeroserve needs on top (a backends folder with this interpreter's stub, the
environment variables it needs to run here, see `server_env`).
"""

from __future__ import annotations

import os
import secrets
import shutil
import sys
import sysconfig
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from zeroserve.errors import ServerError

STUB_NAME = "triton_python_backend_stub"
SERVER_BINARY = "tritonserver"


@dataclass(frozen=True)
class TritonInstall:
    """Where the nvidia-pytriton wheel keeps tritonserver, its Python backend and the stubs."""

    binary: Path
    python_backend: Path
    stub: Path
    libs: Path
    version: str


def python_version() -> str:
    """`3.11`: the stub folder name for this interpreter."""
    return f"{sys.version_info[0]}.{sys.version_info[1]}"


def find_tritonserver() -> TritonInstall:
    """The tritonserver install inside the `pytriton` package, or ServerError saying what is missing."""
    try:
        from pytriton.utils import distribution
    except ImportError:
        raise ServerError(
            "the nvidia-pytriton package is not installed, so there is no tritonserver binary; "
            "install zeroserve's dependencies (make venv)"
        ) from None
    root = distribution.get_root_module_path()
    install = TritonInstall(
        binary=root / "tritonserver" / "bin" / SERVER_BINARY,
        python_backend=root / "tritonserver" / "backends" / "python",
        stub=distribution.get_stub_path(python_version()),
        libs=distribution.get_libs_path(),
        version=_pytriton_version(),
    )
    for what, path in (
        ("tritonserver binary", install.binary),
        ("Python backend", install.python_backend),
        (f"Python {python_version()} backend stub", install.stub),
    ):
        if not path.exists():
            raise ServerError(
                f"the {what} is missing from the nvidia-pytriton wheel (expected {path}); reinstall nvidia-pytriton"
            )
    return install


def _pytriton_version() -> str:
    try:
        return metadata.version("nvidia-pytriton")
    except metadata.PackageNotFoundError:
        return "unknown"


def backend_directory(install: TritonInstall, cache: Path) -> Path:
    """A backends folder under `cache` whose python backend has this interpreter's stub beside it (as PyTriton)."""
    target = cache / "tritonserver" / f"{install.version}-py{python_version()}"
    python = target / "backends" / "python"
    if not (python / STUB_NAME).is_file():
        tmp = target.with_name(f".{target.name}.{secrets.token_hex(4)}")
        (tmp / "backends" / "python").mkdir(parents=True)
        for f in ("libtriton_python.so", "triton_python_backend_utils.py"):
            shutil.copy2(install.python_backend / f, tmp / "backends" / "python" / f)
        shutil.copy2(install.stub, tmp / "backends" / "python" / STUB_NAME)
        shutil.rmtree(target, ignore_errors=True)
        try:
            os.replace(tmp, target)
        except OSError:
            shutil.rmtree(tmp, ignore_errors=True)  # another server prepared it at the same moment
    return target / "backends"


def server_env(install: TritonInstall) -> dict[str, str]:
    """The environment tritonserver and its stubs need: this interpreter's libpython and packages first."""
    env = os.environ.copy()
    # The stub links libpython3.11: this interpreter's library must win over the system's.
    lib_dirs = [sysconfig.get_config_var("LIBDIR"), env.get("LD_LIBRARY_PATH", ""), str(install.libs)]
    env["LD_LIBRARY_PATH"] = ":".join(d for d in lib_dirs if d)
    # The stub imports model.py's libraries from the environment whose `python` is first on PATH.
    env["PATH"] = f"{Path(sys.prefix) / 'bin'}:{env.get('PATH', '')}"
    return env


def gpu_available() -> bool:
    """True when an NVIDIA GPU is visible (driver present, at least one device)."""
    gpus = Path("/proc/driver/nvidia/gpus")
    return gpus.is_dir() and any(gpus.iterdir()) and os.environ.get("CUDA_VISIBLE_DEVICES", "x") not in ("", "-1")

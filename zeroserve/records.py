"""Small JSON records and atomic file writes shared by every stage."""

from __future__ import annotations

import contextlib
import json
import os
import platform
import tempfile
from importlib import metadata
from pathlib import Path
from typing import Any, Iterator

from zeroserve.errors import InputError

SCHEMA = 1
_UMASK = os.umask(0)
os.umask(_UMASK)


def versions(*extra: str) -> dict[str, str]:
    """Versions of zeroserve, Python and the libraries that produced a record."""
    out = {"python": platform.python_version()}
    for dist in ("zeroserve", "torch", "numpy", *extra):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = "not installed"
    return out


def ensure_writable_dir(path: Path) -> Path:
    """Create `path` if needed and prove it is writable, or raise InputError."""
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path, prefix=".zs-probe-"):
            pass
    except OSError as exc:
        raise InputError(f"cannot write to {path}: {exc.strerror or exc}; choose a writable folder") from None
    return path


@contextlib.contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yield a temporary path beside `path`; rename it into place only on success."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    tmp_path = Path(tmp)
    os.chmod(tmp_path, 0o666 & ~_UMASK)  # mkstemp makes 0600; records and reports are for everyone to read
    try:
        yield tmp_path
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def write_bytes(path: Path, data: bytes) -> None:
    """Write bytes atomically (temp file in the same folder, then rename)."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def write_json(path: Path, record: dict[str, Any]) -> None:
    """Write a record atomically as indented JSON."""
    write_bytes(Path(path), (json.dumps(record, indent=2, sort_keys=False, default=_jsonable) + "\n").encode())


def read_json(path: Path, what: str = "record") -> dict[str, Any]:
    """Read a JSON record, or raise InputError saying what is wrong with it."""
    path = Path(path)
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise InputError(f"{what} not found: {path}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"{what} {path} is not valid JSON ({exc}); delete it and run the stage again") from None


def _jsonable(obj: Any) -> Any:
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")

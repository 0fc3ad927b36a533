"""Strict JSON, atomic writes and scratch folders for every stage; the typed records are beside (base.py)."""

from __future__ import annotations

import contextlib
import glob
import json
import math
import os
import platform
import re
import shutil
import tempfile
import time
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path
from typing import Any

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
def atomic_path(path: Path, mode: int | None = None) -> Iterator[Path]:
    """Yield a temporary path beside `path`; rename it into place only on success.

    `mode`: the file's permissions (0o600 for a record holding a secret); default readable as the umask allows.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    tmp_path = Path(tmp)
    # mkstemp makes 0600; records and reports are for everyone to read unless `mode` says otherwise
    os.chmod(tmp_path, 0o666 & ~_UMASK if mode is None else mode)
    try:
        yield tmp_path
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


# ---------------------------------------------------------------- scratch folders of a run

SCRATCH_GRACE_S = 600.0  # a scratch folder whose owner cannot be told is left alone this long
_TEMP_SUFFIX = r"[A-Za-z0-9_]+"  # what tempfile.mkdtemp appends (8 of these)


def _owner_tag() -> str:
    """`<pid>.<start time in ms>` of this process: a recycled pid is not mistaken for it."""
    import psutil

    proc = psutil.Process()
    return f"{proc.pid}.{int(proc.create_time() * 1000)}"


def _owner_alive(pid: int, started_ms: int | None) -> bool:
    """Whether process `pid` runs and, when its start time is known, is the one that started then."""
    import psutil

    try:
        started = psutil.Process(pid).create_time() * 1000
        return started_ms is None or abs(started - started_ms) < 10
    except psutil.AccessDenied:
        return True  # it runs, as another user: not ours to judge stale
    except (psutil.NoSuchProcess, ValueError):
        return False


def scratch_dir(parent: Path, prefix: str) -> Path:
    """A new temporary folder in `parent`, `<prefix><pid>.<start ms>-XXXXXXXX`: a later run can prove it stale.

    Remove it when done; one left by a killed run is removed by the next `prune_scratch`.
    """
    return Path(tempfile.mkdtemp(prefix=f"{prefix}{_owner_tag()}-", dir=parent))


def prune_scratch(parent: Path, prefix: str, grace_s: float = SCRATCH_GRACE_S) -> list[Path]:
    """Remove `prefix` scratch folders in `parent` left by runs that were killed; returns what was removed.

    A folder whose owning process (pid and start time in its name) is gone is removed at once;
    one whose owner still runs is never touched (a concurrent run). A folder named without an
    owner (an older zeroserve's `<prefix>XXXXXXXX`) is removed once it is older than `grace_s`.
    """
    removed: list[Path] = []
    try:
        folders = [f for f in Path(parent).glob(glob.escape(prefix) + "*") if f.is_dir()]
    except OSError:
        return removed
    for folder in folders:
        rest = folder.name[len(prefix) :]
        owned = re.fullmatch(rf"(\d+)(?:\.(\d+))?-{_TEMP_SUFFIX}", rest)
        if owned:
            stale = not _owner_alive(int(owned[1]), None if owned[2] is None else int(owned[2]))
        elif re.fullmatch(r"[A-Za-z0-9_]+", rest):
            try:
                stale = time.time() - folder.stat().st_mtime > grace_s
            except OSError:
                continue
        else:
            continue  # another name that shares the prefix (model `a` and model `a-b`): not ours to judge
        if stale:
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(folder)
    return removed


def write_bytes(path: Path, data: bytes, mode: int | None = None) -> None:
    """Write bytes atomically (temp file in the same folder, then rename), with `atomic_path`'s `mode`."""
    with atomic_path(path, mode) as tmp:
        tmp.write_bytes(data)


NONFINITE = {"nan": "NaN", "inf": "Infinity", "-inf": "-Infinity"}


def strict(obj: Any) -> Any:
    """`obj` as plain JSON values, every NaN/Infinity float as the string "NaN"/"Infinity"/"-Infinity".

    Python's json writes them as bare NaN/Infinity, which is not JSON: jq, JavaScript and most
    parsers refuse the whole document. numpy arrays and scalars become lists and numbers.
    """
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else NONFINITE[repr(obj)]
    if isinstance(obj, dict):
        return {k: strict(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [strict(v) for v in obj]
    if hasattr(obj, "tolist") and not isinstance(obj, (str, bytes)):
        return strict(obj.tolist())
    return obj


def dumps(obj: Any, **kw) -> str:
    """Strict JSON text (see `strict`); paths as strings."""
    return json.dumps(strict(obj), allow_nan=False, **{"default": _jsonable, **kw})


def write_json(path: Path, record: dict[str, Any], mode: int | None = None) -> None:
    """Write a record atomically as indented strict JSON (`mode`: see `atomic_path`)."""
    write_bytes(Path(path), (dumps(record, indent=2, sort_keys=False) + "\n").encode(), mode)


def read_json(path: Path, what: str = "record") -> dict[str, Any]:
    """Read a JSON record, or raise InputError saying what is wrong with it."""
    path = Path(path)
    try:
        return restore(json.loads(path.read_text()))
    except FileNotFoundError:
        raise InputError(f"{what} not found: {path}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"{what} {path} is not valid JSON ({exc}); delete it and run the stage again") from None


_RESTORE = {v: float(k) for k, v in NONFINITE.items()}


def restore(obj: Any) -> Any:
    """`strict`'s inverse for a record read back: "NaN"/"Infinity"/"-Infinity" are floats again."""
    if isinstance(obj, str):
        return _RESTORE.get(obj, obj)
    if isinstance(obj, dict):
        return {k: restore(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [restore(v) for v in obj]
    return obj


def _jsonable(obj: Any) -> Any:
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")

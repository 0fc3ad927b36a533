"""What tritonserver runs under: a per-process memory ceiling (RLIMIT_DATA) and the parent-death signal."""

from __future__ import annotations

import shutil

from zeroserve.errors import InputError


def parent_death_signal(detach: bool) -> list[str]:
    """`setpriv --pdeathsig KILL` in front of the command, so the server ends with the process that supervises it.

    The signal is set by setpriv, just before it execs tritonserver, rather than in a
    `preexec_fn` that would run Python in the forked child while other threads hold locks.
    It fires when the *thread* that started the server exits; KILL reaches a stopped or hung
    server too. Once tritonserver is gone (and reaped), its stubs see their parent gone and exit
    within about 2 s (measured here); every later `serve`/`stop` also reaps them by the run's
    shared-memory prefix. Without setpriv there is no parent-death signal; `zeroserve stop`
    still finds the server by its state file or its command line.
    """
    setpriv = None if detach else shutil.which("setpriv")
    return [setpriv, "--pdeathsig", "KILL", "--"] if setpriv else []


MEMORY_SHARE = 0.25  # the default per-process data ceiling: this share of the machine's memory
MEMORY_FLOOR = 2 << 30  # ... and never below 2 GiB (stubs that import torch and ONNX Runtime serve under it)
_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}


def parse_size(text: str) -> int:
    """`3G`, `512M`, `2048K` or bytes (binary units, an optional trailing B or iB) -> bytes, or InputError."""
    raw = str(text).strip().upper().removesuffix("IB").removesuffix("B")
    number, unit = (raw[:-1], raw[-1]) if raw and raw[-1] in _UNITS else (raw, "")
    try:
        value = float(number)
    except ValueError:
        raise InputError(f"--memory-limit {text!r}: give a size such as 3G, 512M or 4096M, 'auto' or 'off'") from None
    if value <= 0:
        raise InputError(f"--memory-limit {text!r}: must be more than 0 (or 'off')")
    return int(value * _UNITS[unit])


def memory_ceiling(limit: str | None, gpu: bool) -> tuple[int | None, str]:
    """The per-process data ceiling (RLIMIT_DATA) tritonserver runs under, and why, for `--memory-limit`.

    `auto` (None): MEMORY_SHARE of this machine's memory (at least MEMORY_FLOOR), except on a GPU host
    (CUDA reserves large private mappings that count against it); `off`: none; a size: that size.
    The limit is per process and each stub inherits it: it is a ceiling for one process, not a total.
    """
    import psutil

    text = (limit or "auto").strip().lower()
    if text in ("off", "none", "0"):
        return None, "off (--memory-limit off)"
    if text == "auto":
        if gpu:
            return None, "not applied on a GPU host unless --memory-limit SIZE is given (CUDA's reservations count)"
        total = psutil.virtual_memory().total
        size = max(MEMORY_FLOOR, int(total * MEMORY_SHARE))
        return size, f"{size / (1 << 30):.1f} GiB per process ({MEMORY_SHARE:.0%} of {total / (1 << 30):.1f} GiB)"
    size = parse_size(text)
    return size, f"{size / (1 << 30):.2f} GiB per process (--memory-limit)"


def memory_limit_prefix(size: int | None) -> list[str]:
    """`prlimit --data=N:N --` in front of the command: the limit is set before tritonserver starts."""
    if size is None:
        return []
    prlimit = shutil.which("prlimit")
    return [prlimit, f"--data={size}:{size}", "--"] if prlimit else []


def apply_memory_limit(pid: int, size: int | None) -> None:
    """Without prlimit: set RLIMIT_DATA on the started process (its stubs, forked later, inherit it)."""
    if size is None or shutil.which("prlimit"):
        return
    import psutil

    try:
        psutil.Process(pid).rlimit(psutil.RLIMIT_DATA, (size, size))
    except (psutil.Error, OSError, ValueError):
        pass

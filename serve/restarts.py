"""When a crashed server starts again: the restart policy (backoff, cap), how an exit is told, crash logs kept."""

from __future__ import annotations

import os
import signal
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from zeroserve.errors import ServerError

CRASHES_KEPT = 10  # crash records and crash-<n>.log files kept
CRASH_LOG_BYTES = 1 << 20  # each kept crash log: its last 1 MiB
ENV_BACKOFF = "ZEROSERVE_RESTART_BACKOFF"  # "first,max" seconds
ENV_CAP = "ZEROSERVE_RESTART_CAP"  # "count,window" (count crashes within window seconds)


@dataclass(frozen=True)
class RestartPolicy:
    """When a crashed server is started again, and when the supervisor gives up.

    Args:
        first_s: the wait before the first restart; each crash within the window doubles it.
        max_s: the longest wait (5 minutes: Kubernetes' CrashLoopBackOff ceiling).
        cap: the most crashes tolerated within `window_s`, the next one ending the run; None (the
            default): never give up, back off instead.
        window_s: crashes older than this are forgotten (a server that ran a while starts afresh).
    """

    first_s: float = 1.0
    max_s: float = 300.0
    cap: int | None = None
    window_s: float = 600.0

    @classmethod
    def from_env(cls, **overrides: Any) -> RestartPolicy:
        """The defaults, then `ZEROSERVE_RESTART_BACKOFF` / `ZEROSERVE_RESTART_CAP`, then `overrides` (not None)."""
        values: dict[str, Any] = {}
        for env, keys in ((ENV_BACKOFF, ("first_s", "max_s")), (ENV_CAP, ("cap", "window_s"))):
            raw = os.environ.get(env)
            if raw:
                try:
                    parts = [float(x) for x in raw.split(",")]
                except ValueError:
                    raise ServerError(f"{env}={raw!r}: expected numbers separated by a comma") from None
                values.update(zip(keys, parts))
        values.update({k: v for k, v in overrides.items() if v is not None})
        if "cap" in values:
            values["cap"] = int(values["cap"])
        return cls(**values)

    def recent(self, crash_times: list[float], now: float) -> int:
        """Crashes within the window before `now`."""
        return sum(1 for t in crash_times if now - t <= self.window_s)

    def gives_up(self, crash_times: list[float], now: float) -> bool:
        """True when there is a cap and the crashes within the window exceed it."""
        return self.cap is not None and self.recent(crash_times, now) > self.cap

    def delay(self, crash_times: list[float], now: float) -> float:
        """Seconds to wait before the next restart: first_s doubled for each earlier crash in the window."""
        earlier = max(self.recent(crash_times, now) - 1, 0)
        return min(self.first_s * (2**earlier), self.max_s)


def describe_exit(code: int | None) -> str:
    """`killed by SIGKILL` or `exit code 1` from a Popen return code."""
    if code is None:
        return "still running"
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit code {code}"


def cap_crash_logs(run_dir: Path, kept: Path, number: int) -> None:
    """Keep the last CRASHES_KEPT crash logs, each cut to its last CRASH_LOG_BYTES."""
    try:
        if kept.name.startswith("crash-") and kept.stat().st_size > CRASH_LOG_BYTES:
            with open(kept, "rb") as fh:
                fh.seek(-CRASH_LOG_BYTES, os.SEEK_END)
                tail = fh.read()
            tmp = kept.with_name(f".{kept.name}.tmp")
            tmp.write_bytes(b"[cut: the first part of this log was dropped]\n" + tail)
            os.replace(tmp, kept)
    except OSError:
        pass
    for old in run_dir.glob("crash-*.log"):
        try:
            if int(old.stem.split("-", 1)[1]) <= number - CRASHES_KEPT:
                old.unlink(missing_ok=True)
        except ValueError:
            continue

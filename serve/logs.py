"""The server's own log, read: its lines about a model, its tail, and each model's load events as they come."""

from __future__ import annotations

import os
import re
from pathlib import Path


def log_lines_for(log: Path, model: str, limit: int = 3) -> list[str]:
    """The server's own error lines about `model`, each cut before its Python traceback."""
    try:
        lines = log.read_text(errors="replace").splitlines()
    except OSError:
        return []
    picked: list[str] = []
    for line in lines:
        if model in line and (line.startswith("E") or "Failed" in line or "failed" in line):
            text = line.split("\\n")[0].strip()[:300]  # Triton escapes the traceback's newlines as \n
            if text not in picked:
                picked.append(text)
    return picked[-limit:]


def log_tail(log: Path, limit: int = 6) -> str:
    """The log's last non-empty lines joined on one line."""
    try:
        lines = [ln.strip() for ln in log.read_text(errors="replace").splitlines() if ln.strip()]
    except OSError:
        return ""
    return " | ".join(lines[-limit:])


_LOADING = re.compile(r'"loading: ([^:"]+):\d+"')
_LOADED = re.compile(r"successfully loaded '([^']+)'")
_FAILED = re.compile(r"failed to load '([^']+)'(?: version \d+: (.*))?")


class LogWatcher:
    """The model-load events the server's log gained since the last look: (model, state, reason).

    state is "loading", "READY" or "FAILED"; a failure's reason is Triton's own message, cut
    before its traceback. A log that shrank (a new process truncated it) is read from its start.
    """

    def __init__(self, path: Path, from_end: bool = False):
        self.path = Path(path)
        self.offset = 0
        self.partial = b""
        if from_end:
            try:
                self.offset = self.path.stat().st_size
            except OSError:
                pass

    def events(self) -> list[tuple[str, str, str]]:
        try:
            with open(self.path, "rb") as fh:
                size = os.fstat(fh.fileno()).st_size
                if size < self.offset:
                    self.offset, self.partial = 0, b""
                fh.seek(self.offset)
                data = fh.read()
        except OSError:
            return []
        self.offset += len(data)
        lines = (self.partial + data).split(b"\n")
        self.partial = lines.pop()
        out: list[tuple[str, str, str]] = []
        for raw in lines:
            line = raw.decode(errors="replace")
            if m := _LOADING.search(line):
                out.append((m.group(1), "loading", ""))
            elif m := _LOADED.search(line):
                out.append((m.group(1), "READY", ""))
            elif m := _FAILED.search(line):
                if m.group(2):  # the line with the reason; the bare "failed to load 'X'" after it adds nothing
                    out.append((m.group(1), "FAILED", m.group(2).split("\\n")[0].rstrip('"').strip()[:300]))
                elif not any(name == m.group(1) and st == "FAILED" for name, st, _ in out):
                    out.append((m.group(1), "FAILED", "failed to load"))
        return out


# ---------------------------------------------------------------- the server

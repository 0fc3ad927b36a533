"""Model recovery, the supervisor's half that keeps each model answering: a dead stub's model reloaded alone.

A model with fewer live stubs than instances is marked recovering, its artifact verified, and its
runtime config rewritten with the next `ZS_GENERATION`; the reload counts only when the server
answers with that config, the model is READY and its stubs live. A reload that fails puts the
previous config back and leads to a whole-server restart (serve/supervisor.py's docstring has
the whole story).
"""

from __future__ import annotations

import datetime as dt
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from zeroserve.errors import ZeroserveError
from zeroserve.serve import processes as ps
from zeroserve.serve.handle import Server
from zeroserve.serve.logs import LogWatcher
from zeroserve.serve.restarts import CRASHES_KEPT

MISSING_CHECKS = 2  # a stub count must be short this many checks in a row (a reload swaps stubs)
RECOVERY_TIMEOUT_S = 60.0


def _now() -> str:
    return dt.datetime.now().isoformat(timespec="seconds")


@dataclass
class Reload:
    """One model's reload in progress: when it began, the generation written, the config it replaced."""

    started: float
    generation: int
    previous: str
    watcher: LogWatcher


class ModelRecovery:
    """The recovery of models whose stubs died; mixed into `Supervisor`, which owns the attributes below."""

    server: Server
    say: Callable[[str], None]
    expected: dict[str, int]  # model -> instances it should have
    short: dict[str, int]  # model -> consecutive checks with too few stubs
    recovering: dict[str, Reload]  # model -> its reload in progress
    regions: dict[int, tuple[str, str]]  # live stubs seen: pid -> (model, shm region)
    reload_failed: dict[str, str]  # model -> why its reload failed (rebuilt before the restart)
    restart_cause: str | None
    shm_removed: int

    def _write(self, **changes: Any) -> None:
        raise NotImplementedError  # the supervisor's: one write of the state file

    def _rebuild_failed(self) -> dict[str, str]:
        """Before a restart, write the runtime folder of each model whose reload failed afresh from the canonical
        repository (verified against the manifest); returns {name: reason} of those that cannot be, which are
        taken out of the runtime repository (nothing verified to serve)."""
        given_up: dict[str, str] = {}
        for name, why in self.reload_failed.items():
            if self.server.rebuild is None:
                continue
            try:
                model = self.server.rebuild(name)
            except (OSError, ZeroserveError) as exc:
                shutil.rmtree(self.server.repository / name, ignore_errors=True)
                given_up[name] = (
                    f"given up: its reload failed ({why}) and its runtime copy cannot be written again "
                    f"from the canonical repository: {exc} (log: {self.server.log})"
                )
                continue
            artifacts = {
                **(self.server.state.artifacts or {}),
                name: {"artifact": model.artifact, "sha256": model.sha256},
            }
            self._write(artifacts=artifacts)
        return given_up

    def _check_models(self) -> None:
        """Compare each model's live stubs with its instances; recover the short ones."""
        prefix = self.server.state.shm_prefix
        ps.private_shm(prefix)
        live = ps.stub_regions(prefix)
        counts: dict[str, int] = {}
        for model, _ in live.values():
            counts[model] = counts.get(model, 0) + 1
        # A stub that is gone leaves its region behind (tritonserver keeps it mapped): its name goes.
        for pid, (_model, region) in list(self.regions.items()):
            if pid not in live:
                del self.regions[pid]
                if (ps.SHM_DIR / region).exists():
                    (ps.SHM_DIR / region).unlink(missing_ok=True)
                    self.shm_removed += 1
        self.regions.update(live)
        failed = self.server.state.failed or {}
        for name, instances in self.expected.items():
            if name in failed:
                continue
            have = counts.get(name, 0)
            if name in self.recovering:
                self._follow_recovery(name, have, instances)
                continue
            self.short[name] = self.short.get(name, 0) + 1 if have < instances else 0
            if self.short[name] >= MISSING_CHECKS:
                self._start_recovery(name, have, instances)

    def _start_recovery(self, name: str, have: int, instances: int) -> None:
        self.short[name] = 0
        self._write(
            recovering={
                **(self.server.state.recovering or {}),
                name: {"since": _now(), "stubs": have, "instances": instances},
            }
        )
        self.say(f"{name}: {have} of {instances} stubs alive; reloading it")
        problem = self.server.verify(name)
        if problem:
            self._reload_failed(name, problem, None)
            return
        watcher = LogWatcher(self.server.log, from_end=True)
        try:
            generation, previous = self.server.reload_model(name)
        except (OSError, ZeroserveError) as exc:
            self._reload_failed(name, f"its runtime config could not be rewritten ({exc})", None)
            return
        self.recovering[name] = Reload(time.monotonic(), generation, previous, watcher)
        self._write(
            recovering={
                **(self.server.state.recovering or {}),
                name: {"since": _now(), "stubs": have, "instances": instances, "generation": generation},
            }
        )

    def _follow_recovery(self, name: str, have: int, instances: int) -> None:
        """Recovered means answering: the config just written is the one served, READY, with its stubs alive."""
        reload = self.recovering[name]
        for model, what, reason in reload.watcher.events():
            if model == name and what == "FAILED":
                self._reload_failed(name, f"Triton: {reason}", reload.previous)
                return
        if (
            have >= instances
            and self.server.index(timeout=1.0).get(name, {}).get("state") == "READY"
            and self.server.served_generation(name) == reload.generation
        ):
            problem = self.server.verify(name)
            if problem:
                self._reload_failed(name, problem, reload.previous)
                return
            seconds = round(time.monotonic() - reload.started, 2)
            del self.recovering[name]
            recovering = {k: v for k, v in (self.server.state.recovering or {}).items() if k != name}
            recoveries = [
                *(self.server.state.recoveries or []),
                {"model": name, "time": _now(), "seconds": seconds, "how": "reload", "generation": reload.generation},
            ][-CRASHES_KEPT:]
            self._write(
                recovering=recovering,
                recoveries=recoveries,
                shm_removed=self.shm_removed,
                recovered=(self.server.state.recovered or 0) + 1,
            )
            self.say(
                f"{name}: recovered in {seconds:.1f} s (reload, generation {reload.generation} answering); "
                f"recoveries so far: {self.server.state.recovered}"
            )
        elif time.monotonic() - reload.started > RECOVERY_TIMEOUT_S:
            self._reload_failed(
                name, f"not answering with the reloaded config after {RECOVERY_TIMEOUT_S:.0f} s", reload.previous
            )

    def _reload_failed(self, name: str, reason: str, previous: str | None) -> None:
        """Put the previous runtime config back, record the failure, and restart the whole server."""
        self.recovering.pop(name, None)
        if previous is not None:
            try:
                self.server.restore_config(name, previous)
            except OSError as exc:
                self.say(f"{name}: could not put its previous runtime config back ({exc})")
        failure = {"model": name, "time": _now(), "reason": reason, "log": str(self.server.log)}
        failures = [*(self.server.state.reload_failures or []), failure][-CRASHES_KEPT:]
        recovering = {k: v for k, v in (self.server.state.recovering or {}).items() if k != name}
        self.reload_failed[name] = reason
        self._write(
            recovering=recovering,
            reload_failures=failures,
            failed={**(self.server.state.failed or {}), name: f"reload failed: {reason}"},
        )
        self.say(f"{name}: reload failed: {reason}; restarting the server (log: {self.server.log})")
        self.restart_cause = f"{name} failed to reload"
        self._restart_for(name)

    def _restart_for(self, name: str) -> None:
        """End the whole server (SIGKILL: it reaches a stopped process too) so that the next turn restarts it
        (counted as a crash)."""
        if self.server.alive():
            self.server.process.kill()
        self.server.process.wait()

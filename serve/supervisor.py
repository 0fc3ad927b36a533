"""The supervisor: keeps a served tritonserver up and its state file true.

One loop, run by the foreground `zeroserve serve` itself or, for `serve --detach`, by a
detached process of its own (`python -m zeroserve.serve.supervisor`, own session, umask 077)
that the CLI waits on. Every `CHECK_S` it looks at the process tree only (psutil, no probe
inferences that would pollute the server's statistics):

- tritonserver gone: the crash is recorded (time, exit code or signal, the last lines of its
  log, the log itself kept as `crash-<n>.log` in the run folder, the last `CRASHES_KEPT` of
  them, each cut to its last `CRASH_LOG_BYTES`) and its stubs and shared memory are reaped;
  the same command is started again on the same ports after a backoff that doubles with each
  crash within the window up to a ceiling (5 minutes, as Kubernetes' CrashLoopBackOff): a
  crash loop backs off, it does not end the service. `--max-restarts N` (`RestartPolicy.cap`)
  keeps a hard cap for those who want one: more crashes than that within the window and the
  run is marked dead with its logs kept.
- tritonserver hung (stopped, deadlocked): `/v2/health/live` is asked every turn with a short
  timeout (not an inference: the statistics stay the clients'); no answer for `hang_timeout`
  seconds and the server is recorded as hung, SIGKILLed (which reaches a stopped process) and
  restarted like a crash.
- `server.log` is capped: past `SERVER_LOG_BYTES` it is moved to `server.log.1` (one kept)
  and started afresh (tritonserver writes it with O_APPEND).
- a model with fewer live stubs than instances (a stub killed by a crash or the OOM killer,
  which Triton 2.51 neither notices nor restarts): the model is marked recovering in the
  state file, its runtime artifact is verified against the sha256 it was served with, and its
  runtime config is rewritten with the next `ZS_GENERATION` so Triton's poller reloads that
  model alone (`Server.reload_model`); the dead stub's shared memory is unlinked.
- recovered means answering: the reload counts only once the server answers with the config
  just written (its `ZS_GENERATION`), the model is READY and its stubs are alive.
- a reload that fails (the artifact no longer verifies, Triton's log says "failed to load"
  with its reason, or it is not back within `RECOVERY_TIMEOUT_S`) puts the previous runtime
  config back, is recorded with the reason (`reload_failures`, the model `failed` in the
  state), and leads to a whole-server restart, before which the model's runtime folder is
  written afresh from the canonical repository (verified against the manifest). A model that
  fails again at that restart, or cannot be rebuilt, is given up: named with the reason and
  the log, and not tried again by the supervisor.
- the state file is checked every few turns and written again from memory when it cannot be
  read (truncated, replaced with garbage): a broken file never loses a live run.

SIGTERM (what `zeroserve stop` sends first) and Ctrl-C stop the server and everything it
started; nothing is restarted after that.
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from zeroserve.errors import ServerError
from zeroserve.records.state import Crash
from zeroserve.serve import processes as ps
from zeroserve.serve import state as st
from zeroserve.serve.handle import READY_TIMEOUT_S, Server
from zeroserve.serve.logs import log_tail
from zeroserve.serve.recovery import ModelRecovery, Reload
from zeroserve.serve.restarts import CRASHES_KEPT, RestartPolicy, cap_crash_logs, describe_exit

CHECK_S = 0.5
STATE_CHECK_EVERY = 4  # turns between checks that the state file still reads
SERVER_LOG_BYTES = 16 << 20  # server.log rotated past this
HANG_TIMEOUT_S = 10.0
LIVE_TIMEOUT_S = 1.0  # one liveness question
TAIL_LINES = 8

Say = Callable[[str], None]


def _now() -> str:
    return dt.datetime.now().isoformat(timespec="seconds")


class Supervisor(ModelRecovery):
    """Watches one `Server`, restarting it and recovering its models; every event goes to the state file."""

    def __init__(
        self,
        server: Server,
        policy: RestartPolicy | None = None,
        say: Say | None = None,
        hang_timeout: float = HANG_TIMEOUT_S,
    ):
        self.server = server
        self.policy = policy or RestartPolicy.from_env()
        self.hang_timeout = hang_timeout
        self.last_live = time.monotonic()
        self.say = say or (lambda text: None)
        self.crash_times: list[float] = []
        self.short: dict[str, int] = {}  # model -> consecutive checks with too few stubs
        self.recovering: dict[str, Reload] = {}  # model -> its reload in progress
        self.reload_failed: dict[str, str] = {}  # model -> why its reload failed (rebuilt before the restart)
        self.restart_cause: str | None = None  # set when the supervisor itself ends the server to restart it
        self.hung = False
        self.turns = 0
        self.expected = {m.name: m.instances for m in server.models}
        self.regions: dict[int, tuple[str, str]] = {}  # live stubs seen: pid -> (model, shm region)
        self.shm_removed = 0

    # ------------------------------------------------------------ state
    def _write(self, **changes: Any) -> None:
        self.server.state = self.server.state.updated(**changes)
        st.write_state(self.server.state)

    # ------------------------------------------------------------ the loop
    def run(self, stop_when: Callable[[], bool] = lambda: False) -> None:
        """Supervise until a stop signal (KeyboardInterrupt: signals.stop_signals), `stop_when()`, or giving up."""
        while not stop_when():
            self.turns += 1
            if self.turns % STATE_CHECK_EVERY == 0:
                self._heal_state()
            if not self.server.alive():
                self._crashed()
                continue
            if self.turns % STATE_CHECK_EVERY == 0:
                self._cap_log()
            if not self._check_live():
                continue
            self._check_models()
            time.sleep(CHECK_S)

    def _check_live(self) -> bool:
        """Ask `/v2/health/live`; False once the server has not answered for `hang_timeout` s (then it is killed)."""
        if self.server.live(LIVE_TIMEOUT_S):
            self.last_live = time.monotonic()
            return True
        silent = time.monotonic() - self.last_live
        if silent < self.hang_timeout:
            return True
        cause = f"hung: no answer to /v2/health/live for {silent:.0f} s (--hang-timeout {self.hang_timeout:g})"
        self.say(f"tritonserver {cause}; killing it (SIGKILL) to restart it")
        self.restart_cause = cause
        self.hung = True
        self._restart_for("")
        return False

    def _cap_log(self) -> None:
        """Rotate server.log past SERVER_LOG_BYTES: one previous part kept as server.log.1."""
        log = self.server.log
        try:
            if log.stat().st_size <= SERVER_LOG_BYTES:
                return
            shutil.copyfile(log, log.with_name(log.name + ".1"))
            os.truncate(log, 0)  # tritonserver appends (O_APPEND): its next line starts the file again
        except OSError:
            pass

    def _heal_state(self) -> None:
        """Write the state file again from memory when it cannot be read (truncated, garbage, removed)."""
        path = st.state_path(self.server.state.run_id)
        if st.read_state_file(path) is None:
            st.write_state(self.server.state)
            self.say(f"state file {path} could not be read; written again")

    def _crashed(self) -> None:
        """Record the crash, then restart after the backoff, or give up past the cap."""
        code = self.server.process.returncode
        now = time.monotonic()
        self.crash_times.append(now)
        crash, crashes, number, kept = self._record_crash(code)
        self.recovering.clear()
        self.short.clear()
        self.regions.clear()
        if self.policy.gives_up(self.crash_times, now):
            reason = (
                f"tritonserver crashed {self.policy.recent(self.crash_times, now)} times within "
                f"{self.policy.window_s:.0f} s (cap {self.policy.cap}, --max-restarts); gave up. Last: "
                f"{crash.exit}; log kept: {kept}"
            )
            crash.gave_up = True  # the last of `crashes`
            self._write(crashes=crashes, crash_count=number, recovering={}, log=str(kept))
            self.server.stop(0.0, keep_run=True, reason=reason)
            raise ServerError(reason)
        wait = self.policy.delay(self.crash_times, now)
        recent = self.policy.recent(self.crash_times, now)
        self._write(
            crashes=crashes,
            crash_count=number,
            status=st.STARTING,
            recovering={},
            next_start=time.time() + wait,
            attempt=(self.server.state.restarts or 0) + 1,
            crash_loop={"crashes": recent, "window_s": self.policy.window_s} if recent > 1 else None,
        )
        self.say(f"tritonserver {crash.exit} (log kept: {kept}); restarting in {wait:.1f} s")
        time.sleep(wait)
        self._restart()

    def _record_crash(self, code: int | None) -> tuple[Crash, list[Crash], int, Path]:
        """Keep the crashed server's log, end its stubs and shared memory; the crash record and the kept list."""
        run_dir = Path(self.server.state.runtime_dir or "")
        number = (self.server.state.crash_count or 0) + 1
        kept = run_dir / f"crash-{number}.log"
        try:
            os.replace(self.server.log, kept)
        except OSError:
            kept = self.server.log
        tail = log_tail(kept, TAIL_LINES)
        if kept != self.server.log:  # failures recorded against the live log now point at the kept one
            failures = [
                f.model_copy(update={"log": str(kept)}) if f.log == str(self.server.log) else f
                for f in self.server.state.reload_failures or []
            ]
            self._write(reload_failures=failures)
        crash = Crash(
            time=_now(),
            pid=self.server.state.pid,
            exit_code=code,
            signal=signal.Signals(-code).name if code is not None and code < 0 else None,
            exit=describe_exit(code),
            log=str(kept),
            tail=tail,
        )
        if self.restart_cause:
            crash.cause = self.restart_cause
            crash.exit = (
                f"{self.restart_cause}; killed"
                if self.hung
                else f"ended by the supervisor to restart it ({self.restart_cause})"
            )
            crash.hung = self.hung
            self.restart_cause, self.hung = None, False
        cap_crash_logs(run_dir, kept, number)
        # Stubs of the dead server and their shared memory go before anything starts again.
        ps.kill(ps.run_processes(self.server.state.shm_prefix))
        ps.unlink_shm(self.server.state.shm_prefix)
        crashes = [*(self.server.state.crashes or []), crash][-CRASHES_KEPT:]
        return crash, crashes, number, kept

    def _restart(self) -> None:
        """Start the server again; models whose reload failed before are given up if they fail again."""
        state_failed = self.server.state.failed or {}
        given_up = {n: state_failed.get(n, "given up") for n in self.server.state.given_up or []}
        given_up.update(self._rebuild_failed())
        try:
            failed = self.server.restart(READY_TIMEOUT_S)
        except ServerError as exc:
            self.say(f"restart failed: {exc}")
            if self.server.alive():
                self.server.process.kill()
                self.server.process.wait()
            return  # the next turn records it as one more crash
        for name, reason in failed.items():
            if name in self.reload_failed:  # failed to reload, then again after the restart: given up
                given_up[name] = (
                    f"given up: its reload failed ({self.reload_failed[name]}) and it failed to load "
                    f"again after the restart: {reason} (log: {self.server.log})"
                )
        for name in list(self.reload_failed):
            if name not in failed and name not in given_up:
                self.say(f"{name}: READY again after the restart (its runtime copy was written afresh)")
        self.reload_failed.clear()
        for name, reason in given_up.items():
            self.say(f"{name}: {reason}")
        self.last_live = time.monotonic()
        self._write(
            status=st.RUNNING,
            restarts=(self.server.state.restarts or 0) + 1,
            last_restart=_now(),
            failed={**failed, **given_up},
            given_up=sorted(given_up),
            next_start=None,
        )
        self.say(f"tritonserver restarted (pid {self.server.pid}); restarts so far: {self.server.state.restarts}")


if __name__ == "__main__":  # `python -m zeroserve.serve.supervisor OPTIONS_JSON`: the detached start's other half
    from zeroserve.serve.detach import supervisor_main

    sys.exit(supervisor_main())

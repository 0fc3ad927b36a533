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

import argparse
import datetime as dt
import json
import os
import shutil
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from zeroserve.errors import ServerError, ZeroserveError
from zeroserve.serve import processes as ps
from zeroserve.serve import state as st
from zeroserve.serve.server import READY_TIMEOUT_S, LogWatcher, Server, log_tail, start_server
from zeroserve.serve.signals import stop_signals
from zeroserve.serve.stop import STOP_TIMEOUT_S

CHECK_S = 0.5
STATE_CHECK_EVERY = 4  # turns between checks that the state file still reads
MISSING_CHECKS = 2  # a stub count must be short this many checks in a row (a reload swaps stubs)
RECOVERY_TIMEOUT_S = 60.0
CRASHES_KEPT = 10  # crash records and crash-<n>.log files kept
CRASH_LOG_BYTES = 1 << 20  # each kept crash log: its last 1 MiB
SERVER_LOG_BYTES = 16 << 20  # server.log rotated past this
HANG_TIMEOUT_S = 10.0
LIVE_TIMEOUT_S = 1.0  # one liveness question
TAIL_LINES = 8
ENV_BACKOFF = "ZEROSERVE_RESTART_BACKOFF"  # "first,max" seconds
ENV_CAP = "ZEROSERVE_RESTART_CAP"  # "count,window" (count crashes within window seconds)

Say = Callable[[str], None]


def _now() -> str:
    return dt.datetime.now().isoformat(timespec="seconds")


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


@dataclass
class Reload:
    """One model's reload in progress: when it began, the generation written, the config it replaced."""

    started: float
    generation: int
    previous: str
    watcher: LogWatcher


class Supervisor:
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
        self.server.state = {**self.server.state, **changes}
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
        if st.read_state_file(st.state_path(self.server.state["run_id"])) is None:
            st.write_state(self.server.state)
            self.say(f"state file {st.state_path(self.server.state['run_id'])} could not be read; written again")

    def _crashed(self) -> None:
        """Record the crash, then restart after the backoff, or give up past the cap."""
        code = self.server.process.returncode
        now = time.monotonic()
        self.crash_times.append(now)
        run_dir = Path(self.server.state["runtime_dir"])
        number = int(self.server.state.get("crash_count", 0)) + 1
        kept = run_dir / f"crash-{number}.log"
        try:
            os.replace(self.server.log, kept)
        except OSError:
            kept = self.server.log
        tail = log_tail(kept, TAIL_LINES)
        if kept != self.server.log:  # failures recorded against the live log now point at the kept one
            failures = [
                {**f, "log": str(kept)} if f.get("log") == str(self.server.log) else f
                for f in self.server.state.get("reload_failures", [])
            ]
            self._write(reload_failures=failures)
        crash = {
            "time": _now(),
            "pid": self.server.state.get("pid"),
            "exit_code": code,
            "signal": signal.Signals(-code).name if code is not None and code < 0 else None,
            "exit": describe_exit(code),
            "log": str(kept),
            "tail": tail,
        }
        if self.restart_cause:
            crash["cause"] = self.restart_cause
            crash["exit"] = (
                f"{self.restart_cause}; killed"
                if self.hung
                else f"ended by the supervisor to restart it ({self.restart_cause})"
            )
            crash["hung"] = self.hung
            self.restart_cause, self.hung = None, False
        _cap_crash_logs(run_dir, kept, number)
        # Stubs of the dead server and their shared memory go before anything starts again.
        ps.kill(ps.run_processes(self.server.state.get("shm_prefix")))
        ps.unlink_shm(self.server.state.get("shm_prefix"))
        crashes = [*self.server.state.get("crashes", []), crash][-CRASHES_KEPT:]
        self.recovering.clear()
        self.short.clear()
        self.regions.clear()
        if self.policy.gives_up(self.crash_times, now):
            reason = (
                f"tritonserver crashed {self.policy.recent(self.crash_times, now)} times within "
                f"{self.policy.window_s:.0f} s (cap {self.policy.cap}, --max-restarts); gave up. Last: "
                f"{crash['exit']}; log kept: {kept}"
            )
            crashes[-1] = {**crash, "gave_up": True}
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
            attempt=int(self.server.state.get("restarts", 0)) + 1,
            crash_loop={"crashes": recent, "window_s": self.policy.window_s} if recent > 1 else None,
        )
        self.say(f"tritonserver {crash['exit']} (log kept: {kept}); restarting in {wait:.1f} s")
        time.sleep(wait)
        state_failed = self.server.state.get("failed") or {}
        given_up = {n: state_failed.get(n, "given up") for n in self.server.state.get("given_up") or []}
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
            restarts=int(self.server.state.get("restarts", 0)) + 1,
            last_restart=_now(),
            failed={**failed, **given_up},
            given_up=sorted(given_up),
            next_start=None,
        )
        self.say(f"tritonserver restarted (pid {self.server.pid}); restarts so far: {self.server.state['restarts']}")

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
                **(self.server.state.get("artifacts") or {}),
                name: {"artifact": model.artifact, "sha256": model.sha256},
            }
            self._write(artifacts=artifacts)
        return given_up

    def _check_models(self) -> None:
        """Compare each model's live stubs with its instances; recover the short ones."""
        prefix = self.server.state.get("shm_prefix")
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
        failed = self.server.state.get("failed") or {}
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
                **self.server.state.get("recovering", {}),
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
                **self.server.state.get("recovering", {}),
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
            recovering = {k: v for k, v in self.server.state.get("recovering", {}).items() if k != name}
            recoveries = [
                *self.server.state.get("recoveries", []),
                {"model": name, "time": _now(), "seconds": seconds, "how": "reload", "generation": reload.generation},
            ][-CRASHES_KEPT:]
            self._write(
                recovering=recovering,
                recoveries=recoveries,
                shm_removed=self.shm_removed,
                recovered=int(self.server.state.get("recovered", 0)) + 1,
            )
            self.say(
                f"{name}: recovered in {seconds:.1f} s (reload, generation {reload.generation} answering); "
                f"recoveries so far: {self.server.state['recovered']}"
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
        failures = [*self.server.state.get("reload_failures", []), failure][-CRASHES_KEPT:]
        recovering = {k: v for k, v in self.server.state.get("recovering", {}).items() if k != name}
        self.reload_failed[name] = reason
        self._write(
            recovering=recovering,
            reload_failures=failures,
            failed={**(self.server.state.get("failed") or {}), name: f"reload failed: {reason}"},
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


def _cap_crash_logs(run_dir: Path, kept: Path, number: int) -> None:
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


# ---------------------------------------------------------------- the detached supervisor process


def supervisor_command(options: dict[str, Any], policy: RestartPolicy) -> list[str]:
    """The detached supervisor's command line: `start_server`'s options and the restart policy, as `main` reads them."""
    doc = {
        **options,
        "policy": {"first_s": policy.first_s, "max_s": policy.max_s, "cap": policy.cap, "window_s": policy.window_s},
    }
    return [sys.executable, "-m", "zeroserve.serve.supervisor", json.dumps(doc)]


def main(argv: list[str] | None = None) -> int:
    """`python -m zeroserve.serve.supervisor OPTIONS_JSON`: start the server, then supervise it until stopped."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("options", help="start_server's keyword arguments and the restart policy, as JSON")
    opts = json.loads(parser.parse_args(argv).options)
    os.umask(0o077)
    with stop_signals():  # SIGTERM (what `zeroserve stop` sends first) and Ctrl-C stop the server
        return _supervise(opts)


def _supervise(opts: dict[str, Any]) -> int:
    policy = RestartPolicy.from_env(**opts.pop("policy", {}))
    me = {"pid": os.getpid(), "create_time": st.create_time(os.getpid())}
    say = lambda text: print(f"{_now()} {text}", flush=True)  # noqa: E731 - the supervisor's own log

    def on_model(name: str, state: str, seconds: float) -> None:
        say(f"{name}: {state}" + (f" in {seconds:.1f} s" if state != "loading" else ""))

    server = None
    try:
        hang_timeout = float(opts.pop("hang_timeout", HANG_TIMEOUT_S))
        # detach=False: tritonserver gets the parent-death signal, so it ends with this supervisor
        server = start_server(
            Path(opts["repository"]),
            opts.get("models"),
            detach=False,
            supervisor=me,
            on_model=on_model,
            **{k: v for k, v in opts.items() if k not in ("repository", "models")},
        )
        Supervisor(server, policy, say, hang_timeout=hang_timeout).run()
    except KeyboardInterrupt:  # SIGTERM or Ctrl-C (signals.Terminated)
        if server is not None:
            say("stopping (SIGTERM)")
            server.stop(STOP_TIMEOUT_S)
        return 0
    except ZeroserveError as exc:
        say(f"error: {exc}")
        _record_failure(opts.get("run_id"), exc)
        return exc.exit_code
    return 0


def _record_failure(run_id: str | None, exc: ZeroserveError) -> None:
    """Put the error's message and exit code into the run's state (the waiting CLI reads them)."""
    if not run_id:
        return
    path = st.state_path(run_id)
    try:
        state = json.loads(path.read_text())
    except (OSError, ValueError):
        state = None
    if state is not None:
        st.write_state({**state, "error": {"message": str(exc), "exit_code": exc.exit_code}})


if __name__ == "__main__":
    sys.exit(main())

"""A started tritonserver, as the process that started it holds it: endpoints, health, loads, reloads, stop.

`start_server` (serve/server.py) returns one. Its waits report each model's progress from the
server's own log and repository index; `reload_model` rewrites one runtime config with the next
`ZS_GENERATION`, which is how the supervisor recovers a model whose stub died, and
`served_generation` tells that the new config is the one answering. Its control calls go
through Triton's control plane (zeroserve/triton/control.py).
"""

from __future__ import annotations

import os
import secrets
import subprocess
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from zeroserve.deploy.config import parse, render
from zeroserve.errors import ServerError, ZeroserveError
from zeroserve.records.state import ServerState
from zeroserve.serve import processes as ps
from zeroserve.serve import state as st
from zeroserve.serve.logs import LogWatcher, log_lines_for, log_tail
from zeroserve.serve.runtime import RuntimeModel
from zeroserve.serve.stop import STOP_TIMEOUT_S, stop_server
from zeroserve.triton.control import Control
from zeroserve.triton.errors import RequestRejected, ServerTimeout, ServerUnreachable
from zeroserve.triton.ports import hostport

READY_TIMEOUT_S = 300.0
LOAD_WORKERS = 4
GENERATION_PARAMETER = "ZS_GENERATION"  # bumped in a runtime config to make the poller reload that model

OnModel = Callable[[str, str, float], None]


@dataclass
class Server:
    """A tritonserver this process started; `state` is what its state file holds."""

    state: ServerState
    process: subprocess.Popen
    models: list[RuntimeModel] = field(default_factory=list)
    launch: Callable[[], subprocess.Popen] | None = field(default=None, repr=False)  # starts the same command again
    rebuild: Callable[[str], RuntimeModel] | None = field(default=None, repr=False)  # a runtime folder afresh

    def progress_recorder(self, on_model: OnModel | None) -> OnModel:
        """`on_model`, also recording each model's progress in the state file (a detached start's CLI reads it)."""
        report = on_model or (lambda *a: None)

        def progress(name: str, what: str, seconds: float) -> None:
            progress = self.state.progress or {}
            if progress.get(name, [None])[0] == what:
                return  # the log and the index both said it
            self.state = self.state.updated(progress={**progress, name: [what, round(seconds, 1)]})
            st.write_state(self.state)
            report(name, what, seconds)

        return progress

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def http_url(self) -> str:
        return hostport(self.state.host, self.state.http_port)

    @property
    def grpc_url(self) -> str:
        return hostport(self.state.host, self.state.grpc_port or 0)

    @property
    def log(self) -> Path:
        return Path(self.state.log or "")

    def alive(self) -> bool:
        return self.process.poll() is None

    def stop(
        self, timeout: float = STOP_TIMEOUT_S, keep_run: bool = False, reason: str | None = None
    ) -> dict[str, Any]:
        """Stop the server and everything it started; remove its state file and run folder unless `keep_run`."""
        return stop_server(self.state, self.process, timeout, keep_run, reason)

    def wait_live(self, deadline: float, on_model: OnModel | None = None, t0: float | None = None) -> None:
        """Wait until the HTTP endpoint answers `live` before `deadline` (monotonic), or ServerError.

        With models in the repository at start, Triton loads them before it listens: each one's
        progress is reported from the server's log through `on_model` meanwhile.
        """
        watcher = LogWatcher(self.log)
        t0 = time.monotonic() if t0 is None else t0
        names = {m.name for m in self.models}
        while time.monotonic() < deadline:
            if on_model is not None:
                for name, what, _ in watcher.events():
                    if name in names:
                        on_model(name, what, time.monotonic() - t0)
            if not self.alive():
                raise ServerError(
                    f"tritonserver exited with code {self.process.returncode} while starting: "
                    f"{log_tail(self.log)} (log: {self.log})"
                )
            if self.live(2.0):  # refused until the models in place have loaded
                return
            time.sleep(0.1)
        raise ServerError(f"tritonserver did not come up within the start deadline (--timeout) (log: {self.log})")

    def control(self, timeout: float = 3.0) -> Control:
        """Triton's control plane of this server, with the run's key (zeroserve/triton/control.py)."""
        return Control.of(self.state, timeout)

    def live(self, timeout: float = 1.0) -> bool:
        """True when `/v2/health/live` answers 200 within `timeout` (a plain GET: no inference, no statistics)."""
        return self.control(timeout).live()

    def index(self, timeout: float = 3.0) -> dict[str, dict[str, str]]:
        """The repository index: Triton name -> {"state", "reason", ...}; {} while nothing answers in time.

        A server that answers with an error (a refused key, a server error) raises its typed error.
        """
        with self.control(timeout) as control:
            try:
                return control.index()
            except (ServerUnreachable, ServerTimeout):
                return {}

    def wait_polled(self, deadline: float, on_model: OnModel | None = None, t0: float | None = None) -> dict[str, str]:
        """Wait until the poller has loaded or failed every model, reporting each as it settles.

        Returns:
            {name: reason} of the models that failed to load (the others are READY).
        Raises:
            ServerError: the server exited, or models still loading at `deadline` (named).
        """
        on_model = on_model or (lambda *a: None)
        t0 = time.monotonic() if t0 is None else t0
        settled: dict[str, str] = {}
        failed: dict[str, str] = {}
        models = [m for m in self.models if (self.repository / m.name).is_dir()]  # given-up ones were taken out
        watcher = LogWatcher(self.log)  # the poller retries a failed model at once: the log keeps its failure
        log_failed: dict[str, str] = {}
        while True:
            if not self.alive():
                raise ServerError(
                    f"tritonserver exited with code {self.process.returncode} while loading models: "
                    f"{log_tail(self.log)} (log: {self.log})"
                )
            ps.private_shm(self.state.shm_prefix)
            for name, what, reason in watcher.events():
                if what == "FAILED":
                    log_failed.setdefault(name, reason)
            index = self.index()
            for m in models:
                entry = index.get(m.name, {})
                if m.name in settled:
                    continue
                state = entry.get("state")
                if state == "READY":
                    settled[m.name] = "READY"
                    on_model(m.name, "READY", time.monotonic() - t0)
                elif (state == "UNAVAILABLE" and entry.get("reason")) or (index and m.name in log_failed):
                    settled[m.name] = "FAILED"
                    lines = log_lines_for(self.log, m.name)
                    reason = (entry.get("reason") or log_failed.get(m.name) or "failed").splitlines()[0][:300]
                    failed[m.name] = reason + (f"; server log: {' | '.join(lines)}" if lines else "")
                    on_model(m.name, "FAILED", time.monotonic() - t0)
            if len(settled) == len(models):
                return failed
            if time.monotonic() >= deadline:
                late = [m.name for m in models if m.name not in settled]
                for name in late:
                    on_model(name, "timed out", time.monotonic() - t0)
                raise ServerError(
                    f"{len(late)} of {len(models)} models were not READY within the start "
                    f"deadline (--timeout): {', '.join(late)}; give a longer --timeout or serve fewer "
                    f"models (log: {self.log})"
                )
            time.sleep(0.2)

    def restart(self, timeout: float = READY_TIMEOUT_S, on_model: OnModel | None = None) -> dict[str, str]:
        """Start the same tritonserver again (same ports, repository and prefix) and wait for its models.

        The previous process must be gone. The state file gets the new pid before the wait; the
        models are in place, so the endpoints answer once every model has settled.

        Returns:
            {name: reason} of the models that failed to load.
        """
        deadline = time.monotonic() + timeout
        if self.launch is None:
            raise ServerError("this server cannot be restarted (no launch command)")
        t0 = time.monotonic()
        self.process = self.launch()
        self.state = self.state.updated(pid=self.process.pid, create_time=st.create_time(self.process.pid))
        st.write_state(self.state)
        self.wait_live(deadline, on_model, t0)
        return self.wait_polled(deadline, on_model, t0)

    @property
    def repository(self) -> Path:
        """The runtime repository tritonserver serves."""
        return Path(self.state.runtime_dir or "") / "repository"

    def reload_model(self, name: str) -> tuple[int, str]:
        """Make the poller reload one model: its runtime config is rewritten with the next generation number.

        A changed config is a full reload (new instances and stubs; the old ones end once the
        new ones are READY), where a touched but identical config would keep the instances.
        Returns the new generation and the config text it replaced (`restore_config` puts it back).
        """
        path = self.repository / name / "config.pbtxt"
        previous = path.read_text()
        model = parse(previous)
        generation = int(model.parameters.get(GENERATION_PARAMETER, "0")) + 1
        text = render(replace(model, parameters={**model.parameters, GENERATION_PARAMETER: str(generation)}))
        self._write_config(name, text)
        return generation, previous

    def restore_config(self, name: str, text: str) -> None:
        """Put a runtime config back (the one a failed reload replaced)."""
        self._write_config(name, text)

    def _write_config(self, name: str, text: str) -> None:
        path = self.repository / name / "config.pbtxt"
        tmp = path.with_name(f".config.pbtxt.{secrets.token_hex(4)}")
        tmp.write_text(text)
        os.replace(tmp, path)

    def served_generation(self, name: str, timeout: float = 1.0) -> int | None:
        """The `ZS_GENERATION` of the config the server answers with for `name` (0 before any reload).

        None while the server does not answer in time or does not have the model (loading, failed).
        """
        with self.control(timeout) as control:
            try:
                params = control.config(name).get("parameters") or {}
            except (ServerUnreachable, ServerTimeout, RequestRejected):
                return None
        return int((params.get(GENERATION_PARAMETER) or {}).get("string_value") or 0)

    def verify(self, name: str) -> str | None:
        """None when the model's runtime artifact still has the sha256 it was served with, else why not."""
        from zeroserve.serve.runtime import verify_artifact

        entry = (self.state.artifacts or {}).get(name)
        if entry is None or not entry.sha256 or not entry.artifact:
            return None  # a state from before artifacts were recorded: nothing to compare with
        return verify_artifact(self.repository / name, entry.artifact, entry.sha256)

    def load_models(self, deadline: float, on_model: OnModel | None = None) -> None:
        """Load every runtime model (a few at a time), all before `deadline` (monotonic), or ServerError.

        Each load gets what is left of the one deadline. `on_model(name, state, seconds)` reports
        progress, state one of "loading", "READY", "FAILED", "timed out", "skipped".
        """
        on_model = on_model or (lambda *a: None)
        failures: dict[str, str] = {}
        late: list[str] = []
        lock = threading.Lock()

        def load(model: RuntimeModel) -> None:
            left = deadline - time.monotonic()
            if failures or left <= 0:
                if left <= 0:
                    with lock:
                        late.append(model.name)
                on_model(model.name, "skipped", 0.0)  # one failure ends the start; don't load the rest
                return
            t0 = time.monotonic()
            on_model(model.name, "loading", 0.0)
            control = self.control(left)
            try:
                control.load(model.name)
                on_model(model.name, "READY", time.monotonic() - t0)
            except ServerTimeout:
                with lock:
                    late.append(model.name)
                on_model(model.name, "timed out", time.monotonic() - t0)
            except ZeroserveError as exc:
                if time.monotonic() >= deadline:
                    with lock:
                        late.append(model.name)
                    on_model(model.name, "timed out", time.monotonic() - t0)
                    return
                with lock:
                    failures[model.name] = exc.said or str(exc)
                on_model(model.name, "FAILED", time.monotonic() - t0)
            finally:
                control.close()

        with ThreadPoolExecutor(max_workers=LOAD_WORKERS) as pool:
            list(pool.map(load, self.models))
        if failures:
            name, message = next(iter(failures.items()))
            lines = log_lines_for(self.log, name)
            detail = f"; server log: {' | '.join(lines)}" if lines else ""
            raise ServerError(f"model {name} failed to load: {message}{detail} (full log: {self.log})")
        if late:
            raise ServerError(
                f"{len(late)} of {len(self.models)} models were not READY within the start deadline "
                f"(--timeout): {', '.join(late)}; give a longer --timeout or serve fewer models "
                f"(log: {self.log})"
            )

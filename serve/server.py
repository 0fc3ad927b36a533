"""The embedded server: start tritonserver on a runtime repository and run it (models loaded, reloaded, restarted).

`start_server` builds the runtime copy (serve/runtime.py), starts the wheel's tritonserver
(zeroserve/triton/wheel.py) in its own session under umask 077 and writes the run's state file
(serve/state.py) as soon as the process exists, so `zeroserve stop` can always find it.

Model control: a served server runs `--model-control-mode=poll` with no open control API
(Triton refuses load and unload requests when polling is on). The models are in the runtime
repository before tritonserver starts: Triton 2.51 loads them before its HTTP and gRPC
endpoints listen, so a client or probe that reaches the server finds every model settled
(READY or failed), never a 404 for a model still to come; until then connections are refused.
Progress comes from the server's own log (`LogWatcher`: "loading", "successfully loaded",
"failed to load"). With `--strict-readiness`, one model that fails at start keeps
`/v2/health/ready` false, and the run is reported not ready. A model is reloaded alone by
rewriting its runtime config with the next `ZS_GENERATION` (`reload_model`), which is how the
supervisor (serve/supervisor.py) recovers a model whose stub died; the served config's
generation (`served_generation`) tells that the new config is the one answering.
`model_control="explicit"` (a private short-lived server such as a tuning run) loads each
model through the API. Stopping, and reaping after servers that died, is serve/stop.py's.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import secrets
import shutil
import subprocess
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from zeroserve.deploy.config import parse, render
from zeroserve.deploy.contents import canonical_models
from zeroserve.errors import InputError, ServerError, ZeroserveError
from zeroserve.serve import processes as ps
from zeroserve.serve import state as st
from zeroserve.serve.runtime import (
    NOOP_SUFFIX,
    RuntimeModel,
    build_runtime_repository,
    servable,
    write_runtime_model,
)
from zeroserve.serve.stop import STOP_TIMEOUT_S, reap_dead, stop_server
from zeroserve.triton import restricted
from zeroserve.triton.control import Control
from zeroserve.triton.errors import RequestRejected, ServerTimeout, ServerUnreachable
from zeroserve.triton.ports import DEFAULT_HOST, DEFAULT_PORTS, bind_addresses, check_ports, hostport
from zeroserve.triton.wheel import backend_directory, find_tritonserver, gpu_available, server_env

NOT_SERVED = "not served"  # on_model state of a folder the engine cannot serve (reason in state["unservable"])
READY_TIMEOUT_S = 300.0
FAILED_START_STOP_S = 5.0  # a model still loading holds tritonserver's own shutdown; don't wait on it long
LOAD_WORKERS = 4
POLL_SECS = 1  # how often Triton's poller looks at the runtime repository: a reload starts within this
MODEL_CONTROLS = ("poll", "explicit")
GENERATION_PARAMETER = "ZS_GENERATION"  # bumped in a runtime config to make the poller reload that model

OnModel = Callable[[str, str, float], None]


def _now() -> str:
    return dt.datetime.now().isoformat(timespec="seconds")


# ---------------------------------------------------------------- the server's own log


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


@dataclass
class Server:
    """A tritonserver this process started; `state` is what its state file holds."""

    state: dict[str, Any]
    process: subprocess.Popen
    models: list[RuntimeModel] = field(default_factory=list)
    launch: Callable[[], subprocess.Popen] | None = field(default=None, repr=False)  # starts the same command again
    rebuild: Callable[[str], RuntimeModel] | None = field(default=None, repr=False)  # a runtime folder afresh

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def http_url(self) -> str:
        return hostport(self.state["host"], self.state["http_port"])

    @property
    def grpc_url(self) -> str:
        return hostport(self.state["host"], self.state["grpc_port"])

    @property
    def log(self) -> Path:
        return Path(self.state["log"])

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
            ps.private_shm(self.state.get("shm_prefix"))
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
        self.state = {**self.state, "pid": self.process.pid, "create_time": st.create_time(self.process.pid)}
        st.write_state(self.state)
        self.wait_live(deadline, on_model, t0)
        return self.wait_polled(deadline, on_model, t0)

    @property
    def repository(self) -> Path:
        """The runtime repository tritonserver serves."""
        return Path(self.state["runtime_dir"]) / "repository"

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

        entry = (self.state.get("artifacts") or {}).get(name)
        if not entry or not entry.get("sha256"):
            return None  # a state from before artifacts were recorded: nothing to compare with
        return verify_artifact(self.repository / name, entry["artifact"], entry["sha256"])

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


def _parent_death_signal(detach: bool) -> list[str]:
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


def _memory_limit_prefix(size: int | None) -> list[str]:
    """`prlimit --data=N:N --` in front of the command: the limit is set before tritonserver starts."""
    if size is None:
        return []
    prlimit = shutil.which("prlimit")
    return [prlimit, f"--data={size}:{size}", "--"] if prlimit else []


def _apply_memory_limit(pid: int, size: int | None) -> None:
    """Without prlimit: set RLIMIT_DATA on the started process (its stubs, forked later, inherit it)."""
    if size is None or shutil.which("prlimit"):
        return
    import psutil

    try:
        psutil.Process(pid).rlimit(psutil.RLIMIT_DATA, (size, size))
    except (psutil.Error, OSError, ValueError):
        pass


def _private_dir(path: Path) -> Path:
    """Create `path` (and parents) readable by this user only."""
    path.mkdir(parents=True, exist_ok=True)
    os.chmod(path, 0o700)
    return path


def _precompile(repository: Path, name: str = "*") -> None:
    """Write each model.py's bytecode now, so the stub does not write it into a folder the poller watches.

    A `__pycache__` appearing inside a model's folder after its load is a modification to
    Triton's poller, which would load every model a second time.
    """
    import py_compile

    for source in repository.glob(f"{name}/*/model.py"):
        py_compile.compile(str(source), doraise=True)


def start_server(
    repository: Path,
    models: Iterable[str] | None = None,
    host: str = DEFAULT_HOST,
    http_port: int = DEFAULT_PORTS["http"],
    grpc_port: int = DEFAULT_PORTS["grpc"],
    metrics_port: int = DEFAULT_PORTS["metrics"],
    ort_threads: int | None = None,
    detach: bool = False,
    timeout: float = READY_TIMEOUT_S,
    queue_delay_us: int | None = None,
    noop_of: Iterable[str] = (),
    on_model: OnModel | None = None,
    model_control: str = "poll",
    run_id: str | None = None,
    supervisor: dict[str, Any] | None = None,
    memory_limit: str | None = None,
    allow_client_shm: bool = False,
) -> Server:
    """Build the runtime repository, start tritonserver and return once every model has loaded or failed.

    A failure of the server itself stops what was started, marks the run dead (keeping its log)
    and raises ServerError (exit 3) or InputError (exit 2) in one line. With `poll`, a model
    that fails to load is reported (`on_model(name, "FAILED", s)` and the state's `failed`)
    while the others serve; when every model fails, the start fails.

    Args:
        models: registry or Triton names; all models of the repository when empty.
        ort_threads: intra-op threads per instance; None: each config's own setting, else 1.
        detach: leave the server running when this process exits (no parent-death signal).
        timeout: one deadline, in seconds, for the server to come up and every model to load.
        queue_delay_us: overrides every model's dynamic-batching queue delay (tests, benchmark).
        noop_of: Triton names that also get a zeros-answering `<name>_noop` twin (benchmark floor).
        model_control: "poll" (the served server: no load/unload API, models reloaded through the
            runtime copy) or "explicit" (a private short-lived server that loads through the API,
            restricted to the run's key: zeroserve's own calls send it).
        run_id: the run's id when the caller chose it (the detached supervisor's parent).
        supervisor: {"pid", "create_time"} of the process that supervises this server, recorded
            so that `stop` ends it first.
        memory_limit: `--memory-limit`: "auto" (None), "off" or a size such as "3G" (`memory_ceiling`): a
            request that declares a huge tensor then ends this server (restarted by its supervisor)
            rather than exhausting the host.
        allow_client_shm: let zeroserve's own client use Triton's shared-memory API (`client perf
            --shared-memory system` sends the key). Without it the key is held back from clients.
            shared-memory, logging and trace are restricted to the run's key either way
            (zeroserve/triton/restricted.py), and with `explicit` model-repository too.
    """
    if model_control not in MODEL_CONTROLS:
        raise InputError(f"model_control must be one of {', '.join(MODEL_CONTROLS)}, got {model_control!r}")
    deadline = time.monotonic() + timeout
    names = canonical_models(repository, models)
    check_ports(host, {"http": http_port, "grpc": grpc_port, "metrics": metrics_port}, st.port_holder)
    install = find_tritonserver()
    reap_dead()
    backends = backend_directory(install, st.cache_dir())
    run_id = run_id or st.new_run_id()
    st.private_dirs()
    run_dir = _private_dir(st.runs_dir() / run_id)
    served = run_dir / "repository"
    # The models are in place before the server starts (poll: Triton loads them before it listens;
    # explicit: loaded through the API once it is up).
    unservable: dict[str, str] = {}  # folders the engine cannot serve: reported by name, the others serve

    def skip(name: str, reason: str) -> None:
        unservable[name] = reason
        if on_model is not None:
            on_model(name, NOT_SERVED, 0.0)

    gpu = gpu_available()
    ceiling, ceiling_note = memory_ceiling(memory_limit, gpu)
    noop_of = list(noop_of)
    built = build_runtime_repository(
        repository, names, served, ort_threads, gpu=gpu, queue_delay_us=queue_delay_us, noop_of=noop_of, on_skip=skip
    )
    _precompile(served)
    shm_prefix = f"zs{secrets.token_hex(4)}_"
    log = run_dir / "server.log"
    control = (
        [
            "--model-control-mode=poll",
            f"--repository-poll-secs={POLL_SECS}",
            "--exit-on-error=false",
        ]  # a model that cannot load is reported; the others serve
        if model_control == "poll"
        else ["--model-control-mode=explicit"]
    )
    address = bind_addresses(host)
    api_key, apis = restricted.new_key(), restricted.restricted_apis(model_control)
    args = [
        str(install.binary),
        f"--model-repository={served}",
        f"--backend-directory={backends}",
        f"--backend-config=python,shm-region-prefix-name={shm_prefix}",
        f"--http-address={address['http']}",
        f"--http-port={http_port}",
        f"--grpc-address={address['grpc']}",
        f"--grpc-port={grpc_port}",
        f"--metrics-address={address['metrics']}",
        f"--metrics-port={metrics_port}",
        "--allow-gpu-metrics=false",
        *control,
        "--disable-auto-complete-config",
        "--strict-readiness=true",
        "--exit-timeout-secs=5",  # open keep-alive client connections hold a stop this long
        *restricted.server_args(api_key, apis),
    ]
    # How this server was started, for a reader; the key stays in the 0600 state file only.
    (run_dir / "command.txt").write_text(" ".join(restricted.redact(args, api_key)) + "\n")
    env = server_env(install)

    def launch() -> subprocess.Popen:
        # O_APPEND: the supervisor can cut the log (serve/supervisor.py) and the server's next line starts it again.
        fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_APPEND, 0o600)
        with open(fd, "wb") as log_fh:
            try:
                # umask 077: the server's log, the stubs' shared-memory regions and anything they write are private.
                proc = subprocess.Popen(
                    [*_memory_limit_prefix(ceiling), *_parent_death_signal(detach), *args],
                    stdin=subprocess.DEVNULL,
                    stdout=log_fh,
                    stderr=subprocess.STDOUT,
                    env=env,
                    cwd=run_dir,
                    start_new_session=True,
                    umask=0o077,
                )
            except OSError as exc:
                raise ServerError(f"could not run {install.binary}: {exc.strerror or exc}") from None
        _apply_memory_limit(proc.pid, ceiling)
        return proc

    launched = time.monotonic()
    process = launch()
    state = {
        "run_id": run_id,
        "pid": process.pid,
        "create_time": st.create_time(process.pid),
        "host": host,
        "http_port": http_port,
        "grpc_port": grpc_port,
        "metrics_port": metrics_port,
        "runtime_dir": str(run_dir),
        "log": str(log),
        "models": [m.name for m in built],
        "started": _now(),
        "status": st.STARTING,
        "shm_prefix": shm_prefix,
        "repository": str(Path(repository).resolve()),
        "engine": "embedded",
        "model_control": model_control,
        "supervisor": supervisor,
        "api_key": api_key,
        "restricted_apis": list(apis),
        "allow_client_shm": bool(allow_client_shm),
        "restarts": 0,
        "crashes": [],
        "recoveries": [],
        "recovering": {},
        "failed": {},
        "unservable": unservable,
        "artifacts": {m.name: {"artifact": m.artifact, "sha256": m.sha256} for m in built},
        "memory_limit": {"bytes": ceiling, "note": ceiling_note},
    }
    st.write_state(state)

    def rebuild(name: str) -> RuntimeModel:
        """Write one runtime folder afresh from the canonical repository (verified against the manifest)."""
        source = (
            name.removesuffix(NOOP_SUFFIX)
            if name.endswith(NOOP_SUFFIX) and name.removesuffix(NOOP_SUFFIX) in noop_of
            else name
        )
        src = Path(repository) / source
        model = write_runtime_model(
            src,
            servable(src)[0],
            served,
            name=name,
            noop=source != name,
            ort_threads=ort_threads,
            gpu=gpu,
            queue_delay_us=queue_delay_us,
        )
        _precompile(served, name)
        return model

    server = Server(state, process, built, launch, rebuild)
    report = on_model or (lambda *a: None)

    def progress(name: str, what: str, seconds: float) -> None:
        """Report, and record in the state file (a detached start's CLI shows progress from it), once per change."""
        if (server.state.get("progress") or {}).get(name, [None])[0] == what:
            return  # the log and the index both said it
        server.state = {
            **server.state,
            "progress": {**server.state.get("progress", {}), name: [what, round(seconds, 1)]},
        }
        st.write_state(server.state)
        report(name, what, seconds)

    try:
        server.wait_live(deadline, progress if model_control == "poll" else None, launched)
        if model_control == "poll":
            failed = server.wait_polled(deadline, progress, launched)
            if failed and len(failed) == len(built):
                name, reason = next(iter(failed.items()))
                raise ServerError(f"no model could be loaded; model {name} failed to load: {reason} (full log: {log})")
        else:
            server.load_models(deadline, progress)
            failed = {}
    except KeyboardInterrupt:  # Ctrl-C, or a stop (SIGTERM) during the start: like a stop, nothing is kept
        server.stop(FAILED_START_STOP_S)
        raise
    except BaseException as exc:
        server.stop(FAILED_START_STOP_S, keep_run=True, reason=f"failed to start: {exc}")
        raise
    server.state = {**server.state, "status": st.RUNNING, "failed": failed}
    st.write_state(server.state)
    return server

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
import secrets
import subprocess
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from zeroserve.deploy.contents import canonical_models
from zeroserve.errors import InputError, ServerError
from zeroserve.records.state import ServerState
from zeroserve.serve import state as st
from zeroserve.serve.handle import READY_TIMEOUT_S, OnModel, Server
from zeroserve.serve.limits import apply_memory_limit, memory_ceiling, memory_limit_prefix, parent_death_signal
from zeroserve.serve.metrics import DEFAULT_INTERVAL_MS
from zeroserve.serve.runtime import (
    NOOP_SUFFIX,
    RuntimeModel,
    build_runtime_repository,
    servable,
    write_runtime_model,
)
from zeroserve.serve.stop import reap_dead
from zeroserve.triton import restricted
from zeroserve.triton.ports import DEFAULT_HOST, DEFAULT_PORTS, bind_addresses, check_ports
from zeroserve.triton.wheel import backend_directory, find_tritonserver, gpu_available, server_env

NOT_SERVED = "not served"  # on_model state of a folder the engine cannot serve (reason in state["unservable"])
FAILED_START_STOP_S = 5.0  # a model still loading holds tritonserver's own shutdown; don't wait on it long
POLL_SECS = 1  # how often Triton's poller looks at the runtime repository: a reload starts within this
MODEL_CONTROLS = ("poll", "explicit")


def _now() -> str:
    return dt.datetime.now().isoformat(timespec="seconds")


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


def _metrics_args(gpu: bool, interval_ms: int) -> list[str]:
    """The metrics endpoint's options: GPU gauges where there is a GPU, gauges refreshed every `interval_ms`."""
    if interval_ms < 1:
        raise InputError(f"--metrics-interval-ms must be at least 1, got {interval_ms}")
    return [f"--allow-gpu-metrics={'true' if gpu else 'false'}", f"--metrics-interval-ms={interval_ms}"]


def _tritonserver_args(
    binary: Path,
    served: Path,
    backends: Path,
    shm_prefix: str,
    host: str,
    ports: tuple[int, int, int],
    model_control: str,
) -> list[str]:
    """tritonserver's command line (the restricted-API options aside)."""
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
    http_port, grpc_port, metrics_port = ports
    return [
        str(binary),
        f"--model-repository={served}",
        f"--backend-directory={backends}",
        f"--backend-config=python,shm-region-prefix-name={shm_prefix}",
        f"--http-address={address['http']}",
        f"--http-port={http_port}",
        f"--grpc-address={address['grpc']}",
        f"--grpc-port={grpc_port}",
        f"--metrics-address={address['metrics']}",
        f"--metrics-port={metrics_port}",
        *control,
        "--disable-auto-complete-config",
        "--strict-readiness=true",
        "--exit-timeout-secs=5",  # open keep-alive client connections hold a stop this long
    ]


def _launcher(
    args: list[str], env: dict[str, str], run_dir: Path, log: Path, ceiling: int | None, detach: bool
) -> Callable[[], subprocess.Popen]:
    """What starts tritonserver, now and at each restart: its own session, umask 077, the log appended."""

    def launch() -> subprocess.Popen:
        # O_APPEND: the supervisor can cut the log (serve/supervisor.py) and the server's next line starts it again.
        fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_APPEND, 0o600)
        with open(fd, "wb") as log_fh:
            try:
                # umask 077: the server's log, the stubs' shared-memory regions and anything they write are private.
                proc = subprocess.Popen(
                    [*memory_limit_prefix(ceiling), *parent_death_signal(detach), *args],
                    stdin=subprocess.DEVNULL,
                    stdout=log_fh,
                    stderr=subprocess.STDOUT,
                    env=env,
                    cwd=run_dir,
                    start_new_session=True,
                    umask=0o077,
                )
            except OSError as exc:
                raise ServerError(f"could not run {args[0]}: {exc.strerror or exc}") from None
        apply_memory_limit(proc.pid, ceiling)
        return proc

    return launch


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
    metrics_interval_ms: int = DEFAULT_INTERVAL_MS,
) -> Server:
    """Build the runtime repository, start tritonserver and return once every model has loaded or failed.

    The models are in place before the server starts (poll: Triton loads them before it listens;
    explicit: loaded through the API once it is up).

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
        metrics_interval_ms: how often Triton refreshes its metrics gauges (`--metrics-interval-ms`; its own
            default is 2000): short enough that a perf window of 1 s sees them move.
    """
    if model_control not in MODEL_CONTROLS:
        raise InputError(f"model_control must be one of {', '.join(MODEL_CONTROLS)}, got {model_control!r}")
    deadline = time.monotonic() + timeout
    names = canonical_models(repository, models)
    ports = (http_port, grpc_port, metrics_port)
    check_ports(host, dict(zip(("http", "grpc", "metrics"), ports)), st.port_holder)
    install = find_tritonserver()
    reap_dead()
    backends = backend_directory(install, st.cache_dir())
    run_id = run_id or st.new_run_id()
    st.private_dirs()
    run_dir = _private_dir(st.runs_dir() / run_id)
    served = run_dir / "repository"
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
    api_key, apis = restricted.new_key(), restricted.restricted_apis(model_control)
    args = _tritonserver_args(install.binary, served, backends, shm_prefix, host, ports, model_control)
    args += [*_metrics_args(gpu, metrics_interval_ms), *restricted.server_args(api_key, apis)]
    # How this server was started, for a reader; the key stays in the 0600 state file only.
    (run_dir / "command.txt").write_text(" ".join(restricted.redact(args, api_key)) + "\n")
    launch = _launcher(args, server_env(install), run_dir, log, ceiling, detach)
    launched = time.monotonic()
    process = launch()
    fields = {
        "run_id": run_id,
        "pid": process.pid,
        "create_time": st.create_time(process.pid),
        **dict(zip(("host", "http_port", "grpc_port", "metrics_port"), (host, *ports))),
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
        "metrics_interval_ms": metrics_interval_ms,
        **{"restarts": 0, "crashes": [], "recoveries": [], "recovering": {}, "failed": {}},  # the supervisor's
        "unservable": unservable,
        "artifacts": {m.name: {"artifact": m.artifact, "sha256": m.sha256} for m in built},
        "memory_limit": {"bytes": ceiling, "note": ceiling_note},
    }
    state = ServerState.model_validate(fields)
    st.write_state(state)

    rebuild = _rebuilder(
        Path(repository), served, noop_of, ort_threads=ort_threads, gpu=gpu, queue_delay_us=queue_delay_us
    )
    server = Server(state, process, built, launch, rebuild)
    progress = server.progress_recorder(on_model)
    try:
        failed = _wait_models(server, model_control, deadline, progress, launched)
    except KeyboardInterrupt:  # Ctrl-C, or a stop (SIGTERM) during the start: like a stop, nothing is kept
        server.stop(FAILED_START_STOP_S)
        raise
    except BaseException as exc:
        server.stop(FAILED_START_STOP_S, keep_run=True, reason=f"failed to start: {exc}")
        raise
    server.state = server.state.updated(status=st.RUNNING, failed=failed)
    st.write_state(server.state)
    return server


def _wait_models(server: Server, model_control: str, deadline: float, progress: OnModel, t0: float) -> dict[str, str]:
    """Wait until the server is up and every model settled; {name: reason} of those that failed to load."""
    server.wait_live(deadline, progress if model_control == "poll" else None, t0)
    if model_control != "poll":
        server.load_models(deadline, progress)
        return {}
    failed = server.wait_polled(deadline, progress, t0)
    if failed and len(failed) == len(server.models):
        name, reason = next(iter(failed.items()))
        raise ServerError(f"no model could be loaded; model {name} failed to load: {reason} (full log: {server.log})")
    return failed


def _rebuilder(repository: Path, served: Path, noop_of: list[str], **options: Any) -> Callable[[str], RuntimeModel]:
    """What writes one runtime folder afresh from the canonical repository (verified against the manifest)."""

    def rebuild(name: str) -> RuntimeModel:
        base = name.removesuffix(NOOP_SUFFIX)
        source = base if name.endswith(NOOP_SUFFIX) and base in noop_of else name
        src = repository / source
        model = write_runtime_model(src, servable(src)[0], served, name=name, noop=source != name, **options)
        _precompile(served, name)
        return model

    return rebuild

"""The embedded engine: the real `tritonserver` from the nvidia-pytriton wheel, on a runtime copy of the repository.

That build of Triton carries only the Python backend, so each canonical model (backend
`onnxruntime` or `pytorch`) becomes a Python-backend model in a runtime folder under the
cache (never inside the canonical repository): same name, tensors, max_batch_size,
dynamic batching, instance count and reshape, running its artifact through zeroserve's
shared `model.py` (serve/triton_model.py). The server runs in its own session, so a stop
can find and end it and every stub it spawned, and clean the shared memory they used.
"""

from __future__ import annotations

import datetime as dt
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import threading
import time
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any, Callable, Iterable

from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2 as mc

from zeroserve import formats as F
from zeroserve import registry
from zeroserve.errors import InputError, ServerError
from zeroserve.serve import state as st

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORTS = {"http": 8000, "grpc": 8001, "metrics": 8002}
STUB_NAME = "triton_python_backend_stub"
MODEL_PY = Path(__file__).with_name("triton_model.py")
READY_TIMEOUT_S = 300.0
STOP_TIMEOUT_S = 20.0
PRUNE_GRACE_S = 120.0  # a run folder younger than this may belong to a server still starting
LOAD_WORKERS = 4


# ---------------------------------------------------------------- the binary and its environment


@dataclass(frozen=True)
class TritonInstall:
    """Where the nvidia-pytriton wheel keeps tritonserver, its Python backend and the stubs."""

    binary: Path
    python_backend: Path
    stub: Path
    libs: Path
    version: str


def find_tritonserver(root: Path | None = None) -> TritonInstall:
    """The tritonserver install inside the `pytriton` package (or `root`), or ServerError saying what is missing."""
    if root is None:
        try:
            import pytriton
        except ImportError:
            raise ServerError("the nvidia-pytriton package is not installed, so there is no tritonserver binary; "
                              "install zeroserve's dependencies (make venv)") from None
        root = Path(pytriton.__file__).resolve().parent
    py = f"{sys.version_info[0]}.{sys.version_info[1]}"
    install = TritonInstall(
        binary=root / "tritonserver" / "bin" / "tritonserver",
        python_backend=root / "tritonserver" / "backends" / "python",
        stub=root / "tritonserver" / "python_backend_stubs" / py / STUB_NAME,
        libs=root.parent / "nvidia_pytriton.libs",
        version=_pytriton_version(),
    )
    for what, path in (("tritonserver binary", install.binary), ("Python backend", install.python_backend),
                       (f"Python {py} backend stub", install.stub)):
        if not path.exists():
            raise ServerError(f"the {what} is missing from the nvidia-pytriton wheel (expected {path}); "
                              "reinstall nvidia-pytriton")
    return install


def _pytriton_version() -> str:
    try:
        return metadata.version("nvidia-pytriton")
    except metadata.PackageNotFoundError:
        return "unknown"


def backend_directory(install: TritonInstall) -> Path:
    """A backends folder whose python backend has this interpreter's stub beside it (as PyTriton lays it out)."""
    target = st.cache_dir() / "tritonserver" / f"{install.version}-py{sys.version_info[0]}.{sys.version_info[1]}"
    python = target / "backends" / "python"
    if not (python / STUB_NAME).is_file():
        tmp = target.with_name(f".{target.name}.{secrets.token_hex(4)}")
        (tmp / "backends" / "python").mkdir(parents=True)
        for f in ("libtriton_python.so", "triton_python_backend_utils.py"):
            shutil.copy2(install.python_backend / f, tmp / "backends" / "python" / f)
        shutil.copy2(install.stub, tmp / "backends" / "python" / STUB_NAME)
        shutil.rmtree(target, ignore_errors=True)
        try:
            os.replace(tmp, target)
        except OSError:
            shutil.rmtree(tmp, ignore_errors=True)  # another server prepared it at the same moment
    return target / "backends"


def server_env(install: TritonInstall) -> dict[str, str]:
    """The environment tritonserver and its stubs need here (FACTS.md)."""
    env = os.environ.copy()
    # The stub links libpython3.11: this interpreter's library must win over the system's.
    lib_dirs = [sysconfig.get_config_var("LIBDIR"), env.get("LD_LIBRARY_PATH", ""), str(install.libs)]
    env["LD_LIBRARY_PATH"] = ":".join(d for d in lib_dirs if d)
    # The stub imports model.py's libraries from the environment whose `python` is first on PATH.
    env["PATH"] = f"{Path(sys.prefix) / 'bin'}:{env.get('PATH', '')}"
    return env


def gpu_available() -> bool:
    """True when an NVIDIA GPU is visible (driver present, at least one device)."""
    gpus = Path("/proc/driver/nvidia/gpus")
    return gpus.is_dir() and any(gpus.iterdir()) and os.environ.get("CUDA_VISIBLE_DEVICES", "x") not in ("", "-1")


# ---------------------------------------------------------------- ports


def free_port(host: str = DEFAULT_HOST) -> int:
    """A port the OS says is free now (bind to port 0)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def check_ports(host: str, ports: dict[str, int]) -> None:
    """Raise ServerError naming the first port that cannot be bound on `host`."""
    if len(set(ports.values())) < len(ports):
        raise InputError(f"the http, grpc and metrics ports must differ; got {ports}")
    for what, port in ports.items():
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # a TIME_WAIT leftover is not "in use"
            try:
                s.bind((host, port))
            except OSError as exc:
                owners = [x for x in st.list_servers()
                          if port in (x["http_port"], x["grpc_port"], x["metrics_port"]) and x["host"] == host]
                hint = f" by the zeroserve server with pid {owners[0]['pid']}" if owners else ""
                raise ServerError(f"{what} port {port} on {host} is in use{hint} ({exc.strerror}); "
                                  f"choose another with --{what}-port or stop what holds it") from None


# ---------------------------------------------------------------- the runtime repository


@dataclass
class RuntimeModel:
    """One model of the runtime repository: its Triton name, format and where it came from."""

    name: str
    fmt: str
    source: Path
    instances: int
    kind: str


def _read_config(path: Path) -> mc.ModelConfig:
    try:
        return text_format.Parse(path.read_text(), mc.ModelConfig())
    except text_format.ParseError as exc:
        raise InputError(f"{path} is not a valid Triton model config ({exc}); run `zeroserve deploy` again") from None


def canonical_models(repository: Path, models: Iterable[str] | None = None) -> list[str]:
    """Triton names to serve: all models of the repository, or those named (registry or Triton names)."""
    repository = Path(repository)
    if not repository.is_dir():
        raise InputError(f"model repository {repository} does not exist; run `zeroserve deploy all` first")
    present = sorted(p.parent.name for p in repository.glob("*/config.pbtxt"))
    if not present:
        raise InputError(f"model repository {repository} has no models; run `zeroserve deploy all` first")
    if not models:
        return present
    out: list[str] = []
    for item in models:
        for name in filter(None, item.split(",")):
            if name in present:
                found = [name]
            elif name in registry.REGISTRY:
                found = [n for n in present if n in {F.get(f).triton_name(name) for f in F.keys()}]
                if not found:
                    raise InputError(f"{name} is not deployed in {repository}; run `zeroserve deploy {name}`")
            else:
                raise InputError(f"unknown model {name!r}: neither a registry name nor a model in {repository} "
                                 f"(deployed: {', '.join(present)})")
            out.extend(n for n in found if n not in out)
    return out


def _latest_version(model_dir: Path) -> Path:
    versions = sorted((p for p in model_dir.iterdir() if p.is_dir() and p.name.isdigit()), key=lambda p: int(p.name))
    if not versions:
        raise InputError(f"{model_dir} has no version folder (1/); run `zeroserve deploy` again")
    return versions[-1]


def _link_or_copy(src: Path, dst: Path) -> None:
    # A hard link keeps this server's bytes even if deploy later renames a new model into place.
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def runtime_config(canonical: mc.ModelConfig, fmt: str, artifact: str, ort_threads: int, gpu: bool,
                   queue_delay_us: int | None = None) -> mc.ModelConfig:
    """The Python-backend config for one canonical config: same tensors, batching and instances."""
    cfg = mc.ModelConfig()
    cfg.CopyFrom(canonical)
    cfg.backend = "python"
    cfg.ClearField("platform")
    cfg.ClearField("default_model_filename")
    cfg.ClearField("cc_model_filenames")
    # Execution accelerators (TensorRT, OpenVINO) and backend parameters belong to the native backends.
    cfg.ClearField("optimization")
    cfg.ClearField("parameters")
    for group in cfg.instance_group:
        if group.kind in (mc.ModelInstanceGroup.KIND_GPU, mc.ModelInstanceGroup.KIND_AUTO) and not gpu:
            group.kind = mc.ModelInstanceGroup.KIND_CPU
            group.ClearField("gpus")
    if not cfg.instance_group:
        cfg.instance_group.add(kind=mc.ModelInstanceGroup.KIND_GPU if gpu else mc.ModelInstanceGroup.KIND_CPU,
                               count=1)
    if queue_delay_us is not None:
        cfg.dynamic_batching.max_queue_delay_microseconds = queue_delay_us
    for key, value in (("ZS_FORMAT", fmt), ("ZS_ARTIFACT", artifact), ("ZS_THREADS", str(ort_threads))):
        cfg.parameters[key].string_value = value
    return cfg


def build_runtime_repository(repository: Path, names: list[str], target: Path, ort_threads: int = 1,
                             gpu: bool | None = None, queue_delay_us: int | None = None,
                             noop_of: Iterable[str] = ()) -> list[RuntimeModel]:
    """Write the runtime copy of `names` into `target`; the canonical repository is only read.

    Args:
        noop_of: Triton names that also get a `<name>_noop` twin with the same tensors that
            answers zeros: the serving path's own floor (benchmark).
    """
    gpu = gpu_available() if gpu is None else gpu
    if ort_threads < 1:
        raise InputError(f"--ort-threads must be at least 1, got {ort_threads}")
    target.mkdir(parents=True, exist_ok=True)
    built: list[RuntimeModel] = []
    downgraded: list[str] = []
    for name in [*names, *(f"{n}_noop" for n in noop_of)]:
        source_name = name[: -len("_noop")] if name.endswith("_noop") and name not in names else name
        src = Path(repository) / source_name
        canonical = _read_config(src / "config.pbtxt")
        backend = canonical.backend or canonical.platform
        served_by = F.for_backend(backend)
        if served_by is None:
            raise InputError(f"{src}: backend {backend!r} is not one zeroserve serves ({', '.join(F.BACKENDS)})")
        fmt = served_by.runtime
        version = _latest_version(src)
        artifact = canonical.default_model_filename or served_by.default_file
        if not (version / artifact).is_file():
            raise InputError(f"{src}: artifact {version / artifact} is missing; run `zeroserve deploy` again")
        serve_fmt = "noop" if name != source_name else fmt
        cfg = runtime_config(canonical, serve_fmt, artifact, ort_threads, gpu, queue_delay_us)
        cfg.name = name
        if any(g.kind == mc.ModelInstanceGroup.KIND_GPU for g in canonical.instance_group) and not gpu:
            downgraded.append(name)
        dst = target / name
        shutil.rmtree(dst, ignore_errors=True)
        (dst / version.name).mkdir(parents=True)
        _link_or_copy(version / artifact, dst / version.name / artifact)
        shutil.copy2(MODEL_PY, dst / version.name / "model.py")
        if (src / "warmup").is_dir():
            shutil.copytree(src / "warmup", dst / "warmup")
        (dst / "config.pbtxt").write_text(text_format.MessageToString(cfg))
        built.append(RuntimeModel(name, serve_fmt, src, sum(g.count or 1 for g in cfg.instance_group),
                                  mc.ModelInstanceGroup.Kind.Name(cfg.instance_group[0].kind)))
    if downgraded:
        warnings.warn(f"no GPU here: {len(downgraded)} model(s) configured KIND_GPU run as KIND_CPU with the "
                      "CPU execution provider in the embedded engine (the canonical repository is unchanged)")
    return built


# ---------------------------------------------------------------- processes and shared memory


def _proc_cmdline(pid: int) -> list[str]:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
    except OSError:
        return []


def _pgid(pid: int) -> int | None:
    try:
        return os.getpgid(pid)
    except OSError:
        return None


def server_processes(pid: int, shm_prefix: str | None) -> list[int]:
    """The server's stubs (they carry its unique shm prefix in their argv) and, while the server
    itself runs, any other member of its process group.

    A dead server's pid may have been reused, so its group id then proves nothing.
    """
    group = st.pid_alive(pid)
    out = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == pid:
            continue
        p = int(entry.name)
        cmd = _proc_cmdline(p)
        if not cmd or not st.pid_alive(p, binary=None):
            continue
        is_stub = bool(shm_prefix) and Path(cmd[0]).name == STUB_NAME and any(shm_prefix in a for a in cmd)
        if is_stub or (group and _pgid(p) == pid):
            out.append(p)
    return out


def shm_segments(shm_prefix: str) -> list[Path]:
    """The /dev/shm segments the Python backend created under this server's prefix."""
    if not shm_prefix:
        return []
    return sorted(Path("/dev/shm").glob(f"{shm_prefix}*"))


def _wait_gone(pids: list[int], timeout: float, process: subprocess.Popen | None = None) -> list[int]:
    deadline = time.monotonic() + timeout
    while True:
        if process is not None:
            process.poll()  # reap our own child so it does not linger as a zombie
        alive = [p for p in pids if st.pid_alive(p, binary=None)]
        if not alive or time.monotonic() >= deadline:
            return alive
        time.sleep(0.05)


def stop_server(state: dict[str, Any], process: subprocess.Popen | None = None,
                timeout: float = STOP_TIMEOUT_S, remove_runtime: bool = True) -> dict[str, Any]:
    """Stop one server cleanly: SIGINT, then SIGKILL of what remains; stubs, shm and state file cleaned.

    Args:
        remove_runtime: also delete its runtime folder and log (kept when a start failed, for the log).

    Returns:
        What was done: {"pid", "graceful", "killed": [pids], "shm_removed": [names]}.
    """
    pid = int(state["pid"])
    prefix = state.get("shm_prefix", "")
    others = server_processes(pid, prefix)
    graceful = True
    if st.pid_alive(pid):  # only a live tritonserver under that pid is signalled, never a reused pid
        _unload_all(state, timeout)
        try:
            os.kill(pid, signal.SIGINT)  # Triton drains connections and in-flight requests, then exits
        except ProcessLookupError:
            pass
        if _wait_gone([pid], timeout, process) and st.pid_alive(pid):
            graceful = False
            try:
                os.killpg(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
            _wait_gone([pid], 5.0, process)
    # Stubs whose server is gone exit on their own within a moment; what remains is killed.
    _wait_gone(others, 2.0 if graceful else 0.0)
    if process is not None:
        try:
            process.wait(timeout=5.0)
        except subprocess.TimeoutExpired:
            pass
    killed = []
    for p in {*others, *server_processes(pid, prefix)}:
        if st.pid_alive(p, binary=None):
            try:
                os.kill(p, signal.SIGKILL)
                killed.append(p)
            except ProcessLookupError:
                pass
    _wait_gone(killed, 5.0)
    removed = []
    for seg in shm_segments(prefix):
        try:
            seg.unlink()
            removed.append(seg.name)
        except FileNotFoundError:
            pass
    st.remove_state(pid)
    if remove_runtime and state.get("runtime_dir"):
        shutil.rmtree(state["runtime_dir"], ignore_errors=True)
    return {"pid": pid, "graceful": graceful, "killed": killed, "shm_removed": removed}


def _unload_all(state: dict[str, Any], timeout: float) -> None:
    """Unload every model through the API so each stub runs finalize() and frees its shared memory itself."""
    import tritonclient.http as httpclient

    client = httpclient.InferenceServerClient(f"{state['host']}:{state['http_port']}", connection_timeout=2.0,
                                              network_timeout=timeout)
    try:
        for model in client.get_model_repository_index():
            if model.get("state") == "READY":
                client.unload_model(model["name"])
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and any(m.get("state") in ("READY", "UNLOADING")
                                                  for m in client.get_model_repository_index()):
            time.sleep(0.05)
    except Exception:  # noqa: BLE001 - a server that does not answer is stopped by signal alone
        pass
    finally:
        client.close()


def reap_stale() -> list[dict[str, Any]]:
    """Clean after servers that died without a stop (leftover stubs, shared memory, state files)."""
    return [stop_server(state, timeout=0.0) for state in st.stale_states()]


def prune_runs() -> list[Path]:
    """Remove runtime folders and logs of servers no longer running; returns what was removed."""
    runs = st.cache_dir() / "runs"
    if not runs.is_dir():
        return []
    live = {Path(s["runtime_dir"]).resolve() for s in st.list_servers()}
    removed = []
    for run in runs.iterdir():
        if run.resolve() in live or time.time() - run.stat().st_mtime < PRUNE_GRACE_S:
            continue
        shutil.rmtree(run, ignore_errors=True)
        removed.append(run)
    return removed


# ---------------------------------------------------------------- the server


def _log_lines_for(log: Path, model: str, limit: int = 3) -> list[str]:
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


def _log_tail(log: Path, limit: int = 6) -> str:
    try:
        lines = [ln.strip() for ln in log.read_text(errors="replace").splitlines() if ln.strip()]
    except OSError:
        return ""
    return " | ".join(lines[-limit:])


@dataclass
class Server:
    """A tritonserver this process started; `state` is what its state file holds."""

    state: dict[str, Any]
    process: subprocess.Popen
    models: list[RuntimeModel] = field(default_factory=list)

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def http_url(self) -> str:
        return f"{self.state['host']}:{self.state['http_port']}"

    @property
    def grpc_url(self) -> str:
        return f"{self.state['host']}:{self.state['grpc_port']}"

    @property
    def log(self) -> Path:
        return Path(self.state["log"])

    def alive(self) -> bool:
        return self.process.poll() is None

    def stop(self, timeout: float = STOP_TIMEOUT_S, remove_runtime: bool = True) -> dict[str, Any]:
        """Stop the server and everything it started; remove its state file (and runtime folder)."""
        return stop_server(self.state, self.process, timeout, remove_runtime)

    def wait_live(self, timeout: float) -> None:
        """Wait until the HTTP endpoint answers `live`, or ServerError with the server's own last lines."""
        import tritonclient.http as httpclient

        deadline = time.monotonic() + timeout
        client = httpclient.InferenceServerClient(self.http_url, connection_timeout=2.0, network_timeout=2.0)
        try:
            while time.monotonic() < deadline:
                if not self.alive():
                    raise ServerError(f"tritonserver exited with code {self.process.returncode} while starting: "
                                      f"{_log_tail(self.log)} (log: {self.log})")
                try:
                    if client.is_server_live():
                        return
                except Exception:  # noqa: BLE001 - not listening yet
                    pass
                time.sleep(0.1)
        finally:
            client.close()
        raise ServerError(f"tritonserver did not come up within {timeout:.0f} s (log: {self.log})")

    def load_models(self, timeout: float, on_model: Callable[[str, str, float], None] | None = None) -> None:
        """Load every runtime model (a few at a time) until READY, or ServerError with the failing model's log lines.

        `on_model(name, "loading" | "READY" | "FAILED" | "skipped", seconds)` reports progress.
        """
        import tritonclient.http as httpclient

        on_model = on_model or (lambda *a: None)
        failures: dict[str, str] = {}
        started = time.monotonic()
        lock = threading.Lock()

        def load(model: RuntimeModel) -> None:
            if failures:
                on_model(model.name, "skipped", 0.0)  # one failure ends the start; don't load the rest
                return
            t0 = time.monotonic()
            on_model(model.name, "loading", 0.0)
            client = httpclient.InferenceServerClient(self.http_url, connection_timeout=timeout,
                                                      network_timeout=timeout)
            try:
                client.load_model(model.name)
                on_model(model.name, "READY", time.monotonic() - t0)
            except Exception as exc:  # noqa: BLE001 - tritonclient raises its own exception types
                message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                with lock:
                    failures[model.name] = message
                on_model(model.name, "FAILED", time.monotonic() - t0)
            finally:
                client.close()

        with ThreadPoolExecutor(max_workers=LOAD_WORKERS) as pool:
            list(pool.map(load, self.models))
        if failures:
            name, message = next(iter(failures.items()))
            lines = _log_lines_for(self.log, name)
            detail = f"; server log: {' | '.join(lines)}" if lines else ""
            raise ServerError(f"model {name} failed to load: {message}{detail} (full log: {self.log})")
        if time.monotonic() - started > timeout:
            raise ServerError(f"models took longer than {timeout:.0f} s to load (log: {self.log})")


def start_server(repository: Path, models: Iterable[str] | None = None, host: str = DEFAULT_HOST,
                 http_port: int = 8000, grpc_port: int = 8001, metrics_port: int = 8002, ort_threads: int = 1,
                 detach: bool = False, timeout: float = READY_TIMEOUT_S, queue_delay_us: int | None = None,
                 noop_of: Iterable[str] = (),
                 on_model: Callable[[str, str, float], None] | None = None) -> Server:
    """Build the runtime repository, start tritonserver and return once every model is READY.

    A failure at any step stops what was started and raises ServerError (exit 3) or
    InputError (exit 2) in one line. The state file is written as soon as the process
    exists, so `zeroserve stop` can always find it.

    Args:
        models: registry or Triton names; all models of the repository when empty.
        detach: leave the server running when this process exits (no parent-death signal).
        queue_delay_us: overrides every model's dynamic-batching queue delay (tests, benchmark).
        noop_of: Triton names that also get a zeros-answering `<name>_noop` twin (benchmark floor).
    """
    names = canonical_models(repository, models)
    ports = {"http": http_port, "grpc": grpc_port, "metrics": metrics_port}
    check_ports(host, ports)
    install = find_tritonserver()
    backends = backend_directory(install)
    run_id = f"{dt.datetime.now():%Y%m%d-%H%M%S}-{secrets.token_hex(3)}"
    run_dir = st.cache_dir() / "runs" / run_id
    runtime = run_dir / "repository"
    built = build_runtime_repository(repository, names, runtime, ort_threads, queue_delay_us=queue_delay_us,
                                     noop_of=noop_of)
    shm_prefix = f"zs{secrets.token_hex(4)}_"
    log = run_dir / "server.log"
    args = [
        str(install.binary),
        f"--model-repository={runtime}",
        f"--backend-directory={backends}",
        f"--backend-config=python,shm-region-prefix-name={shm_prefix}",
        f"--http-address={host}", f"--http-port={http_port}",
        f"--grpc-address={host}", f"--grpc-port={grpc_port}",
        f"--metrics-address={host}", f"--metrics-port={metrics_port}",
        "--allow-gpu-metrics=false",
        # Explicit control: the endpoints come up at once and each model's load is its own
        # API call, so progress and a failing model's own error are reported per model.
        "--model-control-mode=explicit",
        "--disable-auto-complete-config",
        "--strict-readiness=true",
        "--exit-timeout-secs=5",  # open keep-alive client connections hold a stop this long
    ]
    (run_dir / "command.txt").write_text(" ".join(args) + "\n")  # how this server was started, for a reader
    preexec = None if detach else _die_with_parent
    with open(log, "wb") as log_fh:
        try:
            process = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=log_fh, stderr=subprocess.STDOUT,
                                       env=server_env(install), cwd=run_dir, start_new_session=True,
                                       preexec_fn=preexec)
        except OSError as exc:
            raise ServerError(f"could not run {install.binary}: {exc.strerror or exc}") from None
    state = {
        "pid": process.pid, "host": host, "http_port": http_port, "grpc_port": grpc_port,
        "metrics_port": metrics_port, "runtime_dir": str(run_dir), "log": str(log),
        "models": [m.name for m in built], "started": dt.datetime.now().isoformat(timespec="seconds"),
        "shm_prefix": shm_prefix, "repository": str(Path(repository).resolve()), "engine": "embedded",
    }
    st.write_state(state)
    server = Server(state, process, built)
    try:
        deadline = time.monotonic() + timeout
        server.wait_live(timeout)
        server.load_models(max(deadline - time.monotonic(), 1.0), on_model)
    except BaseException:
        server.stop(remove_runtime=False)  # the error message points at the log
        raise
    return server


def _die_with_parent() -> None:
    """In the child: SIGTERM when the foreground zeroserve dies, so a killed CLI leaves no server."""
    import ctypes

    PR_SET_PDEATHSIG = 1  # noqa: N806 - the kernel's name
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def docker_command(repository: Path, image: str, host_ports: dict[str, int] | None = None) -> list[str]:
    """The `docker run` command that serves the canonical repository on a GPU host's Triton."""
    ports = host_ports or DEFAULT_PORTS
    return ["docker", "run", "--gpus", "all", "--rm", "--shm-size=1g",
            "-p", f"{ports['http']}:8000", "-p", f"{ports['grpc']}:8001", "-p", f"{ports['metrics']}:8002",
            "-v", f"{Path(repository).resolve()}:/models", image,
            "tritonserver", "--model-repository=/models"]


def model_ready_states(host: str, http_port: int, timeout: float = 3.0) -> dict[str, str]:
    """Triton name -> state ("READY", "UNAVAILABLE", ...) from a running server's repository index."""
    import tritonclient.http as httpclient

    client = httpclient.InferenceServerClient(f"{host}:{http_port}", connection_timeout=timeout,
                                              network_timeout=timeout)
    try:
        index = client.get_model_repository_index()
    except Exception as exc:  # noqa: BLE001
        raise ServerError(f"server at {host}:{http_port} did not answer: {exc}") from None
    finally:
        client.close()
    return {m["name"]: m.get("state", "UNKNOWN") for m in index}

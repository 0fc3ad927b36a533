"""Triton's control plane, typed: health, the repository index, load/unload, config, statistics, logging.

Every stage that asks a server how it is, or tells it to load or unload a model, goes through
`Control` (the client's load generator and its inference calls go through `client.connection`).
Every call has a timeout, sends the run's key for a restricted API (`restricted.headers`), and a
failure becomes the typed error of its outcome (`errors.translate`): a timeout is not a refused
connection, which is not a restricted API, which is not a server error.
"""

from __future__ import annotations

import http.client
import time
from typing import Any

from zeroserve.records.state import ServerState
from zeroserve.triton import restricted
from zeroserve.triton.errors import translate
from zeroserve.triton.ports import hostport

DEFAULT_TIMEOUT_S = 3.0
SETTLING = ("READY", "UNLOADING", "LOADING")  # index states of a model that still holds instances


class Control:
    """The control calls of one server, over HTTP. `state`: its state file (for the run's key), if zeroserve's.

    Use as a context manager, or `close()` when done.
    """

    def __init__(self, host: str, http_port: int, state: ServerState | None = None, timeout: float = DEFAULT_TIMEOUT_S):
        self.host, self.http_port, self.state, self.timeout = host, int(http_port), state, timeout
        self.url = hostport(host, http_port)
        self._client: Any = None

    @classmethod
    def of(cls, state: ServerState, timeout: float = DEFAULT_TIMEOUT_S) -> Control:
        """The control plane of the server a state file describes, with its key."""
        return cls(state.host, state.http_port, state, timeout)

    def __enter__(self) -> Control:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    @property
    def client(self):
        if self._client is None:
            import tritonclient.http as httpclient

            self._client = httpclient.InferenceServerClient(
                self.url, connection_timeout=self.timeout, network_timeout=self.timeout
            )
        return self._client

    def _call(self, api: str | None, fn, *args, model: str | None = None, **kwargs):
        """One tritonclient call with the key `api` needs; its failure as the typed error of its outcome."""
        headers = restricted.headers(self.state, api, "http") if api else {}
        try:
            return fn(*args, headers=headers or None, **kwargs)
        except Exception as exc:  # noqa: BLE001 - tritonclient raises its own types; translate() sorts them
            raise translate(exc, self.url, "http", model=model, timeout=self.timeout, api=api) from None

    # ------------------------------------------------------------------ health

    def live(self, timeout: float | None = None) -> bool:
        """True when `/v2/health/live` answers 200 within `timeout` (a plain GET: no inference, no statistics)."""
        conn = http.client.HTTPConnection(self.host.strip("[]"), self.http_port, timeout=timeout or self.timeout)
        try:
            conn.request("GET", "/v2/health/live")
            return conn.getresponse().status == 200
        except (OSError, http.client.HTTPException):
            return False
        finally:
            conn.close()

    def ready(self) -> bool:
        """`/v2/health/ready`: every model the server was asked to serve is READY (typed error when no answer)."""
        return bool(self._call(None, self.client.is_server_ready))

    # ------------------------------------------------------------------ models

    def index(self) -> dict[str, dict[str, str]]:
        """The repository index: Triton name -> {"state", "reason", "version"}."""
        rows = self._call(restricted.MODEL_REPOSITORY, self.client.get_model_repository_index)
        return {
            m["name"]: {"state": m.get("state", ""), "reason": m.get("reason", ""), "version": m.get("version", "")}
            for m in rows
        }

    def states(self) -> dict[str, str]:
        """Triton name -> state ("READY", "UNAVAILABLE", ...)."""
        return {name: entry["state"] or "UNKNOWN" for name, entry in self.index().items()}

    def load(self, name: str) -> None:
        """Load (or reload) one model; returns when it is READY, or raises the typed error (its reason in it)."""
        self._call(restricted.MODEL_REPOSITORY, self.client.load_model, name, model=name)

    def unload(self, name: str, wait_s: float = 0.0) -> bool:
        """Unload one model; with `wait_s`, wait until its instances are gone. True when they are (or no wait)."""
        self._unload(name)
        return self.wait_unloaded([name], wait_s) if wait_s else True

    def unload_all(self, wait_s: float = 0.0) -> bool:
        """Unload every READY model (each stub runs finalize() and frees its shared memory), then wait as `unload`."""
        ready = [name for name, state in self.states().items() if state == "READY"]
        for name in ready:
            self._unload(name)
        return self.wait_unloaded(ready, wait_s) if wait_s else True

    def _unload(self, name: str) -> None:
        self._call(restricted.MODEL_REPOSITORY, self.client.unload_model, name, model=name)

    def wait_unloaded(self, names: list[str], wait_s: float) -> bool:
        """True once none of `names` holds instances any more, False after `wait_s`."""
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline:
            states = self.states()
            if not any(states.get(n) in SETTLING for n in names):
                return True
            time.sleep(0.05)
        return False

    def config(self, name: str) -> dict[str, Any]:
        """The model's config as the server holds it (JSON form)."""
        return self._call(None, self.client.get_model_config, name, model=name)

    def statistics(self, name: str = "") -> dict[str, Any]:
        """Triton's per-model statistics (all models when `name` is empty)."""
        return self._call(None, self.client.get_inference_statistics, name, model=name or None)

    def log_settings(self) -> dict[str, Any]:
        """The server's log settings (a restricted API on zeroserve's servers: sent with the run's key)."""
        return self._call(restricted.LOGGING, self.client.get_log_settings)

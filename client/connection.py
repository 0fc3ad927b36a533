"""The one connection layer over tritonclient: requests from registry specs, calls, statistics.

Where a server is (endpoints, protocols, URLs) is `zeroserve.client.endpoints`.

Every call has a timeout; a failed call becomes the typed error of its outcome (zeroserve/triton/errors.py):
unreachable or timed out (exit 3), rejected (exit 2) or failed (exit 1), with Triton's own message.
"""

from __future__ import annotations

import asyncio
from typing import Any

import numpy as np

from zeroserve import formats as F
from zeroserve.client.endpoints import PROTOCOLS, Endpoint
from zeroserve.client.values import to_wire
from zeroserve.errors import InputError, ServerError
from zeroserve.records.state import Recovering, ServerState
from zeroserve.serve.state import recovering_models, restarting, server_at
from zeroserve.spec import ModelSpec
from zeroserve.triton import restricted
from zeroserve.triton.errors import ModelNotServed, ModelRecovering, RequestFailed, ServerUnreachable, translate

DEFAULT_TIMEOUT_S = 10.0
STAT_PHASES = ("queue", "compute_input", "compute_infer", "compute_output")


def batches(n: int, size: int) -> list[slice]:
    """Slices of at most `size` rows covering `n` rows."""
    return [slice(start, min(start + size, n)) for start in range(0, n, max(1, size))]


# ---------------------------------------------------------------- statistics


def _int(v: Any) -> int:
    return int(v or 0)  # gRPC's JSON renders int64 as strings


def parse_statistics(stats: dict, model: str) -> dict[str, int]:
    """One model's cumulative counters from a statistics-extension answer (HTTP or gRPC JSON)."""
    out = {
        "success_count": 0,
        "fail_count": 0,
        "inference_count": 0,
        "execution_count": 0,
        **{f"{p}_ns": 0 for p in STAT_PHASES},
    }
    for entry in stats.get("model_stats", []):
        if entry.get("name") != model:
            continue
        inf = entry.get("inference_stats", {})
        out["success_count"] += _int(inf.get("success", {}).get("count"))
        out["fail_count"] += _int(inf.get("fail", {}).get("count"))
        out["inference_count"] += _int(entry.get("inference_count"))
        out["execution_count"] += _int(entry.get("execution_count"))
        for p in STAT_PHASES:
            out[f"{p}_ns"] += _int(inf.get(p, {}).get("ns"))
    return out


def server_split(before: dict[str, int], after: dict[str, int]) -> dict[str, float]:
    """Average server-side time per request (µs) in each phase between two statistics samples."""
    n = after["success_count"] - before["success_count"]
    split = {f"{p}_us": ((after[f"{p}_ns"] - before[f"{p}_ns"]) / n / 1e3 if n > 0 else 0.0) for p in STAT_PHASES}
    split["requests"] = n
    split["inferences"] = after["inference_count"] - before["inference_count"]
    split["executions"] = after["execution_count"] - before["execution_count"]
    split["failed"] = after["fail_count"] - before["fail_count"]
    return split


def add_statistics(samples: list[dict[str, int]]) -> dict[str, int]:
    """Sum counters over several servers."""
    keys = samples[0].keys() if samples else []
    return {k: sum(s[k] for s in samples) for k in keys}


# ---------------------------------------------------------------- sync client


def tritonclient_module(protocol: str, aio: bool = False):
    if protocol not in PROTOCOLS:
        raise InputError(f"unknown protocol {protocol!r}; use grpc or http")
    if protocol == "grpc":
        import tritonclient.grpc as grpc
        import tritonclient.grpc.aio as grpc_aio

        return grpc_aio if aio else grpc
    import tritonclient.http as http
    import tritonclient.http.aio as http_aio

    return http_aio if aio else http


def build_request(module, spec: ModelSpec, arrays: list[np.ndarray]) -> tuple[list, list]:
    """InferInput/InferRequestedOutput objects for graph-shaped arrays (sent in wire shapes)."""
    inputs = []
    for t, a in zip(spec.inputs, to_wire(spec, arrays)):
        inp = module.InferInput(t.name, list(a.shape), getattr(t, "datatype", None) or _triton_dtype(a.dtype))
        inp.set_data_from_numpy(a)
        inputs.append(inp)
    outputs = [module.InferRequestedOutput(t.name) for t in spec.outputs]
    return inputs, outputs


def _triton_dtype(dtype: np.dtype) -> str:
    from tritonclient.utils import np_to_triton_dtype

    return np_to_triton_dtype(np.dtype(dtype))


class Client:
    """One synchronous connection to one server over one protocol, every call within `timeout` seconds."""

    def __init__(self, endpoint: Endpoint, protocol: str = "grpc", timeout: float = DEFAULT_TIMEOUT_S):
        self.protocol = protocol
        self.url = endpoint.url(protocol)
        self.timeout = timeout
        self._mod = tritonclient_module(protocol)
        self._state: ServerState | None | bool = False  # the zeroserve state of the server at url, read on first use
        try:
            if protocol == "grpc":
                self._client = self._mod.InferenceServerClient(self.url)
            else:
                self._client = self._mod.InferenceServerClient(
                    self.url, connection_timeout=timeout, network_timeout=timeout
                )
        except Exception as exc:  # noqa: BLE001 - tritonclient raises plain exceptions for a bad url
            raise translate(exc, self.url, protocol, timeout=timeout) from None

    def _call(self, name: str, *args, model: str | None = None, api: str | None = None, **kwargs):
        """tritonclient's `name`; `api` is the Triton API it belongs to when zeroserve restricts that API:
        the run's key is sent when this client may use it (zeroserve/triton/restricted.py)."""
        if self.protocol == "grpc":
            kwargs["client_timeout"] = self.timeout
        if api is not None:
            kwargs["headers"] = restricted.headers(self.server_state(), api, self.protocol) or None
        try:
            return getattr(self._client, name)(*args, **kwargs)
        except Exception as exc:  # noqa: BLE001 - mapped to typed errors
            error = translate(exc, self.url, self.protocol, model, self.timeout, api)
            if isinstance(error, ServerUnreachable):  # a supervised server between two starts says so
                host, _, port = self.url.rpartition(":")
                note = restarting(host.strip("[]"), int(port))
                if note:
                    raise ServerUnreachable(note) from None
            raise error from None

    def server_state(self) -> ServerState | None:
        """The state file of the zeroserve server at this url (read once), or None when it is not zeroserve's."""
        if self._state is False:
            host, _, port = self.url.rpartition(":")
            self._state = server_at(host.strip("[]"), int(port))
        return self._state  # type: ignore[return-value]  # False (not read yet) was replaced just above

    def live(self) -> None:
        """Raise ServerError unless the server answers and is live."""
        if not self._call("is_server_live"):
            raise ServerError(f"the Triton server at {self.url} answers but is not live")

    def require_model(self, triton_name: str) -> None:
        """Raise ModelNotServed unless the model is loaded and ready (after checking the server is live)."""
        self.live()
        if triton_name in self.recovering():
            raise ModelRecovering(
                f"{triton_name} on the server at {self.url} is recovering: its stub died and the "
                "supervisor is reloading it (`zeroserve status` shows it); try again in a few seconds"
            )
        if not self._call("is_model_ready", triton_name, model=triton_name):
            served = self.served_models()
            split = F.split_triton_name(triton_name)
            fix = (
                "it runs on GPU instances only, and a server without a GPU (zeroserve's embedded engine here) "
                "does not load it: check and load-test it on a GPU host"
                if split and split[1].gpu_only
                else "deploy it and restart `zeroserve serve`"
            )
            raise ModelNotServed(
                f"the server at {self.url} does not serve {triton_name} (ready: {', '.join(served) or 'none'}); {fix}"
            )

    def recovering(self) -> dict[str, Recovering]:
        """Models of this server that its zeroserve supervisor is reloading (from the state file, read only)."""
        host, _, port = self.url.rpartition(":")
        return recovering_models(host.strip("[]"), int(port))

    def is_ready(self, triton_name: str) -> bool:
        """True when the server has the model loaded and ready (False for a name it does not know)."""
        try:
            return bool(self._call("is_model_ready", triton_name, model=triton_name))
        except (RequestFailed, InputError):
            return False

    def model_config(self, triton_name: str) -> dict:
        """The served model's config as JSON (gRPC's wrapped in {"config": ...}, HTTP's bare)."""
        kw: dict[str, Any] = {"as_json": True} if self.protocol == "grpc" else {}
        return self._call("get_model_config", triton_name, model=triton_name, **kw)

    def server_version(self) -> str | None:
        """The server's Triton version (its metadata), None when it does not say."""
        kw: dict[str, Any] = {"as_json": True} if self.protocol == "grpc" else {}
        return (self._call("get_server_metadata", **kw) or {}).get("version")

    def served_models(self) -> list[str]:
        """Names of the models the server reports READY, less those its supervisor says are recovering."""
        kw: dict[str, Any] = {"as_json": True} if self.protocol == "grpc" else {}
        index = self._call("get_model_repository_index", api=restricted.MODEL_REPOSITORY, **kw)
        entries = index.get("models", []) if isinstance(index, dict) else index
        recovering = self.recovering()
        return sorted(e["name"] for e in entries if e.get("state", "READY") == "READY" and e["name"] not in recovering)

    def max_batch_size(self, triton_name: str) -> int:
        """The served config's max_batch_size."""
        config = self.model_config(triton_name)
        config = config.get("config", config)
        return _int(config.get("max_batch_size"))

    def infer(self, spec: ModelSpec, triton_name: str, arrays: list[np.ndarray]) -> list[np.ndarray]:
        """One request with graph-shaped inputs; the outputs in the spec's order."""
        inputs, outputs = build_request(self._mod, spec, arrays)
        result = self._call("infer", triton_name, inputs, outputs=outputs, model=triton_name)
        return [result.as_numpy(t.name) for t in spec.outputs]

    def statistics(self, triton_name: str) -> dict[str, int]:
        """The model's cumulative statistics-extension counters."""
        kw: dict[str, Any] = {"as_json": True} if self.protocol == "grpc" else {}
        return parse_statistics(
            self._call("get_inference_statistics", triton_name, model=triton_name, **kw), triton_name
        )

    def register_system_shared_memory(self, name: str, key: str, byte_size: int) -> None:
        """Register a system shared-memory region (Triton's shared-memory extension)."""
        self._call("register_system_shared_memory", name, key, byte_size, api=restricted.SHARED_MEMORY)

    def unregister_system_shared_memory(self, name: str) -> None:
        self._call("unregister_system_shared_memory", name, api=restricted.SHARED_MEMORY)

    def close(self) -> None:
        try:
            self._client.close()
        except Exception:  # noqa: BLE001 - closing a dead connection is not an error
            pass

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


# ---------------------------------------------------------------- asyncio client (load generation)


class AsyncClient:
    """An asyncio connection (tritonclient.grpc.aio or http.aio) for the load generator.

    Requests are prepared once (`prepare`) and re-sent; every call is bounded by `timeout`.
    """

    def __init__(self, url: str, protocol: str = "grpc", timeout: float = DEFAULT_TIMEOUT_S):
        self.protocol = protocol
        self.url = url
        self.timeout = timeout
        self._mod = tritonclient_module(protocol, aio=True)
        self._client: Any = None  # tritonclient's aio client once entered

    async def __aenter__(self) -> AsyncClient:
        if self.protocol == "grpc":
            self._client = self._mod.InferenceServerClient(self.url)
        else:
            self._client = self._mod.InferenceServerClient(self.url, conn_timeout=self.timeout)
        return self

    async def __aexit__(self, *exc) -> None:
        try:
            await asyncio.wait_for(self._client.close(), self.timeout)
        except Exception:  # noqa: BLE001 - closing a dead connection is not an error
            pass

    def prepare(self, spec: ModelSpec, arrays: list[np.ndarray]) -> tuple[list, list]:
        """Request objects for graph-shaped inputs, reusable across sends."""
        return build_request(self._mod, spec, arrays)

    @property
    def module(self):
        return self._mod

    async def infer(self, triton_name: str, inputs: list, outputs: list) -> None:
        """Send one request and wait for its answer; raises the tritonclient/network exception."""
        kw = {"client_timeout": self.timeout} if self.protocol == "grpc" else {}
        await asyncio.wait_for(self._client.infer(triton_name, inputs, outputs=outputs, **kw), self.timeout)

    async def statistics(self, triton_name: str) -> dict[str, int]:
        """The model's cumulative counters; ServerError when unreachable."""
        kw = {"as_json": True} if self.protocol == "grpc" else {}
        try:
            stats = await asyncio.wait_for(self._client.get_inference_statistics(triton_name, **kw), self.timeout)
        except Exception as exc:  # noqa: BLE001 - mapped to typed errors
            raise translate(exc, self.url, self.protocol, triton_name, self.timeout) from None
        return parse_statistics(stats, triton_name)

"""Triton's restricted APIs: which ones zeroserve's servers restrict, and the key zeroserve's own calls send.

Triton 2.51 cannot turn its client shared-memory, logging and trace APIs off (2.69 added
`--allow-client-shm`, off by default), but it can restrict an API to callers that send a header
(`--http-restricted-api=API,...:NAME=VALUE`; gRPC: `--grpc-restricted-protocol`, the metadata
key `triton-grpc-protocol-NAME`). Every zeroserve server restricts shared-memory, logging and
trace with an unguessable key kept in the run's 0600 state file (`api_key`); a private
explicit-mode server (tune's) restricts model-repository too, so only zeroserve loads and
unloads its models. A poll-mode (served) server leaves model-repository open: loads and unloads
are refused there anyway, and status, the supervisor and the client read its index.

The key is on tritonserver's command line (/proc/<pid>/cmdline): it keeps out remote and browser
callers and mistakes, not a local user of the same machine (docs/serving.md).
"""

from __future__ import annotations

import secrets
from typing import Any

from zeroserve.records.state import ServerState

HEADER = "zeroserve-key"  # the header's name; its value is the run's key
GRPC_METADATA_PREFIX = "triton-grpc-protocol-"  # Triton reads a gRPC restricted key from this metadata
SHARED_MEMORY, LOGGING, TRACE, MODEL_REPOSITORY = "shared-memory", "logging", "trace", "model-repository"
SERVED = (SHARED_MEMORY, LOGGING, TRACE)
PRIVATE = (MODEL_REPOSITORY, *SERVED)  # an explicit-mode server's load API is zeroserve's alone
ALLOW_CLIENT_SHM = "--allow-client-shm"  # serve's flag (the name Triton 2.69 gave its own)
REDACTED = "<api_key in the run's state file>"


def new_key() -> str:
    """An unguessable key (192 bits, hex: safe in a header, gRPC metadata and Triton's NAME=VALUE syntax)."""
    return secrets.token_hex(24)


def restricted_apis(model_control: str) -> tuple[str, ...]:
    """The Triton APIs a server of this model control restricts to holders of its key."""
    return PRIVATE if model_control == "explicit" else SERVED


def server_args(key: str, apis: tuple[str, ...]) -> list[str]:
    """tritonserver's options restricting `apis` on both protocols to callers that send `key`."""
    spec = f"{','.join(apis)}:{HEADER}={key}"
    return [f"--http-restricted-api={spec}", f"--grpc-restricted-protocol={spec}"]


def redact(args: list[str], key: str) -> list[str]:
    """The command line with the key replaced (what command.txt, readable by the run's owner's tools, keeps)."""
    return [a.replace(key, REDACTED) for a in args]


def public(state: ServerState) -> dict[str, Any]:
    """A state's JSON without its key: what may be printed (`stop --json`) or shown."""
    return {k: v for k, v in state.to_json().items() if k != "api_key"}


def headers(state: ServerState | None, api: str, protocol: str) -> dict[str, str]:
    """The HTTP header (or gRPC metadata) that lets zeroserve's own call to `api` through on the server of `state`.

    {} when the server does not restrict `api` (or is not zeroserve's), and for shared memory unless
    the server was started with --allow-client-shm: then the key is held back from the client.
    """
    if state is None or not state.api_key or api not in (state.restricted_apis or ()):
        return {}
    if api == SHARED_MEMORY and not state.allow_client_shm:
        return {}
    name = HEADER if protocol == "http" else GRPC_METADATA_PREFIX + HEADER
    return {name: state.api_key}


def client_shm_refusal(state: ServerState | None, url: str) -> str | None:
    """Why zeroserve's client may not use shared memory on the server of `state`, or None when it may."""
    if state is None or SHARED_MEMORY not in (state.restricted_apis or ()) or state.allow_client_shm:
        return None
    return (
        f"--shared-memory system: the server at {url} keeps Triton's shared-memory API closed; "
        f"start it with `zeroserve serve {ALLOW_CLIENT_SHM}` to let zeroserve's client use it, or use "
        "--shared-memory none"
    )

"""What a failed call to a Triton server means, from its gRPC status code, HTTP status or exception type.

Five outcomes, each its own error and exit code (docs/contracts.md):
- unreachable (exit 3): nothing answered (refused, reset, closed, gRPC UNAVAILABLE);
- restricted (exit 2): the server answered that the API is restricted to holders of a key
  (HTTP 403; gRPC UNAVAILABLE carrying Triton's restricted-protocol message: gRPC has no code
  of its own for it, so only there the message tells it from an unreachable server);
- timeout (exit 3): the server took longer than `--timeout` (gRPC DEADLINE_EXCEEDED, a socket
  or asyncio timeout);
- rejected (exit 2): the server refused the request as invalid (HTTP 400/404, gRPC
  INVALID_ARGUMENT/NOT_FOUND/...): the input or the model name is wrong;
- failed (exit 1): the server answered but could not serve the request (HTTP 500, gRPC
  INTERNAL, ...), or the answer could not be read.
"""

from __future__ import annotations

import re
from typing import Literal

from zeroserve.errors import InputError, ServerError, ZeroserveError
from zeroserve.triton.restricted import ALLOW_CLIENT_SHM, SHARED_MEMORY

Outcome = Literal["unreachable", "timeout", "restricted", "rejected", "failed"]

GRPC_UNREACHABLE = {"StatusCode.UNAVAILABLE"}
HTTP_RESTRICTED = {"403"}  # Triton's `--http-restricted-api` refusal
# Triton 2.51 refuses a `--grpc-restricted-protocol` call with UNAVAILABLE, the code of "nothing answered";
# its message, "This protocol is restricted, expecting header '...'", is what tells the two apart.
GRPC_RESTRICTED_MESSAGE = "This protocol is restricted"
GRPC_TIMEOUT = {"StatusCode.DEADLINE_EXCEEDED"}
GRPC_REJECTED = {
    "StatusCode.INVALID_ARGUMENT",
    "StatusCode.NOT_FOUND",
    "StatusCode.OUT_OF_RANGE",
    "StatusCode.FAILED_PRECONDITION",
    "StatusCode.ALREADY_EXISTS",
    "StatusCode.UNIMPLEMENTED",
}
HTTP_TIMEOUT = {"408", "504"}


class ServerUnreachable(ServerError):
    """Nothing answered at the endpoint (exit 3)."""


class ServerTimeout(ServerError):
    """The server did not answer within the client's timeout (exit 3)."""


class RequestFailed(ZeroserveError):
    """The server answered but failed one request (exit 1; counted where requests are counted)."""

    exit_code = 1


class RequestRejected(RequestFailed):
    """The server refused one request as invalid: a wrong input or model name (exit 2)."""

    exit_code = 2


class ApiRestricted(RequestRejected):
    """The server restricts the called Triton API (shared-memory, logging, trace, ...) to key holders (exit 2)."""


class ModelNotServed(InputError):
    """The server is up but does not serve (or has not loaded) the asked-for model."""


class ModelRecovering(ServerError):
    """The model's stub died and the server's supervisor is reloading it: it cannot answer for a few seconds."""


def _status(exc: BaseException) -> str:
    """tritonclient's status: "StatusCode.X" over gRPC, the HTTP status code over HTTP, "" otherwise."""
    status = getattr(exc, "status", None)
    return str(status() if callable(status) else "") if status is not None else ""


def _connection_closed(exc: BaseException) -> bool:
    """The transport's own "the other end went away" types (geventhttpclient, aiohttp)."""
    names = {c.__module__.split(".")[0] + "." + c.__name__ for c in type(exc).__mro__}
    return bool(names & {"geventhttpclient.HTTPConnectionClosed", "aiohttp.ClientConnectionError"})


def classify(exc: BaseException) -> Outcome:
    """Which of the five outcomes an exception from tritonclient (sync or asyncio) or the network means."""
    status = _status(exc)
    if isinstance(exc, TimeoutError) or status in GRPC_TIMEOUT or status in HTTP_TIMEOUT:
        return "timeout"
    if status in HTTP_RESTRICTED or (status in GRPC_UNREACHABLE and GRPC_RESTRICTED_MESSAGE in first_line(exc)):
        return "restricted"
    if isinstance(exc, OSError) or _connection_closed(exc) or status in GRPC_UNREACHABLE:
        return "unreachable"
    if status in GRPC_REJECTED or (status.isdigit() and 400 <= int(status) < 500):
        return "rejected"
    return "failed"


def first_line(exc: BaseException) -> str:
    """The exception's message in one line, without Triton's "[request id: ...]" prefix."""
    message = getattr(exc, "message", None)  # tritonclient's exceptions carry message()
    text = message() if callable(message) else str(exc)
    line = (str(text or "").strip().splitlines() or [type(exc).__name__])[0]
    # Noise to a user, and rich would read the brackets as markup.
    return re.sub(r"^\[request id: [^\]]*\]\s*", "", line)


def restricted_message(url: str, protocol: str, api: str | None, said: str) -> str:
    """One line for a restricted-API refusal: which API, and the flag that opens it to zeroserve's client (if any)."""
    what = f"Triton's {api} API" if api else "the Triton API called"
    if api == SHARED_MEMORY:
        fix = (
            f"zeroserve's client holds the key only for a server started here with `zeroserve serve "
            f"{ALLOW_CLIENT_SHM}`; or use --shared-memory none"
        )
    else:
        fix = (
            f"zeroserve's servers keep shared-memory, logging and trace closed ({ALLOW_CLIENT_SHM} opens shared "
            "memory to zeroserve's own client only)"
        )
    return f"the server at {url} restricts {what} to callers holding its key ({protocol}{said}): {fix}"


def translate(
    exc: BaseException,
    url: str,
    protocol: str,
    model: str | None = None,
    timeout: float | None = None,
    api: str | None = None,
) -> ZeroserveError:
    """A tritonclient or network exception -> the typed error of its outcome, in one line.

    `api`: the Triton API of the call (shared-memory, model-repository, ...), named in a restricted refusal.
    """
    error = _translate(exc, url, protocol, model, timeout, api)
    error.said = first_line(exc)
    return error


def _translate(
    exc: BaseException, url: str, protocol: str, model: str | None, timeout: float | None, api: str | None
) -> ZeroserveError:
    outcome = classify(exc)
    where = f" for {model}" if model else ""
    if outcome == "unreachable":
        return ServerUnreachable(
            f"no Triton server answered over {protocol} at {url} ({first_line(exc)}); "
            "start one with `zeroserve serve` or give --host/--http-port/--grpc-port"
        )
    if outcome == "timeout":
        limit = f"within --timeout {timeout:g} s" if timeout is not None else "in time"
        return ServerTimeout(
            f"the Triton server at {url} did not answer the {protocol} request{where} {limit}; "
            "it is reachable but busy or stuck: give a longer --timeout, or see its log "
            "(`zeroserve status` says where)"
        )
    status = _status(exc)
    said = f" ({status.removeprefix('StatusCode.')})" if status else ""
    if outcome == "restricted":
        return ApiRestricted(restricted_message(url, protocol, api, f" {status.removeprefix('StatusCode.')}"))
    if outcome == "rejected":
        return RequestRejected(f"the server at {url} refused the {protocol} request{where}{said}: {first_line(exc)}")
    return RequestFailed(f"the server at {url} failed the {protocol} request{where}{said}: {first_line(exc)}")

"""Where the client connects: endpoints (options, a server's state file, defaults), protocols, URLs, loopback."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from zeroserve.errors import InputError, ServerError
from zeroserve.records.state import ServerState
from zeroserve.serve.state import resolve_server
from zeroserve.triton.ports import DEFAULT_HOST, DEFAULT_PORTS, hostport, non_loopback

Protocol = Literal["grpc", "http"]
PROTOCOLS: tuple[str, ...] = ("grpc", "http")
DEFAULT_HTTP_PORT = DEFAULT_PORTS["http"]
DEFAULT_GRPC_PORT = DEFAULT_PORTS["grpc"]


@dataclass(frozen=True)
class Endpoint:
    """Where one server listens; `source` says how it was found (options, state file, defaults)."""

    host: str = DEFAULT_HOST
    http_port: int = DEFAULT_HTTP_PORT
    grpc_port: int = DEFAULT_GRPC_PORT
    source: str = "defaults"

    def url(self, protocol: str) -> str:
        """`host:port` (no scheme, as tritonclient wants it) for a protocol."""
        return hostport(self.host, self.http_port if protocol == "http" else self.grpc_port)


def choose_protocol(protocol: str | None, http_port: int | None = None, grpc_port: int | None = None) -> str:
    """The protocol a client command uses: `--protocol` when given; else HTTP when only `--http-port` was given
    (a user who names the HTTP port means HTTP); else gRPC."""
    if protocol:
        return str(protocol)
    return "http" if http_port is not None and grpc_port is None else "grpc"


def protocols_meant(
    protocol: str | None, http_port: int | None = None, grpc_port: int | None = None
) -> tuple[str, ...]:
    """The protocols a command that can use both (`client check`) uses: `--protocol`, else the one whose port
    alone was given, else both."""
    if protocol:
        return (str(protocol),)
    if (http_port is None) != (grpc_port is None):
        return ("http",) if http_port is not None else ("grpc",)
    return PROTOCOLS


def resolve_endpoint(
    host: str | None = None,
    http_port: int | None = None,
    grpc_port: int | None = None,
    protocols: tuple[str, ...] = PROTOCOLS,
) -> Endpoint:
    """Ports given on the command line win; otherwise the server `serve.state.choose` means; else the defaults.

    One port given names a zeroserve server by it: the other port comes from that server's state
    file. A port given never falls back to a default for the other protocol: when `protocols` needs the
    port that was not given and no zeroserve server has the one given, InputError says which option to add.
    Several running servers and none chosen is an InputError listing them (from serve.state).
    """
    host = host.strip("[]") if host else host  # `[::1]` names the server that serve recorded as `::1`
    if http_port is not None and grpc_port is not None:
        return Endpoint(host or DEFAULT_HOST, http_port, grpc_port, "options")
    if http_port is not None or grpc_port is not None:
        try:
            state: ServerState | None = resolve_server(host=host, http_port=http_port, grpc_port=grpc_port)
        except (ServerError, InputError):
            state = None
        missing = "grpc" if grpc_port is None else "http"
        if state is None and missing in protocols:
            given = f"--{'http' if missing == 'grpc' else 'grpc'}-port {http_port or grpc_port}"
            raise InputError(
                f"{given} names no running zeroserve server, so its {missing.upper()} port is unknown: "
                f"give --{missing}-port too, or --protocol {'http' if missing == 'grpc' else 'grpc'}"
            )
        return Endpoint(
            host or DEFAULT_HOST,
            http_port or (state.http_port if state else 0),
            grpc_port or ((state.grpc_port or 0) if state else 0),
            "options" + (f" and the state file of server pid {state.pid}" if state else ""),
        )
    try:
        chosen = resolve_server(host=host)
    except ServerError:
        # No zeroserve server running: a Triton started by other means may still be on the defaults.
        return Endpoint(host or DEFAULT_HOST, source="defaults (no zeroserve server state file)")
    return Endpoint(
        chosen.host or DEFAULT_HOST,
        chosen.http_port,
        chosen.grpc_port or 0,
        f"state file of server pid {chosen.pid}",
    )


URL_SCHEMES = {"http": PROTOCOLS, "grpc": ("grpc",)}  # a scheme is optional; no TLS here (no https/grpcs)


def parse_url(url: str, protocol: str | None = None) -> tuple[str, int]:
    """`HOST:PORT`, `[IPv6]:PORT` or either behind `http://` (`grpc://` for gRPC) -> (host, port), or InputError."""
    example = "for example 127.0.0.1:8001 or [::1]:8001"
    scheme, sep, rest = url.partition("://")
    if not sep:
        scheme, rest = "", url
    elif scheme.lower() not in URL_SCHEMES or (protocol and protocol not in URL_SCHEMES[scheme.lower()]):
        raise InputError(
            f"--url {url!r}: the scheme {scheme}:// does not go with --protocol {protocol or 'grpc'}; "
            f"give HOST:PORT ({example})"
        )
    rest = rest.rstrip("/")
    if "/" in rest or "?" in rest or "#" in rest or "@" in rest:
        raise InputError(f"--url {url!r}: give only HOST:PORT, no path ({example})")
    if rest.count(":") > 1 and not rest.startswith("["):
        raise InputError(f"--url {url!r}: an IPv6 address goes in brackets, as in [::1]:8001")
    if rest.startswith("["):
        host, close, port = rest[1:].partition("]")
        if not close or not port.startswith(":"):
            raise InputError(f"--url {url!r}: expected [IPv6]:PORT, as in [::1]:8001")
        port = port[1:]
    else:
        host, _, port = rest.rpartition(":")
    if not host or not port.isdigit():
        raise InputError(f"--url {url!r}: expected HOST:PORT, {example}")
    if not 0 < int(port) <= 65535:
        raise InputError(f"--url {url!r}: port {int(port)} is not a port: give 1-65535")
    return host, int(port)


def require_loopback(host: str) -> None:
    """Load is generated only against this machine: refuse any host that is not a loopback address."""
    bad = non_loopback(host)
    if bad:
        raise InputError(
            f"host {host!r} ({', '.join(bad)}) is not a loopback address: zeroserve generates load "
            "only against servers on this machine (use 127.0.0.1)"
        )

"""Where a server listens: the default host and ports, loopback addresses, free ports, bind checks.

The one place that knows how an address is written for each consumer: `host:port` with an IPv6
literal in brackets (`[::1]:8001`, as tritonclient and gRPC take it) and how tritonserver wants
its bind addresses (`bind_addresses`).
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable

from zeroserve.errors import InputError, ServerError

DEFAULT_HOST = "127.0.0.1"  # not "localhost": tritonclient.grpc to localhost:PORT hung where 127.0.0.1 answered at once
DEFAULT_PORTS = {"http": 8000, "grpc": 8001, "metrics": 8002}


def _ip(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(host.strip("[]").split("%")[0])
    except ValueError:
        return None


def is_ipv6(host: str) -> bool:
    """Whether `host` is an IPv6 literal (`::1`, `[::1]`)."""
    return isinstance(_ip(host), ipaddress.IPv6Address)


def hostport(host: str, port: int) -> str:
    """`host:port`, an IPv6 literal in brackets (`[::1]:8001`): what tritonclient and gRPC take."""
    host = host.strip("[]")
    return f"[{host}]:{port}" if is_ipv6(host) else f"{host}:{port}"


def _family(host: str) -> socket.AddressFamily:
    return socket.AF_INET6 if is_ipv6(host) else socket.AF_INET


def non_loopback(host: str) -> list[str]:
    """The addresses `host` stands for that are not loopback (empty: loopback only); InputError if it won't resolve."""
    ip = _ip(host)
    if ip is not None:
        return [] if ip.is_loopback else [str(ip)]
    try:
        addrs = {str(info[4][0]) for info in socket.getaddrinfo(host, None)}
    except socket.gaierror:
        raise InputError(f"host {host!r} does not resolve; give an address such as 127.0.0.1 or ::1") from None
    return sorted(a for a in addrs if not ipaddress.ip_address(a.split("%")[0]).is_loopback)


def check_bind_host(host: str, allow_remote: bool) -> str | None:
    """Refuse a non-loopback bind address unless `allow_remote`; returns the warning to print when it is allowed."""
    remote = non_loopback(host)
    if not remote:
        return None
    if remote != [host]:
        host = f"{host} ({', '.join(remote)})"
    if not allow_remote:
        raise InputError(
            f"--host {host} is not a loopback address: the server would take "
            "requests from other machines, with no authentication; add --allow-remote to mean it, "
            "or use 127.0.0.1 / ::1"
        )
    return (
        f"serving on {host}, reachable from other machines (--allow-remote): anyone who "
        "can reach these ports can call the served models; Triton here has no authentication or TLS"
    )


def resolve_free_ports(host: str, ports: dict[str, int]) -> dict[str, int]:
    """`ports` with each 0 replaced by a distinct port that is free on `host` now (held until all are chosen)."""
    held: list[socket.socket] = []
    out = dict(ports)
    try:
        for what, port in ports.items():
            if port == 0:
                s = socket.socket(_family(host), socket.SOCK_STREAM)
                held.append(s)
                s.bind((host.strip("[]"), 0))
                out[what] = s.getsockname()[1]
    except OSError as exc:
        raise ServerError(f"no free port on {host}: {exc.strerror or exc}") from None
    finally:
        for s in held:
            s.close()
    return out


def bind_addresses(host: str) -> dict[str, str]:
    """tritonserver's `--http-address`, `--grpc-address` and `--metrics-address` for `host`.

    Its HTTP and metrics servers (libevhtp) read an IPv6 address only as `ipv6:ADDR`; its gRPC
    server joins address and port with a colon, so an IPv6 address needs brackets there.
    """
    host = host.strip("[]")
    if not is_ipv6(host):
        return {"http": host, "grpc": host, "metrics": host}
    return {"http": f"ipv6:{host}", "grpc": f"[{host}]", "metrics": f"ipv6:{host}"}


def check_ports(host: str, ports: dict[str, int], holder: Callable[[str, int], str | None] = lambda h, p: None) -> None:
    """Raise ServerError naming the first port that cannot be bound on `host` (InputError when two are equal).

    `holder(host, port)` names what holds a port in use, if it knows (serve: a zeroserve server's pid).
    """
    if len(set(ports.values())) < len(ports):
        raise InputError(f"the http, grpc and metrics ports must differ; got {ports}")
    bad = {what: port for what, port in ports.items() if not 0 < port <= 65535}
    if bad:
        what, port = next(iter(bad.items()))
        raise InputError(f"{what} port {port} is not a port: give 1-65535 (0 picks a free one in `zeroserve serve`)")
    for what, port in ports.items():
        with socket.socket(_family(host), socket.SOCK_STREAM) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # a TIME_WAIT leftover is not "in use"
            try:
                s.bind((host.strip("[]"), port))
            except OSError as exc:
                held_by = holder(host, port)
                hint = f" by {held_by}" if held_by else ""
                raise ServerError(
                    f"{what} port {port} on {host} is in use{hint} ({exc.strerror}); "
                    f"choose another with --{what}-port or stop what holds it"
                ) from None


def bind_plan(
    host: str, allow_remote: bool, ports: tuple[int, ...]
) -> tuple[str, tuple[int, ...], str | None, list[str]]:
    """Where `serve` binds: the host (`localhost` as 127.0.0.1, which tritonserver binds and gRPC reaches
    at once), the http/grpc/metrics ports with each 0 replaced by a free one, the warning for a
    non-loopback host (InputError without `allow_remote`), and the ports picked ("http 12345").
    """
    host = DEFAULT_HOST if host == "localhost" else host.strip("[]")
    warning = check_bind_host(host, allow_remote)
    names = ("http", "grpc", "metrics")
    chosen = resolve_free_ports(host, dict(zip(names, ports)))
    picked = [f"{k} {chosen[k]}" for k, p in zip(names, ports) if p == 0]
    return host, tuple(chosen[k] for k in names), warning, picked

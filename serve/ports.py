"""Ports: the defaults every command shares, a free port, and a check that the chosen ones can be bound."""

from __future__ import annotations

import socket

from zeroserve.errors import InputError, ServerError
from zeroserve.serve import state as st

DEFAULT_HOST = "127.0.0.1"  # not "localhost": tritonclient.grpc to localhost:PORT hung where 127.0.0.1 answered at once
DEFAULT_PORTS = {"http": 8000, "grpc": 8001, "metrics": 8002}


def free_port(host: str = DEFAULT_HOST) -> int:
    """A port the OS says is free now (bind to port 0)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def check_ports(host: str, ports: dict[str, int]) -> None:
    """Raise ServerError naming the first port that cannot be bound on `host` (InputError when two are equal)."""
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

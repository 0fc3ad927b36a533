"""The options of `zeroserve serve` that name where it serves: the repository, the address, the ports, the metrics."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from zeroserve.app.cliutil import port_callback

RepositoryOpt = Annotated[Path, typer.Option("--repository", help="The canonical Triton model repository.")]
HostOpt = Annotated[
    str,
    typer.Option(
        "--host",
        help="Address the server binds to (and clients reach): loopback "
        "(127.0.0.1, ::1, localhost) unless --allow-remote.",
    ),
]
_FREE = " (1-65535; 0 picks a free port and prints it)"
HttpPortOpt = Annotated[
    int, typer.Option("--http-port", help="KServe v2 HTTP port" + _FREE + ".", callback=port_callback(allow_zero=True))
]
GrpcPortOpt = Annotated[
    int, typer.Option("--grpc-port", help="KServe v2 gRPC port" + _FREE + ".", callback=port_callback(allow_zero=True))
]
MetricsPortOpt = Annotated[
    int,
    typer.Option(
        "--metrics-port", help="Prometheus metrics port" + _FREE + ".", callback=port_callback(allow_zero=True)
    ),
]
MetricsIntervalOpt = Annotated[
    int,
    typer.Option(
        "--metrics-interval-ms",
        help="How often Triton refreshes its metrics gauges (GPU, CPU); counters are live. Triton's default "
        "is 2000, longer than perf's 1 s windows.",
        min=1,
    ),
]

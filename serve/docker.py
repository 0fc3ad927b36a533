"""The docker engine: the `docker run` command that serves the canonical repository on a GPU host's Triton."""

from __future__ import annotations

from pathlib import Path

from zeroserve.serve.ports import DEFAULT_PORTS

CONTAINER_PORTS = {"http": 8000, "grpc": 8001, "metrics": 8002}  # tritonserver's own defaults inside the image


def docker_command(repository: Path, image: str, host_ports: dict[str, int] | None = None) -> list[str]:
    """`docker run` for `image` (the target release's NGC image) with the repository mounted at /models."""
    ports = host_ports or DEFAULT_PORTS
    return [
        "docker",
        "run",
        "--gpus",
        "all",
        "--rm",
        "--shm-size=1g",
        *(arg for k in ("http", "grpc", "metrics") for arg in ("-p", f"{ports[k]}:{CONTAINER_PORTS[k]}")),
        "-v",
        f"{Path(repository).resolve()}:/models",
        image,
        "tritonserver",
        "--model-repository=/models",
    ]

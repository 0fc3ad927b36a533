"""The docker engine: the `docker run` command that serves the canonical repository on a GPU host's Triton."""

from __future__ import annotations

from pathlib import Path

from zeroserve.triton.ports import DEFAULT_HOST, DEFAULT_PORTS, check_bind_host, non_loopback

CONTAINER_PORTS = {"http": 8000, "grpc": 8001, "metrics": 8002}  # tritonserver's own defaults inside the image


def docker_command(
    repository: Path, image: str, host_ports: dict[str, int] | None = None, bind_host: str | None = DEFAULT_HOST
) -> list[str]:
    """`docker run` for `image` (the target release's NGC image) with the repository mounted at /models.

    The ports are published on `bind_host` only (loopback by default, as the embedded engine binds);
    None publishes them on every interface (serve's --allow-remote).
    """
    ports = host_ports or DEFAULT_PORTS
    bind = "" if bind_host is None else f"[{bind_host}]:" if ":" in bind_host else f"{bind_host}:"
    return [
        "docker",
        "run",
        "--gpus",
        "all",
        "--rm",
        "--shm-size=1g",
        *(arg for k in ("http", "grpc", "metrics") for arg in ("-p", f"{bind}{ports[k]}:{CONTAINER_PORTS[k]}")),
        "-v",
        f"{Path(repository).resolve()}:/models",
        image,
        "tritonserver",
        "--model-repository=/models",
    ]


def docker_plan(
    repository: Path, image: str, host: str, allow_remote: bool, host_ports: dict[str, int]
) -> tuple[list[str], str | None]:
    """`serve --engine docker`'s command and the warning to show with it, if any.

    Loopback unless --allow-remote, as the embedded engine; --allow-remote with a loopback --host
    publishes the ports on every interface.
    """
    warning = check_bind_host(host, allow_remote)
    bind = None if allow_remote and not non_loopback(host) else host
    if bind is None:
        warning = (
            "the docker command publishes the ports on every interface (--allow-remote): anyone who can "
            "reach them can call the served models; Triton there has no authentication or TLS"
        )
    return docker_command(repository, image, host_ports, bind_host=bind), warning

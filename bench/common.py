"""What the benchmarks share: a gated export to measure (the user's, else a scratch one) and a scratch repository."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console

from zeroserve import registry
from zeroserve.data.readers import default_data_dir
from zeroserve.deploy.repository import deploy_model
from zeroserve.errors import ZeroserveError
from zeroserve.export import export_model, read_export
from zeroserve.train import train_model


def ready_export(spec, artifacts: Path, scratch: Path, data_dir: Path, epochs: int | None = None) -> Path:
    """A folder where `spec` is exported and PASS: the user's artifacts, else a scratch run.

    `epochs` shortens the scratch training (serving speed does not depend on accuracy: one epoch
    gives a real, gated artifact quickly); None trains as the registry says.
    """
    try:
        if read_export(spec, artifacts).status == "PASS":
            return artifacts
    except ZeroserveError:
        pass
    train_model(spec, data_dir, scratch, epochs=epochs)
    export_model(spec, scratch, data_dir=data_dir, latency=False)
    return scratch


def deploy_scratch(names: list[str], artifacts: Path, scratch: Path, repository: Path, console: Console) -> list[str]:
    deployed = []
    for name in names:
        spec = registry.get(name)
        try:
            folder = ready_export(spec, artifacts, scratch, default_data_dir(), epochs=1)
            deploy_model(spec, folder, repository)
            deployed.append(name)
        except ZeroserveError as exc:
            console.print(f"[yellow]skipped[/] {name}: {exc}")
    return deployed

"""What a canonical repository holds: its models by Triton name, and each model folder's deployed config."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace
from pathlib import Path

from zeroserve import formats as F
from zeroserve import registry
from zeroserve.deploy.config import DeployedModel, parse
from zeroserve.errors import InputError


def canonical_models(repository: Path, models: Iterable[str] | None = None) -> list[str]:
    """Triton names to serve: all models of the repository, or those named (registry or Triton names)."""
    repository = Path(repository)
    if not repository.is_dir():
        raise InputError(f"model repository {repository} does not exist; run `zeroserve deploy all` first")
    present = sorted(
        {p.parent.name for p in repository.glob("*/config.pbtxt")}
        | {
            f.parent.parent.name
            for b in F.BACKENDS.values()  # no config: Triton auto-completes
            for f in repository.glob(f"*/[0-9]*/{b.default_file}")
            if f.parent.name.isdigit()
        }
    )
    if not present:
        raise InputError(f"model repository {repository} has no models; run `zeroserve deploy all` first")
    if not models:
        return present
    out: list[str] = []
    for item in models:
        for name in filter(None, item.split(",")):
            if name in present:
                found = [name]
            elif name in registry.REGISTRY or any((F.split_triton_name(n) or ("",))[0] == name for n in present):
                found = [n for n in present if (F.split_triton_name(n) or ("",))[0] == name]
                if not found:
                    raise InputError(f"{name} is not deployed in {repository}; run `zeroserve deploy {name}`")
            else:
                raise InputError(
                    f"unknown model {name!r}: neither a registry name nor a model in {repository} "
                    f"(deployed: {', '.join(present)})"
                )
            out.extend(n for n in found if n not in out)
    return out


def read_deployed(folder: Path) -> DeployedModel:
    """A canonical model folder's config as a `DeployedModel`, or InputError naming the folder.

    A config without `name` is named by its folder, as Triton does.
    """
    try:
        model = parse((folder / "config.pbtxt").read_text())
        return model if model.name else replace(model, name=folder.name)
    except OSError as exc:
        raise InputError(f"{folder}: cannot read config.pbtxt ({exc.strerror}); run `zeroserve deploy` again") from None
    except InputError as exc:
        raise InputError(f"{folder}: {exc}; run `zeroserve deploy` again") from None

"""The TorchScript runtime: torch.jit trace or script, libtorch in-process, the target's file-format check,
and deploy's lint (a forward on the warmup sample in the config's input order)."""

from __future__ import annotations

import warnings
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from zeroserve.errors import CheckFailed, InputError
from zeroserve.records.export import FormatEntry
from zeroserve.runtimes import Runtime, torch_export


def _first_line(exc: Exception) -> str:
    return str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__


class TorchScript(Runtime):
    key = "torchscript"
    label = "TorchScript"

    def build(self, spec, module, path: Path, **options: Any) -> dict:
        import torch

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if spec.torchscript == "script":
                scripted = torch.jit.script(module)
            else:
                scripted = torch.jit.trace(module, torch_export.example(spec), check_trace=False)
            torch.jit.save(scripted, str(path))
        return {"method": spec.torchscript}

    def runner(self, path: Path, spec, threads: int | None = None) -> Callable:
        import torch

        from zeroserve.artifacts import output_arrays

        module = self._load(path)

        def run(inputs):
            with torch.no_grad():
                return output_arrays(module(*[torch.from_numpy(np.ascontiguousarray(a)) for a in inputs]))

        return run

    @staticmethod
    def _load(path: Path):
        import torch

        with warnings.catch_warnings():
            # torch.jit is deprecated upstream; Triton's pytorch backend still loads it
            warnings.simplefilter("ignore", FutureWarning)
            return torch.jit.load(str(path), map_location="cpu").eval()

    def check_target(self, name: str, path: Path, entry: FormatEntry | None, release: Any) -> dict:
        """The archive's file-format version against what the target's libtorch reads."""
        try:
            with zipfile.ZipFile(path) as archive:
                member = next((n for n in archive.namelist() if n.count("/") == 1 and n.endswith("/version")), None)
                version = int(archive.read(member).decode().strip()) if member else None
        except (zipfile.BadZipFile, ValueError, OSError):
            version = None
        if version is None:
            raise InputError(f"{name}: {path} is not a TorchScript archive (no readable version record)")
        if version > release.max_torchscript_file_version:
            raise InputError(
                f"{name}: TorchScript file format {version} is newer than the target {release.image}'s "
                f"libtorch reads (<= {release.max_torchscript_file_version})"
            )
        return {"file_format_version": version}

    def lint(self, model, path: Path, warmup: list[np.ndarray] | None) -> list[np.ndarray] | None:
        import torch

        try:
            module = self._load(path)
        except Exception as exc:
            raise CheckFailed(f"{model.name}: torch.jit.load failed: {_first_line(exc)}") from None
        if warmup is None:
            raise CheckFailed(f"{model.name}: no warmup sample to run the TorchScript forward on")
        try:
            with torch.no_grad():
                out = module(*(torch.from_numpy(np.ascontiguousarray(a)) for a in warmup))
        except Exception as exc:
            raise CheckFailed(
                f"{model.name}: TorchScript forward on the warmup sample, inputs in config order "
                f"{[t.name for t in model.inputs]}, failed: {_first_line(exc)}"
            ) from None
        return [o.numpy() for o in (out if isinstance(out, (tuple, list)) else [out])]

    def check_artifact(self, path: Path) -> None:
        if not zipfile.is_zipfile(path):
            raise InputError(f"{path} is not a TorchScript archive (not a zip file)")


RUNTIME = TorchScript()

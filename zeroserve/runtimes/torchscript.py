"""The TorchScript runtime: torch.jit trace or script, libtorch in-process and in deploy's lint."""

from __future__ import annotations

import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from zeroserve.errors import InputError
from zeroserve.runtimes import Runtime


class TorchScript(Runtime):
    key = "torchscript"
    label = "TorchScript"

    def build(self, spec, module, path: Path, **options: Any) -> dict:
        from zeroserve.export.exporter import _build_torchscript

        return _build_torchscript(spec, module, path)

    def runner(self, path: Path, spec, threads: int | None = None) -> Callable:
        from zeroserve.export.exporter import _torchscript_runner

        return _torchscript_runner(path, spec, threads)

    def check_target(self, name: str, path: Path, entry: dict, release: Any) -> dict:
        from zeroserve.serve.target import check_torchscript_target

        return check_torchscript_target(name, path, entry, release)

    def lint(self, model, path: Path, folder: Path) -> None:
        from zeroserve.serve.lint import _lint_torchscript

        _lint_torchscript(model, path, folder)

    def check_artifact(self, path: Path) -> None:
        if not zipfile.is_zipfile(path):
            raise InputError(f"{path} is not a TorchScript archive (not a zip file)")


RUNTIME = TorchScript()

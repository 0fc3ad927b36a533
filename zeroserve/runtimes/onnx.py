"""The ONNX runtime: torch.onnx export (legacy or dynamo), ONNX Runtime in-process and in deploy's lint."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from zeroserve.runtimes import Runtime


class Onnx(Runtime):
    key = "onnx"
    label = "ONNX Runtime"

    def build(self, spec, module, path: Path, **options: Any) -> dict:
        from zeroserve.export.exporter import _build_onnx

        return _build_onnx(spec, module, path, **options)

    def info(self, path: Path) -> dict:
        from zeroserve.export.exporter import _onnx_info

        return _onnx_info(path)

    def runner(self, path: Path, spec, threads: int | None = None) -> Callable:
        from zeroserve.export.exporter import _onnx_runner

        return _onnx_runner(path, spec, threads)

    def check_target(self, name: str, path: Path, entry: dict, release: Any) -> dict:
        from zeroserve.serve.target import check_onnx_target

        return check_onnx_target(name, path, entry, release)

    def lint(self, model, path: Path, folder: Path) -> None:
        from zeroserve.serve.lint import _lint_onnx_and_warmup

        _lint_onnx_and_warmup(model, path, folder)


RUNTIME = Onnx()

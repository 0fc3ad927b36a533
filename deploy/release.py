"""The Triton release the canonical repository is written for, and the checks that an artifact loads in it.

One place for what a release carries (its NGC image, ONNX Runtime, libtorch) and the newest
ONNX IR version, opset and TorchScript file format we accept for it, with the sources.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from zeroserve import runtimes
from zeroserve.records.export import FormatEntry


@dataclass(frozen=True)
class TargetRelease:
    """The Triton release the canonical repository is written for, and what it can load.

    Args:
        image: the NGC container tag a GPU host runs.
        onnxruntime / libtorch: the runtimes that release's onnxruntime and pytorch backends use.
        max_onnx_ir_version / max_onnx_opset: the newest ONNX IR version and default-domain
            opset we accept for that ONNX Runtime (a conservative floor, see `sources`).
        max_torchscript_file_version: the newest TorchScript archive format that libtorch reads.
    """

    image: str
    triton: str
    onnxruntime: str
    libtorch: str
    max_onnx_ir_version: int
    max_onnx_opset: int
    max_torchscript_file_version: int
    sources: tuple[str, ...]

    @property
    def tag(self) -> str:
        """The image tag (`26.05-py3`), which KServe calls the runtime version."""
        return self.image.rsplit(":", 1)[1]


TARGET = TargetRelease(
    image="nvcr.io/nvidia/tritonserver:26.05-py3",
    triton="2.69.0",
    onnxruntime="1.24.4",
    libtorch="the NGC PyTorch 26.05 container's (nvcr.io/nvidia/pytorch:26.05-py3)",
    # ORT 1.18 implemented ONNX 1.16 (IR 10, opset 21); every later ORT loads at least that.
    # The exact ceiling of ORT 1.24.4 was not found in the docs searched, so we accept this floor.
    max_onnx_ir_version=10,
    max_onnx_opset=21,
    max_torchscript_file_version=10,  # libtorch's kMaxSupportedFileFormatVersion, 0xA since 2022
    sources=(
        "Triton compatibility matrix as quoted in triton-inference-server/server#8848 (2026-06-18): "
        "Triton 26.05 ships ONNX Runtime 1.24.4",
        "Triton release notes rel-26-05 (docs.nvidia.com); 26.05 = Triton 2.69.0 per aiwiki.ai/wiki/nvidia_triton",
        "pytorch_backend README: Triton YY.MM builds its libtorch from nvcr.io/nvidia/pytorch:YY.MM-py3",
        "ONNX Runtime versioning matrix: ORT 1.18 = ONNX 1.16, opset 21, IR 10",
        "pytorch caffe2/serialize/versions.h: kMaxSupportedFileFormatVersion = 0xA",
        "PyTorch container release notes: 25.12 is based on 2.10.0a0 (26.05's exact version not found)",
    ),
)


def check_onnx_target(name: str, path: Path, entry: FormatEntry, target: TargetRelease = TARGET) -> dict:
    """An ONNX file's IR version and opset against its record and the target's ONNX Runtime (the onnx runtime's
    check); {"ir_version", "opset"} read from the file."""
    return runtimes.get("onnx").check_target(name, path, entry, target)


def check_torchscript_target(
    name: str, path: Path, entry: FormatEntry | None = None, target: TargetRelease = TARGET
) -> dict:
    """A TorchScript archive's file-format version against the target's libtorch; {"file_format_version"}."""
    return runtimes.get("torchscript").check_target(name, path, entry, target)

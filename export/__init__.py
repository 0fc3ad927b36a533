"""Stage 2: export to TorchScript and ONNX behind a parity gate (`zeroserve export`)."""

from zeroserve.export.exporter import export_model, read_export

__all__ = ["export_model", "read_export"]

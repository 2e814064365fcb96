"""CPU deployment: export to ONNX (float32 or int8) and run it with ONNX Runtime or OpenVINO behind the same code."""

from .export import QUANTIZE_CHOICES, export_onnx, quantize_export
from .manifest import DEFAULT_OPSET, MANIFEST_NAME, RUNTIMES, is_export_dir

__all__ = ["export_onnx", "quantize_export", "is_export_dir", "QUANTIZE_CHOICES", "DEFAULT_OPSET", "MANIFEST_NAME",
           "RUNTIMES"]

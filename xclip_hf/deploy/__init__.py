"""CPU deployment: export to ONNX (float32, int8, static int8) and run it with ONNX Runtime or OpenVINO alike."""

from .export import QUANTIZE_CHOICES, export_onnx, quantize_export
from .manifest import DEFAULT_OPSET, MANIFEST_NAME, RUNTIMES, is_export_dir
from .static import quantize_static_export

__all__ = ["export_onnx", "quantize_export", "quantize_static_export", "is_export_dir", "QUANTIZE_CHOICES",
           "DEFAULT_OPSET", "MANIFEST_NAME", "RUNTIMES"]

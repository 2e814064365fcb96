"""CPU deployment: export to ONNX (float32 or int8) and run the export with ONNX Runtime or OpenVINO through the same
processor, pipeline, embedding and search code as the torch model (`load_model_and_processor(folder)` detects an
exported folder; `runtime=` chooses the engine).
"""

from .export import QUANTIZE_CHOICES, export_onnx, quantize_export
from .manifest import DEFAULT_OPSET, MANIFEST_NAME, RUNTIMES, is_export_dir

__all__ = ["export_onnx", "quantize_export", "is_export_dir", "QUANTIZE_CHOICES", "DEFAULT_OPSET", "MANIFEST_NAME",
           "RUNTIMES"]

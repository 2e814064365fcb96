"""`xclip-hf export-onnx --model M OUT [--quantize int8]`: a model -> a folder of ONNX graphs and processor files."""

from __future__ import annotations

import os

from .common import add_model_argument, check_model_source, usage_errors

HELP = "export a model to ONNX graphs (float32 or int8) that run without torch models (ONNX Runtime / OpenVINO)"


def add_arguments(p) -> None:
    """Arguments of `export-onnx` (no heavy import here: `--help` must answer at once)."""
    add_model_argument(p, note="ours or a classifier", positional_alias=True)
    p.add_argument("output", help="the folder to write (new or empty)")
    p.add_argument("--quantize", choices=["int8"], default=None,
                   help="int8: MatMul weights in int8, activations quantised at run time (embeddings, layer norms, "
                        "softmax and the logit scale stay float32)")
    p.add_argument("--opset", type=int, default=18,
                   help="ONNX opset of the graphs (default 18): one that torch's ONNX exporter writes (18-25 with "
                        "onnxscript 0.7), others are refused")
    p.add_argument("--runtime", choices=["onnxruntime", "openvino"], default=None,
                   help="the engine the folder runs on by default (default: the faster one installed, OpenVINO for "
                        "float32 and ONNX Runtime for int8; either can be chosen at load with runtime=)")


def run(args) -> int:
    from ..deploy.export import check_export_options, export_onnx
    from ..deploy.manifest import read_manifest

    with usage_errors():  # an opset the exporter does not write is a bad argument (exit status 2)
        check_export_options(args.quantize, args.opset, args.runtime)
    check_model_source(args.model)
    out = export_onnx(args.model, args.output, quantize=args.quantize, opset=args.opset, runtime=args.runtime)
    manifest = read_manifest(out)
    files = sorted(entry["file"] for entry in manifest["graphs"].values())
    size = sum(os.path.getsize(os.path.join(out, name)) for name in os.listdir(out)) / 1e6
    print(f"exported {args.model} -> {out} ({', '.join(files)}; {manifest['precision']}, opset {manifest['opset']}, "
          f"{size:.1f} MB)")
    return 0

"""`xclip-hf export-onnx --model M OUT [--quantize int8 | int8-static --calibration DIR_OR_LIST]`: ONNX graphs."""

from __future__ import annotations

import os

from .common import add_model_argument, check_model_source, positive_int, usage_errors

HELP = "export a model to ONNX graphs (float32 or int8) that run without torch models (ONNX Runtime / OpenVINO)"


def add_arguments(p) -> None:
    """Arguments of `export-onnx` (no heavy import here: `--help` must answer at once)."""
    add_model_argument(p, note="ours or a classifier", positional_alias=True)
    p.add_argument("output", help="the folder to write (new or empty)")
    p.add_argument("--quantize", choices=["int8", "int8-static"], default=None,
                   help="int8: MatMul weights in int8, activations quantised at run time (embeddings, layer norms, "
                        "softmax and the logit scale stay float32); int8-static: the video graph in int8 with "
                        "activation ranges calibrated on --calibration videos (runs best on OpenVINO)")
    p.add_argument("--calibration", default=None, metavar="DIR_OR_LIST",
                   help="with --quantize int8-static: a folder of videos (searched recursively) or a list file (one "
                        "video path per line) to calibrate on, e.g. some training videos")
    p.add_argument("--calibration-size", type=positive_int, default=None, metavar="N",
                   help="with --quantize int8-static: how many of the calibration videos to read, spread over the "
                        "list (default 32)")
    p.add_argument("--opset", type=int, default=18,
                   help="ONNX opset of the graphs (default 18): one that torch's ONNX exporter writes (18-25 with "
                        "onnxscript 0.7), others are refused")
    p.add_argument("--runtime", choices=["onnxruntime", "openvino"], default=None,
                   help="the engine the folder runs on by default (default: the faster one installed, OpenVINO for "
                        "float32 and ONNX Runtime for int8; either can be chosen at load with runtime=)")


def run(args) -> int:
    from ..deploy.export import check_export_options, export_onnx
    from ..deploy.manifest import precision_kind, read_manifest
    from ..deploy.static import calibration_paths

    with usage_errors():  # an opset the exporter does not write is a bad argument (exit status 2)
        check_export_options(args.quantize, args.opset, args.runtime, args.calibration, args.calibration_size)
        if args.calibration is not None:  # a missing path, a folder without videos, an empty list file
            calibration_paths(args.calibration)
    check_model_source(args.model)
    out = export_onnx(args.model, args.output, quantize=args.quantize, opset=args.opset, runtime=args.runtime,
                      calibration=args.calibration, calibration_size=args.calibration_size)
    manifest = read_manifest(out)
    files = sorted(entry["file"] for entry in manifest["graphs"].values())
    size = sum(os.path.getsize(os.path.join(out, name)) for name in os.listdir(out)) / 1e6
    print(f"exported {args.model} -> {out} ({', '.join(files)}; {precision_kind(manifest)}, opset "
          f"{manifest['opset']}, {size:.1f} MB)")
    return 0

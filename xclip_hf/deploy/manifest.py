"""The description of an exported directory (`xclip_onnx.json`): which graphs, their inputs and outputs, the opset,
the frame count and input size they were traced for, and the versions that wrote them; read back and checked at
load so that a directory from another format version or opset, or one that does not match its processor, is a
clear error naming the file instead of a failure deep inside a runtime.

The split keeps X-CLIP's label cache (paper Sec. 3.3: only the prompt generator depends on both the video and the
texts): the text tower runs once per label set, the video tower once per video, and the small head (prompt
generator, Eq. 10, and the scaled cosine of Eq. 3) once per (batch of videos, label set).
"""

from __future__ import annotations

import json
import os

__all__ = ["MANIFEST_NAME", "FORMAT", "FORMAT_VERSION", "DEFAULT_OPSET", "MIN_OPSET", "GRAPHS", "RUNTIMES",
           "PREFERRED_RUNTIMES", "default_runtime", "read_manifest", "write_manifest", "is_export_dir"]

MANIFEST_NAME = "xclip_onnx.json"
FORMAT = "xclip_hf-onnx"
FORMAT_VERSION = 1
DEFAULT_OPSET = 18  # read by onnxruntime >= 1.14 and OpenVINO >= 2023.0
MIN_OPSET = 17  # LayerNormalization is a standard op from 17 on
RUNTIMES = ("onnxruntime", "openvino")
# default engine per precision, fastest first (benchmarks/bench_onnx.py, B/32-8f on a 2-core AVX-512 VNNI CPU:
# float32 zero-shot step OpenVINO 1.33x torch vs ONNX Runtime 1.24-1.29x; int8 ONNX Runtime 3.1-3.5x vs OpenVINO
# 1.05-1.19x); the first one installed is used unless the export or the caller names one
PREFERRED_RUNTIMES = {"float32": ("openvino", "onnxruntime"), "int8": ("onnxruntime", "openvino")}

# graph -> (input names, output names); batch axis "batch" (videos), "labels" (texts), "sequence" (tokens)
GRAPHS = {
    "video": (("pixel_values",), ("video_embeds", "video_context", "frame_embeds")),
    "text": (("input_ids", "attention_mask"), ("text_embeds",)),
    "head": (("text_embeds", "video_context", "video_embeds"),
             ("logits_per_video", "video_embeds_normalized", "text_embeds_prompted")),
}


def default_runtime(manifest: dict) -> str:
    """The engine an export runs on when the caller names none: the one its export named, else the fastest
    installed one for its precision."""
    import importlib.util

    if manifest.get("runtime"):
        return manifest["runtime"]
    preferred = PREFERRED_RUNTIMES.get(manifest.get("precision"), RUNTIMES)
    return next((name for name in preferred if importlib.util.find_spec(name) is not None), preferred[0])


def is_export_dir(directory) -> bool:
    """Whether `directory` is a local folder holding an exported model (its manifest)."""
    return os.path.isfile(os.path.join(os.fspath(directory), MANIFEST_NAME))


def write_manifest(directory: str, manifest: dict) -> str:
    path = os.path.join(directory, MANIFEST_NAME)
    with open(path, "w", encoding="utf-8") as f:
        json.dump(manifest, f, indent=2, sort_keys=True)
        f.write("\n")
    return path


def read_manifest(directory: str) -> dict:
    """The checked manifest of an exported directory; ValueError naming the file when it is not one this code reads."""
    path = os.path.join(directory, MANIFEST_NAME)
    try:
        with open(path, encoding="utf-8") as f:
            manifest = json.load(f)
    except (OSError, ValueError) as err:
        raise ValueError(f"cannot read {path!r}: {type(err).__name__}: {err}") from err
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise ValueError(f"{path!r} is not an xclip_hf ONNX export manifest (no \"format\": {FORMAT!r})")
    version = manifest.get("format_version")
    if version != FORMAT_VERSION:
        written = manifest.get("versions", {}).get("xclip_hf", "an unknown version")
        raise ValueError(f"{path!r} has export format version {version!r} (written by xclip_hf {written}); this "
                         f"xclip_hf reads version {FORMAT_VERSION}: export the model again with `xclip-hf export-onnx`")
    opset = manifest.get("opset")
    if not isinstance(opset, int) or opset < MIN_OPSET:
        raise ValueError(f"{path!r}: graphs of ONNX opset {opset!r}; this xclip_hf reads opset >= {MIN_OPSET}: "
                         "export the model again with `xclip-hf export-onnx`")
    for key in ("num_frames", "image_size", "num_channels", "projection_dim", "logit_scale", "graphs"):
        if key not in manifest:
            raise ValueError(f"{path!r} has no {key!r}: the export is incomplete; export the model again")
    missing = [name for name in GRAPHS if name not in manifest["graphs"]]
    if missing:
        raise ValueError(f"{path!r} lists no {', '.join(missing)} graph: the export is incomplete; export it again")
    return manifest

"""The description of an exported directory (`xclip_onnx.json`): graphs, opset, sizes, versions, digests."""

from __future__ import annotations

import hashlib
import json
import os
import uuid

__all__ = ["MANIFEST_NAME", "FORMAT", "FORMAT_VERSION", "DEFAULT_OPSET", "MIN_OPSET", "GRAPHS", "RUNTIMES",
           "PREFERRED_RUNTIMES", "CHECKED_FIELDS", "default_runtime", "precision_kind", "read_manifest", "write_manifest",
           "is_export_dir", "is_partial_export", "record_graph_files", "check_graph_file", "file_sha256"]

MANIFEST_NAME = "xclip_onnx.json"
FORMAT = "xclip_hf-onnx"
FORMAT_VERSION = 2  # 2: graph files' sha256 and digests of the checked fields
DEFAULT_OPSET = 18  # read by onnxruntime >= 1.14 and OpenVINO >= 2023.0
MIN_OPSET = 18  # the lowest opset torch's ONNX exporter writes (LayerNormalization is a standard op from 17 on)
RUNTIMES = ("onnxruntime", "openvino")
# default engine per precision, fastest first (benchmarks/bench_onnx.py, README "Benchmarks"); the first one
# installed is used unless the export or the caller names one; "int8-static": calibrated int8 (`static.py`)
PREFERRED_RUNTIMES = {"float32": ("openvino", "onnxruntime"), "int8": ("onnxruntime", "openvino"),
                      "int8-static": ("openvino", "onnxruntime")}

# graph -> (input names, output names); batch axis "batch" (videos), "labels" (texts), "sequence" (tokens)
GRAPHS = {
    "video": (("pixel_values",), ("video_embeds", "video_context", "frame_embeds")),
    "text": (("input_ids", "attention_mask"), ("text_embeds",)),
    "head": (("text_embeds", "video_context", "video_embeds"),
             ("logits_per_video", "video_embeds_normalized", "text_embeds_prompted")),
}
# the fields that say what the graphs are: each has a digest in "checks", written with it at export
CHECKED_FIELDS = ("opset", "precision", "quantization", "graphs", "num_frames", "image_size", "num_channels",
                  "projection_dim", "max_text_length", "logit_scale", "source_fingerprint", "source_whole_fingerprint")
GRAPH_SUFFIX = ".onnx"
DATA_SUFFIX = ".data"  # a graph's weights beside it (graphs over protobuf's 2 GB limit): video.onnx.data


def default_runtime(manifest: dict) -> str:
    """The engine an export runs on when the caller names none: its export's, else the fastest installed one."""
    import importlib.util

    if manifest.get("runtime"):
        return manifest["runtime"]
    preferred = PREFERRED_RUNTIMES.get(precision_kind(manifest), RUNTIMES)
    return next((name for name in preferred if importlib.util.find_spec(name) is not None), preferred[0])


def precision_kind(manifest: dict) -> str:
    """The graphs' precision as "float32", "int8" (dynamic quantisation) or "int8-static" (calibrated)."""
    precision, quantization = manifest.get("precision", "float32"), manifest.get("quantization")
    static = precision == "int8" and isinstance(quantization, dict) and quantization.get("scheme") == "static"
    return "int8-static" if static else precision


def is_export_dir(directory) -> bool:
    """Whether `directory` is a local folder holding an exported model (its manifest)."""
    return os.path.isfile(os.path.join(os.fspath(directory), MANIFEST_NAME))


def is_partial_export(directory) -> bool:
    """Whether `directory` holds what an interrupted export leaves: graphs, no manifest, no torch weights."""
    directory = os.fspath(directory)
    if not os.path.isdir(directory) or is_export_dir(directory):
        return False
    names = os.listdir(directory)
    if any(name.endswith((".safetensors", ".bin", ".pth", ".pt")) for name in names):
        return False
    graphs = {f"{name}{GRAPH_SUFFIX}" for name in GRAPHS}
    return any(name in graphs or (name.startswith(MANIFEST_NAME) and name.endswith(".tmp")) for name in names)


def file_sha256(path: str) -> str:
    """``"sha256:<hex>"`` of a file's bytes, read in 8 MB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 23), b""):
            digest.update(block)
    return "sha256:" + digest.hexdigest()


def _field_digest(name: str, value) -> str:
    text = json.dumps([FORMAT, name, value], sort_keys=True, separators=(",", ":"))
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()


def record_graph_files(directory: str, graphs: dict) -> dict:
    """The manifest's "graphs" entry with each graph file's sha256 (and its weights file's, if any) recorded."""
    recorded = {}
    for name, entry in graphs.items():
        path = os.path.join(directory, entry["file"])
        entry = dict(entry, sha256=file_sha256(path))
        entry.pop("data_sha256", None)
        if os.path.isfile(path + DATA_SUFFIX):
            entry["data_sha256"] = file_sha256(path + DATA_SUFFIX)
        recorded[name] = entry
    return recorded


def write_manifest(directory: str, manifest: dict) -> str:
    """Write `manifest` with the digests of its checked fields, atomically (renamed into place); returns its path."""
    manifest = dict(manifest, checks={name: _field_digest(name, manifest.get(name)) for name in CHECKED_FIELDS})
    path = os.path.join(directory, MANIFEST_NAME)
    tmp = f"{path}.{uuid.uuid4().hex}.tmp"
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(manifest, f, indent=2, sort_keys=True)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return path


def _incomplete(directory: str) -> ValueError:
    present = sorted(n for n in os.listdir(directory) if n.endswith(GRAPH_SUFFIX) or n.endswith(".tmp"))
    return ValueError(f"{directory!r} is an incomplete export: it holds {', '.join(present)} but no {MANIFEST_NAME} "
                      "(written last: the export was interrupted or is still running); export the model again into "
                      "a new folder")


def _load_json(directory: str) -> dict:
    path = os.path.join(directory, MANIFEST_NAME)
    if not os.path.exists(path) and is_partial_export(directory):
        raise _incomplete(directory)
    try:
        with open(path, encoding="utf-8") as f:
            manifest = json.load(f)
    except (OSError, ValueError) as err:
        raise ValueError(f"cannot read {path!r}: {type(err).__name__}: {err}") from err
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise ValueError(f"{path!r} is not an xclip_hf ONNX export manifest (no \"format\": {FORMAT!r})")
    return manifest


def _check_version(path: str, manifest: dict) -> None:
    version = manifest.get("format_version")
    if version != FORMAT_VERSION:
        written = manifest.get("versions", {}).get("xclip_hf", "an unknown version")
        raise ValueError(f"{path!r} has export format version {version!r} (written by xclip_hf {written}); this "
                         f"xclip_hf reads version {FORMAT_VERSION}: export the model again with `xclip-hf export-onnx`")


def _check_graph_names(path: str, graphs) -> None:
    """Every graph is listed, by a plain file name inside the folder (no directory part, no '..')."""
    if not isinstance(graphs, dict):
        raise ValueError(f"{path!r}: \"graphs\" must map graph names to their files, got {type(graphs).__name__}")
    missing = [name for name in GRAPHS if not isinstance(graphs.get(name), dict)]
    if missing:
        raise ValueError(f"{path!r} lists no {', '.join(missing)} graph: the export is incomplete; export it again")
    for name in GRAPHS:
        file = graphs[name].get("file")
        if not isinstance(file, str) or not file.endswith(GRAPH_SUFFIX) or os.path.basename(file) != file \
                or "/" in file or "\\" in file:
            raise ValueError(f"{path!r} names {file!r} as the {name} graph: graph files are plain *{GRAPH_SUFFIX} "
                             "names inside the export folder; export the model again")


def _check_fields(path: str, manifest: dict) -> None:
    """Each checked field still has the value written with its digest at export; else an error naming it."""
    checks = manifest.get("checks")
    if not isinstance(checks, dict):
        raise ValueError(f"{path!r} has no \"checks\" (the digests written with its fields): it was not written by "
                         "`xclip-hf export-onnx`, or was edited; export the model again")
    changed = [name for name in CHECKED_FIELDS if checks.get(name) != _field_digest(name, manifest.get(name))]
    if changed:
        shown = ", ".join(f"{name}={manifest.get(name)!r}" if name != "graphs" else name for name in changed)
        raise ValueError(f"{path!r} was edited after export ({shown}: not what the export wrote with the graphs, "
                         "see the digests in \"checks\"); export the model again rather than edit it")


def read_manifest(directory: str) -> dict:
    """The checked manifest of an exported directory; ValueError naming the file when this code cannot read it."""
    path = os.path.join(directory, MANIFEST_NAME)
    manifest = _load_json(directory)
    _check_version(path, manifest)
    opset = manifest.get("opset")
    if not isinstance(opset, int) or opset < MIN_OPSET:
        raise ValueError(f"{path!r}: graphs of ONNX opset {opset!r}; this xclip_hf reads opset >= {MIN_OPSET}: "
                         "export the model again with `xclip-hf export-onnx`")
    for key in ("num_frames", "image_size", "num_channels", "projection_dim", "logit_scale", "graphs"):
        if key not in manifest:
            raise ValueError(f"{path!r} has no {key!r}: the export is incomplete; export the model again")
    _check_graph_names(path, manifest["graphs"])
    _check_fields(path, manifest)
    return manifest


def check_graph_file(directory: str, manifest: dict, name: str) -> str:
    """The path of graph `name`, once its bytes (and its weights file's) are the recorded ones; else ValueError."""
    entry = manifest["graphs"][name]
    path = os.path.join(directory, entry["file"])
    if not os.path.isfile(path):
        raise ValueError(f"the exported model {directory!r} has no {name} graph {path!r}")
    for file, recorded in ((path, entry.get("sha256")), (path + DATA_SUFFIX, entry.get("data_sha256"))):
        if recorded is None and file != path:
            continue
        if not os.path.isfile(file):
            raise ValueError(f"the exported model {directory!r} has no {file!r} (the weights of its {name} graph)")
        if file_sha256(file) != recorded:
            raise ValueError(f"{file!r} is not the file the export wrote (its sha256 differs from the one in "
                             f"{MANIFEST_NAME}): it was changed or replaced since; export the model again")
    return path

"""Export an X-CLIP model to three ONNX graphs (video tower, text tower, prompt head) plus its processor files.

    from xclip_hf.deploy import export_onnx
    export_onnx("my-xclip", "my-xclip-onnx")                    # float32
    export_onnx("my-xclip", "my-xclip-int8", quantize="int8")   # int8 MatMul weights
    export_onnx("my-xclip", "my-xclip-int8s", quantize="int8-static", calibration="videos/")  # calibrated int8
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile

import torch
from torch import nn

from ..jobs.identity import model_fingerprint
from .common import check_output as _check_output, quiet as _quiet
from .manifest import DATA_SUFFIX, DEFAULT_OPSET, FORMAT, FORMAT_VERSION, GRAPHS, MANIFEST_NAME, MIN_OPSET, \
    RUNTIMES, check_graph_file, read_manifest, record_graph_files, write_manifest

__all__ = ["export_onnx", "quantize_export", "QUANTIZE_CHOICES", "check_export_options", "exporter_opsets"]

QUANTIZE_CHOICES = ("int8", "int8-static")  # int8-static: `static.quantize_static_export`
# int8: only MatMuls with a constant weight (the Linear layers of every block) get int8 weights; the patch
# embedding (Conv), token/position embeddings (Gather), layer norms, softmax, the attention products of two
# activations and the final scaled cosine (Einsum, with exp(logit_scale)) stay float32.
QUANTIZED_OPS = ("MatMul",)
EXTERNAL_DATA_BYTES = 1_800_000_000  # graphs with more weight bytes keep them in a side file (protobuf's 2 GB limit)


class _VideoGraph(nn.Module):
    """pixel_values (B, T, C, H, W) -> video embedding v (B, P), prompt context z-bar (B, N, P), frame embeddings."""

    def __init__(self, model):
        super().__init__()
        self.vision_model = model.vision_model

    def forward(self, pixel_values):
        out = self.vision_model(pixel_values)
        return out.video_embeds, out.video_context, out.frame_embeds


class _TextGraph(nn.Module):
    """input_ids, attention_mask (K, L) -> unprompted projected text features c (K, P) (`get_text_features`)."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, input_ids, attention_mask):
        return self.model.get_text_features(input_ids=input_ids, attention_mask=attention_mask).pooler_output


class _HeadGraph(nn.Module):
    """text features (K, P), z-bar (B, N, P), v (B, P) -> logits (B, K), normalised v, prompted texts (B, K, P)."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, text_embeds, video_context, video_embeds):
        return self.model.video_text_logits(video_embeds, video_context, text_embeds)


def _example_inputs(model) -> dict:
    """Inputs to trace each graph with (batch 2, 2 labels, 8 tokens; the axes are exported as dynamic)."""
    vision, text = model.config.vision_config, model.config.text_config
    pixel_values = torch.randn(2, vision.num_frames, vision.num_channels, vision.image_size, vision.image_size)
    input_ids = torch.randint(0, text.vocab_size, (2, 8))
    attention_mask = torch.ones_like(input_ids)
    with torch.no_grad():
        video = model.get_video_features(pixel_values)
        text_embeds = model.get_text_features(input_ids=input_ids, attention_mask=attention_mask).pooler_output
    return {"video": (pixel_values,), "text": (input_ids, attention_mask),
            "head": (text_embeds, video.video_context, video.video_embeds)}


def _dynamic_shapes(model) -> dict:
    batch, labels = torch.export.Dim("batch"), torch.export.Dim("labels")
    sequence = torch.export.Dim("sequence", max=model.config.text_config.max_position_embeddings)
    return {"video": {"pixel_values": {0: batch}},
            "text": {"input_ids": {0: labels, 1: sequence}, "attention_mask": {0: labels, 1: sequence}},
            "head": {"text_embeds": {0: labels}, "video_context": {0: batch}, "video_embeds": {0: batch}}}


def _weight_bytes(module: nn.Module) -> int:
    return sum(p.numel() * p.element_size() for p in module.parameters())


def _export_graphs(model, directory: str, opset: int) -> dict:
    """Write video.onnx, text.onnx and head.onnx; returns the manifest's "graphs" entry."""
    wrappers = {"video": _VideoGraph(model), "text": _TextGraph(model), "head": _HeadGraph(model)}
    examples, shapes = _example_inputs(model), _dynamic_shapes(model)
    graphs = {}
    for name, wrapper in wrappers.items():
        inputs, outputs = GRAPHS[name]
        path = os.path.join(directory, f"{name}.onnx")
        try:
            with _quiet():
                torch.onnx.export(wrapper.eval(), examples[name], path, input_names=list(inputs),
                                  output_names=list(outputs), dynamic_shapes=shapes[name], opset_version=opset,
                                  dynamo=True, external_data=_weight_bytes(wrapper) > EXTERNAL_DATA_BYTES,
                                  verbose=False)
        except Exception as err:
            raise RuntimeError(f"exporting the {name} graph to {path!r} failed: {type(err).__name__}: {err}") from err
        graphs[name] = {"file": os.path.basename(path), "inputs": list(inputs), "outputs": list(outputs)}
    return graphs


def _versions() -> dict:
    import onnx
    import transformers

    from ..version import package_version

    versions = {"xclip_hf": package_version(), "torch": torch.__version__, "transformers": transformers.__version__,
                "onnx": onnx.__version__}
    with contextlib.suppress(ImportError):
        import onnxruntime

        versions["onnxruntime"] = onnxruntime.__version__
    return versions


def exporter_opsets() -> range:
    """The opsets torch's ONNX exporter writes here: its own (18) and those onnxscript's converter reaches."""
    try:
        from onnxscript.version_converter import _version_converter as converter

        return range(converter.SUPPORTED_MIN_ONNX_OPSET, converter.SUPPORTED_MAX_ONNX_OPSET + 1)
    except (ImportError, AttributeError):  # another onnxscript: only the exporter's own opset is certain
        return range(MIN_OPSET, MIN_OPSET + 1)


def check_export_options(quantize, opset, runtime, calibration=None, calibration_size=None) -> None:
    """ValueError naming a quantisation, calibration, opset or runtime option that `export_onnx` cannot honour."""
    from .static import check_calibration_options

    if quantize not in (None, *QUANTIZE_CHOICES):
        raise ValueError(f"quantize must be None or one of {QUANTIZE_CHOICES}, got {quantize!r}")
    check_calibration_options(quantize, calibration, calibration_size)
    opsets = exporter_opsets()
    if not isinstance(opset, int) or isinstance(opset, bool) or opset not in opsets:
        raise ValueError(f"opset must be an integer from {opsets.start} to {opsets.stop - 1} (the opsets torch's "
                         f"ONNX exporter writes here), got {opset!r}")
    if runtime not in (None, *RUNTIMES):
        raise ValueError(f"runtime must be one of {RUNTIMES}, got {runtime!r}")


def _graph_opset(path: str) -> int:
    """The ONNX (default domain) opset a written graph declares."""
    import onnx

    model = onnx.load(path, load_external_data=False)
    return next(entry.version for entry in model.opset_import if entry.domain in ("", "ai.onnx"))


def _written_opset(directory: str, graphs: dict, requested: int) -> int:
    """The opset the exported graphs really have; RuntimeError if it is not the requested one."""
    found = {name: _graph_opset(os.path.join(directory, entry["file"])) for name, entry in graphs.items()}
    wrong = {name: v for name, v in found.items() if v != requested}
    if wrong:
        detail = ", ".join(f"{name} {v}" for name, v in wrong.items())
        raise RuntimeError(f"torch's ONNX exporter wrote graphs of another opset than {requested} ({detail}); "
                           f"export with --opset {DEFAULT_OPSET}")
    return requested


def export_onnx(model, output_dir, *, processor=None, quantize: str | None = None, opset: int = DEFAULT_OPSET,
                runtime: str | None = None, calibration=None, calibration_size: int | None = None) -> str:
    """Export `model` to `output_dir` (a new or empty folder); returns the folder.

    Args:
        model: a model folder or hub id (anything `load_model_and_processor` reads), or an `XClipModel`.
        processor: its `XClipProcessor` (default: loaded from the model's folder); saved beside the graphs.
        quantize: None (float32 graphs), "int8" (MatMul weights int8, see `quantize_export`) or "int8-static"
            (the video graph int8 with calibrated activation ranges, see `static.quantize_static_export`).
        calibration: for "int8-static": a folder of videos, a list file (one path per line) or a list of paths.
        calibration_size: for "int8-static": how many of those videos to calibrate on (default 32).
        opset: the ONNX opset of the graphs (default 18; one of `exporter_opsets()`, read back from the graphs).
        runtime: the folder's default engine ("onnxruntime" or "openvino"); default: the faster one installed for
            its precision (`manifest.default_runtime`).
    """
    from ..models.loading import load_model_and_processor

    check_export_options(quantize, opset, runtime, calibration, calibration_size)
    output_dir = _check_output(output_dir)
    net, processor = load_model_and_processor(model, processor=processor, need_text=True, runtime="torch")
    if net.dtype != torch.float32:
        net = _float_copy(net)
    if quantize == "int8-static":  # read before the (long) export: a bad calibration input fails at once
        from .static import DEFAULT_CALIBRATION_SIZE, read_calibration

        calibration = read_calibration(calibration, processor.video_processor, net.config.vision_config.num_frames,
                                       calibration_size or DEFAULT_CALIBRATION_SIZE)
    os.makedirs(output_dir, exist_ok=True)
    target = tempfile.mkdtemp(prefix="xclip-onnx-") if quantize else output_dir
    try:
        graphs = _export_graphs(net, target, opset)
        vision = net.config.vision_config
        manifest = {
            "format": FORMAT, "format_version": FORMAT_VERSION, "opset": _written_opset(target, graphs, opset),
            "precision": "float32", "quantization": None, "runtime": runtime,
            "graphs": record_graph_files(target, graphs),
            "num_frames": vision.num_frames, "image_size": vision.image_size, "num_channels": vision.num_channels,
            "projection_dim": net.config.projection_dim,
            "max_text_length": net.config.text_config.max_position_embeddings,
            "logit_scale": float(net.logit_scale.detach().float()),
            "source": getattr(net, "name_or_path", "") or "", "versions": _versions(),
            # the torch model's fingerprints (job identity): of its video side (vectors of this export and
            # of the model it came from may share an index) and of the whole model (evaluate's predictions); int8
            # graphs are marked (`ExportedXClipModel.source_fingerprint`)
            "source_fingerprint": model_fingerprint(net),
            "source_whole_fingerprint": model_fingerprint(net, whole=True),
        }
        net.config.save_pretrained(target)
        processor.save_pretrained(target)
        write_manifest(target, manifest)
        if quantize == "int8-static":
            from .static import quantize_static_export

            quantize_static_export(target, output_dir, calibration)
        elif quantize:
            quantize_export(target, output_dir)
    finally:
        if target != output_dir:
            shutil.rmtree(target, ignore_errors=True)
    return output_dir


def _float_copy(model):
    import copy

    return copy.deepcopy(model).float()


def quantize_export(source_dir, output_dir, *, per_channel: bool = True) -> str:
    """An int8 copy (dynamic quantisation, per output channel) of the float32 export `source_dir` in `output_dir`."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    source_dir = os.fspath(source_dir)
    manifest = read_manifest(source_dir)
    if manifest.get("precision") != "float32":
        raise ValueError(f"{source_dir!r} holds {manifest.get('precision')} graphs; quantise a float32 export")
    output_dir = _check_output(output_dir)
    os.makedirs(output_dir, exist_ok=True)
    for name in manifest["graphs"]:
        check_graph_file(source_dir, manifest, name)  # quantise the graphs that were exported, nothing else
    graph_files = {entry["file"] for entry in manifest["graphs"].values()}
    for name in os.listdir(source_dir):
        if name != MANIFEST_NAME and name not in graph_files and not name.endswith(".onnx" + DATA_SUFFIX):
            shutil.copy2(os.path.join(source_dir, name), os.path.join(output_dir, name))
    for entry in manifest["graphs"].values():
        src, dst = os.path.join(source_dir, entry["file"]), os.path.join(output_dir, entry["file"])
        big = os.path.exists(src + DATA_SUFFIX)
        with _quiet():
            quantize_dynamic(src, dst, op_types_to_quantize=list(QUANTIZED_OPS), per_channel=per_channel,
                             weight_type=QuantType.QInt8, extra_options={"MatMulConstBOnly": True},
                             use_external_data_format=big)
    manifest = dict(manifest, precision="int8", graphs=record_graph_files(output_dir, manifest["graphs"]),
                    quantization={"method": "onnxruntime.quantization.quantize_dynamic", "weights": "int8",
                                  "activations": "uint8 (run time)", "op_types": list(QUANTIZED_OPS),
                                  "per_channel": per_channel})
    write_manifest(output_dir, manifest)
    return output_dir

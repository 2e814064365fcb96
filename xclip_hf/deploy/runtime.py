"""Run an exported directory with ONNX Runtime or OpenVINO behind the inference surface of `XClipModel`."""

from __future__ import annotations

import os
from types import SimpleNamespace

import numpy as np
import torch
from torch import nn
from transformers.modeling_outputs import BaseModelOutputWithPooling

from ..models.loading import ModelLoadError
from ..models.modeling_outputs_xclip import XClipOutput, XClipVisionOutput
from ..models.modeling_xclip import XClipModel, XClipTextModel, XClipVisionModel
from ..utils.messages import one_line
from .manifest import MANIFEST_NAME, check_graph_file, default_runtime, is_export_dir, is_partial_export, \
    precision_kind, read_manifest

__all__ = ["ExportedXClipModel", "RUNTIME", "OnnxRuntimeGraph", "OpenVinoGraph"]


class OnnxRuntimeGraph:
    """One graph in an ONNX Runtime CPU session: `graph(feeds) -> [outputs]` (numpy)."""

    def __init__(self, path: str):
        import onnxruntime

        options = onnxruntime.SessionOptions()
        options.log_severity_level = 3
        self.session = onnxruntime.InferenceSession(path, options, providers=["CPUExecutionProvider"])

    def __call__(self, feeds: dict) -> list:
        return self.session.run(None, feeds)


class OpenVinoGraph:
    """One graph compiled by OpenVINO for the CPU, in float32 (not bf16 on CPUs with AVX-512 BF16 or AMX)."""

    def __init__(self, path: str):
        from concurrent.futures import ThreadPoolExecutor

        import openvino

        # compiled on a helper thread: `compile_model` installs a small (11 KB) alternate signal stack on the calling
        # thread, where Python then runs its signal handlers; a SIGCHLD (a DataLoader worker dying) could overflow it
        with ThreadPoolExecutor(1, thread_name_prefix="openvino-compile") as pool:
            self.compiled = pool.submit(openvino.Core().compile_model, path, "CPU",
                                        {"INFERENCE_PRECISION_HINT": "f32"}).result()

    def __call__(self, feeds: dict) -> list:
        results = self.compiled(feeds)
        return [np.asarray(results[output]) for output in self.compiled.outputs]


ENGINES = {"onnxruntime": OnnxRuntimeGraph, "openvino": OpenVinoGraph}


def _numpy(tensor: torch.Tensor, dtype) -> np.ndarray:
    return np.ascontiguousarray(tensor.detach().cpu().numpy(), dtype=dtype)


class ExportedXClipModel(nn.Module):
    """An exported X-CLIP model run by ONNX Runtime or OpenVINO, with `XClipModel`'s inference surface.

    Inputs get the torch model's checks and messages; graphs in `open_graphs` are opened at once, others on first use.
    """

    main_input_name = "input_ids"  # forward's first argument, as XClipModel
    input_modalities = ("video", "text")

    def __init__(self, directory: str, runtime: str | None = None, open_graphs=("video", "text", "head")):
        super().__init__()
        try:
            manifest = read_manifest(directory)
        except ValueError as err:
            raise ModelLoadError(f"cannot load the exported model {directory!r}: {err}") from err
        runtime = runtime or default_runtime(manifest)
        if runtime not in ENGINES:
            raise ModelLoadError(f"runtime must be one of {tuple(ENGINES)} for the exported model {directory!r}, "
                                 f"got {runtime!r}")
        self.directory, self.name_or_path, self.runtime, self.manifest = directory, directory, runtime, manifest
        self.precision = manifest.get("precision", "float32")
        # the source model's fingerprints (video side; whole model: `jobs.identity.model_fingerprint(whole=True)`)
        self.source_fingerprint = _marked(manifest.get("source_fingerprint"), precision_kind(manifest))
        self.source_whole_fingerprint = _marked(manifest.get("source_whole_fingerprint"), precision_kind(manifest))
        self.config = _config(directory, manifest)
        # the one parameter: the logit scale (for search's unprompted scores); it also keys the label cache
        self.logit_scale = nn.Parameter(torch.tensor(float(manifest["logit_scale"])), requires_grad=False)
        self._vision = SimpleNamespace(config=self.config.vision_config)
        self._text = SimpleNamespace(config=self.config.text_config)
        self._graphs: dict = {}
        for name in open_graphs:
            self._graph(name)
        self.eval()

    def extra_repr(self) -> str:
        return f"{self.directory!r}, runtime={self.runtime!r}, precision={precision_kind(self.manifest)!r}"

    # ------------------------------------------------------------------ model surface
    @property
    def device(self) -> torch.device:
        return torch.device("cpu")

    @property
    def dtype(self) -> torch.dtype:
        return torch.float32

    def can_generate(self) -> bool:
        return False

    def to(self, *args, **kwargs):
        """CPU and float32 only (the graphs' own precision); anything else is a clear error."""
        device, dtype, _, _ = torch._C._nn._parse_to(*args, **kwargs)
        if device is not None and torch.device(device).type != "cpu":
            raise ValueError(f"the exported model {self.directory!r} runs on the CPU ({self.runtime}); device "
                             f"{device} needs the torch model")
        if dtype is not None and dtype != torch.float32:
            raise ValueError(f"the exported model {self.directory!r} runs its {self.precision} graphs; dtype {dtype} "
                             "applies to torch models")
        return self

    def get_video_features(self, pixel_values, interpolate_pos_encoding: bool = False, **kwargs) -> XClipVisionOutput:
        """`XClipModel.get_video_features`: video_embeds (= pooler_output), frame_embeds, video_context."""
        _no_extras(kwargs)
        self._check_pixel_values(pixel_values, interpolate_pos_encoding)
        video, context, frames = self._run("video", pixel_values=_numpy(pixel_values, np.float32))
        video = torch.from_numpy(video)
        return XClipVisionOutput(video_embeds=video, frame_embeds=torch.from_numpy(frames),
                                 video_context=torch.from_numpy(context), pooler_output=video)

    def get_text_features(self, input_ids, attention_mask=None, position_ids=None, **kwargs):
        """`XClipModel.get_text_features`: unprompted projected text features as `.pooler_output` (K, P)."""
        _no_extras(kwargs)
        if position_ids is not None:
            raise ValueError("position_ids are not an input of the exported text graph (it uses positions 0..L-1)")
        self._check_input_ids(input_ids)
        mask = torch.ones_like(input_ids) if attention_mask is None else attention_mask
        if tuple(mask.shape) != tuple(input_ids.shape):
            raise ValueError(f"attention_mask has shape {tuple(mask.shape)}; input_ids has {tuple(input_ids.shape)}")
        (features,) = self._run("text", input_ids=_numpy(input_ids, np.int64), attention_mask=_numpy(mask, np.int64))
        return BaseModelOutputWithPooling(pooler_output=torch.from_numpy(features))

    def video_text_logits(self, video_embeds, video_context, text_embeds):
        """`XClipModel.video_text_logits`: logits (B, K), normalised v (B, P), prompted texts (B, K, P)."""
        self._check_text_embeds(text_embeds)
        p = self.config.projection_dim
        if video_embeds.ndim != 2 or video_embeds.shape[-1] != p:
            raise ValueError(f"video_embeds must be (num_videos, {p}); got shape {tuple(video_embeds.shape)}.")
        if video_context.ndim != 3 or video_context.shape[0] != video_embeds.shape[0] or video_context.shape[-1] != p:
            raise ValueError(f"video_context must be ({video_embeds.shape[0]}, num_patches, {p}); got shape "
                             f"{tuple(video_context.shape)}.")
        outputs = self._run("head", text_embeds=_numpy(text_embeds, np.float32),
                            video_context=_numpy(video_context, np.float32),
                            video_embeds=_numpy(video_embeds, np.float32))
        return tuple(torch.from_numpy(out) for out in outputs)

    def forward(self, input_ids=None, pixel_values=None, attention_mask=None, position_ids=None, text_embeds=None,
                labels=None, return_loss=None, interpolate_pos_encoding=False, **kwargs) -> XClipOutput:
        """`XClipModel.forward` for inference: pixel_values with input_ids or text_embeds (K, P) -> logits."""
        if pixel_values is None:
            raise ValueError("XClipModel needs pixel_values (batch, frames, 3, height, width).")
        if (input_ids is None) == (text_embeds is None):
            raise ValueError("Pass exactly one of input_ids (tokenized texts) or text_embeds (precomputed features).")
        if kwargs.get("return_dict") is False:
            raise ValueError("the exported model returns XClipOutput objects only (return_dict=False is not supported)")
        kwargs.pop("return_dict", None)
        vision = self.get_video_features(pixel_values, interpolate_pos_encoding=interpolate_pos_encoding, **kwargs)
        if text_embeds is None:
            text_embeds = self.get_text_features(input_ids, attention_mask, position_ids).pooler_output
        logits, video_embeds, prompted = self.video_text_logits(vision.video_embeds, vision.video_context, text_embeds)
        loss = XClipModel.loss(logits, labels, return_loss)
        return XClipOutput(loss=loss, logits_per_video=logits, logits_per_text=logits.t(), video_embeds=video_embeds,
                           text_embeds=prompted, vision_model_output=vision)

    # ------------------------------------------------------------------ internals
    def _graph(self, name: str):
        graph = self._graphs.get(name)
        if graph is None:
            graph = self._graphs[name] = _open_graph(self.directory, self.manifest, name, self.runtime)
        return graph

    def _run(self, name: str, **feeds) -> list:
        return self._graph(name)(feeds)

    def _check_pixel_values(self, pixel_values, interpolate_pos_encoding: bool):
        """The torch model's checks; a frame count or size other than the traced one is an error."""
        if not isinstance(pixel_values, torch.Tensor):
            pixel_values = torch.as_tensor(pixel_values)
        try:
            XClipVisionModel._check_pixel_values(self._vision, pixel_values, False)
            return
        except ValueError:
            XClipVisionModel._check_pixel_values(self._vision, pixel_values, True)  # raises the torch message, if any
        frames, height, width = pixel_values.shape[1], pixel_values.shape[3], pixel_values.shape[4]
        n, size = self.manifest["num_frames"], self.manifest["image_size"]
        if frames != n:
            raise ValueError(f"pixel_values has {frames} frames (shape {tuple(pixel_values.shape)}); this model was "
                             f"built for num_frames={n}, and its exported graph cannot resample the temporal position "
                             f"embedding: sample {n} frames per video, or use the torch model.")
        raise ValueError(f"pixel_values frames are {height}x{width} (shape {tuple(pixel_values.shape)}); the exported "
                         f"model expects {size}x{size}.")

    def _check_input_ids(self, input_ids):
        if not isinstance(input_ids, torch.Tensor):
            input_ids = torch.as_tensor(input_ids)
        if input_ids.is_floating_point() or input_ids.is_complex():
            raise ValueError(f"input_ids has dtype {input_ids.dtype} (shape {tuple(input_ids.shape)}); token ids "
                             "must be integers: tokenize the texts with the model's processor.")
        XClipTextModel._check_input_ids(self._text, input_ids)
        vocab = self.config.text_config.vocab_size
        if input_ids.numel() and (int(input_ids.min()) < 0 or int(input_ids.max()) >= vocab):
            raise ValueError(f"input_ids holds ids outside the vocabulary [0, {vocab}) (min {int(input_ids.min())}, "
                             f"max {int(input_ids.max())}): tokenize with the model's own tokenizer.")

    def _check_text_embeds(self, text_embeds):
        p = self.config.projection_dim
        if text_embeds.ndim != 2 or text_embeds.shape[-1] != p:
            raise ValueError(f"text_embeds must be (num_texts, {p}); got shape {tuple(text_embeds.shape)}.")
        if text_embeds.shape[0] == 0:
            raise ValueError("text_embeds holds no text (shape (0, ...)): pass at least one label.")


def _marked(fingerprint: str | None, precision: str) -> str | None:
    """A source fingerprint as this export's: marked with its precision unless float32 (the source's own)."""
    return fingerprint if precision == "float32" or not fingerprint else f"{fingerprint}+{precision}"


def _no_extras(kwargs: dict):
    wanted = sorted(k for k, v in kwargs.items() if v)
    if wanted:
        raise ValueError(f"{', '.join(wanted)}: not available from the exported graphs (use the torch model)")


def _config(directory: str, manifest: dict):
    """The model's `XClipConfig` (config.json beside the graphs), checked against the manifest."""
    from ..models.configuration_xclip import XClipConfig

    try:
        config = XClipConfig.from_pretrained(directory)
    except Exception as err:
        raise ModelLoadError(f"cannot load the model config {os.path.join(directory, 'config.json')!r} of the "
                             f"exported model: {type(err).__name__}: {err}") from err
    vision = config.vision_config
    traced = {"num_frames": vision.num_frames, "image_size": vision.image_size, "num_channels": vision.num_channels,
              "projection_dim": config.projection_dim}
    wrong = {k: (v, manifest[k]) for k, v in traced.items() if manifest[k] != v}
    if wrong:
        detail = ", ".join(f"{k} {a} vs {b}" for k, (a, b) in wrong.items())
        raise ModelLoadError(f"{os.path.join(directory, 'config.json')!r} does not match the graphs described by "
                             f"{os.path.join(directory, MANIFEST_NAME)!r} ({detail}): export the model again")
    return config


def _open_graph(directory: str, manifest: dict, name: str, runtime: str):
    """An engine session for graph `name`, its inputs and outputs checked against the manifest."""
    entry = manifest["graphs"][name]
    try:
        path = check_graph_file(directory, manifest, name)
    except ValueError as err:
        raise ModelLoadError(str(err)) from err
    try:
        graph = ENGINES[runtime](path)
    except ImportError as err:
        raise ImportError(f"running {path!r} with {runtime} needs the {runtime} package: pip install {runtime} "
                          "(or pip install 'xclip_hf[onnx]')") from err
    except Exception as err:
        raise ModelLoadError(f"{runtime} cannot load {path!r} (ONNX opset {manifest['opset']}, exported with "
                             f"{manifest.get('versions', {})}): {type(err).__name__}: {one_line(err)}") from err
    names = _io_names(graph)
    if names != (tuple(entry["inputs"]), tuple(entry["outputs"])):
        raise ModelLoadError(f"{path!r} has inputs {names[0]} and outputs {names[1]}; {MANIFEST_NAME} lists "
                             f"{tuple(entry['inputs'])} and {tuple(entry['outputs'])}: export the model again")
    return graph


def _io_names(graph) -> tuple[tuple, tuple]:
    if isinstance(graph, OnnxRuntimeGraph):
        session = graph.session
        return tuple(i.name for i in session.get_inputs()), tuple(o.name for o in session.get_outputs())
    compiled = graph.compiled
    return tuple(i.get_any_name() for i in compiled.inputs), tuple(o.get_any_name() for o in compiled.outputs)


def _processor_frames_and_size(processor) -> tuple:
    video_processor = getattr(processor, "video_processor", processor)
    crop = getattr(video_processor, "crop_size", None) or {}
    height = crop.get("height") if isinstance(crop, dict) else getattr(crop, "height", None)
    width = crop.get("width") if isinstance(crop, dict) else getattr(crop, "width", None)
    return getattr(video_processor, "num_frames", None), height, width


class OnnxExportRuntime:
    """The runtime `models.loading` asks: is this folder yours, load it, is this object yours, does a processor fit."""

    names = tuple(ENGINES)
    model_class = ExportedXClipModel

    def claims(self, directory: str) -> bool:
        """An exported folder, or what an interrupted export left (loading it says so)."""
        return is_export_dir(directory) or is_partial_export(directory)

    def load(self, directory: str, *, runtime: str | None = None, need_text: bool = True, dtype=None):
        if dtype not in (None, "auto", torch.float32):
            raise ModelLoadError(f"the exported model {directory!r} runs its own graphs (float32 or int8); dtype "
                                 f"{dtype} applies to torch models")
        return ExportedXClipModel(directory, runtime=runtime,
                                  open_graphs=("video", "text", "head") if need_text else ("video",))

    def check_processor(self, model: ExportedXClipModel, processor, source: str) -> None:
        """A processor whose frame count or crop size differs from what the graphs were traced for is an error."""
        frames, height, width = _processor_frames_and_size(processor)
        n, size = model.manifest["num_frames"], model.manifest["image_size"]
        if frames is not None and frames != n:
            raise ModelLoadError(f"the processor of {source!r} samples {frames} frames per video; the exported graphs "
                                 f"of {model.directory!r} take num_frames={n}")
        if (height, width) != (None, None) and (height, width) != (size, size):
            raise ModelLoadError(f"the processor of {source!r} crops {height}x{width}; the exported graphs of "
                                 f"{model.directory!r} take {size}x{size} frames")


RUNTIME = OnnxExportRuntime()

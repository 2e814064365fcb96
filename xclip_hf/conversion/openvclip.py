"""Open-VCLIP and FROSTER checkpoints (PySlowFast's ``{"model_state": ...}``) -> models of this package.

Both keep a CLIP whose frame encoder attends to neighbouring frames (`neighbour_frame_attention`) under the
``model.`` prefix and classify a clip by its frames' logits averaged (`normalize_frame_embeds`); there is no MIT,
no message token, no prompt generator (converted with zero weight). FROSTER's checkpoints also hold its frozen CLIP
teacher (``raw_model.``) and its residual projections (``projector_v.``, ``projector_t.``): used in training only,
they are left out. Open-VCLIP's published figures interpolate the weights with CLIP's at test time
(their ``TEST.PATCHING_RATIO`` r: weight-space ensembling with alpha = 1 - r, `interpolate_weights`).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field

import torch

from ..models.configuration_xclip import XClipConfig
from .original import (HEAD_DIM, _count_blocks, _empty_model, _heads, _strip_prefix, build_model,
                       from_original_state_dict, with_inert_prompt)
from .safe_load import NotUnpickled, find_not_unpickled, load_checkpoint

__all__ = ["FAMILIES", "OPENVCLIP_TEMPLATES", "SuccessorCheckpoint", "read_successor", "load_successor",
           "convert_successor_checkpoint", "successor_video_processor"]

FAMILIES = ("openvclip", "froster")
# the prompts Open-VCLIP's (and FROSTER's, plus "{}") classifier averages in normalised text-feature space
OPENVCLIP_TEMPLATES = tuple(f"a {kind} of {who}{{}}." for kind in ("photo", "video", "example", "demonstration")
                            for who in ("", "a person ", "a person using ", "a person doing ", "a person during ",
                                        "a person performing ", "a person practicing "))
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)  # their DATA.MEAN / DATA.STD (CLIP's), on frames scaled to [0, 1]
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
# what the checkpoints keep beside the video CLIP, unused at inference: prefix -> what it is
_TRAINING_ONLY = {"raw_model.": "FROSTER's frozen CLIP teacher", "projector_v.": "FROSTER's video residual projection",
                  "projector_t.": "FROSTER's text residual projection"}
# temporal modules of other TEMPORAL_MODELING_TYPEs of their code, which this package does not implement
_UNSUPPORTED = {"message_": "cross_frame_attend", "stadapt_": "stadapt_zeroinit", "experts_": "mixture of experts"}
# X-CLIP-only tensors (our names) an Open-VCLIP model lacks: converted as switched off (prompt weight 0)
@dataclass
class SuccessorCheckpoint:
    """An Open-VCLIP / FROSTER checkpoint read safely: its CLIP in OpenAI's layout, inferred config and notes."""

    path: str
    family: str
    state_dict: dict[str, torch.Tensor]
    config: XClipConfig
    notes: list[str] = field(default_factory=list)
    parameters: int = 0


def _model_state(data, path: str) -> dict:
    """The ``model_state`` entry of a loaded PySlowFast checkpoint, checked to be a dict of tensors."""
    if isinstance(data, NotUnpickled) or not isinstance(data, dict):
        what = f"a pickled {data.global_name} object" if isinstance(data, NotUnpickled) else type(data).__name__
        raise ValueError(f"{path}: expected PySlowFast's checkpoint dict with a 'model_state' entry, got {what}")
    if "model_state" not in data:
        raise ValueError(f"{path}: no 'model_state' entry (Open-VCLIP and FROSTER save {{'model_state': ...}}); "
                         f"top-level entries: {', '.join(map(repr, list(data)[:10]))}")
    state = data["model_state"]
    if not isinstance(state, dict):
        raise ValueError(f"{path} ['model_state'] is a {type(state).__name__}, not a state dict of tensors")
    bad = [k for k, v in state.items() if not isinstance(k, str) or not isinstance(v, torch.Tensor)]
    if bad:
        raise ValueError(f"{path} ['model_state'] holds {len(bad)} entries that are not tensors (e.g. {bad[0]!r}); "
                         "refusing the file")
    return state


def _saved_config(data) -> dict:
    """The YAML config PySlowFast stores under ``cfg`` (``cfg.dump()``), parsed safely; {} when absent or unreadable."""
    import yaml

    text = data.get("cfg") if isinstance(data, dict) else None
    try:
        parsed = yaml.safe_load(text) if isinstance(text, str) else None
    except yaml.YAMLError:
        return {}
    return parsed if isinstance(parsed, dict) else {}


def split_model_state(state: dict, where: str) -> tuple[dict[str, torch.Tensor], list[str]]:
    """``model.*`` -> the video CLIP (OpenAI layout); training-only parts left out (noted); anything else refused."""
    state, stripped = _strip_prefix(state, where)
    clip, left_out, unknown = {}, {}, []
    for key, tensor in state.items():
        if key.startswith("model."):
            clip[key[len("model."):]] = tensor
        elif (prefix := next((p for p in _TRAINING_ONLY if key.startswith(p)), None)) is not None:
            left_out[prefix] = left_out.get(prefix, 0) + 1
        else:
            unknown.append(key)
    if unknown or not clip:
        raise ValueError(f"{where}: not an Open-VCLIP / FROSTER model state: "
                         + (f"unexpected keys {', '.join(unknown[:8])}" if unknown else "no 'model.*' keys"))
    unsupported = sorted({kind for k in clip for part, kind in _UNSUPPORTED.items() if f".{part}" in k})
    if unsupported:
        raise ValueError(f"{where}: its frame encoder uses temporal modules this package does not implement "
                         f"({', '.join(unsupported)}); only TEMPORAL_MODELING_TYPE 'expand_temporal_view' (the "
                         "released models) or none converts")
    notes = ["removed the 'module.' prefix of the keys"] if stripped else []
    notes += [f"left out {n} tensors of {_TRAINING_ONLY[p]} ({p}*), unused at inference" for p, n in left_out.items()]
    return clip, notes


def infer_successor_config(state: dict, where: str, num_frames: int = 8, neighbour_frames: bool = True,
                           head_dim: int = HEAD_DIM) -> XClipConfig:
    """The config of an Open-VCLIP-style video CLIP from its OpenAI-layout shapes (heads = width // 64)."""
    needed = ("visual.conv1.weight", "visual.positional_embedding", "visual.proj", "token_embedding.weight",
              "positional_embedding", "text_projection", "visual.transformer.resblocks.0.mlp.c_fc.weight",
              "transformer.resblocks.0.mlp.c_fc.weight")
    missing = [k for k in needed if k not in state]
    if missing:
        raise ValueError(f"{where}: the model.* state is not a CLIP ViT: missing {', '.join(missing)}")
    conv, pos = state["visual.conv1.weight"], state["visual.positional_embedding"]
    width, patch, grid = conv.shape[0], conv.shape[-1], math.isqrt(pos.shape[0] - 1)
    if conv.ndim != 4 or grid * grid != pos.shape[0] - 1:
        raise ValueError(f"{where}: visual.conv1.weight {tuple(conv.shape)} and visual.positional_embedding "
                         f"{tuple(pos.shape)} do not describe square patches on a square grid plus a [class] token")
    projection_dim, text_width = state["visual.proj"].shape[1], state["token_embedding.weight"].shape[1]
    vision = dict(hidden_size=width, intermediate_size=state["visual.transformer.resblocks.0.mlp.c_fc.weight"].shape[0],
                  num_hidden_layers=_count_blocks(state, "visual.transformer.resblocks", where),
                  num_attention_heads=_heads(width, "vision", head_dim), num_channels=conv.shape[1],
                  image_size=grid * patch, patch_size=patch, num_frames=num_frames, use_mit=False,
                  use_cross_frame_attention=False, neighbour_frame_attention=neighbour_frames,
                  normalize_frame_embeds=True, mit_hidden_size=projection_dim,
                  mit_num_attention_heads=max(projection_dim // head_dim, 1))
    text = dict(vocab_size=state["token_embedding.weight"].shape[0], hidden_size=text_width,
                intermediate_size=state["transformer.resblocks.0.mlp.c_fc.weight"].shape[0],
                num_hidden_layers=_count_blocks(state, "transformer.resblocks", where),
                num_attention_heads=_heads(text_width, "text", head_dim),
                max_position_embeddings=state["positional_embedding"].shape[0], eos_token_id=None, prompt_layers=0,
                prompt_alpha=0.0, prompt_num_attention_heads=max(projection_dim // head_dim, 1))
    scale = state.get("logit_scale")
    return XClipConfig(text_config=text, vision_config=vision, projection_dim=projection_dim,
                       logit_scale_init_value=float(scale) if scale is not None and scale.numel() == 1 else 2.6592,
                       architectures=["XClipModel"])


def read_successor(path, family: str = "openvclip", trust_pickle: bool = False, num_frames: int | None = None,
                   head_dim: int = HEAD_DIM) -> SuccessorCheckpoint:
    """Read an Open-VCLIP / FROSTER checkpoint safely, infer its config and check every key and shape against it."""
    if family not in FAMILIES:
        raise ValueError(f"family must be one of {', '.join(FAMILIES)}, got {family!r}")
    path = os.fspath(path)
    loaded = load_checkpoint(path, trust_pickle=trust_pickle)
    where = f"{path} ['model_state']"
    clip, notes = split_model_state(_model_state(loaded.data, path), where)
    saved = _saved_config(loaded.data)
    temporal = (saved.get("MODEL") or {}).get("TEMPORAL_MODELING_TYPE", "expand_temporal_view")
    if temporal not in ("expand_temporal_view", None, "None"):
        raise ValueError(f"{path}: its cfg says MODEL.TEMPORAL_MODELING_TYPE {temporal!r}; only 'expand_temporal_view'"
                         " (the released models) or none converts")
    frames = (saved.get("DATA") or {}).get("NUM_FRAMES", 8) if num_frames is None else num_frames
    config = infer_successor_config(clip, where, frames, temporal == "expand_temporal_view", head_dim)
    with torch.device("meta"):
        shapes = {k: v.shape for k, v in _empty_model(config).state_dict().items()}
    state = with_inert_prompt(clip, shapes)
    from_original_state_dict(state, shapes, where)  # raises naming missing / unexpected keys and wrong shapes
    notes = [f"read with the {loaded.method}"] + notes
    if loaded.not_unpickled:
        notes.append("left out, never imported nor run: "
                     + ", ".join(f"{name} in {loc}" for loc, name in find_not_unpickled(loaded.data)))
    notes.append(f"{family}: frame encoder with neighbour-frame attention"
                 if config.vision_config.neighbour_frame_attention else f"{family}: plain CLIP frame encoder")
    return SuccessorCheckpoint(path, family, state, config, notes, sum(math.prod(s) for s in shapes.values()))


def load_successor(source, family: str = "openvclip", trust_pickle: bool = False):
    """An `XClipModel` (eval mode) from an Open-VCLIP / FROSTER file or `SuccessorCheckpoint`, refused if too big."""
    return build_model(source if isinstance(source, SuccessorCheckpoint) else read_successor(source, family,
                                                                                               trust_pickle))


def successor_video_processor(config):
    """Their test preprocessing: short side to the crop size, centre crop, CLIP's mean / std on [0, 1] frames."""
    from transformers.image_utils import PILImageResampling

    from ..models.video_processing_xclip import XClipVideoProcessor

    crop = config.vision_config.image_size
    return XClipVideoProcessor(num_frames=config.vision_config.num_frames, size={"shortest_edge": crop},
                               crop_size={"height": crop, "width": crop}, resample=PILImageResampling.BILINEAR,
                               do_rescale=True, rescale_factor=1 / 255, image_mean=list(CLIP_MEAN),
                               image_std=list(CLIP_STD))


def convert_successor_checkpoint(checkpoint, output_dir, family: str = "openvclip", *, bpe=None, labels=None,
                                 template: str = "{}", num_frames: int | None = None, trust_pickle: bool = False,
                                 progress: bool = True, clip_source=None, alpha: float | None = None):
    """Convert an Open-VCLIP / FROSTER checkpoint to a model directory (+ tokenizer, classifier; weights blended
    with `clip_source` at `alpha`: Open-VCLIP's test-time patching with ratio r is alpha = 1 - r)."""
    from .convert import convert_with

    return convert_with(lambda path: read_successor(path, family, trust_pickle=trust_pickle, num_frames=num_frames),
                        load_successor, checkpoint, output_dir, bpe=bpe, labels=labels, template=template,
                        num_frames=num_frames, progress=progress, clip_source=clip_source, alpha=alpha,
                        video_processor=successor_video_processor)

"""CLIP -> X-CLIP expansion (paper Sec. 3.2, Initialization): CLIP's weights, new modules randomly initialised."""

import re

import torch
from transformers import CLIPModel

from .configuration_xclip import XClipConfig, route_overrides

# CLIP key (regex) -> X-CLIP key; keys not listed keep their name.
CLIP_KEY_MAPPING = {
    r"^vision_model\.pre_layrnorm\.": "vision_model.pre_layernorm.",
    r"^visual_projection\.": "vision_model.visual_projection.",
    r"^text_projection\.": "text_model.text_projection.",
}


def xclip_config_from_clip(clip_config, num_frames: int = 8, **overrides) -> XClipConfig:
    """X-CLIP config whose CLIP parts copy `clip_config` (new modules: heads = width / 64); `overrides` routed."""
    v, t, p = clip_config.vision_config, clip_config.text_config, clip_config.projection_dim
    heads = max(p // 64, 1)
    eos = getattr(t, "eos_token_id", None)
    vision = dict(hidden_size=v.hidden_size, intermediate_size=v.intermediate_size,
                  num_hidden_layers=v.num_hidden_layers, num_attention_heads=v.num_attention_heads,
                  num_channels=v.num_channels, image_size=v.image_size, patch_size=v.patch_size,
                  hidden_act=v.hidden_act, layer_norm_eps=v.layer_norm_eps, num_frames=num_frames,
                  mit_hidden_size=p, mit_intermediate_size=4 * p, mit_num_attention_heads=heads)
    text = dict(vocab_size=t.vocab_size, hidden_size=t.hidden_size, intermediate_size=t.intermediate_size,
                num_hidden_layers=t.num_hidden_layers, num_attention_heads=t.num_attention_heads,
                max_position_embeddings=t.max_position_embeddings, hidden_act=t.hidden_act,
                layer_norm_eps=t.layer_norm_eps, prompt_num_attention_heads=heads,
                # CLIP's legacy eos_token_id=2 means "pool at the highest id"
                eos_token_id=None if eos in (None, 2) else eos)
    routed = route_overrides(overrides)
    vision.update(routed["vision_config"])
    text.update(routed["text_config"])
    top = {"projection_dim": p, "logit_scale_init_value": float(clip_config.logit_scale_init_value), **routed[""]}
    return XClipConfig(text_config=text, vision_config=vision, **top)


def rename_clip_key(key: str) -> str:
    for pattern, target in CLIP_KEY_MAPPING.items():
        key = re.sub(pattern, target, key)
    return key


def expand_clip(model_cls, clip, num_frames: int = 8, **overrides):
    """Build `model_cls` (an X-CLIP model) from a transformers `CLIPModel` or a path / hub id of one."""
    if not isinstance(clip, CLIPModel):
        clip = CLIPModel.from_pretrained(clip)
    config = xclip_config_from_clip(clip.config, num_frames=num_frames, **overrides)
    model = model_cls(config)
    target = model.state_dict()
    prefix = "" if "logit_scale" in target else "xclip."
    inherited = {}
    for key, tensor in clip.state_dict().items():
        if key.endswith("position_ids"):
            continue
        ours = prefix + rename_clip_key(key)
        if ours not in target or target[ours].shape != tensor.shape:
            raise ValueError(f"CLIP weight {key} {tuple(tensor.shape)} has no X-CLIP counterpart ({ours}).")
        inherited[ours] = tensor
    with torch.no_grad():
        model.load_state_dict(inherited, strict=False)
    leftover = {n for n, _ in model.named_parameters() if n not in inherited} - model.new_parameter_names()
    if leftover:  # every parameter is either CLIP's or one of X-CLIP's additions
        raise RuntimeError(f"CLIP expansion left parameters without weights: {sorted(leftover)}")
    return model

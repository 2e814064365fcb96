"""The published X-CLIP format (microsoft/xclip-* on the hub, written by transformers' `XCLIPModel.save_pretrained`).

Those checkpoints use the config `model_type` "xclip" (prompt-generator settings at the top level, legacy
`eos_token_id=2` meaning "pool at the highest token id") and flat key names. `convert_published_config` maps the
config to ours; `PUBLISHED_KEY_MAPPING` renames the weights while transformers loads them (`key_mapping=`).
"""

from __future__ import annotations

import json

from transformers import PreTrainedConfig
from transformers.utils import cached_file

_PROMPT_KEYS = ("prompt_layers", "prompt_alpha", "prompt_hidden_act", "prompt_num_attention_heads",
                "prompt_attention_dropout", "prompt_projection_dropout")
_DROP_SUB_KEYS = ("model_type", "transformers_version", "bos_token_id", "eos_token_id", "pad_token_id",
                  "architectures")


def convert_published_config(published: dict) -> dict:
    """transformers' `XCLIPConfig` dict -> `XClipConfig` dict (sub-configs merged, prompt settings moved to text)."""
    out = {k: v for k, v in published.items() if k not in _PROMPT_KEYS + ("model_type", "architectures")}
    text = {**(published.get("text_config") or {}), **(published.get("text_config_dict") or {})}
    vision = {**(published.get("vision_config") or {}), **(published.get("vision_config_dict") or {})}
    out.pop("text_config_dict", None)
    out.pop("vision_config_dict", None)
    text = {k: v for k, v in text.items() if k not in _DROP_SUB_KEYS}
    vision = {k: v for k, v in vision.items() if k not in _DROP_SUB_KEYS}
    text["eos_token_id"] = None  # published text encoders pool at argmax(input_ids)
    text.update({k: published[k] for k in _PROMPT_KEYS if k in published})
    if "projection_dim" in published:  # so that each tower also loads alone
        text["projection_dim"] = vision["projection_dim"] = published["projection_dim"]
    out.update(text_config=text, vision_config=vision, architectures=["XClipModel"])
    return out


_LAYER = r"(\d+)"
# published key (regex) -> our key, for `XClipModel`.
PUBLISHED_KEY_MAPPING: dict[str, str] = {
    r"^visual_projection\.": "vision_model.visual_projection.",
    r"^mit\.": "vision_model.mit.",
    r"^prompts_visual_layernorm\.": "vision_model.context_layernorm.",
    r"^prompts_visual_projection$": "vision_model.context_projection",
    r"^text_projection\.": "text_model.text_projection.",
    r"^prompts_generator\.layernorm\.": "text_model.prompt_generator.context_layernorm.",
    r"^prompts_generator\.alpha$": "text_model.prompt_generator.alpha",
    rf"^prompts_generator\.decoder\.{_LAYER}\.cross_attn\.proj\.": r"text_model.prompt_generator.layers.\1.cross_attn.out_proj.",
    rf"^prompts_generator\.decoder\.{_LAYER}\.cross_attn\.": r"text_model.prompt_generator.layers.\1.cross_attn.",
    rf"^prompts_generator\.decoder\.{_LAYER}\.norm1\.": r"text_model.prompt_generator.layers.\1.layer_norm1.",
    rf"^prompts_generator\.decoder\.{_LAYER}\.norm3\.": r"text_model.prompt_generator.layers.\1.layer_norm2.",
    rf"^prompts_generator\.decoder\.{_LAYER}\.mlp\.0\.": r"text_model.prompt_generator.layers.\1.mlp.fc1.",
    rf"^prompts_generator\.decoder\.{_LAYER}\.mlp\.3\.": r"text_model.prompt_generator.layers.\1.mlp.fc2.",
    r"\.message_fc\.": ".message_proj.",
    r"\.message_ln\.": ".cfa_layernorm.",
    r"\.message_attn\.": ".cfa.",
}


def read_config_dict(path_or_hub_id, **hub_kwargs) -> dict | None:
    """config.json of a local directory or hub repo, or None when it cannot be resolved (offline, missing)."""
    try:
        resolved = cached_file(path_or_hub_id, "config.json", _raise_exceptions_for_missing_entries=False,
                               _raise_exceptions_for_connection_errors=False, **hub_kwargs)
    except (OSError, ValueError):
        return None
    if resolved is None:
        return None
    with open(resolved, encoding="utf-8") as f:
        return json.load(f)


_HUB_KWARGS = ("cache_dir", "force_download", "proxies", "token", "revision", "local_files_only", "subfolder")


def _sub_model_mapping(mapping: dict, prefix: str) -> dict:
    """Key mapping for a sub-model (vision / text): keep the renames into `prefix`, then strip `prefix`."""
    sub = {src: tgt[len(prefix):] for src, tgt in mapping.items() if tgt.startswith(prefix)}
    sub.update({src: tgt for src, tgt in mapping.items() if tgt.startswith(".")})
    sub["^" + prefix.replace(".", r"\.")] = ""
    return sub


def published_loading_kwargs(model_cls, path_or_hub_id, kwargs: dict) -> dict:
    """from_pretrained kwargs that load a checkpoint of another layout into `model_cls`.

    Handles the published `"xclip"` format for every X-CLIP class, and a full X-CLIP checkpoint (ours) loaded into
    `XClipVisionModel` / `XClipTextModel`. Anything else is returned unchanged.
    """
    if path_or_hub_id is None or isinstance(kwargs.get("config"), PreTrainedConfig):
        return kwargs
    raw = read_config_dict(path_or_hub_id, **{k: kwargs[k] for k in _HUB_KWARGS if k in kwargs})
    sub_key = model_cls.config_class.base_config_key  # "" for two-tower models
    model_type = (raw or {}).get("model_type")
    if model_type not in ("xclip", "xclip_hf") or (model_type == "xclip_hf" and not sub_key):
        return kwargs
    from ..configuration_xclip import XClipConfig

    kwargs = dict(kwargs)
    config = XClipConfig.from_dict(raw)
    kwargs["config"] = getattr(config, sub_key) if sub_key else config
    mapping = dict(PUBLISHED_KEY_MAPPING) if model_type == "xclip" else {}
    if sub_key:
        mapping = _sub_model_mapping(mapping, sub_key.replace("_config", "_model."))
    if mapping:
        kwargs.setdefault("key_mapping", mapping)
    return kwargs

"""transformers' published X-CLIP format (microsoft/xclip-*): config, weight names and processor converted to ours."""

from __future__ import annotations

from .formats import read_config_dict, read_json_file, select_hub_kwargs

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



# keys of published (VideoMAE-style) processor configs that are not options of our video processor
_PROCESSOR_TYPE_KEYS = ("feature_extractor_type", "image_processor_type", "processor_class", "video_processor_type",
                        "auto_map")


def _nested_processor_config(path, hub_kwargs) -> dict | None:
    """The image/video processor dict nested in a transformers 5 `processor_config.json`, or None."""
    processor_config = read_json_file(path, "processor_config.json", **select_hub_kwargs(hub_kwargs))
    if processor_config is None:
        return None
    return processor_config.get("video_processor") or processor_config.get("image_processor")


def published_video_processor_dict(path, found: dict | None, hub_kwargs: dict) -> dict | None:
    """Our video-processor settings for a published checkpoint (frames from config.json), or None when not one."""
    if found is None:
        found = _nested_processor_config(path, hub_kwargs)
        if found is None:
            return None
    elif not any(key in found for key in ("image_processor_type", "feature_extractor_type")):
        return None
    config = {k: v for k, v in found.items() if k not in _PROCESSOR_TYPE_KEYS}
    if "num_frames" not in config:
        model_config = read_config_dict(path, **select_hub_kwargs(hub_kwargs)) or {}
        frames = (model_config.get("vision_config") or {}).get("num_frames")
        if frames:
            config["num_frames"] = int(frames)
    return config


class PublishedFormat:
    """transformers' `"xclip"` layout, as a `xclip_hf.models.formats.CheckpointFormat`."""

    name = "xclip"

    def config_dict(self, config_dict: dict) -> dict | None:
        return convert_published_config(config_dict) if config_dict.get("model_type") == "xclip" else None

    def key_mapping(self, config_dict: dict) -> dict[str, str] | None:
        return dict(PUBLISHED_KEY_MAPPING) if config_dict.get("model_type") == "xclip" else None

    def video_processor_dict(self, path, found: dict | None, hub_kwargs: dict) -> dict | None:
        return published_video_processor_dict(path, found, hub_kwargs)


CHECKPOINT_FORMAT = PublishedFormat()  # what the hook loads for "xclip_hf.models.published"

"""Configurations of X-CLIP (video encoder, text encoder + prompt generator, both towers) and the paper's variants."""

from __future__ import annotations

import copy
import dataclasses

from huggingface_hub.dataclasses import strict
from transformers import PreTrainedConfig


def _get_config_dict(cls, pretrained_model_name_or_path, **kwargs):
    """`get_config_dict` converting other checkpoint layouts (`models.formats`) to ours before picking a sub-config."""
    from .formats import native_config_dict

    config_dict, kwargs = PreTrainedConfig.get_config_dict.__func__(cls, pretrained_model_name_or_path, **kwargs)
    return native_config_dict(config_dict), kwargs


@strict
class XClipTextConfig(PreTrainedConfig):
    r"""CLIP text encoder with the video-specific prompt generator (paper Sec. 3.3, Eq. 10).

    `eos_token_id=None` pools at the highest token id of each sequence (CLIP's end-of-text); an integer pools at its
    first occurrence. `prompt_layers` blocks of cross-attention + MLP, scaled by a learned per-channel `alpha`
    initialised to `prompt_alpha`.
    """

    model_type = "xclip_hf_text_model"
    base_config_key = "text_config"
    get_config_dict = classmethod(_get_config_dict)

    vocab_size: int = 49408
    hidden_size: int = 512
    intermediate_size: int = 2048
    num_hidden_layers: int = 12
    num_attention_heads: int = 8
    max_position_embeddings: int = 77
    hidden_act: str = "quick_gelu"
    layer_norm_eps: float = 1e-5
    attention_dropout: float | int = 0.0
    initializer_range: float = 0.02
    initializer_factor: float = 1.0
    pad_token_id: int | None = None
    bos_token_id: int | None = None
    eos_token_id: int | None = None
    projection_dim: int = 512
    prompt_layers: int = 2
    prompt_alpha: float = 0.1
    prompt_hidden_act: str = "quick_gelu"
    prompt_num_attention_heads: int = 8
    prompt_attention_dropout: float | int = 0.0
    prompt_projection_dropout: float | int = 0.0

    def validate_architecture(self):
        """Heads must divide the widths they split."""
        _check_heads("text", self.hidden_size, self.num_attention_heads)
        _check_heads("prompt generator", self.projection_dim, self.prompt_num_attention_heads)


@strict
class XClipVisionConfig(PreTrainedConfig):
    r"""Video encoder of X-CLIP (paper Sec. 3.2): a CLIP ViT with message tokens (Eq. 7-9) and the MIT (Eq. 6).

    `use_cross_frame_attention=False` / `use_mit=False` (mean over frames) switch off the paper's modules: both off is
    the CLIP-Mean baseline (Tab. 6). `num_frames`: the clip length T (sizes the MIT's temporal positions).
    `position_embedding_init`: `"random"` (CLIP's init) or `"sincos"` (a fixed, centred 2-D sin-cos pattern on the
    patch rows, still trained); weights loaded from a checkpoint are never re-initialised.
    `token_merging_ratio` in [0, 1): per layer of the frame encoder, merge that fraction of each frame's patch
    tokens (ToMe, `token_merging.py`; the [class] and message tokens never); 0 (default) is off, the exact model.
    `neighbour_frame_attention`: each frame's self-attention also attends to the tokens of frames t-1 and t+1
    (Open-VCLIP; `neighbour_frame_attention.py`); `normalize_frame_embeds`: the video embedding is the mean of the
    L2-normalised frame embeddings, used as is in the logits (Open-VCLIP's average of per-frame logits). Both need
    `use_cross_frame_attention=False`, `use_mit=False`; both off (default) is the unchanged model.
    """

    model_type = "xclip_hf_vision_model"
    base_config_key = "vision_config"
    get_config_dict = classmethod(_get_config_dict)

    hidden_size: int = 768
    intermediate_size: int = 3072
    num_hidden_layers: int = 12
    num_attention_heads: int = 12
    num_channels: int = 3
    image_size: int = 224
    patch_size: int = 32
    num_frames: int = 8
    hidden_act: str = "quick_gelu"
    layer_norm_eps: float = 1e-5
    attention_dropout: float | int = 0.0
    initializer_range: float = 0.02
    initializer_factor: float = 1.0
    drop_path_rate: float | int = 0.0
    projection_dim: int = 512
    mit_hidden_size: int = 512
    mit_intermediate_size: int = 2048
    mit_num_hidden_layers: int = 1
    mit_num_attention_heads: int = 8
    use_cross_frame_attention: bool = True
    use_mit: bool = True
    position_embedding_init: str = "random"
    token_merging_ratio: float | int = 0.0
    neighbour_frame_attention: bool = False
    normalize_frame_embeds: bool = False

    def validate_architecture(self):
        """Heads must divide the widths they split; the MIT runs on the projected frame features."""
        _check_heads("vision", self.hidden_size, self.num_attention_heads)
        check_token_merging_ratio(self.token_merging_ratio)
        check_successor_options(self)
        if self.position_embedding_init not in POSITION_EMBEDDING_INITS:
            raise ValueError(f"position_embedding_init must be one of {POSITION_EMBEDDING_INITS}, got "
                             f"{self.position_embedding_init!r}")
        if self.position_embedding_init == "sincos" and self.hidden_size % 4:
            raise ValueError(f"position_embedding_init='sincos' needs a hidden_size that is a multiple of 4, got "
                             f"{self.hidden_size}")
        _check_heads("MIT", self.mit_hidden_size, self.mit_num_attention_heads)
        if self.mit_hidden_size != self.projection_dim:
            raise ValueError(
                f"mit_hidden_size ({self.mit_hidden_size}) must equal projection_dim ({self.projection_dim}): "
                "the multi-frame integration transformer runs on projected frame features."
            )
        if self.image_size % self.patch_size:
            raise ValueError(f"image_size ({self.image_size}) is not a multiple of patch_size ({self.patch_size}).")


@strict
class XClipConfig(PreTrainedConfig):
    r"""X-CLIP: video and text configs and the logit scale (Eq. 3); `projection_dim` is copied to both towers."""

    model_type = "xclip_hf"
    get_config_dict = classmethod(_get_config_dict)
    sub_configs_defaults = {"text_config": XClipTextConfig, "vision_config": XClipVisionConfig}

    text_config: dict | XClipTextConfig | None = None
    vision_config: dict | XClipVisionConfig | None = None
    projection_dim: int = 512
    logit_scale_init_value: float = 2.6592
    initializer_factor: float = 1.0

    def __post_init__(self, **kwargs):
        kwargs.pop("label_smoothing", None)  # a training argument, stored here by earlier versions
        # the joint dimension is ours to set on both towers, before they validate themselves
        for key in ("text_config", "vision_config"):
            sub = getattr(self, key)
            if sub is None:
                sub = {}
            elif not isinstance(sub, dict):
                sub = sub.to_dict()
            setattr(self, key, {**sub, "projection_dim": self.projection_dim})
        super().__post_init__(**kwargs)

    @classmethod
    def from_variant(cls, name: str, num_frames: int | None = None, **overrides) -> XClipConfig:
        """A config of the variant table, e.g. `from_variant("xclip-base-patch32", num_frames=16, use_mit=False)`.

        Keyword overrides go to the config that owns them (`route_overrides`).
        """
        if name not in VARIANTS:
            raise ValueError(f"Unknown X-CLIP variant {name!r}; known variants: {', '.join(VARIANTS)}.")
        spec = copy.deepcopy(VARIANTS[name])
        text, vision = spec.pop("text_config"), spec.pop("vision_config")
        spec.pop("frames", None)
        spec.pop("hub_ids", None)
        if num_frames is not None:
            if not isinstance(num_frames, int) or num_frames < 1:
                raise ValueError(f"num_frames must be a positive integer, got {num_frames!r}.")
            vision["num_frames"] = num_frames
        routed = route_overrides(overrides)
        text.update(routed["text_config"])
        vision.update(routed["vision_config"])
        spec.update(routed[""])
        return cls(text_config=text, vision_config=vision, **spec)

    @property
    def num_frames(self) -> int:
        """Frames per clip (read by transformers' video-classification pipeline): `vision_config.num_frames`."""
        return self.vision_config.num_frames

    def variant_name(self) -> str | None:
        """The name of the variant-table entry whose architecture this config has (frames aside), or None."""
        for name, spec in VARIANTS.items():
            ref = XClipConfig.from_variant(name, num_frames=self.vision_config.num_frames)
            if all(getattr(ref.vision_config, k) == getattr(self.vision_config, k) for k in _ARCH_KEYS_VISION) and all(
                getattr(ref.text_config, k) == getattr(self.text_config, k) for k in _ARCH_KEYS_TEXT
            ):
                return name
        return None

    def hub_id(self) -> str | None:
        """The published Kinetics-400 checkpoint of this variant and frame count, if one exists."""
        name = self.variant_name()
        return VARIANTS[name]["hub_ids"].get(self.vision_config.num_frames) if name else None


def _check_heads(what: str, width: int, heads: int):
    if width % heads:
        raise ValueError(f"{what} width ({width}) is not a multiple of its number of attention heads ({heads}).")


POSITION_EMBEDDING_INITS = ("random", "sincos")


def check_token_merging_ratio(value, name: str = "token_merging_ratio") -> float:
    """`value` as a float if it is a number in [0, 1), else a ValueError naming `name`."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < 1:
        raise ValueError(f"{name} must be a number in [0, 1) (the fraction of each frame's patch tokens merged per "
                         f"layer; 0 is off), got {value!r}")
    return float(value)


def check_successor_options(vision) -> None:
    """Open-VCLIP's options replace X-CLIP's modules: refuse the combinations the model has no meaning for."""
    clashes = []
    if vision.neighbour_frame_attention and (vision.use_cross_frame_attention or vision.token_merging_ratio):
        clashes.append("neighbour_frame_attention=True needs use_cross_frame_attention=False and token_merging_ratio=0")
    if vision.normalize_frame_embeds and vision.use_mit:
        clashes.append("normalize_frame_embeds=True needs use_mit=False (it pools the frames by their mean)")
    if clashes:
        raise ValueError("vision_config: " + "; ".join(clashes))


def _fields(config_cls) -> set[str]:
    return {f.name for f in dataclasses.fields(config_cls)}


def route_overrides(overrides: dict) -> dict[str, dict]:
    """Which config owns each override key: ``{"": XClipConfig's, "text_config": ..., "vision_config": ...}``.

    A bare key goes to `XClipConfig` when it is one of its fields, else to the one tower that has it; a field of both
    towers needs its prefix (``vision_config.hidden_size``); an unknown key is an error.
    """
    owners = {"text_config": _fields(XClipTextConfig), "vision_config": _fields(XClipVisionConfig)}
    top = _fields(XClipConfig) - set(owners) | {"output_attentions"}  # a property of every PreTrainedConfig
    routed: dict[str, dict] = {"": {}, "text_config": {}, "vision_config": {}}
    for key, value in overrides.items():
        where, _, name = key.rpartition(".")
        if where:
            if where not in owners or name not in owners[where]:
                raise ValueError(f"config override {key!r}: {where!r} has no field {name!r}" if where in owners else
                                 f"config override {key!r}: the prefix must be text_config or vision_config")
            routed[where][name] = value
        elif key in top:
            routed[""][key] = value
        else:
            found = [sub for sub, names in owners.items() if key in names]
            if len(found) != 1:
                raise ValueError(
                    f"config override {key!r}: both towers have this field; write text_config.{key} or "
                    f"vision_config.{key}" if found else f"config override {key!r}: no X-CLIP config has this field"
                )
            routed[found[0]][key] = value
    return routed


_ARCH_KEYS_VISION = ("hidden_size", "num_hidden_layers", "num_attention_heads", "patch_size", "image_size")
_ARCH_KEYS_TEXT = ("hidden_size", "num_hidden_layers", "num_attention_heads")


def _base(patch_size: int) -> dict:
    """X-CLIP-B/32 and B/16 (supplementary Sec. 1.1): ViT-B (12 layers, 12 heads, 768) + CLIP text, 1-layer MIT."""
    return dict(
        projection_dim=512,
        text_config=dict(hidden_size=512, intermediate_size=2048, num_hidden_layers=12, num_attention_heads=8,
                         prompt_num_attention_heads=8),
        vision_config=dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12,
                           patch_size=patch_size, image_size=224, mit_hidden_size=512, mit_intermediate_size=2048,
                           mit_num_attention_heads=8),
    )


def _large(image_size: int) -> dict:
    """X-CLIP-L/14 (supplementary Sec. 1.1): ViT-L/14 (24 layers, 16 heads, 1024) + CLIP-L text, 1-layer MIT."""
    return dict(
        projection_dim=768,
        text_config=dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12,
                         prompt_num_attention_heads=12),
        vision_config=dict(hidden_size=1024, intermediate_size=4096, num_hidden_layers=24, num_attention_heads=16,
                           patch_size=14, image_size=image_size, mit_hidden_size=768, mit_intermediate_size=3072,
                           mit_num_attention_heads=12),
    )


_HUB = "microsoft/xclip-"

# The one table of the paper's variants. `frames`: clip lengths the paper trains (8/16 fully supervised on
# Kinetics, 32 for zero-/few-shot); `hub_ids`: the published Kinetics-400 checkpoint per frame count.
# Other published checkpoints (Kinetics-600, few-shot, zero-shot) are in `PUBLISHED_CHECKPOINTS`.
VARIANTS: dict[str, dict] = {
    "xclip-base-patch32": {**_base(32), "frames": (8, 16, 32),
                           "hub_ids": {8: _HUB + "base-patch32", 16: _HUB + "base-patch32-16-frames"}},
    "xclip-base-patch16": {**_base(16), "frames": (8, 16, 32),
                           "hub_ids": {8: _HUB + "base-patch16", 16: _HUB + "base-patch16-16-frames",
                                       32: _HUB + "base-patch16-zero-shot"}},
    "xclip-large-patch14": {**_large(224), "frames": (8, 16, 32), "hub_ids": {8: _HUB + "large-patch14"}},
    "xclip-large-patch14-336": {**_large(336), "frames": (8, 16, 32),
                                "hub_ids": {16: _HUB + "large-patch14-16-frames"}},
    # Not a paper variant: a few-kilobyte model for tests and the offline demo.
    "xclip-tiny": dict(
        projection_dim=16,
        text_config=dict(vocab_size=1000, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, prompt_num_attention_heads=2),
        vision_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                           patch_size=8, image_size=32, mit_hidden_size=16, mit_intermediate_size=32,
                           mit_num_attention_heads=2),
        frames=(1, 3, 8), hub_ids={},
    ),
}

# Every published checkpoint: hub id -> (variant, num_frames). Training data in the model cards.
PUBLISHED_CHECKPOINTS: dict[str, tuple[str, int]] = {
    hub_id: (name, frames) for name, spec in VARIANTS.items() for frames, hub_id in spec["hub_ids"].items()
}
PUBLISHED_CHECKPOINTS.update({
    _HUB + "base-patch16-kinetics-600": ("xclip-base-patch16", 8),
    _HUB + "base-patch16-kinetics-600-16-frames": ("xclip-base-patch16", 16),
    _HUB + "large-patch14-kinetics-600": ("xclip-large-patch14", 8),
    **{f"{_HUB}base-patch16-{ds}-{k}-shot": ("xclip-base-patch16", 32) for ds in ("hmdb", "ucf") for k in (2, 4, 8, 16)},
})

__all__ = ["XClipConfig", "XClipTextConfig", "XClipVisionConfig", "VARIANTS", "PUBLISHED_CHECKPOINTS", "describe_config",
           "route_overrides", "POSITION_EMBEDDING_INITS", "check_token_merging_ratio"]


def describe_config(config: XClipConfig) -> dict:
    """A config as a flat, readable dict (frames, sizes, widths, layers, heads; for `xclip-hf info` and reports)."""
    v, t = config.vision_config, config.text_config
    return {
        "frames": v.num_frames, "image_size": v.image_size, "patch_size": v.patch_size,
        "vision": f"{v.num_hidden_layers} layers, width {v.hidden_size}, {v.num_attention_heads} heads, MLP {v.intermediate_size}",
        "mit": f"{v.mit_num_hidden_layers} layers, width {v.mit_hidden_size}, {v.mit_num_attention_heads} heads, MLP {v.mit_intermediate_size}",
        "text": f"{t.num_hidden_layers} layers, width {t.hidden_size}, {t.num_attention_heads} heads, MLP {t.intermediate_size}",
        "prompt_generator": f"{t.prompt_layers} layers, {t.prompt_num_attention_heads} heads",
        "context_length": t.max_position_embeddings, "vocab_size": t.vocab_size,
        "projection_dim": config.projection_dim, "variant": config.variant_name() or "custom",
    }

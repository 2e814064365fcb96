"""Weight-space ensembling (WiSE-FT, as in Open-VCLIP): a fine-tuned X-CLIP's CLIP weights blended with CLIP's own.

theta = (1 - alpha) * theta_CLIP + alpha * theta_ft for every parameter a CLIP checkpoint has (named as the CLIP
expansion, `clip_expansion`, names it); X-CLIP's own modules (message tokens / CFA, MIT, prompt generator, context
projection) keep their fine-tuned weights. alpha = 1 is the fine-tuned model, alpha = 0 its CLIP expansion.
"""

from __future__ import annotations

import math
import numbers
import os

import torch

__all__ = ["check_alpha", "clip_names_for", "clip_weights_for", "extract_clip", "interpolate_weights",
           "load_clip_source"]


def check_alpha(alpha) -> float:
    """`alpha` as a float in [0, 1], or a ValueError naming it (a bool, a string or NaN is not a number here)."""
    if isinstance(alpha, bool) or not isinstance(alpha, numbers.Real) or not math.isfinite(float(alpha)) \
            or not 0 <= float(alpha) <= 1:
        raise ValueError(f"alpha must be a number in [0, 1] (0: the CLIP source's weights, 1: the fine-tuned ones), "
                         f"got {alpha!r}")
    return float(alpha)


def _source_name(clip) -> str:
    """How errors name the CLIP source: its path / hub id, or the folder a CLIPModel object was loaded from."""
    if isinstance(clip, (str, os.PathLike)):
        return repr(os.fspath(clip))
    name = getattr(clip, "name_or_path", "") or ""
    return f"{type(clip).__name__} {name!r}" if name else f"(a {type(clip).__name__} object)"


def load_clip_source(clip):
    """A transformers `CLIPModel` from an instance, a folder or a hub id (what `XClipModel.from_clip` reads), with
    every weight read from the checkpoint (a folder of another model is refused, never randomly filled in)."""
    from huggingface_hub.utils import HFValidationError, validate_repo_id
    from transformers import CLIPModel, PretrainedConfig

    if isinstance(clip, CLIPModel):
        return clip
    if not isinstance(clip, (str, os.PathLike)):
        raise TypeError(f"clip source must be a transformers CLIPModel, or a folder / hub id of one, got "
                        f"{type(clip).__name__}")
    name = os.fspath(clip)
    if not os.path.isdir(name):
        if os.path.exists(name):
            raise ValueError(f"clip source {name!r} is a file; pass the folder of a CLIPModel (its config.json)")
        try:
            validate_repo_id(name)
        except HFValidationError:
            raise ValueError(f"clip source folder {name!r} does not exist (and it is not a hub id either)") from None
    try:
        model_type = PretrainedConfig.get_config_dict(name)[0].get("model_type")
    except Exception as err:  # noqa: BLE001 - whatever the reader raised, name the source
        raise ValueError(f"clip source {_source_name(clip)} cannot be read: {type(err).__name__}: {err}") from err
    if model_type != "clip":
        raise ValueError(f"clip source {_source_name(clip)} is a {model_type!r} checkpoint, not a transformers "
                         "CLIPModel (model_type 'clip')")
    try:
        model, info = CLIPModel.from_pretrained(name, output_loading_info=True)
    except Exception as err:  # noqa: BLE001 - whatever the loader raised, name the source
        raise ValueError(f"clip source {_source_name(clip)} cannot be read as a transformers CLIPModel: "
                         f"{type(err).__name__}: {err}") from err
    missing = [k for k in info["missing_keys"] if not k.endswith("position_ids")]
    if missing:
        raise ValueError(f"clip source {_source_name(clip)} is not a CLIP checkpoint: it has no weights for "
                         f"{len(missing)} of CLIP's parameters (e.g. {missing[0]})")
    return model


def clip_names_for(model, clip_model, source: str = "the CLIP source") -> dict[str, str]:
    """CLIP weight name -> `model`'s parameter name (the expansion's renaming), each of the same shape, else a
    ValueError naming `source` and the parameter."""
    from .clip_expansion import rename_clip_key

    params = dict(model.named_parameters())
    # a classifier nests the X-CLIP model under its base_model_prefix ("xclip.")
    prefix = "" if getattr(model, "base_model", model) is model else f"{model.base_model_prefix}."
    names, absent = {}, []
    for key, tensor in clip_model.state_dict().items():
        if key.endswith("position_ids"):
            continue
        ours = prefix + rename_clip_key(key)
        if ours not in params:
            absent.append(f"{key} (as {ours})")
        elif params[ours].shape != tensor.shape:
            raise ValueError(f"clip source {source} does not fit the model: its {key} has shape "
                             f"{tuple(tensor.shape)}, the model's {ours} {tuple(params[ours].shape)}")
        else:
            names[key] = ours
    if absent:
        raise ValueError(f"{type(model).__name__} lacks {len(absent)} of the CLIP parameters of clip source "
                         f"{source}, e.g. {absent[0]}: weight-space ensembling needs a full X-CLIP model "
                         "(XClipModel or XClipForVideoClassification)")
    return names


def clip_weights_for(model, clip) -> dict[str, torch.Tensor]:
    """The CLIP source's weights under `model`'s parameter names (every CLIP weight has one, of the same shape)."""
    clip_model = load_clip_source(clip)
    state = clip_model.state_dict()
    return {ours: state[key] for key, ours in clip_names_for(model, clip_model, _source_name(clip)).items()}


@torch.no_grad()
def interpolate_weights(model, clip, alpha: float):
    """WiSE-FT in place: each parameter CLIP has -> (1 - alpha) * CLIP + alpha * own, X-CLIP's own modules kept;
    `clip` is a transformers `CLIPModel` or a folder / hub id of one (what `from_clip` reads). Returns the model."""
    alpha = check_alpha(alpha)
    if not isinstance(model, torch.nn.Module):
        raise TypeError(f"model must be an X-CLIP model (XClipModel or XClipForVideoClassification), got "
                        f"{type(model).__name__}")
    weights = clip_weights_for(model, clip)
    params = dict(model.named_parameters())
    for name, source in weights.items():
        param = params[name]
        blended = (1 - alpha) * source.to(param.device, torch.float64) + alpha * param.to(torch.float64)
        param.copy_(blended.to(param.dtype))
    return model


def _clip_config_for(config):
    """A transformers `CLIPConfig` whose shapes are those of the CLIP part of an X-CLIP `config`."""
    from transformers import CLIPConfig

    v, t = config.vision_config, config.text_config
    common = ("hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads", "hidden_act",
              "layer_norm_eps")
    vision = {k: getattr(v, k) for k in common + ("num_channels", "image_size", "patch_size")}
    text = {k: getattr(t, k) for k in common + ("vocab_size", "max_position_embeddings")}
    for name in ("pad_token_id", "bos_token_id"):
        if getattr(t, name, None) is not None:
            text[name] = getattr(t, name)
    # the expansion reads CLIP's legacy eos_token_id=2 as "pool at the highest id" (our None)
    text["eos_token_id"] = 2 if t.eos_token_id is None else t.eos_token_id
    return CLIPConfig(text_config=text, vision_config=vision, projection_dim=config.projection_dim,
                      logit_scale_init_value=float(config.logit_scale_init_value))


@torch.no_grad()
def extract_clip(model):
    """The CLIP part of an X-CLIP model (`XClipModel` or its classifier) as a transformers `CLIPModel` (the
    expansion undone: `from_clip(extract_clip(m))` has `m`'s CLIP weights); e.g. a from-scratch model's initial
    weights saved as the CLIP source of weight-space ensembling."""
    from transformers import CLIPModel
    from transformers.initialization import no_init_weights

    with no_init_weights():
        clip = CLIPModel(_clip_config_for(model.config))
    params = dict(model.named_parameters())
    for key, ours in clip_names_for(model, clip, f"for {type(model).__name__}").items():
        clip.get_parameter(key).copy_(params[ours])
    return clip.eval()

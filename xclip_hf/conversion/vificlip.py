"""ViFi-CLIP checkpoints (Rasheed et al., CVPR 2023: CLIP fully fine-tuned on video, frame features averaged).

A ViFi-CLIP model is our CLIP-Mean (`use_cross_frame_attention=False`, `use_mit=False`) whose prompt generator adds
nothing (`prompt_layers=0`, `prompt_alpha=0`, alpha zero). Its checkpoint, ``{"model": state_dict, ...}`` (keys
``module.``-prefixed by DDP), stores the CLIP towers as ``image_encoder.*`` / ``text_encoder.*`` but not CLIP's token
embedding, which it never trains: it comes from the CLIP it was fine-tuned from (`clip=`), checked against the token
vectors of the training prompts the checkpoint keeps (``prompt_learner.complete_text_embeddings``).
"""

from __future__ import annotations

import math
import os

import torch

from ..models.configuration_xclip import XClipConfig
from .convert import ConvertedCheckpoint, convert_with
from .original import (HEAD_DIM, OriginalCheckpoint, _empty_model, _state_dict_entry, _strip_prefix,
                       clip_tower_config, from_original_state_dict, load_original, original_key, with_inert_prompt)
from .safe_load import find_not_unpickled, load_checkpoint

__all__ = ["VIFICLIP_TEMPLATE", "VIFICLIP_FRAMES", "read_vificlip", "read_token_embedding",
           "convert_vificlip_checkpoint"]

VIFICLIP_TEMPLATE = "a photo of a {}."  # their CTX_INIT "a photo of a" + " " + class name + "."
VIFICLIP_FRAMES = 32  # the released zero-shot, few-shot and base-to-novel models read 32 frames (16: fully supervised)
_PROMPTS = "prompt_learner.complete_text_embeddings"  # token vectors of the training class prompts (a buffer)
_RENAME = (("image_encoder.", "visual."), ("text_encoder.", ""))  # their model's prefixes -> the OpenAI CLIP layout
_HF_TOKEN_EMBEDDING = "text_model.embeddings.token_embedding.weight"


# ------------------------------------------------------------------------------------------- the checkpoint's keys
def _check_is_vificlip(state: dict, source: str) -> None:
    """Clear errors for prompt-learning checkpoints (not representable), other layouts and incomplete files."""
    prompts = sorted(k for k in state if "VPT" in k.split(".")[-1] or k.startswith(
        ("prompt_learner.ctx", "prompt_learner.token_prefix", "prompt_learner.token_suffix")))
    if prompts:
        raise ValueError(
            f"{source} is a ViFi-CLIP prompt-learning checkpoint ('bridge and prompt': PROMPT_MODEL with learned "
            f"vision/language prompt tokens, keys {', '.join(prompts[:6])}{', ...' if len(prompts) > 6 else ''}): "
            "this package's model has no learned prompt tokens and cannot represent it. The fully fine-tuned "
            "ViFi-CLIP (and CLIP image-FT / text-FT) checkpoints convert.")
    if any(k.startswith(("vision_model.", "text_model.", "xclip.")) for k in state):
        raise ValueError(f"{source} holds Hugging Face-style keys (e.g. {next(iter(state))!r}), not ViFi-CLIP's "
                         "image_encoder.* / text_encoder.*; a directory saved with save_pretrained loads with "
                         "XClipModel.from_pretrained")
    xclip_only = [original_key(k)[0] for k in ("vision_model.mit.position_embedding",
                                                "text_model.prompt_generator.alpha")]
    if any(k in state for k in xclip_only):
        raise ValueError(f"{source} is an original X-CLIP checkpoint ({', '.join(xclip_only)}), not ViFi-CLIP: "
                         "convert it with --from xclip")
    needed = ["image_encoder.conv1.weight", "image_encoder.positional_embedding", "image_encoder.proj",
              "image_encoder.transformer.resblocks.0.mlp.c_fc.weight", "text_encoder.positional_embedding",
              "text_encoder.transformer.resblocks.0.mlp.c_fc.weight", "text_encoder.text_projection"]
    missing = [k for k in needed if k not in state]
    if missing:
        raise ValueError(f"{source} is not a ViFi-CLIP state dict (its ViFiCLIP model's image_encoder.*, "
                         f"text_encoder.*, logit_scale): missing keys {', '.join(missing)}")


def _to_clip_layout(state: dict, source: str) -> dict:
    """image_encoder.* -> visual.*, text_encoder.* -> *, logit_scale kept; anything else is an error naming it."""
    out, extra = {}, []
    for key, tensor in state.items():
        if key == "logit_scale":
            out[key] = tensor
        elif key != _PROMPTS:
            prefix = next((p for p in _RENAME if key.startswith(p[0])), None)
            if prefix is None:
                extra.append(key)
            else:
                out[prefix[1] + key[len(prefix[0]):]] = tensor
    if extra:
        raise ValueError(f"{source}: {len(extra)} keys are not part of a ViFi-CLIP model: "
                         f"{', '.join(extra[:12])}{', ...' if len(extra) > 12 else ''}")
    return out


# ------------------------------------------------------------------------------------------- CLIP's token embedding
def read_token_embedding(clip, trust_pickle: bool = False) -> torch.Tensor:
    """CLIP's token embedding (vocab, width) from a transformers CLIP directory / hub id or a state-dict file."""
    source = os.fspath(clip)
    if os.path.isdir(source) or not os.path.exists(source):
        return _hf_token_embedding(source)
    loaded = load_checkpoint(source, trust_pickle=trust_pickle)
    data = loaded.data
    for entry in ("state_dict", "model"):
        if isinstance(data, dict) and isinstance(data.get(entry), dict):
            data = data[entry]
    for key in ("token_embedding.weight", _HF_TOKEN_EMBEDDING):
        if isinstance(data, dict) and isinstance(data.get(key), torch.Tensor):
            return data[key].float()
    raise ValueError(f"clip file {source!r} has no CLIP token embedding (token_embedding.weight or "
                     f"{_HF_TOKEN_EMBEDDING}); pass the transformers CLIP the model was fine-tuned from "
                     "(e.g. openai/clip-vit-base-patch16) or an OpenAI-layout state dict")


def _hf_token_embedding(source: str) -> torch.Tensor:
    """The token embedding of a transformers CLIP (directory or hub id), read alone from its safetensors file."""
    from safetensors import safe_open

    if os.path.isdir(source):
        path = os.path.join(source, "model.safetensors")
        if not os.path.isfile(path):
            raise FileNotFoundError(f"clip directory {source!r} has no model.safetensors (a transformers CLIPModel "
                                    "saved with save_pretrained)")
    else:
        from huggingface_hub import hf_hub_download

        try:
            path = hf_hub_download(source, "model.safetensors")
        except Exception as err:  # offline, unknown id, no such file: say what was asked for
            raise FileNotFoundError(f"clip {source!r} is neither a file, a directory nor a reachable hub id with a "
                                    f"model.safetensors ({type(err).__name__})") from err
    with safe_open(path, framework="pt") as f:
        if _HF_TOKEN_EMBEDDING not in f.keys():
            raise ValueError(f"clip {source!r}: {path} has no {_HF_TOKEN_EMBEDDING} (is it a CLIPModel?)")
        return f.get_tensor(_HF_TOKEN_EMBEDDING).float()


def _check_token_embedding(table: torch.Tensor, prompts: torch.Tensor | None, text_width: int, source: str,
                           clip: str) -> str:
    """ValueError unless every token vector of the training prompts is a row of `table`; returns a note."""
    if table.ndim != 2 or table.shape[1] != text_width:
        raise ValueError(f"clip {clip!r}: token embedding {tuple(table.shape)} does not fit the text encoder of "
                         f"{source} (width {text_width})")
    if prompts is None:
        return f"no {_PROMPTS} to check the token embedding of {clip} against"
    rows = {bytes(row.numpy().tobytes()) for row in table.half()}
    vectors = prompts.reshape(-1, prompts.shape[-1]).half()
    unknown = sum(bytes(v.numpy().tobytes()) not in rows for v in vectors) if prompts.shape[-1] == text_width else -1
    # every prompt starts with <|startoftext|>, CLIP's second-highest id
    starts = int((prompts[:, 0].half() != table[-2].half()).any(dim=-1).sum()) if unknown == 0 else 0
    if unknown or starts:
        why = (f"{unknown} of {len(vectors)} token vectors of its training prompts are not rows of its token "
               "embedding" if unknown else f"{starts} of its {len(prompts)} training prompts do not start with the "
               f"start-of-text vector (row {len(table) - 2}) of its token embedding")
        raise ValueError(f"clip {clip!r} is not the CLIP {source} was fine-tuned from: {why} ({_PROMPTS} "
                         f"{tuple(prompts.shape)}, token embedding {tuple(table.shape)})")
    return f"token embedding from {clip}: matches all {prompts.shape[0]} training prompts of the checkpoint"


# ------------------------------------------------------------------------------------------- config and reading
def vificlip_config(state: dict, source: str, num_frames: int, head_dim: int = HEAD_DIM) -> XClipConfig:
    """Our config of a ViFi-CLIP (OpenAI-layout `state`): CLIP-Mean, no MIT, a prompt generator that adds nothing."""
    vision, text, projection_dim, scale = clip_tower_config(state, source, head_dim)
    heads = max(projection_dim // head_dim, 1)  # of the absent MIT and prompt blocks: any valid value
    vision.update(num_frames=num_frames, use_cross_frame_attention=False, use_mit=False, mit_hidden_size=projection_dim,
                  mit_num_hidden_layers=0, mit_num_attention_heads=heads)
    text.update(prompt_layers=0, prompt_alpha=0.0, prompt_num_attention_heads=heads)
    return XClipConfig(text_config=text, vision_config=vision, projection_dim=projection_dim,
                       logit_scale_init_value=scale, architectures=["XClipModel"])


def read_vificlip(path, clip, num_frames: int = VIFICLIP_FRAMES, trust_pickle: bool = False,
                  head_dim: int = HEAD_DIM) -> OriginalCheckpoint:
    """Read a ViFi-CLIP `.pth` safely with CLIP's token embedding from `clip`; check every key and shape."""
    path, clip = os.fspath(path), os.fspath(clip)
    loaded = load_checkpoint(path, trust_pickle=trust_pickle)
    state, where = _state_dict_entry(loaded.data, path)
    state, stripped = _strip_prefix(state, where)
    _check_is_vificlip(state, where)
    prompts = state.get(_PROMPTS)
    state = _to_clip_layout(state, where)
    text_width = state["positional_embedding"].shape[-1]
    table = read_token_embedding(clip, trust_pickle=trust_pickle)
    token_note = _check_token_embedding(table, prompts, text_width, where, clip)
    state["token_embedding.weight"] = table
    config = vificlip_config(state, where, num_frames, head_dim)
    with torch.device("meta"):
        shapes = {k: v.shape for k, v in _empty_model(config).state_dict().items()}
    state = with_inert_prompt(state, shapes)
    from_original_state_dict(state, shapes, where)  # raises naming missing / unexpected keys and wrong shapes
    notes = [f"read with the {loaded.method}", token_note,
             f"ViFi-CLIP checkpoints do not store their frame count: the processor samples {num_frames} frames"]
    if loaded.not_unpickled:
        places = find_not_unpickled(loaded.data)
        notes.append("left out, never imported nor run: " + ", ".join(f"{name} in {loc}" for loc, name in places))
    if stripped:
        notes.append("removed the 'module.' prefix of the keys")
    return OriginalCheckpoint(path, state, config, notes, sum(math.prod(s) for s in shapes.values()))


def convert_vificlip_checkpoint(checkpoint, output_dir, *, clip, bpe=None, labels=None,
                                template: str = VIFICLIP_TEMPLATE, num_frames: int | None = None,
                                trust_pickle: bool = False, progress: bool = True, clip_source=None,
                                alpha: float | None = None) -> ConvertedCheckpoint:
    """A ViFi-CLIP .pth (+ `clip`, its CLIP) -> a model directory, tokenizer from `bpe`, classifier of `labels`
    (weights blended with `clip_source` at `alpha`: weight-space ensembling)."""
    if clip is None:
        raise ValueError("clip is required: ViFi-CLIP checkpoints leave out CLIP's token embedding; pass the CLIP the "
                         "model was fine-tuned from (openai/clip-vit-base-patch16 for the released models)")
    frames = num_frames or VIFICLIP_FRAMES
    return convert_with(lambda path: read_vificlip(path, clip, frames, trust_pickle=trust_pickle), load_original, checkpoint, output_dir, bpe=bpe, labels=labels, template=template,
                        num_frames=num_frames, progress=progress, clip_source=clip_source, alpha=alpha)

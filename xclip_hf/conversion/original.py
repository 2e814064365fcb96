"""The original X-CLIP checkpoint format (microsoft/VideoX ``.pth``): read safely, infer the config, load, export."""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass, field

import torch

from ..models.configuration_xclip import XClipConfig, describe_config
from .safe_load import NotUnpickled, check_fits_in_memory, find_not_unpickled, load_checkpoint

__all__ = ["OriginalCheckpoint", "read_original", "load_original", "export_original", "infer_config",
           "clip_tower_config", "original_key", "to_original_state_dict", "from_original_state_dict", "HEAD_DIM",
           "with_inert_prompt", "build_model"]

HEAD_DIM = 64  # the original code: num_heads = width // 64 in every attention layer

# ------------------------------------------------------------------------------------------- name correspondence
# whole tensors outside the stacked blocks: our name -> original name
_TENSORS = {
    "vision_model.embeddings.patch_embedding.weight": "visual.conv1.weight",
    "vision_model.embeddings.class_embedding": "visual.class_embedding",
    "vision_model.embeddings.position_embedding.weight": "visual.positional_embedding",
    "vision_model.mit.position_embedding": "mit.positional_embedding",
    "vision_model.context_projection": "prompts_visual_proj",
    "text_model.prompt_generator.alpha": "prompts_generator.alpha",
    "text_model.embeddings.token_embedding.weight": "token_embedding.weight",
    "text_model.embeddings.position_embedding.weight": "positional_embedding",
    "logit_scale": "logit_scale",
}
# bias-free projections applied as `x @ proj` in the original code: the original tensor is our weight transposed
_TRANSPOSED = {
    "vision_model.visual_projection.weight": "visual.proj",
    "text_model.text_projection.weight": "text_projection",
}
# LayerNorms outside the stacks: our module -> original module
_MODULES = {
    "vision_model.pre_layernorm": "visual.ln_pre",
    "vision_model.post_layernorm": "visual.ln_post",
    "vision_model.context_layernorm": "prompts_visual_ln",
    "text_model.prompt_generator.context_layernorm": "prompts_generator.norm",
    "text_model.final_layer_norm": "ln_final",
}
_CLIP_BLOCK = {"layer_norm1": "ln_1", "layer_norm2": "ln_2", "mlp.fc1": "mlp.c_fc", "mlp.fc2": "mlp.c_proj",
               "self_attn.out_proj": "attn.out_proj"}
_CROSS_FRAME_BLOCK = {**_CLIP_BLOCK, "message_proj": "message_fc", "cfa_layernorm": "message_ln",
                      "cfa.out_proj": "message_attn.out_proj"}
_PROMPT_BLOCK = {"layer_norm1": "norm1", "layer_norm2": "norm3", "mlp.fc1": "mlp.0", "mlp.fc2": "mlp.3",
                 "cross_attn.q_proj": "cross_attn.q_proj", "cross_attn.k_proj": "cross_attn.k_proj",
                 "cross_attn.v_proj": "cross_attn.v_proj", "cross_attn.out_proj": "cross_attn.proj"}
# stacked blocks: (our prefix, original prefix, module names, attentions whose q, k, v the original packs)
_STACKS = (
    ("vision_model.encoder.layers", "visual.transformer.resblocks", _CROSS_FRAME_BLOCK,
     {"self_attn": "attn", "cfa": "message_attn"}),
    ("vision_model.mit.encoder.layers", "mit.resblocks", _CLIP_BLOCK, {"self_attn": "attn"}),
    ("text_model.encoder.layers", "transformer.resblocks", _CLIP_BLOCK, {"self_attn": "attn"}),
    ("text_model.prompt_generator.layers", "prompts_generator.decoder", _PROMPT_BLOCK, {}),
)
SAME, TRANSPOSE, QKV = "same", "transpose", "qkv"


def original_key(our_key: str) -> tuple[str, str, int]:
    """(original key, relation, part) of one of our parameter names: "same", "transpose" (x @ proj) or "qkv" part."""
    if our_key in _TENSORS:
        return _TENSORS[our_key], SAME, 0
    if our_key in _TRANSPOSED:
        return _TRANSPOSED[our_key], TRANSPOSE, 0
    module, _, param = our_key.rpartition(".")
    if module in _MODULES:
        return f"{_MODULES[module]}.{param}", SAME, 0
    for ours, theirs, names, packed in _STACKS:
        match = re.fullmatch(rf"{re.escape(ours)}\.(\d+)\.(.+)", module)
        if not match:
            continue
        index, name = match.groups()
        attn, _, proj = name.rpartition(".")
        if attn in packed and proj in ("q_proj", "k_proj", "v_proj"):
            return f"{theirs}.{index}.{packed[attn]}.in_proj_{param}", QKV, "qkv".index(proj[0])
        if name in names:
            return f"{theirs}.{index}.{names[name]}.{param}", SAME, 0
    raise KeyError(f"{our_key!r} has no counterpart in the original X-CLIP layout")


def _plan(our_shapes: dict[str, torch.Size]) -> dict[str, list[tuple[str, str, int]]]:
    """original key -> [(our key, relation, part)] for every one of our parameters."""
    plan: dict[str, list] = {}
    for key in our_shapes:
        theirs, relation, part = original_key(key)
        plan.setdefault(theirs, []).append((key, relation, part))
    for items in plan.values():
        items.sort(key=lambda item: item[2])
    return plan


def _original_shape(items, our_shapes) -> tuple[int, ...]:
    key, relation, _ = items[0]
    shape = tuple(our_shapes[key])
    if relation == TRANSPOSE:
        return shape[::-1]
    if relation == QKV:
        return (3 * shape[0],) + shape[1:]
    return shape


def to_original_state_dict(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Our `XClipModel` state dict -> the original layout (q, k, v packed; projections transposed)."""
    out = {}
    for theirs, items in _plan({k: v.shape for k, v in state.items()}).items():
        key, relation, _ = items[0]
        if relation == QKV:
            if [part for _, _, part in items] != [0, 1, 2]:
                raise ValueError(f"{theirs}: q, k and v are not all present ({[k for k, _, _ in items]})")
            out[theirs] = torch.cat([state[k] for k, _, _ in items], dim=0)
        elif relation == TRANSPOSE:
            out[theirs] = state[key].t().contiguous()
        else:
            out[theirs] = state[key]
    return out


def from_original_state_dict(state: dict[str, torch.Tensor], our_shapes: dict[str, torch.Size],
                             source: str = "state dict") -> dict[str, torch.Tensor]:
    """Original-layout state dict -> ours; ValueError naming every missing, unexpected or mis-shaped key."""
    plan = _plan(our_shapes)
    missing = [k for k in plan if k not in state]
    extra = [k for k in state if k not in plan]
    wrong = [f"{k} {tuple(state[k].shape)} (expected {_original_shape(items, our_shapes)})"
             for k, items in plan.items() if k in state and tuple(state[k].shape) != _original_shape(items, our_shapes)]
    if missing or extra or wrong:
        parts = [f"{len(v)} {what}: {', '.join(v[:12])}{', ...' if len(v) > 12 else ''}"
                 for what, v in (("missing keys", missing), ("unexpected keys", extra), ("wrong shapes", wrong)) if v]
        raise ValueError(f"{source} does not fit the X-CLIP architecture inferred from its shapes; " + "; ".join(parts))
    out = {}
    for theirs, items in plan.items():
        tensor = state[theirs]
        for key, relation, part in items:
            if relation == QKV:
                out[key] = tensor.chunk(3, dim=0)[part]
            elif relation == TRANSPOSE:
                out[key] = tensor.t()
            else:
                out[key] = tensor
    return out


# ------------------------------------------------------------------------------------------- config inference
def _count_blocks(state, prefix: str, source: str) -> int:
    """Number of blocks `prefix.{i}.`; ValueError when the indices are not 0..n-1."""
    indices = {int(m.group(1)) for k in state if (m := re.match(rf"{re.escape(prefix)}\.(\d+)\.", k))}
    if indices != set(range(len(indices))):
        raise ValueError(f"{source}: the blocks {prefix}.N are not numbered 0..{len(indices) - 1}: {sorted(indices)}")
    return len(indices)


def _heads(width: int, what: str, head_dim: int) -> int:
    if width < head_dim:
        raise ValueError(f"{what} width {width} is below the head width {head_dim}: the original code uses "
                         f"width // {head_dim} attention heads (pass another head_dim for such a model)")
    return width // head_dim


# keys whose shapes give the configuration (plus the block counts)
_SHAPE_KEYS = ("visual.conv1.weight", "visual.positional_embedding", "visual.proj",
               "visual.transformer.resblocks.0.mlp.c_fc.weight", "mit.positional_embedding",
               "mit.resblocks.0.mlp.c_fc.weight", "token_embedding.weight", "positional_embedding",
               "transformer.resblocks.0.mlp.c_fc.weight", "text_projection", "prompts_visual_proj")


def _check_is_original_xclip(state, source: str) -> None:
    """Clear errors for the usual wrong files: a Hugging Face-format state dict, a plain CLIP, missing parts."""
    if any(k.startswith(("vision_model.", "text_model.", "xclip.")) for k in state):
        raise ValueError(f"{source} holds Hugging Face-style keys (e.g. {next(iter(state))!r}), not the original X-CLIP "
                         "layout; a directory saved with save_pretrained loads with XClipModel.from_pretrained")
    if any(k.startswith("image_encoder.") for k in state) and any(k.startswith("text_encoder.") for k in state):
        raise ValueError(f"{source} is a ViFi-CLIP checkpoint (image_encoder.*, text_encoder.*), not X-CLIP: convert "
                         "it with --from vificlip (convert_vificlip_checkpoint)")
    xclip_parts = {"mit.*": "mit.", "prompts_generator.*": "prompts_generator.", "prompts_visual_*": "prompts_visual_"}
    absent = [name for name, prefix in xclip_parts.items() if not any(k.startswith(prefix) for k in state)]
    has_messages = any(".message_fc." in k for k in state)
    if "visual.conv1.weight" in state and "token_embedding.weight" in state and len(absent) == 3 and not has_messages:
        raise ValueError(
            f"{source} is a plain CLIP state dict (OpenAI layout: visual.*, transformer.*, token_embedding, ...), not "
            "X-CLIP: it has none of X-CLIP's keys mit.*, prompts_generator.*, prompts_visual_*, "
            "visual.transformer.resblocks.N.message_*. To start an X-CLIP from CLIP use XClipModel.from_clip."
        )
    missing = [k for k in _SHAPE_KEYS if k not in state]
    if missing:
        raise ValueError(f"{source} is not a complete original X-CLIP state dict: missing keys {', '.join(missing)} "
                         f"(X-CLIP parts present: {sorted(set(xclip_parts) - set(absent)) or 'none'})")


def clip_tower_config(state: dict[str, torch.Tensor], source: str = "state dict",
                      head_dim: int = HEAD_DIM) -> tuple[dict, dict, int, float]:
    """(vision, text, projection_dim, logit_scale) config values of the CLIP towers of an original-layout state dict."""
    conv, pos = state["visual.conv1.weight"], state["visual.positional_embedding"]
    width, channels, patch = conv.shape[0], conv.shape[1], conv.shape[-1]
    grid = math.isqrt(pos.shape[0] - 1)
    if conv.ndim != 4 or conv.shape[-2] != patch or grid * grid != pos.shape[0] - 1 or pos.shape[1] != width:
        raise ValueError(f"{source}: visual.conv1.weight {tuple(conv.shape)} and visual.positional_embedding "
                         f"{tuple(pos.shape)} do not describe square patches on a square grid plus a [class] token")
    text_width = state["token_embedding.weight"].shape[1]
    vision = dict(
        hidden_size=width, intermediate_size=state["visual.transformer.resblocks.0.mlp.c_fc.weight"].shape[0],
        num_hidden_layers=_count_blocks(state, "visual.transformer.resblocks", source),
        num_attention_heads=_heads(width, "vision", head_dim), num_channels=channels, image_size=grid * patch,
        patch_size=patch,
    )
    text = dict(
        vocab_size=state["token_embedding.weight"].shape[0], hidden_size=text_width,
        intermediate_size=state["transformer.resblocks.0.mlp.c_fc.weight"].shape[0],
        num_hidden_layers=_count_blocks(state, "transformer.resblocks", source),
        num_attention_heads=_heads(text_width, "text", head_dim),
        max_position_embeddings=state["positional_embedding"].shape[0], eos_token_id=None,
    )
    logit_scale = state.get("logit_scale")
    scale = float(logit_scale) if isinstance(logit_scale, torch.Tensor) and logit_scale.numel() == 1 else 2.6592
    return vision, text, state["visual.proj"].shape[1], scale


def infer_config(state: dict[str, torch.Tensor], source: str = "state dict", head_dim: int = HEAD_DIM) -> XClipConfig:
    """The whole `XClipConfig` from the shapes of an original-layout state dict (heads = width // head_dim)."""
    _check_is_original_xclip(state, source)
    vision, text, projection_dim, scale = clip_tower_config(state, source, head_dim)
    mit_pos = state["mit.positional_embedding"]
    others = {"mit.positional_embedding": mit_pos.shape[-1], "text_projection": state["text_projection"].shape[1],
              "prompts_visual_proj": state["prompts_visual_proj"].shape[1]}
    if any(d != projection_dim for d in others.values()) or mit_pos.ndim != 3:
        raise ValueError(f"{source}: the joint dimension differs between visual.proj ({projection_dim}) and "
                         + ", ".join(f"{k} ({v})" for k, v in others.items()))
    prompt_layers = _count_blocks(state, "prompts_generator.decoder", source)
    vision.update(
        num_frames=mit_pos.shape[1], mit_hidden_size=projection_dim,
        mit_intermediate_size=state["mit.resblocks.0.mlp.c_fc.weight"].shape[0],
        mit_num_hidden_layers=_count_blocks(state, "mit.resblocks", source),
        mit_num_attention_heads=_heads(projection_dim, "MIT", head_dim),
    )
    text.update(prompt_layers=prompt_layers,
                prompt_num_attention_heads=_heads(projection_dim, "prompt generator", head_dim))
    return XClipConfig(text_config=text, vision_config=vision, projection_dim=projection_dim,
                       logit_scale_init_value=scale, architectures=["XClipModel"])


# ------------------------------------------------------------------------------------------- reading a file
@dataclass
class OriginalCheckpoint:
    """An original-layout state dict read safely, with its inferred config, notes and parameter count."""

    path: str
    state_dict: dict[str, torch.Tensor]
    config: XClipConfig
    notes: list[str] = field(default_factory=list)
    parameters: int = 0


def _state_dict_entry(data, path: str) -> tuple[dict, str]:
    """The state dict inside a loaded file: its "model" entry, or the file itself when it is a bare state dict."""
    if isinstance(data, NotUnpickled):
        raise ValueError(f"{path}: the file holds a pickled {data.global_name} object, not a checkpoint; it was not "
                         "unpickled. Refusing to load it.")
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a dict with a 'model' entry or a bare state dict, got {type(data).__name__}")
    if "model" in data:
        state, where = data["model"], f"{path} ['model' entry]"
    elif any(isinstance(v, torch.Tensor) for v in data.values()):  # a bare state dict (checked entry by entry below)
        state, where = data, path
    else:
        raise ValueError(f"{path}: no 'model' entry and not a bare state dict; top-level entries: "
                         f"{', '.join(map(repr, list(data)[:10]))}")
    if isinstance(state, NotUnpickled):
        raise ValueError(f"{where} is a pickled call of {state.global_name}, not a state dict of tensors; it was NOT "
                         "executed. Refusing the file: it may be malicious.")
    if not isinstance(state, dict):
        raise ValueError(f"{where} is a {type(state).__name__}, not a state dict (a dict of tensors)")
    bad = [(k, v) for k, v in state.items() if not isinstance(k, str) or not isinstance(v, torch.Tensor)]
    if bad:
        shown = ", ".join(f"{k!r}: " + (f"pickled {v.global_name} (NOT executed)" if isinstance(v, NotUnpickled)
                                        else type(v).__name__) for k, v in bad[:5])
        raise ValueError(f"{where} holds {len(bad)} entries that are not tensors ({shown}). A state dict holds only "
                         "tensors; refusing the file.")
    return state, where


def _strip_prefix(state: dict, where: str) -> tuple[dict, bool]:
    """Remove DataParallel's `module.` prefix."""
    if not any(k.startswith("module.") for k in state):
        return state, False
    out = {}
    for key, value in state.items():
        new = key[len("module."):] if key.startswith("module.") else key
        if new in out:
            raise ValueError(f"{where}: key {key!r} clashes with {new!r} once the 'module.' prefix is removed")
        out[new] = value
    return out, True


def read_original(path, trust_pickle: bool = False, head_dim: int = HEAD_DIM) -> OriginalCheckpoint:
    """Read an original X-CLIP `.pth` safely, infer its config and check that every key and shape fits it."""
    path = os.fspath(path)
    loaded = load_checkpoint(path, trust_pickle=trust_pickle)
    state, where = _state_dict_entry(loaded.data, path)
    state, stripped = _strip_prefix(state, where)
    config = infer_config(state, where, head_dim)
    with torch.device("meta"):
        shapes = {k: v.shape for k, v in _empty_model(config).state_dict().items()}
    from_original_state_dict(state, shapes, where)  # raises naming missing / unexpected keys and wrong shapes
    parameters = sum(math.prod(shape) for shape in shapes.values())
    notes = [f"read with the {loaded.method}"]
    if loaded.not_unpickled:
        places = find_not_unpickled(loaded.data)
        notes.append("left out, never imported nor run: " + ", ".join(f"{name} in {loc}" for loc, name in places))
    if stripped:
        notes.append("removed the 'module.' prefix of the keys")
    return OriginalCheckpoint(path, state, config, notes, parameters)


def _empty_model(config: XClipConfig):
    from transformers.initialization import no_init_weights

    from ..models.modeling_xclip import XClipModel

    with no_init_weights():
        return XClipModel(config)


def load_original(source, trust_pickle: bool = False, head_dim: int = HEAD_DIM):
    """An `XClipModel` (eval mode) from an original `.pth` or `OriginalCheckpoint`, refused if it cannot fit memory."""
    return build_model(source if isinstance(source, OriginalCheckpoint) else read_original(source, trust_pickle,
                                                                                              head_dim))


def build_model(ckpt):
    """The `XClipModel` (eval mode) of a checkpoint read in the original layout (`.path`, `.config`, `.state_dict`,
    `.parameters`), refused before it is built if it cannot fit in memory."""
    check_fits_in_memory(ckpt.path, 4 * ckpt.parameters, f"building the model ({ckpt.parameters:,} float32 parameters)")
    model = _empty_model(ckpt.config)
    shapes = {k: v.shape for k, v in model.state_dict().items()}
    model.load_state_dict(from_original_state_dict(ckpt.state_dict, shapes, ckpt.path), strict=True)
    return model.eval()


# ------------------------------------------------------------------------------------------- export
def _check_exportable(config: XClipConfig, head_dim: int, name: str = "this model") -> None:
    """The original code fixes what our config leaves open: heads = width // 64, MIT and message tokens present."""
    v, t, p = config.vision_config, config.text_config, config.projection_dim
    problems = [f"{what} has {heads} heads, the original code would use {width} // {head_dim} = {width // head_dim}"
                for what, heads, width in (("vision", v.num_attention_heads, v.hidden_size),
                                           ("text", t.num_attention_heads, t.hidden_size),
                                           ("MIT", v.mit_num_attention_heads, p),
                                           ("prompt generator", t.prompt_num_attention_heads, p))
                if heads != width // head_dim]
    if not (v.use_mit and v.use_cross_frame_attention):
        problems.append("the original layout has no switch to leave out the MIT or the cross-frame attention")
    if t.eos_token_id is not None:
        problems.append(f"texts are pooled at eos_token_id={t.eos_token_id}, the original code pools at argmax(ids)")
    if problems:
        raise ValueError(f"{name} cannot run unchanged in the original X-CLIP code: " + "; ".join(problems))


def export_original(model, path, config=None, head_dim: int = HEAD_DIM) -> dict[str, torch.Tensor]:
    """Write `model` as the original code's ``torch.save({"model": ..., "config": config}, path)``; returns the weights.

    `config` defaults to a plain dict of the architecture. ValueError when the model cannot run unchanged in the
    original code; OSError naming `path` on a failed write (no partial file is left).
    """
    xclip = getattr(model, "xclip", model)
    _check_exportable(xclip.config, head_dim, repr(xclip.name_or_path) if xclip.name_or_path else "this model")
    state = to_original_state_dict({k: v.detach().cpu() for k, v in xclip.state_dict().items()})
    if config is None:
        config = {"exported_by": "xclip_hf", **describe_config(xclip.config)}
    path = os.fspath(path)
    try:
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        torch.save({"model": state, "config": config}, path)
    except Exception as err:  # torch's writer names no file (disk full: "unexpected pos ...", "file write failed")
        if os.path.isfile(path):
            os.remove(path)  # no half-written checkpoint left behind
        reason = next((line for line in str(err).splitlines() if line.strip()), type(err).__name__)
        raise OSError(f"cannot write the checkpoint {path!r}: {type(err).__name__}: {reason}") from err
    return state


_INERT_PROMPT = {"text_model.prompt_generator.alpha": torch.zeros, "text_model.prompt_generator.context_layernorm."
                 "weight": torch.ones, "text_model.prompt_generator.context_layernorm.bias": torch.zeros,
                 "vision_model.context_projection": torch.zeros, "vision_model.context_layernorm.weight": torch.ones,
                 "vision_model.context_layernorm.bias": torch.zeros}


def with_inert_prompt(state: dict, shapes: dict) -> dict:
    """`state` (original layout) plus X-CLIP's video-prompt tensors set to change nothing (prompt weight 0): the
    models of successors that have no prompt generator."""
    fill = {original_key(ours)[0]: make(shapes[ours]) for ours, make in _INERT_PROMPT.items()}
    clash = [k for k in fill if k in state]
    if clash:
        raise ValueError(f"the model state holds X-CLIP tensors ({', '.join(clash)}): an original X-CLIP checkpoint "
                         "converts with `xclip-hf convert` (--from xclip, the default)")
    return {**state, **fill}

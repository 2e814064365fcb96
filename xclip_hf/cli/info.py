"""`xclip-hf info --model M`: variant, parameter counts and FLOPs per view of a model."""

from __future__ import annotations

import json
import os
import sys

from .common import UsageError, add_model_argument, check_model_source, one_line, positive_int

HELP = "variant, parameters and FLOPs of a model"

# the parts X-CLIP adds to CLIP (paper Sec. 3), by the module names of their parameters
_ADDED_PARTS = {
    "cross-frame attention": ("message_proj", "cfa_layernorm", "cfa"),  # message tokens, Eq. 7-8
    "MIT": ("mit",),  # multi-frame integration transformer, Eq. 6
    "prompt generator": ("prompt_generator", "context_layernorm", "context_projection"),  # Eq. 10
}


def add_arguments(i) -> None:
    """Arguments of `info` (no heavy import here: `--help` must answer at once)."""
    add_model_argument(i, note="or a variant name (e.g. xclip-base-patch32), or an original .pth",
                       positional_alias=True)
    i.add_argument("--num-frames", type=positive_int, default=None, help="frames per view for a variant name (default 8)")
    i.add_argument("--json", action="store_true", help="print JSON")


def _load_config(model: str, num_frames: int | None):
    """Config of a variant name, an original `.pth`, a model directory or hub id (published ids: the table)."""
    from ..models.configuration_xclip import PUBLISHED_CHECKPOINTS, VARIANTS, XClipConfig
    from ..models.loading import ModelLoadError

    if model in VARIANTS:
        frames = num_frames or (8 if 8 in VARIANTS[model]["frames"] else VARIANTS[model]["frames"][0])
        return XClipConfig.from_variant(model, num_frames=frames)
    if num_frames is not None:
        raise UsageError("--num-frames applies to variant names only; a checkpoint's config fixes its frames")
    if _is_original_checkpoint(model):  # a .pth of the original X-CLIP code: the config is inferred from shapes
        from ..conversion.original import read_original

        return read_original(model).config
    try:
        check_model_source(model, prog="xclip-hf info")
        return XClipConfig.from_pretrained(model)
    except Exception as err:
        if model in PUBLISHED_CHECKPOINTS:
            name, frames = PUBLISHED_CHECKPOINTS[model]
            print(f"xclip-hf info: {model!r} is not reachable; using the variant table ({name}, {frames} frames)",
                  file=sys.stderr)
            return XClipConfig.from_variant(name, num_frames=frames)
        if isinstance(err, ModelLoadError):
            raise
        where = os.path.join(model, "config.json") if os.path.isdir(model) else model
        raise ModelLoadError(
            f"could not read an X-CLIP config from {where!r} ({type(err).__name__}: {one_line(err)}); pass a model "
            f"directory, a reachable hub id, or a variant name ({', '.join(VARIANTS)})"
        ) from err


def _is_original_checkpoint(model: str) -> bool:
    """A file named .pth / .pt (missing ones too: reading them names the missing file)."""
    return model.endswith((".pth", ".pt")) and not os.path.isdir(model)


def model_summary(model: str, num_frames: int | None = None) -> dict:
    """Variant, parameter counts (built on the meta device: nothing is allocated) and FLOPs per view of a model."""
    import torch

    from ..models.configuration_xclip import describe_config
    from ..models.flops import count_flops
    from ..models.modeling_xclip import XClipModel

    config = _load_config(model, num_frames)
    with torch.device("meta"):
        net = XClipModel(config)
    total = sum(p.numel() for p in net.parameters())
    vision = sum(p.numel() for p in net.vision_model.parameters())
    new = net.new_parameter_names()
    added = sum(p.numel() for n, p in net.named_parameters() if n in new)
    by_part = {}
    for n, p in net.named_parameters():
        if n in new:
            part = next((k for k, mods in _ADDED_PARTS.items() if set(n.split(".")) & set(mods)), "other")
            by_part[part] = by_part.get(part, 0) + p.numel()
    by_part = {k: by_part[k] for k in [*_ADDED_PARTS, "other"] if k in by_part}
    macs = count_flops(config, num_labels=1, text_length=min(77, config.text_config.max_position_embeddings))
    vc = config.vision_config
    return {
        "model": model,
        "variant": config.variant_name() or "custom",
        "num_frames": vc.num_frames,
        "image_size": vc.image_size,
        "patch_size": vc.patch_size,
        "projection_dim": config.projection_dim,
        "use_cross_frame_attention": vc.use_cross_frame_attention,
        "use_mit": vc.use_mit,
        "neighbour_frame_attention": vc.neighbour_frame_attention,
        "normalize_frame_embeds": vc.normalize_frame_embeds,
        "parameters": total,
        "parameters_vision": vision,
        "parameters_text": total - vision - 1,  # the logit scale is the one remaining parameter
        "parameters_added_to_clip": added,
        "parameters_added_by_part": by_part,  # only the parts this model has (CLIP-Mean: prompt generator only)
        "gflops_per_view": macs / 1e9,
        **({"inferred_from_original_checkpoint": describe_config(config)} if _is_original_checkpoint(model) else {}),
    }


def _flops_text(gflops: float) -> str:
    """39.0 G for full-size models, 2.63 M for tiny ones."""
    return f"{gflops:.1f} G" if gflops >= 0.1 else f"{gflops * 1e3:.2f} M"


def _added_text(s: dict) -> str:
    """'45,308,416 (cross-frame attention 35.5 M, MIT 3.2 M, prompt generator 6.7 M)': only the parts present."""
    parts = ", ".join(f"{k} {v / 1e6:.1f} M" if v >= 1e5 else f"{k} {v:,}" for k, v in s["parameters_added_by_part"].items())
    return f"{s['parameters_added_to_clip']:,} ({parts or 'none: a plain CLIP'})"


def _temporal_text(s: dict) -> str:
    """How the frames of a video are combined: 'cross-frame attention + MIT', ..., or CLIP-Mean's plain mean."""
    parts = [name for name, on in (("cross-frame attention", s["use_cross_frame_attention"]),
                                   ("neighbour-frame attention (Open-VCLIP)", s["neighbour_frame_attention"]),
                                   ("MIT", s["use_mit"])) if on]
    if not s["use_mit"]:
        parts.append("mean of unit frame embeddings" if s["normalize_frame_embeds"] else "mean over frames")
    text = " + ".join(parts)
    return text + " (CLIP-Mean)" if parts == ["mean over frames"] else text


def _format_summary(s: dict) -> str:
    rows = [
        ("model", s["model"]),
        ("variant", s["variant"]),
        ("frames x image", f"{s['num_frames']} x {s['image_size']}px (patch {s['patch_size']})"),
        ("joint dim", s["projection_dim"]),
        ("across frames", _temporal_text(s)),
        ("parameters", f"{s['parameters']:,} ({s['parameters'] / 1e6:.1f} M)"),
        ("  video encoder", f"{s['parameters_vision']:,}"),
        ("  text encoder + prompts", f"{s['parameters_text']:,}"),
        ("  added to CLIP", _added_text(s)),
        ("FLOPs per view", f"{_flops_text(s['gflops_per_view'])} (multiply-accumulates, 1 label of 77 tokens, as in the paper)"),
    ]
    rows += [(f"  inferred {k}", v) for k, v in s.get("inferred_from_original_checkpoint", {}).items()]
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k:<{width}}  {v}" for k, v in rows)


def run(args) -> int:
    summary = model_summary(args.model, args.num_frames)
    print(json.dumps(summary, indent=2) if args.json else _format_summary(summary))
    return 0



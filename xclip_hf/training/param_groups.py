"""Optimizer parameter groups of the paper's recipe (supplementary Sec. 2.1): 10x rate for new modules, no-decay set."""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["no_weight_decay_names", "xclip_param_groups", "freeze_vision_encoder"]


def no_weight_decay_names(model: nn.Module) -> set[str]:
    """Biases, LayerNorm weights, embedding tables and logit_scale: no weight decay (supp. Sec. 2.1)."""
    names = set()
    for module_name, module in model.named_modules():
        for param_name, param in module.named_parameters(recurse=False):
            full = f"{module_name}.{param_name}" if module_name else param_name
            if (
                param.ndim < 2  # biases, LayerNorm weights, class embedding, logit_scale, prompt alpha
                or isinstance(module, (nn.Embedding, nn.LayerNorm))
                or "position_embedding" in full
            ):
                names.add(full)
    return names


def xclip_param_groups(model: nn.Module, learning_rate: float, weight_decay: float = 0.001, new_lr_scale: float = 10.0) -> list[dict]:
    """AdamW groups: `new_lr_scale` x rate for `model.new_parameter_names()` (supp. Sec. 2.1), decay split as above."""
    if not hasattr(model, "new_parameter_names"):
        raise TypeError(f"xclip_param_groups: {type(model).__name__} has no new_parameter_names(); pass an X-CLIP model")
    new = set(model.new_parameter_names())
    no_decay = no_weight_decay_names(model)
    groups: dict[tuple[bool, bool], list[torch.nn.Parameter]] = {}
    for name, param in model.named_parameters():
        if param.requires_grad:
            groups.setdefault((name in new, name not in no_decay), []).append(param)
    return [
        {"params": params, "lr": learning_rate * (new_lr_scale if is_new else 1.0), "weight_decay": weight_decay if decays else 0.0}
        for (is_new, decays), params in sorted(groups.items())
    ]


def freeze_vision_encoder(model: nn.Module, freeze: bool = True) -> int:
    """Same as `model.freeze_vision_encoder(freeze)` (X-CLIP models own their freezing, paper Tab. 7)."""
    if not hasattr(model, "freeze_vision_encoder"):
        raise ValueError(f"freeze_vision_encoder: {type(model).__name__} has no vision_model parameters")
    return model.freeze_vision_encoder(freeze)

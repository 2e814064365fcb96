"""Optimizer parameter groups of the paper's recipe and a `Trainer` that uses them (supplementary Sec. 2.1, Tab. 1).

AdamW with betas (0.9, 0.98), weight decay 0.001 and a cosine schedule with linear warmup are plain
`TrainingArguments` (`adam_beta2`, `weight_decay`, `lr_scheduler_type`, `warmup_ratio`); the one thing Trainer
cannot express is the 10x learning rate of the randomly initialised parameters, so `XClipTrainer` only
overrides `create_optimizer` to build these groups. The scheduler scales every group's own rate, so the
10x ratio holds through warmup and decay.
"""

from __future__ import annotations

import torch
from torch import nn
from transformers import Trainer

__all__ = ["no_weight_decay_names", "xclip_param_groups", "XClipTrainer"]


def no_weight_decay_names(model: nn.Module) -> set[str]:
    """Biases, LayerNorm weights, embedding tables, position/class embeddings and logit_scale: no decay (supp. Sec. 2.1)."""
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


class XClipTrainer(Trainer):
    """`Trainer` whose optimizer gives X-CLIP's new modules `new_lr_scale` x the learning rate (supp. Sec. 2.1)."""

    def __init__(self, *args, new_lr_scale: float = 10.0, **kwargs):
        super().__init__(*args, **kwargs)
        self.new_lr_scale = new_lr_scale

    def create_optimizer(self, model=None):
        """The optimizer named by `args.optim` (AdamW by default), over `xclip_param_groups`."""
        if self.optimizer is None:
            opt_model = self.model if model is None else model
            optimizer_cls, optimizer_kwargs = self.get_optimizer_cls_and_kwargs(self.args, opt_model)
            groups = xclip_param_groups(opt_model, self.args.learning_rate, self.args.weight_decay, self.new_lr_scale)
            self.optimizer = optimizer_cls(groups, **optimizer_kwargs)
        return self.optimizer

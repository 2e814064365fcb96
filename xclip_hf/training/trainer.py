"""`Trainer` with what `TrainingArguments` cannot express of the paper's recipe (supplementary Sec. 2)."""

from __future__ import annotations

import torch
from transformers import Trainer

from ..jobs import end_process_group_at_exit
from ..models.modeling_xclip import average_view_probabilities
from .bad_samples import BAD_VIDEO_KEY, BadVideoCallback
from .mixup import MixupCutmix
from .param_groups import xclip_param_groups

__all__ = ["XClipTrainer"]


class XClipTrainer(Trainer):
    """Trainer with 10x-lr parameter groups, optional mixup/cutmix, multi-view evaluation and a bad-video report."""

    def __init__(self, *args, new_lr_scale: float = 10.0, mixup: MixupCutmix | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        end_process_group_at_exit()  # the Trainer's arguments may have started one (torchrun)
        self.new_lr_scale = new_lr_scale
        self.mixup = mixup
        # X-CLIP's losses are batch means that ignore `num_items_in_batch`: let Trainer scale them for
        # gradient accumulation itself (its `**kwargs` in forward would otherwise mark them as pre-scaled).
        self.model_accepts_loss_kwargs = False
        self._videos_seen = 0

    def create_optimizer(self, model=None):
        """The optimizer named by `args.optim` (AdamW by default) over `xclip_param_groups` (supp. Sec. 2.1)."""
        if self.optimizer is None:
            opt_model = self.model if model is None else model
            optimizer_cls, optimizer_kwargs = self.get_optimizer_cls_and_kwargs(self.args, opt_model)
            groups = xclip_param_groups(opt_model, self.args.learning_rate, self.args.weight_decay, self.new_lr_scale)
            self.optimizer = optimizer_cls(groups, **optimizer_kwargs)
        return self.optimizer

    def _prepare_inputs(self, inputs):
        """Report the videos dropped from this batch (bad samples) to the `BadVideoCallback`, then prepare as usual."""
        if isinstance(inputs, dict) and BAD_VIDEO_KEY in inputs:
            inputs = dict(inputs)
            bad = inputs.pop(BAD_VIDEO_KEY)
            if bad:
                tracker = next((cb for cb in self.callback_handler.callbacks if isinstance(cb, BadVideoCallback)), None)
                if tracker is None:
                    raise RuntimeError(f"bad videos were dropped from a batch but no BadVideoCallback counts them: {bad}")
                tracker.record(bad)
        return super()._prepare_inputs(inputs)

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        """Mix training batches into soft targets before the usual loss (supp. Tab. 1: mixup 0.8, cutmix 1.0)."""
        if self.mixup is not None and model.training and "labels" in inputs:
            pixel_values, labels = self.mixup(inputs["pixel_values"], inputs["labels"])
            inputs = {**inputs, "pixel_values": pixel_values, "labels": labels.to(pixel_values.dtype)}
        labels = inputs.get("labels")
        if labels is not None and labels.is_floating_point():  # soft targets: the model's soft cross-entropy
            outputs = model(**inputs)
            return (outputs.loss, outputs) if return_outputs else outputs.loss
        return super().compute_loss(model, inputs, return_outputs=return_outputs, num_items_in_batch=num_items_in_batch)

    def training_step(self, model, inputs, num_items_in_batch=None):
        """The usual step; also counts the batch's videos (this process) for `videos_seen`."""
        pixel_values = inputs.get("pixel_values")
        if pixel_values is not None:
            self._videos_seen += len(pixel_values)
        return super().training_step(model, inputs, num_items_in_batch)

    def videos_seen(self) -> int:
        """Training videos seen by all processes in this trainer's `train` calls (a collective: call it everywhere)."""
        count = torch.tensor([self._videos_seen], device=self.args.device)
        return int(self.accelerator.gather(count).sum())

    def prediction_step(self, model, inputs, prediction_loss_only, ignore_keys=None):
        """Multi-view inputs (B, V, T, 3, H, W): log of the view-averaged softmax as logits (paper Tab. 11)."""
        pixel_values = inputs.get("pixel_values")
        if pixel_values is None or pixel_values.ndim != 6:
            return super().prediction_step(model, inputs, prediction_loss_only, ignore_keys=ignore_keys)
        batch, views = pixel_values.shape[:2]
        flat = {**inputs, "pixel_values": pixel_values.flatten(0, 1)}
        if "labels" in inputs:
            flat["labels"] = inputs["labels"].repeat_interleave(views, dim=0)
        loss, logits, _ = super().prediction_step(model, flat, prediction_loss_only, ignore_keys=ignore_keys)
        if logits is not None:
            probabilities = average_view_probabilities(logits.reshape(batch, views, -1))
            logits = probabilities.clamp_min(torch.finfo(probabilities.dtype).tiny).log()
        return loss, logits, inputs.get("labels")

"""Batch mixup (alpha 0.8) / cutmix (alpha 1.0) into soft targets, label smoothing folded in (supplementary Tab. 1)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

__all__ = ["cutmix_box", "MixupCutmix"]


def cutmix_box(height: int, width: int, lam: float) -> tuple[int, int, int, int]:
    """(top, bottom, left, right) of a cutmix box covering about 1 - lam of the frame, centre uniform, clipped."""
    ratio = math.sqrt(1.0 - lam)
    cut_h, cut_w = int(height * ratio), int(width * ratio)
    cy = int(torch.randint(height, ()))
    cx = int(torch.randint(width, ()))
    top, bottom = max(cy - cut_h // 2, 0), min(cy + cut_h // 2, height)
    left, right = max(cx - cut_w // 2, 0), min(cx + cut_w // 2, width)
    return top, bottom, left, right


@dataclass
class MixupCutmix:
    """Mix a batch of clips (B, T, 3, H, W) and integer labels (B,) into soft targets (B, num_labels) (supp. Tab. 1)."""

    num_labels: int
    mixup_alpha: float = 0.8
    cutmix_alpha: float = 1.0
    switch_prob: float = 0.5  # chance of cutmix instead of mixup when both are on
    prob: float = 1.0  # chance of mixing a batch at all
    label_smoothing: float = 0.0  # pass TrainingArguments.label_smoothing_factor (0.1 in the paper)

    def __post_init__(self):
        if self.num_labels < 1:
            raise ValueError(f"MixupCutmix: num_labels must be >= 1, got {self.num_labels}")
        if self.mixup_alpha < 0 or self.cutmix_alpha < 0:
            raise ValueError(f"MixupCutmix: alphas must be >= 0, got mixup {self.mixup_alpha}, cutmix {self.cutmix_alpha}")
        if not 0 <= self.label_smoothing < 1:
            raise ValueError(f"MixupCutmix: label_smoothing must be in [0, 1), got {self.label_smoothing}")
        if self.mixup_alpha == 0 and self.cutmix_alpha == 0:
            raise ValueError("MixupCutmix: at least one of mixup_alpha / cutmix_alpha must be > 0")

    def _draw(self) -> tuple[float, bool]:
        """(lam, use_cutmix) for one batch."""
        if torch.rand(()).item() >= self.prob:
            return 1.0, False
        use_cutmix = self.cutmix_alpha > 0 and (
            self.mixup_alpha == 0 or torch.rand(()).item() < self.switch_prob
        )
        alpha = self.cutmix_alpha if use_cutmix else self.mixup_alpha
        return float(torch.distributions.Beta(alpha, alpha).sample().item()), use_cutmix

    def __call__(self, pixel_values: torch.Tensor, labels: torch.Tensor):
        """Returns (mixed pixel_values, soft targets (B, num_labels) float)."""
        if pixel_values.ndim != 5:
            raise ValueError(f"MixupCutmix: pixel_values must be (B, T, 3, H, W), got shape {tuple(pixel_values.shape)}")
        labels = torch.as_tensor(labels)
        if labels.shape != (pixel_values.shape[0],) or labels.is_floating_point():
            raise ValueError(f"MixupCutmix: labels must be integer class indices of shape ({pixel_values.shape[0]},), got {tuple(labels.shape)} {labels.dtype}")
        if labels.numel() and (labels.min() < 0 or labels.max() >= self.num_labels):
            raise ValueError(f"MixupCutmix: label {int(labels.max() if labels.max() >= self.num_labels else labels.min())} is outside [0, {self.num_labels})")
        one_hot = torch.nn.functional.one_hot(labels.long(), self.num_labels).to(torch.float32)
        one_hot = one_hot * (1.0 - self.label_smoothing) + self.label_smoothing / self.num_labels
        lam, use_cutmix = self._draw()
        if lam >= 1.0:
            return pixel_values, one_hot
        flipped = pixel_values.flip(0)
        if use_cutmix:
            height, width = pixel_values.shape[-2:]
            top, bottom, left, right = cutmix_box(height, width, lam)
            pixel_values = pixel_values.clone()
            pixel_values[..., top:bottom, left:right] = flipped[..., top:bottom, left:right]
            lam = 1.0 - (bottom - top) * (right - left) / float(height * width)  # the area actually pasted
        else:
            pixel_values = pixel_values * lam + flipped * (1.0 - lam)
        return pixel_values, one_hot * lam + one_hot.flip(0) * (1.0 - lam)

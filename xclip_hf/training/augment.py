"""Train-time video augmentation of the paper's recipe (supplementary Tab. 1), in torch, drawn once per clip.

Every function takes one float clip `(T, 3, H, W)` in [0, 1]; randomness comes from `generator`, or torch's global
RNG when it is None.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from transformers.image_utils import PILImageResampling, SizeDict

from ..models.video_processing_xclip import resize_short_side as resize_frames

__all__ = [
    "MULTI_SCALE_CROP_SCALES",
    "multi_scale_crop_box",
    "multi_scale_crop",
    "random_horizontal_flip",
    "color_jitter",
    "random_grayscale",
    "VideoTrainAugmentation",
]

MULTI_SCALE_CROP_SCALES = (1.0, 0.875, 0.75, 0.66)
_GRAY_WEIGHTS = (0.299, 0.587, 0.114)  # ITU-R 601 luma, as PIL's "L" mode


def _check_clip(clip: torch.Tensor, name: str) -> None:
    """Raise a clear error unless `clip` is a float (T, 3, H, W) tensor."""
    if not isinstance(clip, torch.Tensor) or clip.ndim != 4 or clip.shape[1] != 3:
        shape = tuple(clip.shape) if isinstance(clip, torch.Tensor) else type(clip).__name__
        raise ValueError(f"{name}: expected a clip tensor of shape (T, 3, H, W), got {shape}")
    if not clip.is_floating_point():
        raise ValueError(f"{name}: expected a float clip in [0, 1], got dtype {clip.dtype}")


def _uniform(low: float, high: float, generator) -> float:
    """One float drawn uniformly from [low, high)."""
    return low + (high - low) * torch.rand((), generator=generator).item()


def _randint(high: int, generator) -> int:
    """One int drawn uniformly from [0, high)."""
    return int(torch.randint(high, (), generator=generator).item())


def multi_scale_crop_box(
    height: int,
    width: int,
    scales=MULTI_SCALE_CROP_SCALES,
    max_aspect_gap: int = 1,
    random_position: bool = False,
    generator: torch.Generator | None = None,
) -> tuple[int, int, int, int]:
    """(top, left, crop_h, crop_w) of a TSN MultiScaleCrop: side lengths from scales x short side (supp. Tab. 1)."""
    if height < 1 or width < 1:
        raise ValueError(f"multi_scale_crop_box: image size must be positive, got {height}x{width}")
    if not scales or any(not 0 < s <= 1 for s in scales):
        raise ValueError(f"multi_scale_crop_box: scales must be in (0, 1], got {scales}")
    base = min(height, width)
    sides = [max(1, int(base * s)) for s in scales]
    # width and height scales are picked independently, at most `max_aspect_gap` steps apart in the list
    pairs = [(h, w) for i, h in enumerate(sides) for j, w in enumerate(sides) if abs(i - j) <= max_aspect_gap]
    crop_h, crop_w = pairs[_randint(len(pairs), generator)]
    if random_position:
        top, left = _randint(height - crop_h + 1, generator), _randint(width - crop_w + 1, generator)
    else:
        # one of five fixed positions: the four corners and the centre
        step_h, step_w = (height - crop_h) // 4, (width - crop_w) // 4
        positions = [(0, 0), (0, 4 * step_w), (4 * step_h, 0), (4 * step_h, 4 * step_w), (2 * step_h, 2 * step_w)]
        top, left = positions[_randint(len(positions), generator)]
    return top, left, crop_h, crop_w


def multi_scale_crop(
    clip: torch.Tensor,
    size,
    scales=MULTI_SCALE_CROP_SCALES,
    max_aspect_gap: int = 1,
    random_position: bool = False,
    generator: torch.Generator | None = None,
    resample=PILImageResampling.BILINEAR,
) -> torch.Tensor:
    """MultiScaleCrop (1, .875, .75, .66), then a resize to `size` (int or (height, width)); one box per clip."""
    _check_clip(clip, "multi_scale_crop")
    height, width = (size, size) if isinstance(size, int) else size
    top, left, crop_h, crop_w = multi_scale_crop_box(
        clip.shape[-2], clip.shape[-1], scales, max_aspect_gap, random_position, generator
    )
    box = clip[..., top : top + crop_h, left : left + crop_w]
    return resize_frames(box, SizeDict(height=height, width=width), resample).clamp(0, 1)


def random_horizontal_flip(clip: torch.Tensor, p: float = 0.5, generator: torch.Generator | None = None) -> torch.Tensor:
    """Mirror every frame left-right with probability p (supp. Tab. 1: RandomFlip 0.5)."""
    _check_clip(clip, "random_horizontal_flip")
    return clip.flip(-1) if _uniform(0, 1, generator) < p else clip


def _grayscale(clip: torch.Tensor) -> torch.Tensor:
    """Luma of each pixel, (T, 1, H, W)."""
    weights = clip.new_tensor(_GRAY_WEIGHTS).view(1, 3, 1, 1)
    return (clip * weights).sum(dim=1, keepdim=True)


def _rgb_to_hsv(clip: torch.Tensor) -> torch.Tensor:
    """RGB in [0, 1] -> HSV with hue in [0, 1)."""
    r, g, b = clip.unbind(dim=1)
    maxc, _ = clip.max(dim=1)
    minc, _ = clip.min(dim=1)
    delta = maxc - minc
    safe = torch.where(delta > 0, delta, torch.ones_like(delta))
    hue = torch.where(maxc == r, (g - b) / safe, torch.where(maxc == g, 2.0 + (b - r) / safe, 4.0 + (r - g) / safe))
    hue = torch.where(delta > 0, (hue / 6.0) % 1.0, torch.zeros_like(hue))
    sat = torch.where(maxc > 0, delta / torch.where(maxc > 0, maxc, torch.ones_like(maxc)), torch.zeros_like(maxc))
    return torch.stack([hue, sat, maxc], dim=1)


def _hsv_to_rgb(hsv: torch.Tensor) -> torch.Tensor:
    """HSV with hue in [0, 1) -> RGB in [0, 1]."""
    h, s, v = hsv.unbind(dim=1)
    # standard piecewise formula written as f(n) = v - v*s*clamp(min(k, 4-k), 0, 1), k = (n + 6h) mod 6
    channels = []
    for n in (5.0, 3.0, 1.0):
        k = (n + 6.0 * h) % 6.0
        channels.append(v - v * s * torch.clamp(torch.minimum(k, 4.0 - k), 0.0, 1.0))
    return torch.stack(channels, dim=1)


def color_jitter(
    clip: torch.Tensor,
    brightness: float = 0.4,
    contrast: float = 0.4,
    saturation: float = 0.4,
    hue: float = 0.1,
    p: float = 0.8,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """With probability p, jitter brightness/contrast/saturation/hue in a random order, per clip (supp. Tab. 1)."""
    _check_clip(clip, "color_jitter")
    if not 0 <= hue <= 0.5:
        raise ValueError(f"color_jitter: hue must be in [0, 0.5], got {hue}")
    if _uniform(0, 1, generator) >= p:
        return clip
    factors = {
        "brightness": _uniform(max(0.0, 1 - brightness), 1 + brightness, generator),
        "contrast": _uniform(max(0.0, 1 - contrast), 1 + contrast, generator),
        "saturation": _uniform(max(0.0, 1 - saturation), 1 + saturation, generator),
        "hue": _uniform(-hue, hue, generator),
    }
    for index in torch.randperm(4, generator=generator).tolist():
        name = ("brightness", "contrast", "saturation", "hue")[index]
        factor = factors[name]
        if name == "brightness":
            clip = (clip * factor).clamp(0, 1)
        elif name == "contrast":
            # the mean grey level of the whole clip, so every frame is blended toward the same value
            mean = _grayscale(clip).mean()
            clip = (factor * clip + (1 - factor) * mean).clamp(0, 1)
        elif name == "saturation":
            clip = (factor * clip + (1 - factor) * _grayscale(clip)).clamp(0, 1)
        elif factor != 0:
            hsv = _rgb_to_hsv(clip)
            hsv[:, 0] = (hsv[:, 0] + factor) % 1.0
            clip = _hsv_to_rgb(hsv).clamp(0, 1)
    return clip


def random_grayscale(clip: torch.Tensor, p: float = 0.2, generator: torch.Generator | None = None) -> torch.Tensor:
    """With probability p, replace every frame by its luma on all 3 channels (supp. Tab. 1: GrayScale 0.2)."""
    _check_clip(clip, "random_grayscale")
    return _grayscale(clip).expand_as(clip).contiguous() if _uniform(0, 1, generator) < p else clip


@dataclass
class VideoTrainAugmentation:
    """The paper's train-time pipeline after the short-side resize (supp. Tab. 1): MultiScaleCrop, flip, jitter, gray.

    The video processor applies it with its own crop size (``augmentation=``); `crop_size` is for direct calls and
    must agree with the processor's when both are set.
    """

    crop_size: int | None = None
    scales: tuple = MULTI_SCALE_CROP_SCALES
    flip_prob: float = 0.5
    color_jitter_prob: float = 0.8
    grayscale_prob: float = 0.2

    def __call__(self, clip: torch.Tensor, generator: torch.Generator | None = None, size=None,
                 resample=PILImageResampling.BILINEAR) -> torch.Tensor:
        """Augment one float clip (T, 3, H, W) in [0, 1] to `size` (from the processor) or `crop_size`."""
        _check_clip(clip, "VideoTrainAugmentation")
        size = self._output_size(size)
        clip = multi_scale_crop(clip, size, self.scales, generator=generator, resample=resample)
        clip = random_horizontal_flip(clip, self.flip_prob, generator=generator)
        clip = color_jitter(clip, p=self.color_jitter_prob, generator=generator)
        return random_grayscale(clip, self.grayscale_prob, generator=generator)

    def _output_size(self, size) -> tuple[int, int]:
        """(height, width) of the output: the caller's `size`, else `crop_size`; refuses a disagreement."""
        own = None if self.crop_size is None else (int(self.crop_size), int(self.crop_size))
        if size is None and own is None:
            raise ValueError("VideoTrainAugmentation: no output size (set crop_size, or let the video processor apply it)")
        if size is not None and own is not None and tuple(size) != own:
            raise ValueError(f"VideoTrainAugmentation: crop_size {self.crop_size} disagrees with the video processor's "
                             f"crop size {tuple(size)}; leave crop_size unset")
        return tuple(size) if size is not None else own

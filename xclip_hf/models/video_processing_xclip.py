"""X-CLIP video processor (transformers 5 conventions, torch resizing): sampling, resize, crops, rescale, normalise."""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from transformers.image_processing_utils import BatchFeature
from transformers.image_utils import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD, PILImageResampling, SizeDict
from transformers.processing_utils import VideosKwargs
from transformers.utils import logging
from transformers.video_processing_utils import BaseVideoProcessor

from ..video.sampling import SAMPLING_MODES, as_generator, check_decode_mode, temporal_clip_indices
from ..video.reader import BACKENDS, load_video
from .video_input import OneVideo, split_videos

logger = logging.get_logger(__name__)

__all__ = ["XClipVideoProcessor", "XClipVideoProcessorKwargs"]

# PIL resampling codes -> torch interpolation modes
_TORCH_MODES = {
    int(PILImageResampling.NEAREST): "nearest-exact",
    int(PILImageResampling.BILINEAR): "bilinear",
    int(PILImageResampling.BICUBIC): "bicubic",
}
# transformers' bookkeeping keys of saved processor configs: not processor options
_TYPE_KEYS = ("processor_class", "video_processor_type", "auto_map")


class XClipVideoProcessorKwargs(VideosKwargs, total=False):
    """Video kwargs plus X-CLIP's sampling and multi-view options."""

    sampling: str
    frame_stride: int
    num_temporal_clips: int
    num_spatial_crops: int
    random_sampling: bool
    seed: int | None
    decode_backend: str
    decode_mode: str
    augmentation: object  # call option only (training): see `XClipVideoProcessor.preprocess`


def resized_size(height: int, width: int, size: SizeDict) -> tuple[int, int]:
    """Frame size after the resize step: short side to ``size.shortest_edge`` (aspect kept), or height x width."""
    if size.shortest_edge:
        short, long = (width, height) if width <= height else (height, width)
        new_short, new_long = int(size.shortest_edge), int(size.shortest_edge * long / short)
        return (new_long, new_short) if width <= height else (new_short, new_long)
    if size.height and size.width:
        return int(size.height), int(size.width)
    raise ValueError(f"size must have 'shortest_edge' or 'height' and 'width', got {size}")


def fit_crop(height: int, width: int, crop: SizeDict) -> tuple[int, int]:
    """Frame size after upsampling (aspect kept) until the crop fits; unchanged when it fits already."""
    if height >= crop.height and width >= crop.width:
        return height, width
    scale = max(crop.height / height, crop.width / width)
    return max(crop.height, math.ceil(height * scale)), max(crop.width, math.ceil(width * scale))


def _torch_mode(resample) -> tuple[str, dict]:
    """torch interpolation mode and options of a PIL resampling code (PIL-like antialiasing for bilinear/bicubic)."""
    code = int(resample) if resample is not None else int(PILImageResampling.BILINEAR)
    if code not in _TORCH_MODES:
        raise ValueError(f"resample={resample!r} is not supported; use 0 (nearest), 2 (bilinear) or 3 (bicubic)")
    mode = _TORCH_MODES[code]
    return mode, ({} if mode == "nearest-exact" else {"align_corners": False, "antialias": True})


def resize_short_side(frames: torch.Tensor, size: SizeDict, resample) -> torch.Tensor:
    """Resize (M, C, H, W) float frames to `resized_size` (the resize step of evaluation and training)."""
    return _interpolate(frames, *resized_size(*frames.shape[-2:], size), resample)


def _interpolate(frames: torch.Tensor, new_h: int, new_w: int, resample) -> torch.Tensor:
    """torch resize of (M, C, H, W) frames to new_h x new_w with `resample`'s mode."""
    if (new_h, new_w) == tuple(frames.shape[-2:]):
        return frames
    mode, options = _torch_mode(resample)
    return F.interpolate(frames, size=(new_h, new_w), mode=mode, **options)


def crop_windows(height: int, width: int, crop_h: int, crop_w: int, num_crops: int) -> list[tuple[int, int]]:
    """(top, left) of 1 centre crop, or 3 crops at the start/centre/end of the long side (multi-view, Tab. 11)."""
    top_c, left_c = (height - crop_h) // 2, (width - crop_w) // 2
    if num_crops == 1:
        return [(top_c, left_c)]
    if num_crops == 3:
        if width >= height:
            return [(top_c, 0), (top_c, left_c), (top_c, width - crop_w)]
        return [(0, left_c), (top_c, left_c), (height - crop_h, left_c)]
    raise ValueError(f"num_spatial_crops must be 1 or 3, got {num_crops}")


class XClipVideoProcessor(BaseVideoProcessor):
    """Video processor for X-CLIP: sparse/dense sampling, resize, centre or 3 crops, rescale, normalise (Sec. 4.2)."""

    valid_kwargs = XClipVideoProcessorKwargs
    model_input_names = ["pixel_values"]
    resample = PILImageResampling.BILINEAR
    image_mean = IMAGENET_DEFAULT_MEAN
    image_std = IMAGENET_DEFAULT_STD
    size = {"shortest_edge": 224}
    default_to_square = False
    crop_size = {"height": 224, "width": 224}
    do_resize = True
    do_center_crop = True
    do_rescale = True
    rescale_factor = 1 / 255
    do_normalize = True
    do_convert_rgb = True
    do_sample_frames = True
    num_frames = 8
    sampling = "sparse"
    frame_stride = 2
    num_temporal_clips = 1
    num_spatial_crops = 1
    random_sampling = False
    seed = None
    decode_backend = "auto"
    decode_mode = "exact"  # "keyframes": the nearest key frame where one is close (approximate; see README)

    def __init__(self, **kwargs):
        for key in _TYPE_KEYS:
            kwargs.pop(key, None)
        if kwargs.get("augmentation") is not None:  # a saved processor must never augment at inference
            raise ValueError("augmentation is a call option (training), not a processor setting: pass it to the call")
        super().__init__(**kwargs)
        _check_mean_std(self.image_mean, self.image_std)
        check_decode_mode(self.decode_mode, "XClipVideoProcessor config: decode_mode")

    # ----- loading -----
    @classmethod
    def get_video_processor_dict(cls, pretrained_model_name_or_path, **kwargs):
        """Config dict of a directory or hub id; other layouts converted through `models.formats`."""
        from .formats import native_video_processor_dict

        try:
            config, kwargs = super().get_video_processor_dict(pretrained_model_name_or_path, **kwargs)
        except OSError:
            config = native_video_processor_dict(pretrained_model_name_or_path, None, kwargs)
            if config is None:
                raise
            return config, kwargs
        return native_video_processor_dict(pretrained_model_name_or_path, config, kwargs), kwargs

    # ----- sampling -----
    def sample_indices(self, video_length: int, rng=None, **overrides) -> np.ndarray:
        """Frame indices ``(num_temporal_clips, num_frames)`` for a video of ``video_length`` frames."""
        opts = {k: overrides.get(k, getattr(self, k)) for k in ("num_frames", "sampling", "frame_stride", "num_temporal_clips", "random_sampling")}
        return temporal_clip_indices(
            video_length,
            opts["num_frames"],
            mode=opts["sampling"],
            num_clips=opts["num_temporal_clips"],
            stride=opts["frame_stride"],
            random_offset=opts["random_sampling"],
            rng=rng,
        )

    # ----- input handling -----
    def _load_clips(self, video: OneVideo, opts: dict, rng) -> torch.Tensor:
        """One video (see `video_input.split_videos`) -> sampled clips as torch (N, T, 3, H, W) (uint8 or float)."""
        sampler = None
        if opts["do_sample_frames"]:
            def sampler(length):
                return self.sample_indices(length, rng=rng, **opts)
        elif opts["num_temporal_clips"] != 1:
            raise ValueError("num_temporal_clips > 1 needs do_sample_frames=True")
        if video.is_file:
            if sampler is None:
                def sampler(length):
                    return np.arange(length)[None]
            frames, _, _ = load_video(video.data, sampler, backend=opts["decode_backend"],
                                      decode_mode=opts["decode_mode"])
            return torch.from_numpy(frames).permute(0, 1, 4, 2, 3)  # (N, T, 3, H, W)
        if sampler is None:
            return video.data[None]
        return video.data[torch.as_tensor(sampler(video.data.shape[0]))]

    # ----- spatial pipeline -----
    def _spatial_views(self, clips: torch.Tensor, opts: dict) -> torch.Tensor:
        """(N, T, 3, H, W) clips -> normalised views (N * crops, T, 3, h, w) float32."""
        num_clips, num_frames = clips.shape[:2]
        is_uint8 = clips.dtype == torch.uint8
        x = clips.reshape(num_clips * num_frames, *clips.shape[2:]).float()
        crop, augmentation = opts["crop_size"], opts["augmentation"]
        if augmentation is not None:
            return self._finish_views(_train_views(x, num_clips, opts), num_clips, num_frames, opts)
        crops = opts["do_center_crop"]
        extreme = _extreme_target(x.shape[-2:], opts) if opts["do_resize"] and crops else None
        if extreme is not None:  # crop before resize: cost bounded by the crops, not by the frame's long side
            x = _crop_then_resize(x, extreme, crop, opts["num_spatial_crops"], opts["resample"])
        else:
            if opts["do_resize"]:
                x = resize_short_side(x, opts["size"], opts["resample"])
            h, w = x.shape[-2:]
            if crops and (h < crop.height or w < crop.width):  # documented: upsample small frames until the crop fits
                logger.warning_once(f"frames of {h}x{w} are smaller than the crop {crop.height}x{crop.width}: upsampling them")
                x = _interpolate(x, *fit_crop(h, w, crop), opts["resample"])
        if is_uint8 and (opts["do_resize"] or crops):
            x = x.round_().clamp_(0, 255)  # PIL resizes uint8 images to uint8
        if opts["do_rescale"]:
            x = x * float(opts["rescale_factor"])  # before the crops: the same values as rescaling the crops
        if extreme is not None:
            views = x
        elif crops:
            h, w = x.shape[-2:]
            windows = crop_windows(h, w, crop.height, crop.width, opts["num_spatial_crops"])
            views = torch.stack([x[..., t : t + crop.height, l : l + crop.width] for t, l in windows], dim=1)
        elif opts["num_spatial_crops"] != 1:
            raise ValueError("num_spatial_crops > 1 needs do_center_crop=True")
        else:
            views = x[:, None]
        return self._finish_views(views, num_clips, num_frames, opts)

    @staticmethod
    def _finish_views(views: torch.Tensor, num_clips: int, num_frames: int, opts: dict) -> torch.Tensor:
        """Normalise (N*T, S, 3, h, w) crops and order them as views (N*S, T, 3, h, w)."""
        if opts["do_normalize"]:
            mean = torch.tensor(opts["image_mean"], dtype=torch.float32).view(1, 1, -1, 1, 1)
            std = torch.tensor(opts["image_std"], dtype=torch.float32).view(1, 1, -1, 1, 1)
            views = (views - mean) / std
        # (N*T, S, 3, h, w) -> (N, S, T, 3, h, w) -> (N*S, T, 3, h, w): clip-major view order
        views = views.reshape(num_clips, num_frames, *views.shape[1:]).transpose(1, 2)
        return views.reshape(-1, *views.shape[2:]).contiguous()

    def _resolve_options(self, kwargs: dict) -> dict:
        """Merge call kwargs with the instance's settings and validate them."""
        valid = set(self.valid_kwargs.__annotations__) | {"return_tensors", "input_data_format", "data_format", "device"}
        unknown = sorted(set(kwargs) - valid)
        if unknown:
            raise ValueError(f"{type(self).__name__}: unknown option(s) {unknown}")
        opts = {k: (kwargs[k] if kwargs.get(k) is not None else getattr(self, k, None)) for k in self.valid_kwargs.__annotations__}
        std = self._standardize_kwargs(
            size=opts["size"], crop_size=opts["crop_size"], default_to_square=opts["default_to_square"],
            image_mean=opts["image_mean"], image_std=opts["image_std"],
        )
        opts.update(size=std["size"], crop_size=std["crop_size"], image_mean=std["image_mean"], image_std=std["image_std"])
        if opts["do_normalize"]:
            _check_mean_std(opts["image_mean"], opts["image_std"])
        if opts["sampling"] not in SAMPLING_MODES:
            raise ValueError(f"sampling must be one of {SAMPLING_MODES}, got {opts['sampling']!r}")
        if opts["decode_backend"] not in BACKENDS:
            raise ValueError(f"decode_backend must be one of {BACKENDS}, got {opts['decode_backend']!r}")
        check_decode_mode(opts["decode_mode"])
        for key in ("num_frames", "num_temporal_clips", "frame_stride"):
            if not isinstance(opts[key], (int, np.integer)) or opts[key] < 1:
                raise ValueError(f"{key} must be a positive integer, got {opts[key]!r}")
        crop_windows(2, 2, 1, 1, opts["num_spatial_crops"])  # validates 1 or 3
        if opts["augmentation"] is not None:
            if not callable(opts["augmentation"]):
                raise ValueError(f"augmentation must be callable, got {type(opts['augmentation']).__name__}")
            if opts["num_spatial_crops"] != 1:
                raise ValueError("augmentation replaces the crops: it needs num_spatial_crops=1")
        fmt = kwargs.get("input_data_format")
        opts["channels_first"] = None if fmt is None else str(getattr(fmt, "value", fmt)) in ("channels_first", "first")
        opts["return_tensors"] = kwargs.get("return_tensors")
        return opts

    def process_clips(self, clips: torch.Tensor, name: str = "video 0", **kwargs) -> torch.Tensor:
        """Sampled clips ``(N, T, 3, H, W)`` of one video -> views ``(N * num_spatial_crops, T, 3, h, w)``."""
        return self._views(clips, name, self._resolve_options(kwargs))

    def crop_clips(self, clips: torch.Tensor, name: str = "video 0", **kwargs) -> torch.Tensor:
        """uint8 clips -> the resized, cropped uint8 frames the model sees, ``(N * num_spatial_crops, T, 3, h, w)``."""
        if clips.dtype != torch.uint8:
            raise ValueError(f"{name}: crop_clips needs uint8 frames, got {clips.dtype}")
        opts = self._resolve_options({**kwargs, "do_rescale": False, "do_normalize": False})
        if opts["augmentation"] is not None:
            raise ValueError("crop_clips gives the evaluation crops: augmentation does not apply")
        return self._views(clips, name, opts).round_().clamp_(0, 255).to(torch.uint8)

    def normalize_crops(self, crops: torch.Tensor, name: str = "video 0", **kwargs) -> torch.Tensor:
        """Crops from `crop_clips` -> the model input, the same values `process_clips` gives for their clips."""
        fixed = {"do_resize": False, "do_center_crop": False, "num_spatial_crops": 1}
        return self.process_clips(crops, name, **{**kwargs, **fixed})

    def _views(self, clips: torch.Tensor, name: str, opts: dict) -> torch.Tensor:
        _check_frame_values(clips, name, opts["do_rescale"])
        return self._spatial_views(clips, opts)

    def preprocess(self, videos, **kwargs) -> BatchFeature:
        """Videos -> ``BatchFeature(pixel_values=(B, T, 3, H, W))``, or ``(B, V, T, 3, H, W)`` for V views.

        Views are clip-major: view ``v`` is temporal clip ``v // num_spatial_crops``, spatial crop
        ``v % num_spatial_crops`` (start, centre, end of the long side). ``augmentation`` (training) replaces the
        crop: ``augmentation(clip, size=(crop_h, crop_w), resample=resample, generator=generator)`` takes each
        resized clip ``(T, 3, H, W)`` in ``[0, 1]`` and returns ``(T, 3, crop_h, crop_w)``.
        """
        opts = self._resolve_options(kwargs)
        rng = as_generator(opts["seed"]) if opts["random_sampling"] else None
        outputs = []
        for video in split_videos(videos, opts["channels_first"])[0]:
            clips = self._load_clips(video, opts, rng)
            if opts["augmentation"] is not None:
                _check_augmentation_range(clips, video.name, opts)
            outputs.append(self._views(clips, video.name, opts))
        shapes = {tuple(o.shape) for o in outputs}
        if len(shapes) > 1:
            raise ValueError(f"videos of a batch give different shapes {sorted(shapes)}; enable center crop or pass them separately")
        pixel_values = torch.stack(outputs)
        if pixel_values.shape[1] == 1:
            pixel_values = pixel_values[:, 0]
        if opts["return_tensors"] == "np":
            pixel_values = pixel_values.numpy()
        return BatchFeature(data={"pixel_values": pixel_values}, tensor_type=opts["return_tensors"])


def _check_mean_std(image_mean, image_std) -> None:
    """Processor-config check: one mean and one non-zero std per RGB channel (a config error, not a video's)."""
    for name, values in (("image_mean", image_mean), ("image_std", image_std)):
        items = list(values) if isinstance(values, (list, tuple)) else [values]
        if len(items) != 3 or not all(isinstance(v, (int, float)) and math.isfinite(v) for v in items):
            raise ValueError(
                f"XClipVideoProcessor config: {name} must be 3 finite numbers (R, G, B), got {values!r}; fix the "
                "processor config (preprocessor_config.json / video_preprocessor_config.json) or the argument."
            )
    if any(v == 0 for v in image_std):
        raise ValueError(f"XClipVideoProcessor config: image_std must not contain 0, got {image_std!r}")


def _check_frame_values(clips: torch.Tensor, name: str, do_rescale: bool) -> None:
    """Refuse NaN/Inf frames; warn (transformers' convention) when float frames look rescaled to [0, 1] already."""
    if not clips.is_floating_point():
        return
    if not bool(torch.isfinite(clips).all()):
        bad = int((~torch.isfinite(clips)).sum())
        raise ValueError(f"{name}: {bad} frame value(s) are NaN or infinite; frames must hold finite pixel values")
    if do_rescale:
        low, high = torch.aminmax(clips)
        if float(low) >= 0 and float(high) <= 1:
            logger.warning_once(
                "It looks like you are trying to rescale already rescaled video frames (float values in [0, 1]). If "
                "the input frames have pixel values between 0 and 1, set `do_rescale=False` to avoid rescaling them "
                "again."
            )


def _check_augmentation_range(clips: torch.Tensor, name: str, opts: dict) -> None:
    """The augmentation works on frames in [0, 1]: refuse frames whose rescaled values are outside it."""
    low, high = (float(v) for v in torch.aminmax(clips.float()))
    factor = float(opts["rescale_factor"]) if opts["do_rescale"] else 1.0
    if low * factor < 0 or high * factor > 1 + 1e-6:
        raise ValueError(
            f"{name}: augmentation needs frames in [0, 1] after rescaling, got values in [{low * factor:g}, "
            f"{high * factor:g}] (do_rescale={opts['do_rescale']}, rescale_factor={opts['rescale_factor']:g})"
        )


def _train_views(x: torch.Tensor, num_clips: int, opts: dict) -> torch.Tensor:
    """(N*T, 3, H, W) float frames -> (N*T, 1, 3, crop_h, crop_w): rescaled, resized, augmented per clip."""
    if opts["do_rescale"]:
        x = x * float(opts["rescale_factor"])
    if opts["do_resize"]:
        x = resize_short_side(x, opts["size"], opts["resample"]).clamp(0, 1)  # resampling may overshoot [0, 1]
    crop = opts["crop_size"]
    size = (crop.height, crop.width)
    views = []
    for clip in x.reshape(num_clips, -1, *x.shape[1:]):
        out = opts["augmentation"](clip, size=size, resample=opts["resample"], generator=None)
        if not isinstance(out, torch.Tensor) or tuple(out.shape) != (clip.shape[0], 3, *size):
            shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
            raise ValueError(f"augmentation must return a clip of shape {(clip.shape[0], 3, *size)}, got {shape}")
        views.append(out)
    return torch.stack(views).flatten(0, 1)[:, None]


EXTREME_PIXELS = 1 << 20  # resized frames larger than this and than 16 crops (extreme aspect ratios): crop first


def _extreme_target(shape, opts: dict):
    """Resized frame size when it exceeds `EXTREME_PIXELS` and 16 crops (crop before resizing), else None."""
    size, crop = opts["size"], opts["crop_size"]
    if not size.shortest_edge:
        return None
    new_h, new_w = fit_crop(*resized_size(*shape, size), crop)
    if new_h * new_w <= max(EXTREME_PIXELS, 16 * crop.height * crop.width):
        return None
    return new_h, new_w


def _source_span(start: int, length: int, size_in: int, size_out: int) -> tuple[int, int, int]:
    """Source pixels ``[a, b)`` whose resize holds output pixels ``[start, start + length)``, and their offset."""
    scale = size_out / size_in
    margin = math.ceil(2 / min(scale, 1.0)) + 2  # reach of the (antialiased) filter, in source pixels
    a = max(0, math.floor(start / scale) - margin)
    step = size_in // math.gcd(size_in, size_out)  # a multiple of `step` maps to a whole output pixel
    if step <= 4 * (length / scale + 2 * margin):
        a = (a // step) * step
    b = min(size_in, math.ceil((start + length) / scale) + margin)
    return a, b, round(start - a * scale)


def _crop_then_resize(x: torch.Tensor, target, crop, num_crops: int, resample) -> torch.Tensor:
    """(M, C, H, W) -> (M, S, C, crop_h, crop_w): each crop from its source region, at the whole frame's scale."""
    height, width = x.shape[-2:]
    new_h, new_w = target
    mode, extra = _torch_mode(resample)
    views = []
    for top, left in crop_windows(new_h, new_w, crop.height, crop.width, num_crops):
        r0, r1, t = _source_span(top, crop.height, height, new_h)
        c0, c1, l = _source_span(left, crop.width, width, new_w)
        region = F.interpolate(x[..., r0:r1, c0:c1], scale_factor=(new_h / height, new_w / width), mode=mode,
                               recompute_scale_factor=False, **extra)
        t = min(t, region.shape[-2] - crop.height)
        l = min(l, region.shape[-1] - crop.width)
        views.append(region[..., t : t + crop.height, l : l + crop.width])
    return torch.stack(views, dim=1)

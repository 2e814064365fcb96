"""What one video is: the one place that splits an input into videos and checks their form."""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import torch

__all__ = ["OneVideo", "split_videos", "is_path", "is_pil", "is_image"]

CHANNELS = (1, 3, 4)  # gray, RGB, RGBA
VIDEO_FORMS = ("a path, a 4-D array (T, H, W, C) / (T, C, H, W), a 3-D (T, H, W) grayscale array, or a list of "
               "frames (PIL images, (H, W) or (H, W, C) arrays)")


@dataclass(frozen=True)
class OneVideo:
    """One video of an input: a path (str), a video file's bytes as a binary file object, or frames ``(T, 3, H, W)``
    (uint8 or float), and its name for errors."""

    data: object
    name: str

    @property
    def is_file(self) -> bool:
        return isinstance(self.data, str) or hasattr(self.data, "read")


def is_path(x) -> bool:
    return isinstance(x, (str, os.PathLike))


def is_pil(x) -> bool:
    try:
        from PIL import Image
    except ImportError:  # pragma: no cover
        return False
    return isinstance(x, Image.Image)


def is_image(x) -> bool:
    """One frame: a PIL image, a 2-D array, or a 3-D array whose first or last axis (channels) is 1, 3 or 4."""
    if is_pil(x):
        return True
    if isinstance(x, (np.ndarray, torch.Tensor)):
        return x.ndim == 2 or (x.ndim == 3 and (x.shape[0] in CHANNELS or x.shape[-1] in CHANNELS))
    return False


def _single_image_error(name: str, image) -> ValueError:
    what = "PIL image" if is_pil(image) else f"image of shape {tuple(image.shape)}"
    note = " (a 3-D array whose first or last axis is 1, 3 or 4 is read as one image)" if getattr(image, "ndim", 0) == 3 else ""
    return ValueError(f"{name}: got a single {what}, not a video{note}; pass {VIDEO_FORMS}")


def pil_to_array(image, name: str) -> np.ndarray:
    """PIL frame -> uint8 (H, W, 3): L expanded, RGBA/LA alpha dropped, other modes converted to RGB."""
    mode = image.mode
    if mode in ("RGBA", "LA", "PA"):
        image = image.convert("RGBA" if mode != "LA" else "LA")
        arr = np.asarray(image)[..., :-1]
        return np.repeat(arr, 3, axis=-1) if arr.shape[-1] == 1 else arr
    if mode not in ("RGB", "L"):
        image = image.convert("RGB")
    arr = np.asarray(image)
    if arr.ndim == 2:
        arr = np.repeat(arr[..., None], 3, axis=-1)
    if arr.ndim != 3 or arr.shape[-1] != 3:
        raise ValueError(f"{name}: cannot convert a PIL image of mode {mode!r} to RGB")
    return arr


def array_to_tchw(video, name: str, channels_first: bool | None) -> torch.Tensor:
    """A 4-D array/tensor -> torch (T, C, H, W), C in {1, 3, 4}; ValueError naming the input otherwise."""
    is_torch = isinstance(video, torch.Tensor)
    shape = tuple(video.shape)
    if len(shape) != 4:
        raise ValueError(f"{name}: a video array must be 4-D (T, H, W, C) or (T, C, H, W), got shape {shape}")
    if channels_first is None:
        last_ok, second_ok = shape[-1] in CHANNELS, shape[1] in CHANNELS
        if is_torch:
            channels_first = second_ok or not last_ok
        else:
            channels_first = second_ok and not last_ok
    num_channels = shape[1] if channels_first else shape[-1]
    if num_channels not in CHANNELS:
        raise ValueError(
            f"{name}: frames must have 1, 3 or 4 channels (gray, RGB, RGBA), got shape {shape} "
            f"({'channels-first' if channels_first else 'channels-last'})"
        )
    tensor = video if is_torch else torch.from_numpy(np.ascontiguousarray(video))
    if tensor.dtype == torch.bool or tensor.is_complex():
        raise ValueError(f"{name}: unsupported frame dtype {tensor.dtype}")
    if not channels_first:
        tensor = tensor.permute(0, 3, 1, 2)
    if min(tensor.shape[0], tensor.shape[2], tensor.shape[3]) < 1:
        raise ValueError(f"{name}: video has an empty axis, shape {shape}")
    return tensor


def to_rgb(video: torch.Tensor) -> torch.Tensor:
    """(T, C, H, W) with C in {1, 3, 4} -> 3 channels: gray replicated, alpha dropped (documented conversion)."""
    if video.shape[1] == 1:
        return video.expand(-1, 3, -1, -1)
    if video.shape[1] == 4:
        return video[:, :3]
    return video


def _frame_to_chw(frame, name: str, channels_first) -> torch.Tensor:
    """One frame (PIL, (H, W), (H, W, C) or (C, H, W)) -> torch (3, H, W)."""
    if is_pil(frame):
        return torch.from_numpy(pil_to_array(frame, name).copy()).permute(2, 0, 1)
    if frame.ndim == 2:  # grayscale (H, W)
        return to_rgb(array_to_tchw(frame[None, None], name, True))[0]
    return to_rgb(array_to_tchw(frame[None], name, channels_first))[0]


def _frames_to_tensor(frames, name: str, channels_first) -> torch.Tensor:
    """A list of frames -> torch (T, 3, H, W); every frame must be an image of the first frame's size."""
    out = []
    for i, frame in enumerate(frames):
        out.append(_frame_to_chw(frame, f"{name} frame {i}", channels_first))
        if out[-1].shape != out[0].shape:
            raise ValueError(f"{name}: frame {i} has shape {tuple(out[-1].shape)}, frame 0 has {tuple(out[0].shape)}")
    return torch.stack(out)


def _one_video(video, name: str, channels_first) -> OneVideo:
    """Check one video's form; frames in memory -> (T, 3, H, W)."""
    if isinstance(video, bytes):
        raise TypeError(f"{name}: raw bytes are not accepted; write them to a file and pass its path")
    if is_path(video):
        path = os.fspath(video)
        return OneVideo(path, f"{name} ({path!r})")
    if is_image(video):
        raise _single_image_error(name, video)
    if isinstance(video, (np.ndarray, torch.Tensor)):
        if video.ndim == 3:  # grayscale (T, H, W)
            return OneVideo(to_rgb(array_to_tchw(video[:, None], name, True)), name)
        if video.ndim != 4:
            raise ValueError(f"{name}: expected a 4-D video (T, H, W, C) / (T, C, H, W) or a 3-D (T, H, W) grayscale "
                             f"video, got shape {tuple(video.shape)}")
        return OneVideo(to_rgb(array_to_tchw(video, name, channels_first)), name)
    if isinstance(video, (list, tuple)):
        if len(video) == 0:
            raise ValueError(f"{name}: got an empty list (a video needs at least one frame)")
        bad = next((i for i, frame in enumerate(video) if not is_image(frame)), None)
        if bad is not None:
            raise ValueError(f"{name} frame {bad}: expected a PIL image or an (H, W), (H, W, C) or (C, H, W) array, "
                             f"got {type(video[bad]).__name__} {getattr(video[bad], 'shape', '')}".rstrip())
        return OneVideo(_frames_to_tensor(video, name, channels_first), name)
    raise TypeError(f"{name}: unsupported video input of type {type(video).__name__}; pass {VIDEO_FORMS}")


def split_videos(videos, channels_first: bool | None = None) -> tuple[list[OneVideo], bool]:
    """The input -> (its videos, whether it was a batch); raises naming the first bad video (``video i``)."""
    if videos is None:
        raise ValueError(f"videos must be given: {VIDEO_FORMS}, or a list of videos (a batch)")
    if isinstance(videos, (np.ndarray, torch.Tensor)) and videos.ndim == 5:
        return [_one_video(v, f"video {i}", channels_first) for i, v in enumerate(videos)], True
    if isinstance(videos, (np.ndarray, torch.Tensor)) and videos.ndim > 5:
        raise ValueError(f"video 0: expected a 4-D video (T, H, W, C) / (T, C, H, W) or a 5-D batch, got shape "
                         f"{tuple(videos.shape)}")
    if isinstance(videos, (list, tuple)) and len(videos) > 0 and not all(is_image(v) for v in videos):
        return [_one_video(v, f"video {i}", channels_first) for i, v in enumerate(videos)], True
    return [_one_video(videos, "video 0", channels_first)], False

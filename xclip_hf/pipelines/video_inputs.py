"""Inputs accepted by the zero-shot video pipeline: paths, http(s) URLs, arrays, lists of frames, lists of these.

One video is a local path (str or ``os.PathLike``), an http(s) URL (downloaded to a temporary file with a short
timeout), a 4-D array or tensor of frames ``(T, H, W, C)`` / ``(T, C, H, W)``, or a list of frames (3-D arrays,
tensors or PIL images). A list whose items are videos is a batch.

This module decides what is ONE video and names it for error messages (and checks that paths exist); the frames
themselves (channels, dtypes, equal frame sizes, stacking) are normalised by the video processor only.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import urllib.error
import urllib.parse
import urllib.request

import numpy as np
import torch

from ..video.reader import check_video_path

__all__ = ["VideoSource", "normalize_videos", "describe_video", "is_url", "download_video"]

DEFAULT_URL_TIMEOUT = 10.0


class VideoSource:
    """One video to classify: the original input, and a readable name for error messages."""

    __slots__ = ("data", "name")

    def __init__(self, data, name: str):
        self.data = data
        self.name = name

    def __repr__(self):
        return f"VideoSource({self.name})"


def is_url(value) -> bool:
    """True for strings that start with http:// or https://."""
    return isinstance(value, str) and value.lower().startswith(("http://", "https://"))


def download_video(url: str, timeout: float = DEFAULT_URL_TIMEOUT) -> str:
    """Download ``url`` to a temporary file (the caller deletes it); a clear error naming the URL when unreachable."""
    suffix = os.path.splitext(urllib.parse.urlparse(url).path)[1] or ".mp4"
    handle, path = tempfile.mkstemp(prefix="xclip_video_", suffix=suffix)
    try:
        with os.fdopen(handle, "wb") as out, urllib.request.urlopen(url, timeout=timeout) as response:
            shutil.copyfileobj(response, out)
    except (urllib.error.URLError, OSError, ValueError) as err:
        os.unlink(path)
        reason = getattr(err, "reason", err)
        raise ConnectionError(
            f"Could not download video {url!r} (timeout {timeout:g} s): {reason}. "
            "Check the address and your network, or download the file and pass its local path."
        ) from err
    return path


def describe_video(value) -> str:
    """A short readable name for a video input (its path, URL, or shape)."""
    if isinstance(value, (str, os.PathLike)):
        return repr(os.fspath(value))
    if isinstance(value, (np.ndarray, torch.Tensor)):
        return f"{type(value).__name__} of shape {tuple(value.shape)}"
    if isinstance(value, (list, tuple)):
        return f"list of {len(value)} frames"
    return f"{type(value).__name__} object"


def _is_frame(value) -> bool:
    """One image: a 3-D array/tensor (H, W, C) or (C, H, W), a 2-D grayscale array, or a PIL image."""
    if isinstance(value, (np.ndarray, torch.Tensor)):
        return value.ndim in (2, 3)
    return type(value).__module__.startswith("PIL.")


def _check_video_array(value, where: str):
    """A video array must be 4-D (T, H, W, C) or (T, C, H, W) with at least one frame."""
    if value.ndim != 4:
        hint = " (a batch of videos: pass list(array))" if value.ndim == 5 else ""
        raise ValueError(
            f"{where}: a video array must be 4-D (frames, height, width, channels) or (frames, channels, height, width); "
            f"got shape {tuple(value.shape)}{hint}."
        )
    if value.shape[0] == 0:
        raise ValueError(f"{where}: the video array has no frames (shape {tuple(value.shape)}).")


def _one_video(value, where: str) -> VideoSource:
    """Normalize one video input to a `VideoSource` (path checked to exist, frames stacked, arrays checked)."""
    if isinstance(value, os.PathLike):
        value = os.fspath(value)
    if isinstance(value, bytes):
        raise TypeError(f"{where}: raw bytes are not accepted; write them to a file and pass its path.")
    if isinstance(value, str):
        if is_url(value):
            return VideoSource(value, repr(value))
        return VideoSource(check_video_path(value, where), repr(value))
    if isinstance(value, (np.ndarray, torch.Tensor)):
        _check_video_array(value, where)
        return VideoSource(value, describe_video(value))
    if isinstance(value, (list, tuple)):
        if len(value) == 0:
            raise ValueError(f"{where}: an empty list of frames is not a video.")
        if not all(_is_frame(frame) for frame in value):
            bad = next(i for i, frame in enumerate(value) if not _is_frame(frame))
            raise TypeError(
                f"{where}: a list of frames must hold only images (2-D/3-D arrays or PIL images); item {bad} is "
                f"{describe_video(value[bad])}."
            )
        return VideoSource(list(value), f"list of {len(value)} frames")
    raise TypeError(
        f"{where}: unsupported video input of type {type(value).__name__}; pass a path, an http(s) URL, a 4-D array "
        "or tensor of frames, or a list of frames."
    )


def normalize_videos(videos) -> tuple[list[VideoSource], bool]:
    """Split the pipeline input into videos; returns (videos, is_batch). Raises naming the first bad item."""
    if isinstance(videos, (list, tuple)):
        if len(videos) > 0 and all(_is_frame(item) for item in videos):
            return [_one_video(list(videos), "video")], False  # a list of frames is ONE video
        return [_one_video(item, f"videos[{i}]") for i, item in enumerate(videos)], True
    return [_one_video(videos, "video")], False

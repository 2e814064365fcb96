"""Frame sampling: which frame indices of a video the model sees (paper Sec. 4.2, sparse and dense, multi-view).

A video shorter than the sample repeats frames; every function returns ``int64`` numpy arrays.
"""

from __future__ import annotations

import numpy as np

from .timing import time_tolerance

__all__ = [
    "sparse_sample_indices",
    "sparse_sample_by_time",
    "dense_sample_indices",
    "sparse_multiview_indices",
    "dense_multiview_indices",
    "temporal_clip_indices",
    "as_generator",
    "SAMPLING_MODES",
    "DECODE_MODES",
    "check_decode_mode",
    "snap_to_key_frames",
]

SAMPLING_MODES = ("sparse", "dense")
# how sampled frames are read from a file: "exact" (the sampled frames) or "keyframes" (approximate, see
# `snap_to_key_frames`)
DECODE_MODES = ("exact", "keyframes")


def as_generator(rng=None) -> np.random.Generator:
    """A numpy Generator from a seed, an existing Generator, or ``None`` (fresh entropy)."""
    if isinstance(rng, np.random.Generator):
        return rng
    return np.random.default_rng(rng)


def _check_counts(video_length, num_frames, what: str = "video") -> tuple[int, int]:
    """Validate the video length and the number of frames to sample."""
    if int(video_length) != video_length or video_length < 1:
        raise ValueError(f"cannot sample frames from a {what} with {video_length!r} frames (need >= 1)")
    if int(num_frames) != num_frames or num_frames < 1:
        raise ValueError(f"num_frames must be a positive integer, got {num_frames!r}")
    return int(video_length), int(num_frames)


def sparse_sample_indices(video_length: int, num_frames: int, random_offset: bool = False, rng=None) -> np.ndarray:
    """Sparse (segment) sampling, paper Sec. 4.2: one frame per each of ``num_frames`` equal segments."""
    n, t = _check_counts(video_length, num_frames)
    seg = n / t
    if random_offset:
        offsets = as_generator(rng).random(t)  # a random frame of each segment (training)
    else:
        offsets = np.full(t, 0.5)  # the middle frame of each segment (evaluation)
    idx = np.floor(seg * (np.arange(t) + offsets)).astype(np.int64)
    return np.clip(idx, 0, n - 1)


def sparse_sample_by_time(frame_times, start_s: float, end_s: float, num_frames: int) -> np.ndarray:
    """Sparse sampling by time: the frame shown at the middle of each of ``num_frames`` parts of [start_s, end_s)."""
    times = np.asarray(frame_times, dtype=np.float64)
    _check_counts(times.size, num_frames)
    t = int(num_frames)
    targets = float(start_s) + (float(end_s) - float(start_s)) * (np.arange(t) + 0.5) / t
    idx = np.searchsorted(times, targets + time_tolerance(targets), side="right") - 1
    return np.clip(idx, 0, times.size - 1).astype(np.int64)


def sparse_multiview_indices(video_length: int, num_frames: int, num_clips: int) -> np.ndarray:
    """``num_clips`` sparse clips (paper Tab. 11 temporal views): clip k samples offset (k+0.5)/N of each segment."""
    n, t = _check_counts(video_length, num_frames)
    if int(num_clips) != num_clips or num_clips < 1:
        raise ValueError(f"num_clips must be a positive integer, got {num_clips!r}")
    seg = n / t
    offsets = (np.arange(num_clips)[:, None] + 0.5) / num_clips  # (N, 1)
    idx = np.floor(seg * (np.arange(t)[None, :] + offsets)).astype(np.int64)
    return np.clip(idx, 0, n - 1)


def dense_sample_indices(
    video_length: int, num_frames: int, stride: int = 2, start: int | None = None, random_start: bool = False, rng=None
) -> np.ndarray:
    """Dense sampling (paper Sec. 4.2 baseline): ``num_frames`` frames ``stride`` apart from ``start``."""
    n, t = _check_counts(video_length, num_frames)
    if int(stride) != stride or stride < 1:
        raise ValueError(f"stride must be a positive integer, got {stride!r}")
    span = (t - 1) * stride + 1
    last_start = max(n - span, 0)
    if start is None:
        start = int(as_generator(rng).integers(0, last_start + 1)) if random_start else last_start // 2
    elif not 0 <= start < n:
        raise ValueError(f"start={start} is outside a video of {n} frames")
    idx = start + stride * np.arange(t, dtype=np.int64)
    return np.clip(idx, 0, n - 1)


def dense_multiview_indices(video_length: int, num_frames: int, num_clips: int, stride: int = 2) -> np.ndarray:
    """``num_clips`` dense clips starting at evenly spaced points of the video (multi-view evaluation)."""
    n, t = _check_counts(video_length, num_frames)
    if int(num_clips) != num_clips or num_clips < 1:
        raise ValueError(f"num_clips must be a positive integer, got {num_clips!r}")
    last_start = max(n - ((t - 1) * stride + 1), 0)
    if num_clips == 1:
        starts = [last_start // 2]
    else:
        starts = np.round(np.linspace(0, last_start, num_clips)).astype(np.int64)
    return np.stack([dense_sample_indices(n, t, stride=stride, start=int(s)) for s in starts])


def temporal_clip_indices(
    video_length: int,
    num_frames: int,
    mode: str = "sparse",
    num_clips: int = 1,
    stride: int = 2,
    random_offset: bool = False,
    rng=None,
) -> np.ndarray:
    """Indices of shape ``(num_clips, num_frames)`` for the chosen sampling mode (random only with one clip)."""
    if mode not in SAMPLING_MODES:
        raise ValueError(f"sampling mode must be one of {SAMPLING_MODES}, got {mode!r}")
    if random_offset and num_clips != 1:
        raise ValueError(f"random (training) sampling takes one temporal clip, got num_clips={num_clips}")
    if mode == "sparse":
        if random_offset:
            return sparse_sample_indices(video_length, num_frames, random_offset=True, rng=rng)[None]
        return sparse_multiview_indices(video_length, num_frames, num_clips)
    if random_offset:
        return dense_sample_indices(video_length, num_frames, stride=stride, random_start=True, rng=rng)[None]
    return dense_multiview_indices(video_length, num_frames, num_clips, stride=stride)


def check_decode_mode(mode, name: str = "decode_mode") -> str:
    """``mode`` if it is one of `DECODE_MODES`; else ValueError naming ``name`` and the choices."""
    if not isinstance(mode, str) or mode not in DECODE_MODES:
        raise ValueError(f"{name} must be one of {DECODE_MODES} ('exact' reads the sampled frames, 'keyframes' the "
                         f"nearest key frame where one is close), got {mode!r}")
    return mode


def snap_to_key_frames(indices, key_frames) -> np.ndarray:
    """One clip's indices with each sampled frame replaced by its nearest key frame when that is closer than half
    the gap to the nearest other sampled frame of the clip (distinct frames stay distinct and in order); else kept."""
    idx = np.asarray(indices, dtype=np.int64)
    keys = np.unique(np.asarray(key_frames, dtype=np.int64))
    if idx.ndim != 1:
        raise ValueError(f"indices of one clip must be 1-D, got shape {idx.shape}")
    uniq, inverse = np.unique(idx, return_inverse=True)
    if uniq.size < 2 or keys.size == 0:  # no spacing to keep (one distinct frame), or no key frame known
        return idx.copy()
    gaps = np.diff(uniq)
    spacing = np.minimum(np.concatenate([gaps[:1], gaps]), np.concatenate([gaps, gaps[-1:]]))
    at = np.searchsorted(keys, uniq)
    before, after = keys[np.maximum(at - 1, 0)], keys[np.minimum(at, keys.size - 1)]
    nearest = np.where(np.abs(uniq - before) <= np.abs(after - uniq), before, after)
    snapped = np.where(2 * np.abs(nearest - uniq) < spacing, nearest, uniq)
    return snapped[inverse.reshape(-1)]

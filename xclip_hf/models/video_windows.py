"""One video as a stream of processed windows: the one loop plan -> frames -> video processor."""

from __future__ import annotations

import dataclasses
import os

import numpy as np
import torch

from ..video.reader import VideoFile
from ..video.sampling import check_decode_mode, snap_to_key_frames
from ..video.timing import frame_times_at_rate
from ..video.windows import Window, iter_window_frames, plan_windows
from .video_input import OneVideo

__all__ = ["VideoWindowStream"]


class VideoWindowStream:
    """Windows of one video in time order, each as ``(window, pixel_values (num_spatial_crops, T, 3, h, w))``.

    ``with VideoWindowStream(video, processor, num_frames=8, ...) as stream:`` ``stream.windows`` is the plan. Without
    ``chunk_length_s`` the windows are the whole video's temporal views. ``fps`` is needed for frames in memory and
    refused for a file with its own clock. ``decode_mode`` (default: the processor's): "keyframes" reads each
    window's frames `snap_to_key_frames` (approximate; files only).
    """

    def __init__(self, video, processor, *, num_frames: int, chunk_length_s=None, stride_length_s=None,
                 num_temporal_clips: int = 1, num_spatial_crops: int = 1, fps=None, decode_backend=None,
                 decode_mode=None):
        if not isinstance(video, OneVideo):
            video = OneVideo(os.fspath(video), f"video {os.fspath(video)!r}")
        self.video, self.processor = video, processor
        self.num_frames, self.num_temporal_clips, self.num_spatial_crops = num_frames, num_temporal_clips, num_spatial_crops
        self.chunk_length_s, self.stride_length_s, self.fps = chunk_length_s, stride_length_s, fps
        self.decode_backend = decode_backend or processor.decode_backend
        self.decode_mode = check_decode_mode(decode_mode or getattr(processor, "decode_mode", "exact"))
        self.windows: list[Window] | None = None
        self._file: VideoFile | None = None

    @property
    def name(self) -> str:
        return self.video.name

    def open(self) -> "VideoWindowStream":
        """Open the file (if any) and plan the windows; errors name the video."""
        if self.windows is not None:
            return self
        if self.video.is_file:
            self._file = VideoFile(self.video.data, backend=self.decode_backend)
            count, times, end = self._file.num_frames, self._file.frame_times, self._file.duration
            if self.fps is not None and times is not None:
                raise ValueError(f"{self.name}: fps={self.fps!r} is the clock of frame arrays; a file has its own "
                                 "(its frames' presentation times): drop fps=")
        else:
            count, times, end = self.video.data.shape[0], None, None
        if times is None and self.fps is not None:
            times, end = frame_times_at_rate(count, self.fps, self.name)
        self.frame_times, self.end_s = times, end  # the video's clock (None for a frame array without fps)
        self.windows = self._plan(count, times, end)
        if self._file is not None and self.decode_mode == "keyframes":
            keys = self._file.key_frames
            self.windows = [dataclasses.replace(w, indices=snap_to_key_frames(w.indices, keys)) for w in self.windows]
        return self

    def _plan(self, count: int, times, end) -> list[Window]:
        if self.chunk_length_s is None:  # the whole video: its temporal views
            if self.processor.do_sample_frames:
                clips = self.processor.sample_indices(count, num_frames=self.num_frames,
                                                      num_temporal_clips=self.num_temporal_clips, random_sampling=False)
            elif self.num_temporal_clips != 1:
                raise ValueError("num_temporal_clips > 1 needs do_sample_frames=True")
            else:
                clips = np.arange(count)[None]
            return [Window(0.0, end, np.asarray(indices, dtype=np.int64)) for indices in clips]
        if times is None and not self.video.is_file:
            raise ValueError(f"{self.name}: a frame array has no clock; pass fps= (frames per second) to cut it into "
                             "windows of chunk_length_s seconds")
        return plan_windows(times, end, self.chunk_length_s, self.stride_length_s, self.num_frames, name=self.name)

    def _frames(self):
        """(window, frames (T, 3, H, W)) in time order, from one pass over the file or by index in memory."""
        if self._file is not None:
            for window, frames in iter_window_frames(self._file, self.windows):
                yield window, torch.from_numpy(frames).permute(0, 3, 1, 2)
        else:
            for window in self.windows:
                yield window, self.video.data[torch.as_tensor(window.indices)]

    def __iter__(self):
        self.open()
        for window, frames in self._frames():
            yield window, self.processor.process_clips(frames[None], self.name,
                                                       num_spatial_crops=self.num_spatial_crops)

    def iter_crops(self):
        """As iterating, plus ``crops``: the resized, cropped uint8 frames that ``pixel_values`` normalises."""
        self.open()
        for window, frames in self._frames():
            crops = self.processor.crop_clips(frames[None], self.name, num_spatial_crops=self.num_spatial_crops)
            yield window, self.processor.normalize_crops(crops, self.name), crops

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def __enter__(self) -> "VideoWindowStream":
        try:
            return self.open()
        except BaseException:
            self.close()
            raise

    def __exit__(self, *exc) -> None:
        self.close()

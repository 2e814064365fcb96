"""`embed`'s rows as video chunks: one row per window of a video, a part-way failure one error row over the unread windows."""

from __future__ import annotations

import functools
import io
import os
from dataclasses import dataclass

from ..models.video_input import OneVideo
from ..models.video_windows import VideoWindowStream
from ..pipelines.video_chunks import VideoChunks, build_loader, error_message
from .sources import SourceItem, item_id

__all__ = ["WindowPlan", "window_rows", "window_loader", "row_item"]


@dataclass(frozen=True)
class WindowPlan:
    """How videos become rows: one whole-video row (``chunk_length_s=None``) or windows of ``chunk_length_s``."""

    num_frames: int
    chunk_length_s: float | None = None
    stride_length_s: float | None = None
    decode_backend: str = "auto"


class _NamedBytes(io.BytesIO):
    """A video's bytes as a file object named by its source id (the reader's errors name it)."""

    def __init__(self, data, name: str):
        super().__init__(data)
        self.name = name


def _opened(video):
    """What `VideoWindowStream` reads for a path or a `SourceItem`: a path, or a named file object in memory."""
    name = item_id(video)
    data = video.open() if isinstance(video, SourceItem) else video
    if isinstance(data, (str, os.PathLike)):
        return data
    if isinstance(data, (bytes, bytearray, memoryview)):
        data = _NamedBytes(data, name)
    return OneVideo(data, f"video {name!r}")


def window_rows(video, processor, plan: WindowPlan):
    """The chunks of one video (a path or a `sources.SourceItem`): ``{video_name, start_s, end_s, pixel_values
    (1, T, 3, h, w), error: None}`` per window; a failure to open raises, a failure part-way ends with one error
    chunk over the unread windows."""
    path = item_id(video)
    with VideoWindowStream(_opened(video), processor, num_frames=plan.num_frames, chunk_length_s=plan.chunk_length_s,
                           stride_length_s=plan.stride_length_s, decode_backend=plan.decode_backend) as stream:
        done = 0
        try:
            for window, pixels in stream:
                done += 1
                yield {"video_name": path, "start_s": float(window.start_s), "end_s": _seconds(window.end_s),
                       "pixel_values": pixels, "error": None}
        except Exception as err:  # decoding or processing failed part-way: the rest of the video is one error row
            rest = sorted(stream.windows, key=lambda w: w.start_s)[done:]
            yield {"video_name": path, "start_s": float(rest[0].start_s) if rest else 0.0,
                   "end_s": _seconds(rest[-1].end_s) if rest else None, "pixel_values": None, "error": err}


def _seconds(value):
    """A time as a float (None stays None: an unknown end)."""
    return None if value is None else float(value)


def window_loader(paths: list, processor, plan: WindowPlan, batch_size: int, num_workers: int,
                  inflight_dir: str | None = None, timeout_s: float | None = None):
    """The DataLoader of the window rows of ``paths`` (paths or `sources.SourceItem`s;
    ``pipelines.video_chunks.build_loader``), going on past bad videos."""
    dataset = VideoChunks(list(paths), functools.partial(window_rows, processor=processor, plan=plan), inflight_dir)
    return build_loader(dataset, batch_size=batch_size, num_workers=num_workers, timeout_s=timeout_s)


def row_item(item: dict, paths: list) -> dict:
    """A loaded item -> embed's row fields ``{index, path (the video's id), start_s, end_s, error (text or None),
    last}``; a video that could not be opened spans 0 to unknown."""
    error = item.get("error")
    return {"index": item["video_index"], "path": item_id(paths[item["video_index"]]),
            "start_s": item.get("start_s", 0.0),
            "end_s": item.get("end_s"), "error": None if error is None else error_message(error), "last": item["last"]}

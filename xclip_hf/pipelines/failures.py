"""Bad videos among many: report, not raise, the video that fails, retrying a failed batch video by video."""

from __future__ import annotations

from typing import Callable, Iterable, Iterator

__all__ = ["VIDEO_ERRORS", "each_video", "batch_then_each"]

VIDEO_ERRORS = (ValueError, RuntimeError, OSError)  # what an unreadable or unusable video raises


def each_video(call: Callable, videos: Iterable, errors=VIDEO_ERRORS) -> Iterator[tuple]:
    """(video, call(video), None), or (video, None, error) when the call raises one of `errors`, per video."""
    for video in videos:
        try:
            yield video, call(video), None
        except errors as err:
            yield video, None, err


def batch_then_each(batch: Callable, single: Callable, videos: list, errors=VIDEO_ERRORS,
                    retry_one: bool = False) -> list[tuple]:
    """(video, result or None, error or None) per video: `batch(videos)`, else `single(video)` per video on error."""
    try:
        return list(zip(videos, batch(videos), [None] * len(videos)))
    except errors as err:
        if len(videos) == 1 and not retry_one:
            return [(videos[0], None, err)]
    return list(each_video(single, videos, errors))

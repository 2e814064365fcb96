"""Windows over an untrimmed video: where each window lies in time and which frames it samples."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Iterator

import numpy as np

from .sampling import sparse_sample_by_time
from .timing import time_tolerance

__all__ = ["Window", "plan_windows", "check_window_lengths", "positive_number", "iter_window_frames", "merge_segments"]


@dataclass(frozen=True)
class Window:
    """One window of a video: its time span in seconds and the frame indices sampled inside it."""

    start_s: float
    end_s: float
    indices: np.ndarray  # (num_frames,) int64, absolute frame indices of the video

    @property
    def timestamp(self) -> tuple[float, float]:
        return (self.start_s, self.end_s)


def positive_number(value, name: str, unit: str = "seconds") -> float:
    """``value`` as a finite float > 0, or a ValueError naming ``name`` (booleans too: True is not 1 second)."""
    if isinstance(value, bool):
        raise ValueError(f"{name} must be a number of {unit}, got {value!r}")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number of {unit}, got {value!r}") from None
    if not np.isfinite(number) or number <= 0:
        raise ValueError(f"{name} must be > 0 {unit}, got {value!r}")
    return number


def check_window_lengths(chunk_length_s, stride_length_s=None) -> tuple[float, float]:
    """Validate window length and hop (seconds); the hop defaults to the window length (no overlap)."""
    chunk = positive_number(chunk_length_s, "chunk_length_s")
    if stride_length_s is None:
        return chunk, chunk
    stride = positive_number(stride_length_s, "stride_length_s")
    if stride > chunk:
        raise ValueError(
            f"stride_length_s={stride_length_s!r} is longer than chunk_length_s={chunk_length_s!r}: frames between "
            "windows would never be seen; use a stride <= the window length"
        )
    return chunk, stride


def plan_windows(frame_times, end_s, chunk_length_s, stride_length_s=None, num_frames: int = 8,
                 name: str = "video") -> list[Window]:
    """Windows of ``chunk_length_s`` every ``stride_length_s`` seconds over a video shown at ``frame_times``.

    A tail shorter than a window becomes a last window ending at ``end_s`` (the video's end); each window samples
    ``num_frames`` frames sparsely by time.
    """
    chunk, stride = check_window_lengths(chunk_length_s, stride_length_s)
    if frame_times is None or end_s is None:
        raise ValueError(f"{name}: windows in seconds need the frames' times; the video has no timestamps and no frame "
                         "rate")
    times = np.asarray(frame_times, dtype=np.float64)
    if times.ndim != 1 or times.size < 1:
        raise ValueError(f"{name}: cannot cut windows from a video with {times.size} frames")
    end = float(end_s)
    if not (np.isfinite(times).all() and (np.diff(times) >= 0).all() and times[0] >= 0 and end >= times[-1]):
        raise ValueError(f"{name}: frame times must be finite, sorted, from 0 and end by end_s={end_s!r}")
    tol = time_tolerance(end)
    if end <= chunk + tol:
        spans = [(0.0, end)]
    else:
        full = int(np.floor((end - chunk + tol) / stride)) + 1  # windows with k * stride + chunk <= end
        spans = [(k * stride, k * stride + chunk) for k in range(full)]
        if spans[-1][1] < end - tol:
            spans.append((end - chunk, end))  # the tail: one last window aligned to the end
    return [Window(start, stop, sparse_sample_by_time(times, start, stop, num_frames)) for start, stop in spans]


def iter_window_frames(video, windows: Iterable[Window]) -> Iterator[tuple[Window, np.ndarray]]:
    """Yield ``(window, frames (T, H, W, 3))`` in time order from one pass over the open ``reader.VideoFile``."""
    windows = sorted(windows, key=lambda w: (int(w.indices.min()), int(w.indices.max())))
    if not windows:
        return
    last_use: dict[int, int] = {}
    for k, w in enumerate(windows):
        for i in w.indices.tolist():
            last_use[i] = k
    stream = video.iter_frames(np.fromiter(last_use, dtype=np.int64, count=len(last_use)))
    cache: dict[int, np.ndarray] = {}
    for k, w in enumerate(windows):
        needed = w.indices.tolist()
        last = max(needed)
        while last not in cache:
            index, frame = next(stream)
            cache[index] = frame
        yield w, np.stack([cache[i] for i in needed])
        for i in set(needed):
            if last_use[i] == k:
                del cache[i]
    stream.close()


def merge_segments(window_results: Iterable[dict]) -> list[dict]:
    """Consecutive windows with the same top label -> ``{"start_s", "end_s", "label", "score"}`` segments.

    A segment's score is the mean of its windows' top scores; where windows with different top labels overlap, the
    boundary is the middle of the overlap.
    """
    segments: list[dict] = []
    scores: list[list[float]] = []
    for result in sorted(window_results, key=lambda r: tuple(r["timestamp"])):
        start, end = (float(t) for t in result["timestamp"])
        if not result["labels"]:
            raise ValueError(f"window {result['timestamp']} has no labels to merge")
        top = max(result["labels"], key=lambda item: item["score"])
        if segments and segments[-1]["label"] == top["label"]:
            segments[-1]["end_s"] = max(segments[-1]["end_s"], end)
            scores[-1].append(float(top["score"]))
            continue
        if segments and start < segments[-1]["end_s"]:
            start = segments[-1]["end_s"] = (start + segments[-1]["end_s"]) / 2
        segments.append({"start_s": start, "end_s": end, "label": top["label"]})
        scores.append([float(top["score"])])
    for segment, values in zip(segments, scores):
        segment["score"] = sum(values) / len(values)
    return segments
